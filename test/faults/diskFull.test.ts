// E1: the target is a 4 MiB tmpfs (mounted here as root; `unshare -Urm` or a loop-mounted ext4 image
// would do too, see RELIABILITY.md) and the source holds more than that. The sync must fail with a
// clear error naming ENOSPC / no space and the path, leave no partial file under a final name and no
// temp behind; once space is freed (remounted bigger) a second sync converges.
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runMirrorlog } from "../support/cliRunner.js";
import { compareTrees, findTempFiles, formatDifferences } from "../support/treeOracle.js";
import {
  chooseFaultSeed,
  convergenceProblems,
  FinalNameObserver,
  MixedTree,
  makeWorkspace,
  randomBytesOf,
  removeWorkspace,
  seededRandom,
  type Workspace,
} from "./faultScenarios.js";

const workspaces: Workspace[] = [];
const mounts: string[] = [];
afterAll(() => {
  for (const mount of mounts) execFileSync("umount", [mount]);
  for (const ws of workspaces) removeWorkspace(ws);
});

describe("disk full on the target (ENOSPC)", () => {
  it("fails with a clear error and no partial or temp file, then converges once space is freed", async () => {
    const ws = makeWorkspace("faults-enospc");
    workspaces.push(ws);
    mkdirSync(ws.dst);
    // Requires root (the suite runs as root here); a failure to mount fails the test rather than skipping it.
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", ws.dst]);
    mounts.push(ws.dst);
    const seed = chooseFaultSeed();
    const random = seededRandom(seed);
    new MixedTree(ws.src, random).populate({ dirs: 3, filesPerDir: 10, bigFiles: 0 });
    // Each file fits alone; together they need about 7 MiB.
    for (let i = 0; i < 5; i++) writeFileSync(join(ws.src, `big-${i}`), randomBytesOf(random, 1_400_000));
    const observer = FinalNameObserver.start(ws.dst);
    await observer.addVersions(new MixedTree(ws.src, random).versions());

    const full = await runMirrorlog(["sync", ws.src, ws.dst], { env: ws.env, timeoutMs: 30_000 });
    expect(full.signal, full.stderr).toBeNull();
    // Exit 23 (partial transfer): mirrored with per-path problems, each naming the file that did not fit and its target path.
    expect(full.code, full.stderr).toBe(23);
    expect(full.stdout).toContain("ENOSPC: no space left on device");
    expect(full.stdout).toMatch(new RegExp(`ENOSPC[^\n]*${ws.dst.replaceAll(/[.*+?^${}()|[\]\\]/g, "\\$&")}/`));
    expect(findTempFiles(ws.dst), "temps left after the failed run").toEqual([]);
    const differences = compareTrees(ws.src, ws.dst);
    expect(differences.length, "a 4 MiB target cannot hold the source").toBeGreaterThan(0);

    execFileSync("mount", ["-o", "remount,size=64m", ws.dst]);
    const freed = await runMirrorlog(["sync", ws.src, ws.dst], { env: ws.env, timeoutMs: 30_000 });
    expect(freed.code, freed.stderr).toBe(0);
    expect(convergenceProblems(ws), formatDifferences(compareTrees(ws.src, ws.dst))).toEqual([]);
    const observed = await observer.stop();
    expect(observed.violations, `seed ${seed}: partial or foreign files under final names`).toEqual([]);
    expect(readdirSync(ws.dst).length).toBeGreaterThan(0);
  });
});
