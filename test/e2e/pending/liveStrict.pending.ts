// NOT part of the suite (vitest includes only *.test.ts): strict variants of test/e2e/live.test.ts
// that fail today because of two bugs in the core (src/replicator/sourceSession.ts). Rename this
// file to liveStrict.test.ts once they are fixed, then drop the workarounds in live.test.ts.
//
// (1) SourceSession.planPath scans a path and only then (updateWatches) adds the watches of the
//     directories it found. A change inside a new directory between its scan and its watch is never
//     hinted, so the target keeps the stale entry until the next reconcile scan (default 300 s).
//     Seen with seed 3826725309: "make populated dir 日本-25/f-101" followed at once by
//     "rename file 日本-25/f-101/f-104/data-105 -> 日本-25/f-101/f-104/notes file-108" left
//     data-105 on the target ("extra on target") for the 20 s deadline.
// (2) Self-healing conditions are reported as permanent problems, so `watch` exits 1 although the
//     target mirrors the source: a writeFile shipped without bytes because the file changed or
//     vanished after its scan ("content <hash> missing: the target does not hold it", which settle()
//     pushes to stats.problems and then retries successfully), and a new directory that vanished
//     or became a file before its watch was added ("cannot watch: FileSystemError: ENOENT/ENOTDIR ...",
//     updateWatches).
// With (1) patched experimentally (updateWatches re-hints each newly watched directory, and ignores
// ENOENT/ENOTDIR), 2 of 3 strict runs passed; the third left "x.y.z-183/notes file-167" on the target
// after "rename dir f-163/f-135 -> x.y.z-183" then "rename file x.y.z-183/notes file-167 -> ..." in one
// burst: events inside a just-renamed watched directory may still be attributed to its old path.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { testEnvironment } from "../../support/cliRunner.js";
import { chooseSeed, runLiveBursts } from "../liveScenario.js";

const workspaces: string[] = [];

afterAll(() => {
  for (const dir of workspaces) rmSync(dir, { recursive: true, force: true });
});

describe("mirrorlog watch, live, strict", () => {
  it("converges after every burst from watch events alone, and exits 0", async () => {
    const base = mkdtempSync(join(tmpdir(), "mirrorlog-e2e-strict-"));
    workspaces.push(base);
    const src = join(base, "src");
    mkdirSync(src);
    const run = await runLiveBursts({
      src,
      dst: join(base, "dst"),
      env: testEnvironment(join(base, "state")),
      seed: chooseSeed(),
      bursts: 10,
      // The default reconcile interval (300 s) is far beyond each burst's deadline: only watches count.
      watchArgs: ["--json"],
    });
    expect(run.stopped.code, run.ending).toBe(0);
    expect(JSON.parse(run.stopped.stdout).problems, run.ending).toEqual([]);
    expect(run.tempFiles, run.ending).toEqual([]);
  });
});
