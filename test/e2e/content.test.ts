// End-to-end byte budgets of "content travels only when the target lacks it": the real binary
// mirrors real files between temp dirs, and the second run's wire bytes (sent + received, from
// `--json`) must stay within what the change itself costs. XDG_STATE_HOME is a per-test temp dir,
// so the source's state (file index, chunk lists) persists between the two runs of a pair, as it
// does for a user running `mirrorlog sync` twice.
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chunkBuffer, replicationChunking } from "../../src/content/chunker.js";
import { mirrorlogArgs, processesMentioning, runMirrorlog, testEnvironment } from "../support/cliRunner.js";
import { compareTrees, formatDifferences } from "../support/treeOracle.js";

const KiB = 1024;
const MiB = 1024 * KiB;
/** The size of the large test file; the budgets below are the for this size. */
const BIG = 64 * MiB;
/** Random data is generated and hashed in pieces of this size: memory stays small, writes stay fast. */
const PIECE = 4 * MiB;

/** The `--json` summary fields these tests read. */
interface Summary {
  filesWritten: number;
  filesDeleted: number;
  bytesWritten: number;
  wireBytesSent: number;
  wireBytesReceived: number;
  problems: unknown[];
}

let base: string;
/** One 64 MiB random file, copied into each test's source (cheaper than generating it again). */
let bigTemplate: string;

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), "mirrorlog-e2e-content-"));
  bigTemplate = join(base, "big.template");
  writeRandomFile(bigTemplate, BIG);
});

afterAll(() => {
  if (base) rmSync(base, { recursive: true, force: true });
});

/** Writes `size` random bytes to `path`. */
function writeRandomFile(path: string, size: number): void {
  const fd = openSync(path, "w");
  try {
    for (let written = 0; written < size; written += PIECE) writeSync(fd, randomBytes(Math.min(PIECE, size - written)));
  } finally {
    closeSync(fd);
  }
}

/** Overwrites `length` bytes of `path` at `offset` with random bytes (the file keeps its size). */
function overwriteRandom(path: string, offset: number, length: number): void {
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, randomBytes(length), 0, length, offset);
  } finally {
    closeSync(fd);
  }
}

/** sha256 of a file, read in pieces. */
function sha256OfFile(path: string): string {
  const hash = createHash("sha256");
  const buffer = Buffer.allocUnsafe(PIECE);
  const fd = openSync(path, "r");
  try {
    for (;;) {
      const read = readSync(fd, buffer, 0, PIECE, null);
      if (read === 0) break;
      hash.update(buffer.subarray(0, read));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

/** A source/target pair with its own state home, so the state persists between its runs only. */
function workspace(name: string) {
  const src = join(base, `${name}-src`);
  const dst = join(base, `${name}-dst`);
  mkdirSync(src);
  return { src, dst, env: testEnvironment(join(base, `${name}-state`)) };
}

type Workspace = ReturnType<typeof workspace>;

/** `mirrorlog sync --json SRC DST`; expects success, no problems, and a target equal to the source. */
async function sync(ws: Workspace): Promise<Summary> {
  const result = await runMirrorlog(["sync", "--json", ws.src, ws.dst], { env: ws.env, timeoutMs: 60_000 });
  expect(result.code, result.stderr).toBe(0);
  const summary = JSON.parse(result.stdout) as Summary;
  expect(summary.problems).toEqual([]);
  const differences = compareTrees(ws.src, ws.dst);
  expect(differences, formatDifferences(differences)).toEqual([]);
  return summary;
}

/** Bytes the run put on the wire, both directions. */
function wire(summary: Summary): number {
  return summary.wireBytesSent + summary.wireBytesReceived;
}

/** A workspace whose source holds `name` (a copy of the 64 MiB template), mirrored once at full cost. */
async function mirroredBigFile(test: string, name = "big.bin"): Promise<Workspace> {
  const ws = workspace(test);
  copyFileSync(bigTemplate, join(ws.src, name));
  const first = await sync(ws);
  // The budgets below mean something only if the first run really carried the whole file.
  expect(first.filesWritten).toBe(1);
  expect(wire(first)).toBeGreaterThanOrEqual(BIG);
  return ws;
}

describe("content travels only when the target lacks it", () => {
  // The chunks the edit touched must travel: 1 MiB plus the chunks it starts and ends in, and after it
  // those until the content-defined cuts fall where they fell before — how many depends on the random
  // content. A fixed 1.07 MiB budget failed once in CI (1,132,171 bytes), so the budget is what the
  // chunker says changed plus 0.07 MiB (the protocol's own bytes are ≈ 1.6 KiB of it).
  it("1 MiB overwritten in the middle of a 64 MiB file costs the chunks it changed plus at most 0.07 MiB", async () => {
    const ws = await mirroredBigFile("overwrite");
    const path = join(ws.src, "big.bin");
    const chunking = replicationChunking(BIG);
    const before = new Set(chunkBuffer(readFileSync(path), chunking).map((chunk) => chunk.id));
    overwriteRandom(path, BIG / 2, MiB);
    const changed = chunkBuffer(readFileSync(path), chunking)
      .filter((chunk) => !before.has(chunk.id))
      .reduce((sum, chunk) => sum + chunk.length, 0);
    expect(changed).toBeGreaterThanOrEqual(MiB);

    const second = await sync(ws);
    expect(second.filesWritten).toBe(1);
    expect(second.bytesWritten).toBe(BIG);
    expect(wire(second)).toBeLessThanOrEqual(changed + 0.07 * MiB);
    expect(sha256OfFile(join(ws.dst, "big.bin"))).toBe(sha256OfFile(path));
  });

  // The chunks the insert touched travel: the one it falls in and those after it until the content-defined
  // cuts fall where they fell before (one or two of up to 32 KiB each, by the random content). A fixed 32 KiB
  // budget failed once (47,746 bytes), so the budget is what the chunker says changed plus 4 KiB.
  it("100 bytes inserted near the start of a 64 MiB file cost the chunks they changed plus at most 4 KiB", async () => {
    const ws = await mirroredBigFile("insert");
    const path = join(ws.src, "big.bin");
    const original = readFileSync(path);
    const chunking = replicationChunking(BIG);
    const before = new Set(chunkBuffer(original, chunking).map((chunk) => chunk.id));
    const inserted = Buffer.concat([original.subarray(0, KiB), randomBytes(100), original.subarray(KiB)]);
    const changed = chunkBuffer(inserted, chunking)
      .filter((chunk) => !before.has(chunk.id))
      .reduce((sum, chunk) => sum + chunk.length, 0);
    // Only the start of the file changed: a chunk or two, not a shift of everything after the insert.
    expect(changed).toBeLessThanOrEqual(3 * chunking.maxSize);
    const fd = openSync(path, "w");
    try {
      writeSync(fd, inserted);
    } finally {
      closeSync(fd);
    }

    const second = await sync(ws);
    expect(second.filesWritten).toBe(1);
    expect(second.bytesWritten).toBe(BIG + 100);
    expect(wire(second)).toBeLessThanOrEqual(changed + 4 * KiB);
    expect(sha256OfFile(join(ws.dst, "big.bin"))).toBe(sha256OfFile(path));
  });

  it("renaming a 64 MiB file, then moving it into another directory, costs at most 4 KiB each", async () => {
    const ws = await mirroredBigFile("rename");
    const expected = sha256OfFile(bigTemplate);

    renameSync(join(ws.src, "big.bin"), join(ws.src, "renamed.bin"));
    const renamed = await sync(ws);
    expect(renamed).toMatchObject({ filesWritten: 1, filesDeleted: 1 });
    expect(wire(renamed)).toBeLessThanOrEqual(4 * KiB);
    expect(sha256OfFile(join(ws.dst, "renamed.bin"))).toBe(expected);

    mkdirSync(join(ws.src, "archive/2024"), { recursive: true });
    renameSync(join(ws.src, "renamed.bin"), join(ws.src, "archive/2024/moved.bin"));
    const moved = await sync(ws);
    expect(moved).toMatchObject({ filesWritten: 1, filesDeleted: 1 });
    expect(wire(moved)).toBeLessThanOrEqual(4 * KiB);
    expect(sha256OfFile(join(ws.dst, "archive/2024/moved.bin"))).toBe(expected);
  });

  it("copying a 64 MiB file to a second path costs at most 4 KiB", async () => {
    const ws = await mirroredBigFile("copy");
    copyFileSync(join(ws.src, "big.bin"), join(ws.src, "copy.bin"));

    const second = await sync(ws);
    expect(second).toMatchObject({ filesWritten: 1, filesDeleted: 0, bytesWritten: BIG });
    expect(wire(second)).toBeLessThanOrEqual(4 * KiB);
    expect(sha256OfFile(join(ws.dst, "copy.bin"))).toBe(sha256OfFile(bigTemplate));
  });

  it.each([
    ["photos", "pictures", "later"],
    ["pictures", "photos", "earlier"],
  ])(
    "renaming a directory of 48 files (16 MiB), %s to %s (%s in walk order), costs under 1/256 of its size",
    async (from, to) => {
      const ws = workspace(`dir-rename-${to}`);
      const dir = join(ws.src, `${from}/2023`);
      mkdirSync(dir, { recursive: true });
      let size = 0;
      // Large files (chunked, deltas possible) and small ones (sent whole): both must be reused.
      for (let i = 0; i < 32; i++) {
        writeRandomFile(join(dir, `large-${i}.raw`), 512 * KiB);
        size += 512 * KiB;
      }
      for (let i = 0; i < 16; i++) {
        writeRandomFile(join(dir, `small-${i}.jpg`), 3 * KiB + i);
        size += 3 * KiB + i;
      }
      const first = await sync(ws);
      expect(first.filesWritten).toBe(48);
      expect(wire(first)).toBeGreaterThanOrEqual(size);

      renameSync(join(ws.src, from), join(ws.src, to));
      const second = await sync(ws);
      expect(second.filesWritten).toBe(48);
      expect(wire(second)).toBeLessThan(size / 256);
    },
  );

  it("a re-run over 2,200 unchanged entries costs under 24 bytes each; a change deep inside, little more", async () => {
    // rsync's file list is about 24 bytes an entry: unchanged directories travel as digests instead.
    const ws = workspace("no-change");
    for (let d = 0; d < 200; d++) {
      const dir = join(ws.src, `d${d % 20}`, `e${d}`);
      mkdirSync(dir, { recursive: true });
      for (let f = 0; f < 10; f++) writeRandomFile(join(dir, `f${f}.txt`), 100 + f);
    }
    const entries = 20 + 200 + 2000;
    // An mtime that can be set again exactly (utimes takes no nanoseconds).
    const WHOLE_SECOND = 1_600_000_000;
    utimesSync(join(ws.src, "d5/e5/f2.txt"), WHOLE_SECOND, WHOLE_SECOND);
    const first = await sync(ws);
    expect(first.filesWritten).toBe(2000);
    expect(wire(first)).toBeGreaterThan(24 * entries);

    const unchanged = await sync(ws);
    expect(unchanged).toMatchObject({ filesWritten: 0, filesDeleted: 0 });
    expect(wire(unchanged)).toBeLessThan(24 * entries);

    writeRandomFile(join(ws.src, "d7/e7/f3.txt"), 500);
    rmSync(join(ws.src, "d9/e9/f0.txt"));
    const changed = await sync(ws);
    expect(changed).toMatchObject({ filesWritten: 1, filesDeleted: 1 });
    expect(wire(changed)).toBeLessThan(24 * entries + 2 * KiB);

    // A source file rewritten with its size and mtime kept: its ctime moved, so neither its index row nor
    // its directory's recorded listing vouches for the old hash, nor the source's recorded digest of it.
    const rewritten = join(ws.src, "d5/e5/f2.txt");
    writeRandomFile(rewritten, statSync(rewritten).size);
    utimesSync(rewritten, WHOLE_SECOND, WHOLE_SECOND);
    expect(await sync(ws)).toMatchObject({ filesWritten: 1, filesDeleted: 0 });

    // What changed on the target alone (same size, same mtime; an extra file) differs from the source's digest.
    const tampered = join(ws.dst, "d4/e4/f1.txt");
    const { atime, mtime } = statSync(tampered);
    writeRandomFile(tampered, 101);
    utimesSync(tampered, atime, mtime);
    writeRandomFile(join(ws.dst, "d3/e3/extra.txt"), 10);
    const repaired = await sync(ws);
    expect(repaired).toMatchObject({ filesWritten: 1, filesDeleted: 1 });
  });

  it("a 512 MiB file is mirrored with both processes' peak RSS under 200 MB", async () => {
    const ws = workspace("memory");
    const size = 512 * MiB;
    writeRandomFile(join(ws.src, "huge.bin"), size);
    const peaks = await syncWithPeakRss(ws);
    expect(peaks.summary).toMatchObject({ filesWritten: 1, bytesWritten: size, problems: [] });
    expect(peaks.summary.wireBytesSent).toBeGreaterThanOrEqual(size);
    expect(sha256OfFile(join(ws.dst, "huge.bin"))).toBe(sha256OfFile(join(ws.src, "huge.bin")));
    // Both processes were observed, so the limits below are checked on real numbers.
    expect(peaks.sourceKiB).toBeGreaterThan(0);
    expect(peaks.targetKiB).toBeGreaterThan(0);
    // The limit, 200 MB, whatever the file size (a bounded pipeline, not the file, in memory).
    const limitKiB = 200e6 / KiB;
    expect(peaks.sourceKiB, "source peak RSS (KiB)").toBeLessThan(limitKiB);
    expect(peaks.targetKiB, "target peak RSS (KiB)").toBeLessThan(limitKiB);
  });
});

/** The peak RSS (VmHWM, KiB) of a live process, or undefined once it has gone. */
function peakRssKiB(pid: number): number | undefined {
  try {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs `mirrorlog sync --json SRC DST` and samples the peak RSS of the source process and of the
 * `serve` child it starts for DST (found by its `--root=DST` argument) every 20 ms. VmHWM only
 * grows, so the last sample of each is its peak up to at most 20 ms before it exited.
 */
async function syncWithPeakRss(ws: Workspace): Promise<{ summary: Summary; sourceKiB: number; targetKiB: number }> {
  const child: ChildProcess = spawn(process.execPath, mirrorlogArgs(["sync", "--json", ws.src, ws.dst]), {
    env: ws.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (text: string) => {
    stdout += text;
  });
  child.stderr!.setEncoding("utf8").on("data", (text: string) => {
    stderr += text;
  });
  let sourceKiB = 0;
  let targetKiB = 0;
  const sample = (): void => {
    sourceKiB = Math.max(sourceKiB, peakRssKiB(child.pid!) ?? 0);
    for (const pid of processesMentioning(`--root=${ws.dst}`)) targetKiB = Math.max(targetKiB, peakRssKiB(pid) ?? 0);
  };
  const sampler = setInterval(sample, 20);
  const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  clearInterval(sampler);
  clearTimeout(killer);
  expect(code, stderr).toBe(0);
  return { summary: JSON.parse(stdout) as Summary, sourceKiB, targetKiB };
}
