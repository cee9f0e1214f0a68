// Shared pieces of the fan-out tests: a seeded source tree, seeded bursts of changes, the binary's
// publish/subscribe runs, and polling a tree until it equals the source (independent oracle, deadline).
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type CliResult, mirrorlogArgs, runMirrorlog } from "../support/cliRunner.js";
import { compareTrees, formatDifferences } from "../support/treeOracle.js";

/** A small seeded random generator (mulberry32): the same seed, the same tree and the same burst. */
export function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `size` pseudo-random bytes, half of them compressible text. */
export function bytesOf(random: () => number, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = i % 2 === 0 ? 97 + Math.floor(random() * 4) : Math.floor(random() * 256);
  return out;
}

/** Writes a tree of `files` files in nested directories, a few large ones, and symlinks. */
export function writeTree(root: string, random: () => number, files: number): void {
  mkdirSync(root, { recursive: true });
  for (let i = 0; i < files; i++) {
    const dir = join(root, `d${i % 7}`, `e${i % 3}`);
    mkdirSync(dir, { recursive: true });
    const size = i % 40 === 0 ? 200_000 + Math.floor(random() * 100_000) : Math.floor(random() * 6000);
    writeFileSync(join(dir, `f${i}.txt`), bytesOf(random, size));
  }
  writeFileSync(join(root, "big.bin"), bytesOf(random, 5 * 1024 * 1024));
  symlinkSync("d0/e0/f0.txt", join(root, "link-to-f0"));
  chmodSync(join(root, "d1"), 0o750);
}

function allFiles(root: string, at = ""): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(root, at), { withFileTypes: true })) {
    const path = at === "" ? entry.name : `${at}/${entry.name}`;
    if (entry.isDirectory()) out.push(...allFiles(root, path));
    else if (entry.isFile()) out.push(path);
  }
  return out.sort();
}

/** A seeded burst of `count` random changes: writes, appends, deletes, renames, new directories, chmods. */
export function mutate(root: string, random: () => number, count: number): void {
  for (let i = 0; i < count; i++) {
    const files = allFiles(root);
    const pick = files[Math.floor(random() * files.length)];
    const kind = Math.floor(random() * 7);
    if (pick === undefined || kind === 0) {
      const dir = join(root, `n${Math.floor(random() * 5)}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `new${i}-${Math.floor(random() * 1e6)}`), bytesOf(random, Math.floor(random() * 9000)));
    } else if (kind === 1) {
      writeFileSync(join(root, pick), bytesOf(random, Math.floor(random() * 7000)));
    } else if (kind === 2) {
      writeFileSync(join(root, pick), bytesOf(random, 300), { flag: "a" });
    } else if (kind === 3) {
      rmSync(join(root, pick));
    } else if (kind === 4) {
      const to = `${pick}.moved${i}`;
      if (!existsSync(join(root, to))) renameSync(join(root, pick), join(root, to));
    } else if (kind === 5) {
      chmodSync(join(root, pick), random() < 0.5 ? 0o600 : 0o644);
    } else {
      // A big file edited in the middle: only its changed chunks should travel.
      const bytes = bytesOf(random, 64);
      const fd = join(root, "big.bin");
      if (existsSync(fd)) writeFileSync(fd, bytes, { flag: "r+" });
    }
  }
}

/** Runs the binary once; fails the test with its output when the exit code is not `expected`. */
export async function run(
  args: string[],
  env: NodeJS.ProcessEnv,
  expected = 0,
  timeoutMs = 60_000,
): Promise<CliResult> {
  const result = await runMirrorlog(args, { env, timeoutMs });
  if (result.code !== expected) {
    throw new Error(
      `mirrorlog ${args.join(" ")} exited ${result.code} (${result.signal}):\n${result.stdout}\n${result.stderr}`,
    );
  }
  return result;
}

/** A child running the binary, with its stdout and stderr so far. */
export type WatchingChild = ChildProcess & { output(): string };

/** Spawns `node bin/mirrorlog ...args`, collecting stdout and stderr together. */
function spawnWatching(args: string[], env: NodeJS.ProcessEnv): WatchingChild {
  const child = spawn(process.execPath, mirrorlogArgs(args), { env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  return Object.assign(child, { output: () => output });
}

/** Starts `mirrorlog subscribe --watch URL DST` as a child. */
export function startSubscriber(url: string, dst: string, env: NodeJS.ProcessEnv): WatchingChild {
  return spawnWatching(["subscribe", "--watch", url, dst], env);
}

/** Starts `mirrorlog publish --watch SRC URL` as a child. */
export function startPublisher(src: string, url: string, env: NodeJS.ProcessEnv): WatchingChild {
  return spawnWatching(["publish", "--watch", src, url], env);
}

/** Polls a child's output until it matches `pattern`; fails with the output when it exits first or the deadline passes. */
export async function waitForOutput(child: WatchingChild, pattern: RegExp, deadlineMs = 30_000): Promise<void> {
  const deadline = performance.now() + deadlineMs;
  while (!pattern.test(child.output())) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}:\n${child.output()}`);
    if (performance.now() > deadline) throw new Error(`no ${pattern} within ${deadlineMs} ms:\n${child.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Stops a watching child with SIGTERM and returns its exit code. */
export async function stopChild(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  child.kill("SIGTERM");
  return exited;
}

/** Polls until `dst` equals `src` (bytes, modes, link targets, file mtimes), or fails with the differences. */
export async function waitForMirror(src: string, dst: string, deadlineMs = 30_000): Promise<void> {
  const deadline = performance.now() + deadlineMs;
  for (;;) {
    let differences: { path: string; what: string }[];
    try {
      differences = existsSync(dst) ? compareTrees(src, dst, { mtimes: true }) : [{ path: "", what: "missing" }];
    } catch (error) {
      // The subscriber changed the tree while it was walked (an entry vanished): look again.
      differences = [{ path: "", what: `walk failed: ${(error as Error).message}` }];
    }
    if (differences.length === 0) return;
    if (performance.now() > deadline)
      throw new Error(`${dst} never equalled ${src}:\n${formatDifferences(differences as never)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
