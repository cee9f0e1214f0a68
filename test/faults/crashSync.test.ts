// C1/C2/C3/C6/C7: `mirrorlog sync` mirrors a mixed tree (many small files, a few of several MiB) that
// changes between kills (deletes, renames of files and directories, rewrites, appends, big-file edits,
// new files), and is SIGKILLed at seeded random moments 5-400 ms into the run: in one series the source
// process, in the other its `mirrorlog serve` child (found by its `--root=<DST>` command line; the
// source reconnects by itself and may finish that run). After each kill a clean sync must resume and
// exit 0 with an exact mirror (independent oracle), no reserved-prefix entry (temp or stash) on the
// target, and state databases that pass quick_check; an observer thread checks all along that no final
// name on the target holds anything but a complete version the source had for that path.
// The two series run side by side (separate workspaces) to keep the suite's time down.
// Replay a failure with MIRRORLOG_FAULT_SEED=<seed> (printed in every failure).
import { afterAll, describe, expect, it } from "vitest";
import {
  type CrashReport,
  chooseFaultSeed,
  makeWorkspace,
  removeWorkspace,
  runCrashPoints,
  type Workspace,
} from "./faultScenarios.js";

const workspaces: Workspace[] = [];
afterAll(() => {
  for (const ws of workspaces) removeWorkspace(ws);
});

/** Kill points per series: 50 in all. */
const SOURCE_POINTS = 25;
const TARGET_POINTS = 25;

function summary(report: CrashReport): string {
  return (
    `kill -9 ${report.victim}: seed ${report.seed}, ${report.killed} points landed (${report.missed} after the run ` +
    `ended), ${report.restarts} restarts, ${report.staleLocks} stale locks waited out, observer read ` +
    `${report.observer.filesRead} files in ${report.observer.walks} walks, ${report.durationMs} ms`
  );
}

describe("kill -9 mid-sync", () => {
  it(`source killed at ${SOURCE_POINTS} and serve at ${TARGET_POINTS} seeded points: each restart resumes and converges, never a partial file`, async () => {
    const seed = chooseFaultSeed();
    const source = makeWorkspace("crash-source");
    const target = makeWorkspace("crash-target");
    workspaces.push(source, target);
    const [bySource, byTarget] = await Promise.all([
      runCrashPoints(source, { seed, victim: "source", points: SOURCE_POINTS }),
      runCrashPoints(target, { seed, victim: "target", points: TARGET_POINTS }),
    ]);
    console.log(`${summary(bySource)}\n${summary(byTarget)}`);
    for (const report of [bySource, byTarget]) {
      expect(report.failures, `seed ${report.seed}`).toEqual([]);
      expect(report.observer.filesRead, "the observer must have looked at the target").toBeGreaterThan(0);
    }
    expect(bySource.killed).toBeGreaterThanOrEqual(SOURCE_POINTS);
    expect(byTarget.killed).toBeGreaterThanOrEqual(TARGET_POINTS);
  }, 180_000);
});
