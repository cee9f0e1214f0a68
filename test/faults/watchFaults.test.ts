// B6 and watch robustness: while `mirrorlog watch` runs, a watched directory is deleted, renamed within
// the tree, renamed out of the tree (and back), and a storm creates and deletes more than 20,000
// entries within a second or two (beyond the kernel's default max_queued_events of 16,384). The storm
// must converge from watch events alone (the reconcile interval stays at its default 300 s). For the
// directory faults the issue asks for convergence "via rescan": that watch runs a reconcile scan every
// 3 s, since a directory deleted and re-created under the same name can still slip past its watches.
import { mkdirSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startWatch, waitForMirror } from "../support/cliRunner.js";
import { findTempFiles } from "../support/treeOracle.js";
import { makeWorkspace, removeWorkspace, type Workspace } from "./faultScenarios.js";

const workspaces: Workspace[] = [];
afterAll(() => {
  for (const ws of workspaces) removeWorkspace(ws);
});

function populated(ws: Workspace): void {
  for (const dir of ["a", "a/deep", "a/deep/er", "b", "c"]) {
    mkdirSync(join(ws.src, dir), { recursive: true });
    for (let i = 0; i < 5; i++) writeFileSync(join(ws.src, dir, `f${i}`), `${dir} ${i}\n`);
  }
}

/** Generous: the suite runs files in parallel on two cores, and the kill -9 series loads the disk. */
const CONVERGE_DEADLINE_MS = 30_000;

describe("watch faults", () => {
  it("converges after a watched directory is deleted, renamed within the tree, and moved out and back", async () => {
    const ws = makeWorkspace("faults-watch");
    workspaces.push(ws);
    populated(ws);
    const watch = await startWatch(ws.src, ws.dst, { env: ws.env, args: ["--json", "--rescan-interval", "3"] });
    const context = () => `watch stderr:\n${watch.stderr()}`;
    try {
      rmSync(join(ws.src, "b"), { recursive: true });
      await waitForMirror(ws.src, ws.dst, { deadlineMs: CONVERGE_DEADLINE_MS, context });

      renameSync(join(ws.src, "a"), join(ws.src, "c", "a-moved"));
      // The moved directory's watches must follow it: a change deep inside it must still be seen.
      writeFileSync(join(ws.src, "c", "a-moved", "deep", "er", "new"), "after the move\n");
      await waitForMirror(ws.src, ws.dst, { deadlineMs: CONVERGE_DEADLINE_MS, context });

      const outside = join(ws.base, "outside");
      renameSync(join(ws.src, "c"), outside);
      await waitForMirror(ws.src, ws.dst, { deadlineMs: CONVERGE_DEADLINE_MS, context });
      // Changed while outside (no watch may report it), then moved back in.
      writeFileSync(join(outside, "a-moved", "f0"), "changed outside\n");
      renameSync(outside, join(ws.src, "c-back"));
      await waitForMirror(ws.src, ws.dst, { deadlineMs: CONVERGE_DEADLINE_MS, context });

      // A directory deleted and re-created with the same name: the new one must be watched.
      rmSync(join(ws.src, "c-back", "a-moved"), { recursive: true });
      mkdirSync(join(ws.src, "c-back", "a-moved"));
      writeFileSync(join(ws.src, "c-back", "a-moved", "reborn"), "x\n");
      await waitForMirror(ws.src, ws.dst, { deadlineMs: CONVERGE_DEADLINE_MS, context });
      writeFileSync(join(ws.src, "c-back", "a-moved", "later"), "y\n");
      await waitForMirror(ws.src, ws.dst, { deadlineMs: CONVERGE_DEADLINE_MS, context });
    } finally {
      const stopped = await watch.stop();
      expect(stopped.code, stopped.stderr).toBe(0);
    }
    expect(findTempFiles(ws.dst)).toEqual([]);
  });

  it("converges after a storm of more than 20,000 creates and deletes", async () => {
    const ws = makeWorkspace("faults-storm");
    workspaces.push(ws);
    populated(ws);
    const watch = await startWatch(ws.src, ws.dst, { env: ws.env, args: ["--json"] });
    const context = () => `watch stderr (last 2000 chars):\n${watch.stderr().slice(-2000)}`;
    const started = Date.now();
    try {
      const storm = join(ws.src, "storm");
      mkdirSync(storm);
      for (let i = 0; i < 12_000; i++) writeFileSync(join(storm, `s${i}`), `${i}`);
      for (let i = 0; i < 12_000; i += 2) unlinkSync(join(storm, `s${i}`));
      for (let i = 0; i < 3_000; i++) writeFileSync(join(ws.src, "a", `late${i}`), `${i}`);
      const stormMs = Date.now() - started;
      await waitForMirror(ws.src, ws.dst, { deadlineMs: 60_000, context });
      console.log(`storm: 27,000 entry events in ${stormMs} ms; converged ${Date.now() - started} ms after it began`);
    } finally {
      const stopped = await watch.stop(30_000);
      expect(stopped.signal, stopped.stderr.slice(-2000)).toBeNull();
    }
    expect(findTempFiles(ws.dst)).toEqual([]);
  }, 120_000);
});
