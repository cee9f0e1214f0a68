// A subscriber whose disk fills: DST is a 4 MiB tmpfs (mounted here as root, as test/faults/diskFull.test.ts
// does) and the fan-out holds about 7 MiB. A one-shot `subscribe` must fail (non-zero exit) with a line naming
// ENOSPC and the path, leave no partial file under a final name and no temp, and not move its cursor past what
// it did not apply; once the tmpfs is remounted bigger, the next `subscribe` makes DST equal SRC with lag 0.
// Two ways in: a new subscriber starting from the snapshot, and an established one following the tail.
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FinalNameObserver } from "../faults/faultScenarios.js";
import { type CliResult, makeWorkspace, runMirrorlog, type Workspace } from "../support/cliRunner.js";
import { type NatsTestServer, startNatsServer } from "../support/natsServer.js";
import { compareTrees, describeTree, findTempFiles, formatDifferences } from "../support/treeOracle.js";
import { bytesOf, run, seeded } from "./support.js";

let server: NatsTestServer;
const created: string[] = [];
const mounts: string[] = [];

beforeAll(async () => {
  server = await startNatsServer();
});

afterAll(async () => {
  for (const mount of mounts) execFileSync("umount", [mount]);
  await server?.stop();
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

/** A 4 MiB tmpfs at `dir` (requires root; a failure to mount fails the test rather than skipping it). */
function mountSmall(dir: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", dir]);
  mounts.push(dir);
}

/** Five 1.4 MB files of incompressible bytes (each fits a 4 MiB disk alone, together about 7 MiB) and a small one. */
function addBigFiles(src: string, random: () => number): void {
  for (let i = 0; i < 5; i++) {
    const bytes = Buffer.alloc(1_400_000);
    for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(random() * 256);
    writeFileSync(join(src, `big-${i}`), bytes);
  }
  writeFileSync(join(src, "zz-after-the-big-ones.txt"), bytesOf(random, 500));
}

/** A small tree that fits the 4 MiB disk with room to spare. */
function writeSmallTree(src: string, random: () => number): void {
  for (let i = 0; i < 20; i++) {
    mkdirSync(join(src, `d${i % 4}`), { recursive: true });
    writeFileSync(join(src, `d${i % 4}`, `f${i}.txt`), bytesOf(random, 2000 + i * 50));
  }
}

/** [path, sha256] of every file in SRC: the versions a file at a final name may hold. */
function versionsOf(src: string): [string, string][] {
  return [...describeTree(src).values()]
    .filter((entry) => entry.kind === "file")
    .map((entry) => [entry.path, entry.sha256!] as [string, string]);
}

/** This subscriber's row of `status --json`, and the stream's last sequence. */
async function statusOf(
  url: string,
  ws: Workspace,
  dst: string,
): Promise<{ lag: number; position: number; last: number }> {
  const status = JSON.parse((await run(["status", "--json", url], ws.env)).stdout);
  const row = status.subscribers.find((s: { target: string | null }) => s.target === dst);
  expect(row, JSON.stringify(status)).toBeDefined();
  return { lag: row.lagOperations, position: row.position, last: status.stream.lastSeq };
}

/** The assertions on a run that hit the full disk. */
function expectReportedFull(full: CliResult, dst: string): void {
  const output = `${full.stdout}\n${full.stderr}`;
  expect(full.signal, output).toBeNull();
  expect(full.code, output).not.toBe(0);
  // One line names the condition and the path that did not fit (relative, and absolute under DST).
  expect(full.stderr).toMatch(/^mirrorlog subscribe: "big-\d"[^\n]*ENOSPC: no space left on device/m);
  expect(full.stderr).toMatch(new RegExp(`ENOSPC[^\\n]*${dst.replaceAll(/[.*+?^${}()|[\]\\]/g, "\\$&")}/big-\\d`));
  expect(findTempFiles(dst), "temps left after the failed run").toEqual([]);
}

/** Remounts bigger, subscribes again, and checks DST equals SRC with the consumer at the stream's end. */
async function expectCatchUp(ws: Workspace, url: string, dst: string, observer: FinalNameObserver): Promise<void> {
  execFileSync("mount", ["-o", "remount,size=64m", dst]);
  const freed = await runMirrorlog(["subscribe", "--json", url, dst], { env: ws.env, timeoutMs: 30_000 });
  expect(freed.code, `${freed.stdout}\n${freed.stderr}`).toBe(0);
  expect(JSON.parse(freed.stdout).problems).toEqual([]);
  expect(formatDifferences(compareTrees(ws.src, dst, { mtimes: true }))).toBe("(trees are equal)");
  expect(findTempFiles(dst)).toEqual([]);
  const after = await statusOf(url, ws, dst);
  expect(after.lag).toBe(0);
  expect(after.position).toBe(after.last);
  const observed = await observer.stop();
  expect(observed.violations, "partial or foreign files under final names").toEqual([]);
  expect(observed.filesRead).toBeGreaterThan(0);
}

describe("a subscriber whose disk fills", () => {
  it("new subscriber from the snapshot: reports ENOSPC with the path, exits non-zero, catches up once space is freed", async () => {
    const ws = makeWorkspace("fanout-enospc-new", created);
    const url = `${server.url}/full1`;
    const random = seeded(41);
    writeSmallTree(ws.src, random);
    addBigFiles(ws.src, random);
    await run(["publish", ws.src, url], ws.env);
    const dst = join(ws.base, "dst");
    mountSmall(dst);
    const observer = FinalNameObserver.start(dst);
    await observer.addVersions(versionsOf(ws.src));

    const full = await runMirrorlog(["subscribe", url, dst], { env: ws.env, timeoutMs: 30_000 });
    expectReportedFull(full, dst);
    expect(compareTrees(ws.src, dst).length, "a 4 MiB target cannot hold the source").toBeGreaterThan(0);

    await expectCatchUp(ws, url, dst, observer);
  }, 60_000);

  it("established subscriber on the tail: keeps its cursor behind what did not fit, then catches up", async () => {
    const ws = makeWorkspace("fanout-enospc-tail", created);
    const url = `${server.url}/full2`;
    const random = seeded(42);
    writeSmallTree(ws.src, random);
    await run(["publish", ws.src, url], ws.env);
    const dst = join(ws.base, "dst");
    mountSmall(dst);
    // Observed from the first subscribe on (the observer flags any file it sees before knowing its versions).
    const observer = FinalNameObserver.start(dst);
    await observer.addVersions(versionsOf(ws.src));
    await run(["subscribe", url, dst], ws.env);
    expect(compareTrees(ws.src, dst)).toEqual([]);

    addBigFiles(ws.src, random);
    await observer.addVersions(versionsOf(ws.src));
    const published = JSON.parse((await run(["publish", "--json", ws.src, url], ws.env)).stdout);
    expect(published.operationsPublished).toBeGreaterThanOrEqual(6); // six files, and the root's new mtime

    const full = await runMirrorlog(["subscribe", url, dst], { env: ws.env, timeoutMs: 30_000 });
    expectReportedFull(full, dst);
    expect(compareTrees(ws.src, dst).length, "a 4 MiB target cannot hold the source").toBeGreaterThan(0);
    // The cursor stays before the first operation that did not fit: those come again on the next run.
    const stuck = await statusOf(url, ws, dst);
    expect(stuck.lag).toBeGreaterThan(0);
    expect(stuck.position).toBeLessThan(stuck.last);

    await expectCatchUp(ws, url, dst, observer);
  }, 60_000);
});
