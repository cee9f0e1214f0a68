// C1/C2/C3/C7 for the target side: the `mirrorlog serve` child of `mirrorlog sync` (found by its
// `--root=<DST>` command line) is SIGKILLed at seeded random moments (5-400 ms after it appeared) while
// it mirrors a mixed tree that changes between kills (deletes, renames, rewrites, big-file edits, new
// files); the source reconnects by itself (up to 5 times) and may finish that run. After each kill a clean sync must resume and exit 0 with an exact mirror,
// no reserved-prefix entries on the target, and state databases that pass quick_check; meanwhile an
// observer checks that no final name on the target ever holds a partial or foreign file.
// Replay a failure with MIRRORLOG_FAULT_SEED=<seed> (printed in every failure).
import { afterAll, describe, expect, it } from "vitest";
import { chooseFaultSeed, makeWorkspace, removeWorkspace, runCrashPoints, type Workspace } from "./faultScenarios.js";

const workspaces: Workspace[] = [];
afterAll(() => {
  for (const ws of workspaces) removeWorkspace(ws);
});

/** Kill points landed on the target; with the source's in crashSource.test.ts they make at least 50. */
const TARGET_POINTS = 30;

describe("kill -9 of the target (serve) mid-sync", () => {
  it(`resumes and converges after each of ${TARGET_POINTS} seeded kill points, never exposing a partial file`, async () => {
    const ws = makeWorkspace("crash-target");
    workspaces.push(ws);
    const seed = chooseFaultSeed();
    const report = await runCrashPoints(ws, { seed, victim: "target", points: TARGET_POINTS });
    console.log(
      `crash target: seed ${seed}, ${report.killed} kill points landed (${report.missed} after the run ended), ` +
        `${report.restarts} restarts, ${report.staleLocks} stale locks waited out, observer read ${report.observer.filesRead} files in ${report.observer.walks} walks, ` +
        `${report.durationMs} ms`,
    );
    expect(report.failures, `seed ${seed}`).toEqual([]);
    expect(report.killed, `seed ${seed}`).toBeGreaterThanOrEqual(TARGET_POINTS);
    expect(report.observer.filesRead, "the observer must have looked at the target").toBeGreaterThan(0);
  }, 150_000);
});
