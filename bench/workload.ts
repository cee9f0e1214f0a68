// The benchmark workload: a deterministic tree of random files (fixed seed, our own PRNG so the
// bytes never change with Node or library versions), the modifications the re-run scenarios
// apply, and a byte-for-byte tree comparison that checks every tool really did its job (in memory
// for trees of small files, streamed through sha256 for files larger than memory allows).
import { createHash, randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, writeFileSync, writeSync } from "node:fs";
import { posix } from "node:path";

/** Large files are written and read in pieces of this size. */
const PIECE = 4 * 1024 * 1024;

/** A seeded pseudo-random source (mulberry32): same seed, same sequence, on every machine. */
export class SeededRandom {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** The next 32-bit unsigned integer. */
  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A uniformly chosen integer in [low, high] (both inclusive). */
  integer(low: number, high: number): number {
    return low + (this.nextUint32() % (high - low + 1));
  }

  /** `length` random bytes. */
  bytes(length: number): Buffer {
    const buffer = Buffer.allocUnsafe(length + 3);
    for (let offset = 0; offset < length; offset += 4) buffer.writeUInt32LE(this.nextUint32(), offset);
    return buffer.subarray(0, length);
  }

  /** The elements of `items` in a random order (Fisher–Yates on a copy). */
  shuffled<T>(items: readonly T[]): T[] {
    const copy = [...items];
    for (let i = copy.length - 1; i > 0; i--) {
      const j = this.integer(0, i);
      [copy[i], copy[j]] = [copy[j]!, copy[i]!];
    }
    return copy;
  }
}

/** Shape of a generated tree. */
export interface TreeShape {
  files: number;
  directories: number;
  /** Deepest directory level below the root (the root is level 0). */
  maxDepth: number;
  minFileBytes: number;
  maxFileBytes: number;
  seed: number;
}

/** The workload: 20,000 files of 0.5–8 KiB in 2,000 directories up to depth 6. */
export const FULL_TREE: TreeShape = {
  files: 20_000,
  directories: 2_000,
  maxDepth: 6,
  minFileBytes: 512,
  maxFileBytes: 8192,
  seed: 20_240_601,
};

/** The smaller tree of the live scenarios, so the start-up sync of each watcher stays short. */
export const LIVE_TREE: TreeShape = { ...FULL_TREE, files: 2_000, directories: 200, seed: 7_001 };

/** What was generated: relative paths, for picking files to modify and directories to write into. */
export interface GeneratedTree {
  root: string;
  directories: string[];
  files: string[];
  bytes: number;
}

/**
 * Writes the tree under `root` (which must not exist yet). Each directory hangs under a random
 * earlier one that is shallower than `maxDepth`, so depths spread up to the limit; files land in
 * random directories.
 */
export function generateTree(root: string, shape: TreeShape): GeneratedTree {
  const random = new SeededRandom(shape.seed);
  mkdirSync(root, { recursive: false });
  const directories: { path: string; depth: number }[] = [];
  const parents: { path: string; depth: number }[] = [{ path: "", depth: 0 }];
  for (let i = 0; i < shape.directories; i++) {
    const parent = parents[random.integer(0, parents.length - 1)]!;
    const directory = { path: posix.join(parent.path, `d${i}`), depth: parent.depth + 1 };
    mkdirSync(posix.join(root, directory.path));
    directories.push(directory);
    if (directory.depth < shape.maxDepth) parents.push(directory);
  }
  const files: string[] = [];
  let bytes = 0;
  for (let i = 0; i < shape.files; i++) {
    const directory = directories[random.integer(0, directories.length - 1)]!;
    const path = posix.join(directory.path, `f${i}.bin`);
    const content = random.bytes(random.integer(shape.minFileBytes, shape.maxFileBytes));
    writeFileSync(posix.join(root, path), content);
    files.push(path);
    bytes += content.length;
  }
  return { root, directories: directories.map((directory) => directory.path), files, bytes };
}

/** Rewrites each of `paths` (relative to `root`) with new random bytes of 0.5–8 KiB. */
export function rewriteFiles(root: string, paths: readonly string[], random: SeededRandom, shape: TreeShape): void {
  for (const path of paths) {
    writeFileSync(posix.join(root, path), random.bytes(random.integer(shape.minFileBytes, shape.maxFileBytes)));
  }
}

/** Relative paths of every entry under `root`, directories with a trailing slash, sorted. */
export function listTree(root: string): string[] {
  const entries = readdirSync(root, { recursive: true, withFileTypes: true });
  return entries
    .map((entry) => {
      const relative = posix.relative(root, posix.join(entry.parentPath, entry.name));
      return entry.isDirectory() ? `${relative}/` : relative;
    })
    .sort();
}

/**
 * Why `target` is not a byte-for-byte copy of `source` (first difference), or null when it is.
 * Run after timed trials, never inside them: a benchmark of a tool that did not finish is no result.
 */
export function treeDifference(source: string, target: string): string | null {
  const expected = listTree(source);
  const actual = listTree(target);
  if (expected.length !== actual.length) {
    const present = new Set(actual);
    const missing = expected.filter((path) => !present.has(path)).slice(0, 3);
    return `${actual.length} entries on the target, ${expected.length} in the source (missing e.g. ${missing.join(", ")})`;
  }
  for (let i = 0; i < expected.length; i++) {
    if (expected[i] !== actual[i]) return `entry ${expected[i]} in the source, ${actual[i]} on the target`;
  }
  return filesDifference(
    source,
    target,
    expected.filter((path) => !path.endsWith("/")),
  );
}

/** The first of `paths` whose bytes differ between the two roots, or null. */
export function filesDifference(source: string, target: string, paths: readonly string[]): string | null {
  for (const path of paths) {
    let actual: Buffer;
    try {
      actual = readFileSync(posix.join(target, path));
    } catch (error) {
      return `${path}: ${(error as Error).message}`;
    }
    if (!actual.equals(readFileSync(posix.join(source, path)))) return `${path} differs`;
  }
  return null;
}

/** Writes `size` random bytes to `path` (crypto.randomBytes: incompressible, like media or archives; not seeded). */
export function writeRandomFile(path: string, size: number): void {
  const fd = openSync(path, "w");
  try {
    for (let written = 0; written < size; written += PIECE) writeSync(fd, randomBytes(Math.min(PIECE, size - written)));
  } finally {
    closeSync(fd);
  }
}

/** Path → "size sha256" of every file below `root`, "dir" for directories (streamed: files may exceed memory). */
export function treeDigest(root: string): Map<string, string> {
  const digest = new Map<string, string>();
  const buffer = Buffer.allocUnsafe(PIECE);
  const walk = (relative: string): void => {
    for (const entry of readdirSync(posix.join(root, relative), { withFileTypes: true })) {
      const path = relative === "" ? entry.name : `${relative}/${entry.name}`;
      if (entry.isDirectory()) {
        digest.set(path, "dir");
        walk(path);
        continue;
      }
      const hash = createHash("sha256");
      const fd = openSync(posix.join(root, path), "r");
      let size = 0;
      try {
        for (let read = readSync(fd, buffer); read > 0; read = readSync(fd, buffer)) {
          hash.update(buffer.subarray(0, read));
          size += read;
        }
      } finally {
        closeSync(fd);
      }
      digest.set(path, `${size} ${hash.digest("hex")}`);
    }
  };
  walk("");
  return digest;
}

/** Throws unless every target holds exactly the source's files and directories (compared by treeDigest). */
export function checkMirrors(source: string, ...targets: string[]): void {
  const expected = treeDigest(source);
  for (const target of targets) {
    const actual = treeDigest(target);
    const wrong = [...new Set([...expected.keys(), ...actual.keys()])].filter((p) => expected.get(p) !== actual.get(p));
    if (wrong.length > 0) throw new Error(`${target} differs from ${source} at ${wrong.slice(0, 5).join(", ")}`);
  }
}
