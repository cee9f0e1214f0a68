// A watch burst ships in parts (HINT_BATCH_ENTRIES), and its planning lets each part's answer in while the
// rest is planned: over a pipe, a part written while the source plans on synchronously reaches the target
// only when the source next yields. The bench's 1,000-file burst left the target idle until all of it was
// planned (the source planned ≈ 300 ms, then the target applied for ≈ 200 ms). And each turn it yields must
// not close the directory handles its files are read through (the bench's burst opened them 107 times),
// nor stat their directory again for each file (twice each: 2,000 lstats of 10 directories).
import { mkdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { OperationLog } from "../../src/events/operationLog.js";
import type { Request, Response } from "../../src/events/protocol.js";
import { type EntryStat, FileSystemEventType } from "../../src/fs/fileSystem.js";
import { NodeFileSystem } from "../../src/fs/nodeFileSystem.js";
import { SourceSession } from "../../src/replicator/sourceSession.js";
import { StreamingSource } from "../../src/replicator/streamingSource.js";
import { localPair } from "../support/localPair.js";
import { compareTrees, formatDifferences } from "../support/treeOracle.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A source file system that counts the lstats of one path. */
class CountingStats extends NodeFileSystem {
  counted = "";
  stats = 0;
  override lstat(path: string): EntryStat {
    if (path === this.counted) this.stats++;
    return super.lstat(path);
  }
  override lstatIfExists(path: string): EntryStat | undefined {
    if (path === this.counted) this.stats++;
    return super.lstatIfExists(path);
  }
}

/** A source file system that counts the files it reads. */
class CountingReads extends NodeFileSystem {
  reads = 0;
  override readFileStated(path: string): { bytes: Uint8Array; stat: EntryStat } {
    this.reads++;
    return super.readFileStated(path);
  }
}

it("a burst's first part is answered while the rest of it is planned", async () => {
  const { src, dst, answer } = localPair("mirrorlog-burst-parts-", dirs);
  const fs = new CountingReads({ root: src, onProblem: () => {} });
  /** Files the source had read when each apply was answered. */
  const answeredAt: number[] = [];
  const connection = {
    request: async (request: Request): Promise<Response> => {
      const response = answer(request);
      if (request.type !== "apply") return response;
      // An answer comes through the event loop, as one from a pipe does.
      await new Promise((resolve) => setImmediate(resolve));
      answeredAt.push(fs.reads);
      return response;
    },
  };
  const source = new StreamingSource(new SourceSession({ fs, root: src, log: new OperationLog() }), connection);
  await source.establish();

  const files = 1_000;
  const paths = Array.from({ length: files }, (_, i) => join(src, `f${String(i).padStart(4, "0")}`));
  for (const path of paths) writeFileSync(path, `burst file ${path}\n`);
  fs.reads = 0;
  answeredAt.length = 0;
  for (const path of paths) source.hint({ path, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
  await source.idle();

  expect(fs.reads).toBe(files);
  // Shipped in parts, the first answered long before the last file was read.
  expect(answeredAt.length).toBeGreaterThan(1);
  expect(answeredAt[0]).toBeLessThan(files / 2);
  const differences = compareTrees(src, dst);
  expect(differences, formatDifferences(differences)).toEqual([]);
});

it("a burst's files are read through directory handles opened once, not again after each turn it yields", async () => {
  const { src, dst, answer } = localPair("mirrorlog-burst-handles-", dirs);
  const fs = new NodeFileSystem({ root: src, onProblem: () => {} });
  const connection = {
    request: async (request: Request): Promise<Response> => {
      const response = answer(request);
      await new Promise((resolve) => setImmediate(resolve));
      return response;
    },
  };
  const source = new StreamingSource(new SourceSession({ fs, root: src, log: new OperationLog() }), connection);
  await source.establish();
  const deep = join(src, "a", "b", "c");
  mkdirSync(deep, { recursive: true });
  const paths = Array.from({ length: 600 }, (_, i) => join(deep, `f${String(i).padStart(4, "0")}`));
  for (const path of paths) writeFileSync(path, `burst file ${path}\n`);
  // Counts the directories opened (the root and each component below it) while the burst is read.
  let opened = 0;
  const open = Reflect.get(fs, "openDirectory") as (...args: unknown[]) => number;
  Reflect.set(fs, "openDirectory", (...args: unknown[]) => {
    opened++;
    return open.apply(fs, args);
  });
  for (const path of paths) source.hint({ path, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
  await source.idle();

  // The root, a, a/b and a/b/c once each while the batch is read; a few more for what follows it.
  expect(opened).toBeLessThan(12);
  const differences = compareTrees(src, dst);
  expect(differences, formatDifferences(differences)).toEqual([]);
});

it("a burst stats the directory its files are in once, and a change to the directory after it is mirrored", async () => {
  const { src, dst, answer } = localPair("mirrorlog-burst-dir-stats-", dirs);
  const fs = new CountingStats({ root: src, onProblem: () => {} });
  const connection = { request: async (request: Request): Promise<Response> => answer(request) };
  const source = new StreamingSource(new SourceSession({ fs, root: src, log: new OperationLog() }), connection);
  await source.establish();
  const dir = join(src, "d");
  mkdirSync(dir);
  source.hint({ path: dir, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
  await source.idle();
  const paths = Array.from({ length: 300 }, (_, i) => join(dir, `f${String(i).padStart(4, "0")}`));
  for (const path of paths) writeFileSync(path, `burst file ${path}\n`);
  fs.counted = dir;
  for (const path of paths) source.hint({ path, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
  await source.idle();

  // Each file's plan asks whether its directory still is one, and whether the directory's metadata changed
  // with it: 600 lstats of one directory without the reuse.
  expect(fs.stats).toBe(1);
  expect(statSync(join(dst, "d")).mtimeMs).toBe(statSync(dir).mtimeMs);
  // The next batch takes a fresh stat: a file added and the directory's mtime set after the first batch.
  writeFileSync(join(dir, "later"), "later\n");
  utimesSync(dir, new Date("2001-02-03T04:05:06Z"), new Date("2001-02-03T04:05:06Z"));
  source.hint({ path: join(dir, "later"), eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
  await source.idle();
  expect(statSync(join(dst, "d")).mtimeMs).toBe(statSync(dir).mtimeMs);
  const differences = compareTrees(src, dst);
  expect(differences, formatDifferences(differences)).toEqual([]);
});

it("hints that come while a batch is planned join it before it drains, their directory stated afresh", async () => {
  const { src, dst, answer } = localPair("mirrorlog-burst-join-", dirs);
  const fs = new NodeFileSystem({ root: src, onProblem: () => {} });
  const dir = join(src, "d");
  const first = Array.from({ length: 300 }, (_, i) => join(dir, `a${String(i).padStart(4, "0")}`));
  const later = Array.from({ length: 300 }, (_, i) => join(dir, `b${String(i).padStart(4, "0")}`));
  const requests: string[] = [];
  let source: StreamingSource | undefined;
  const connection = {
    request: async (request: Request): Promise<Response> => {
      requests.push(request.type);
      // The batch's first part is on its way: a second wave of files comes into the same directory, whose
      // mtime is then set apart from any the first wave left.
      if (request.type === "apply" && requests.filter((type) => type === "apply").length === 1) {
        for (const path of later) writeFileSync(path, `later ${path}\n`);
        utimesSync(dir, new Date("2001-02-03T04:05:06Z"), new Date("2001-02-03T04:05:06Z"));
        for (const path of later) source!.hint({ path, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
      }
      const response = answer(request);
      await new Promise((resolve) => setImmediate(resolve));
      return response;
    },
  };
  source = new StreamingSource(new SourceSession({ fs, root: src, log: new OperationLog() }), connection);
  await source.establish();
  mkdirSync(dir);
  source.hint({ path: dir, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
  await source.idle();
  for (const path of first) writeFileSync(path, `first ${path}\n`);
  requests.length = 0;
  for (const path of first) source.hint({ path, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
  await source.idle();

  // One batch: its applies, then one release (the drain) at the end; without joining, the second wave
  // waited for the first batch's release before it was planned.
  expect(requests.filter((type) => type === "release")).toHaveLength(1);
  expect(requests.at(-1)).toBe("release");
  // The second wave's plans stat the directory again (a stat kept from the first wave misses the new mtime).
  expect(statSync(join(dst, "d")).mtimeMs).toBe(statSync(dir).mtimeMs);
  const differences = compareTrees(src, dst);
  expect(differences, formatDifferences(differences)).toEqual([]);
});
