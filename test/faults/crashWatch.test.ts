// C1/C6 during live replication: while a writer keeps changing the source, `mirrorlog watch` itself is
// SIGKILLed mid-burst (then restarted, and it must converge), and separately its serve child is
// SIGKILLed mid-burst (the watch reconnects by itself and must converge without a restart). An
// observer checks all along that final names on the target only ever hold complete source versions.
// Every state of the source a replicator can read is a registered version (see LiveWriter).
// Replay a failure with MIRRORLOG_FAULT_SEED=<seed>.
import { afterAll, describe, expect, it } from "vitest";
import { pollUntil, startWatch, waitForMirror } from "../support/cliRunner.js";
import {
  chooseFaultSeed,
  convergenceProblems,
  FinalNameObserver,
  killAll,
  LiveWriter,
  lockOwnersPresent,
  MixedTree,
  makeWorkspace,
  removeWorkspace,
  seededRandom,
  servePids,
  type Workspace,
} from "./faultScenarios.js";

const workspaces: Workspace[] = [];
afterAll(() => {
  for (const ws of workspaces) removeWorkspace(ws);
});

/** Changes the tree every few milliseconds until stopped. */
function startWriter(writer: LiveWriter) {
  let writing = true;
  const done = (async () => {
    while (writing) {
      await writer.change();
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  })();
  return {
    stop: async () => {
      writing = false;
      await done;
    },
  };
}

const ROUNDS = 2;

describe("kill -9 during live replication", () => {
  it(`watch killed mid-burst ${ROUNDS} times, restarted, and its serve killed ${ROUNDS} times: converges each time`, async () => {
    const ws = makeWorkspace("faults-crash-watch");
    workspaces.push(ws);
    const seed = chooseFaultSeed();
    const random = seededRandom(seed);
    const tree = new MixedTree(ws.src, random);
    tree.populate({ dirs: 4, filesPerDir: 15, bigFiles: 2 });
    const observer = FinalNameObserver.start(ws.dst);
    await observer.addVersions(tree.versions());
    const where = (what: string) => `seed ${seed} (MIRRORLOG_FAULT_SEED=${seed}): ${what}`;
    let points = 0;
    const live = new LiveWriter(ws.src, `${ws.base}/staging`, random, observer);

    for (let round = 0; round < ROUNDS; round++) {
      // The watch process itself.
      const watch = await startWatch(ws.src, ws.dst, { env: ws.env, args: ["--json"] });
      const writer = startWriter(live);
      await new Promise((resolve) => setTimeout(resolve, random.int(100, 600)));
      watch.child.kill("SIGKILL");
      points++;
      await writer.stop();
      await pollUntil(() => servePids(ws.dst).length === 0 && lockOwnersPresent(ws.stateHome).length === 0, {
        deadlineMs: 15_000,
        describe: () => where("the orphaned serve (or its lock) outlived the killed watch"),
      });
      const restarted = await startWatch(ws.src, ws.dst, { env: ws.env, args: ["--json"] });
      await waitForMirror(ws.src, ws.dst, { deadlineMs: 20_000, context: () => where(restarted.stderr()) });
      const stopped = await restarted.stop();
      expect(stopped.code, where(stopped.stderr)).toBe(0);
      expect(convergenceProblems(ws), where("after the restarted watch")).toEqual([]);
    }

    for (let round = 0; round < ROUNDS; round++) {
      // Its serve child: the watch must reconnect by itself.
      const watch = await startWatch(ws.src, ws.dst, { env: ws.env, args: ["--json"] });
      const writer = startWriter(live);
      await new Promise((resolve) => setTimeout(resolve, random.int(100, 600)));
      expect(killAll(servePids(ws.dst)), where("a serve child to kill")).toBeGreaterThan(0);
      points++;
      await new Promise((resolve) => setTimeout(resolve, random.int(50, 300)));
      await writer.stop();
      await waitForMirror(ws.src, ws.dst, { deadlineMs: 20_000, context: () => where(watch.stderr()) });
      expect(watch.stderr(), where("the watch should report the reconnection")).toMatch(/reconnecting/);
      const stopped = await watch.stop();
      expect(stopped.code, where(stopped.stderr)).toBe(0);
      expect(convergenceProblems(ws), where("after the reconnected watch")).toEqual([]);
    }

    const observed = await observer.stop();
    console.log(
      `crash watch: seed ${seed}, ${points} kill points, ${live.changes} live changes, ${observed.filesRead} files observed`,
    );
    expect(observed.violations, where("partial or foreign files under final names")).toEqual([]);
  }, 120_000);
});
