// The live-replication scenario shared by test/e2e/live.test.ts: a
// seeded random mutator of a source tree, and a driver that runs bursts of mutations against a
// running `mirrorlog watch` and waits, after each burst, until the oracle reports no differences.
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { type CliResult, startWatch, waitForMirror } from "../support/cliRunner.js";
import { findTempFiles } from "../support/treeOracle.js";

/** mulberry32: a tiny seeded PRNG, so a failing sequence of mutations can be replayed exactly. */
export function seededRandom(seed: number) {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (min: number, max: number): number => min + Math.floor(next() * (max - min + 1));
  const pick = <T>(items: readonly T[]): T => items[int(0, items.length - 1)]!;
  const bytes = (size: number): Buffer => {
    const out = Buffer.alloc(size);
    for (let i = 0; i < size; i++) out[i] = int(0, 255);
    return out;
  };
  return { next, int, pick, bytes };
}

export type Random = ReturnType<typeof seededRandom>;

/** Relative paths below `root` by kind, walking with lstat (symlinks are never followed). */
export function entriesOf(root: string): { files: string[]; dirs: string[]; links: string[] } {
  const found = { files: [] as string[], dirs: [""], links: [] as string[] };
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir === "" ? root : join(root, dir)).sort()) {
      const path = dir === "" ? name : `${dir}/${name}`;
      const stat = lstatSync(join(root, path));
      if (stat.isSymbolicLink()) found.links.push(path);
      else if (stat.isDirectory()) {
        found.dirs.push(path);
        walk(path);
      } else found.files.push(path);
    }
  };
  walk("");
  return found;
}

const MODES = [0o644, 0o600, 0o755, 0o640, 0o444];
export const NAME_STEMS = ["f", "data", "notes file", "ünïcode", "x.y.z", "-dash", "日本"];

/**
 * Applies one random mutation to the tree at `root` and returns a one-line description of it.
 * Every mutation is something a user or a build tool really does with plain fs calls.
 */
export function mutate(root: string, random: Random, fresh: () => string): string {
  const { files, dirs, links } = entriesOf(root);
  const at = (path: string) => join(root, path);
  const child = (dir: string, name: string) => (dir === "" ? name : `${dir}/${name}`);
  const subdirs = dirs.filter((d) => d !== "");
  const content = () => random.bytes(random.next() < 0.1 ? random.int(20_000, 200_000) : random.int(0, 2_000));
  const tooBig = files.length + dirs.length + links.length > 150;
  const kinds = [
    ["createFile", tooBig ? 0 : 6],
    ["modifyFile", files.length > 0 ? 5 : 0],
    ["deleteFile", files.length + links.length > 0 ? (tooBig ? 8 : 3) : 0],
    ["makePopulatedDir", tooBig ? 0 : 2],
    ["deleteDir", subdirs.length > 0 ? (tooBig ? 4 : 1) : 0],
    ["renameFile", files.length > 0 ? 3 : 0],
    ["renameDir", subdirs.length > 0 ? 2 : 0],
    ["symlink", 2],
    ["fileToDir", files.length > 0 ? 1 : 0],
    ["dirToFile", subdirs.length > 0 ? 1 : 0],
    ["chmod", files.length > 0 ? 1 : 0],
  ] as const;
  const total = kinds.reduce((n, [, weight]) => n + weight, 0);
  const roll = random.next() * total;
  let cumulative = 0;
  const kind = kinds.find(([, weight]) => {
    cumulative += weight;
    return roll < cumulative;
  })![0];

  switch (kind) {
    case "createFile": {
      const path = child(random.pick(dirs), fresh());
      writeFileSync(at(path), content());
      chmodSync(at(path), random.pick(MODES));
      return `create file ${path}`;
    }
    case "modifyFile": {
      const path = random.pick(files);
      writeFileSync(at(path), content(), { flag: random.next() < 0.3 ? "a" : "w" });
      return `modify ${path}`;
    }
    case "deleteFile": {
      const path = random.pick([...files, ...links]);
      unlinkSync(at(path));
      return `delete ${path}`;
    }
    case "makePopulatedDir": {
      const path = child(random.pick(dirs), fresh());
      mkdirSync(at(path));
      for (let i = random.int(1, 4); i > 0; i--) writeFileSync(at(child(path, fresh())), content());
      if (random.next() < 0.5) {
        const inner = child(path, fresh());
        mkdirSync(at(inner));
        writeFileSync(at(child(inner, fresh())), content());
        symlinkSync("../nowhere", at(child(inner, fresh())));
      }
      return `make populated dir ${path}`;
    }
    case "deleteDir": {
      const path = random.pick(subdirs);
      rmSync(at(path), { recursive: true });
      return `delete dir ${path}`;
    }
    case "renameFile": {
      const from = random.pick(files);
      // Sometimes onto an existing file (rename replaces it atomically), usually to a fresh name.
      const others = files.filter((f) => f !== from);
      const to = others.length > 0 && random.next() < 0.3 ? random.pick(others) : child(random.pick(dirs), fresh());
      renameSync(at(from), at(to));
      return `rename file ${from} -> ${to}`;
    }
    case "renameDir": {
      const from = random.pick(subdirs);
      const parents = dirs.filter((d) => d !== from && !d.startsWith(`${from}/`));
      const to = child(random.pick(parents), fresh());
      renameSync(at(from), at(to));
      return `rename dir ${from} -> ${to}`;
    }
    case "symlink": {
      const linkTarget = random.next() < 0.5 && files.length > 0 ? random.pick(files) : `dangling/${fresh()}`;
      if (links.length > 0 && random.next() < 0.5) {
        // Replace an existing link atomically, the way `ln -sfn` tools do it: new link, then rename over.
        const path = random.pick(links);
        const temp = child(random.pick(dirs), fresh());
        symlinkSync(linkTarget, at(temp));
        renameSync(at(temp), at(path));
        return `replace symlink ${path} -> ${linkTarget}`;
      }
      const path = child(random.pick(dirs), fresh());
      symlinkSync(random.next() < 0.2 ? `/absolute/${fresh()}` : linkTarget, at(path));
      return `create symlink ${path}`;
    }
    case "fileToDir": {
      const path = random.pick(files);
      unlinkSync(at(path));
      mkdirSync(at(path));
      writeFileSync(at(child(path, fresh())), content());
      return `replace file ${path} by a directory`;
    }
    case "dirToFile": {
      const path = random.pick(subdirs);
      rmSync(at(path), { recursive: true });
      writeFileSync(at(path), content());
      return `replace directory ${path} by a file`;
    }
    case "chmod": {
      const path = random.pick(files);
      chmodSync(at(path), random.pick(MODES));
      return `chmod ${path}`;
    }
  }
}

/** Options of runLiveBursts. */
export interface LiveBurstOptions {
  src: string;
  dst: string;
  env: NodeJS.ProcessEnv;
  seed: number;
  bursts: number;
  /** Extra arguments of `mirrorlog watch` (e.g. --rescan-interval). */
  watchArgs?: readonly string[];
  /** How long each burst may take to converge (default 20 s). */
  deadlineMs?: number;
}

/** What a live run did and how the watch ended. */
export interface LiveBurstResult {
  mutations: number;
  stopped: CliResult & { elapsedMs: number };
  /** The seed, the exit status and the watch's output, for assertion messages. */
  ending: string;
  tempFiles: string[];
}

/**
 * Builds a starting tree, starts `mirrorlog watch`, then runs `bursts` bursts of 20-40 seeded random
 * mutations, waiting after each until the target mirrors the source (names, kinds, bytes, modes,
 * mtimes, link targets). Throws with the seed, the last burst and the watch's output when a burst
 * does not converge; otherwise stops the watch with SIGTERM and reports how it ended.
 */
export async function runLiveBursts(options: LiveBurstOptions): Promise<LiveBurstResult> {
  const { src, dst, env, seed } = options;
  const random = seededRandom(seed);
  let counter = 0;
  const fresh = () => `${random.pick(NAME_STEMS)}-${++counter}`;
  // A starting tree, so that the first burst has something to rename and delete.
  for (let i = 0; i < 30; i++) mutate(src, random, fresh);
  const watch = await startWatch(src, dst, { env, args: options.watchArgs ?? [] });
  const history: string[] = [];
  const context = () =>
    `seed ${seed} (replay with MIRRORLOG_E2E_SEED=${seed}); last burst:\n  ${history.join("\n  ")}\nwatch stderr:\n${watch.stderr()}`;
  let mutations = 0;
  let failure: Error | undefined;
  try {
    await waitForMirror(src, dst, { mtimes: true, context });
    for (let burst = 1; burst <= options.bursts; burst++) {
      history.length = 0;
      for (let i = random.int(20, 40); i > 0; i--) {
        history.push(mutate(src, random, fresh));
        mutations++;
      }
      await waitForMirror(src, dst, { mtimes: true, deadlineMs: options.deadlineMs ?? 20_000, context });
    }
  } catch (error) {
    failure = error as Error;
  }
  const stopped = await watch.stop();
  const ending = `seed ${seed}; watch exited with ${stopped.code} after ${stopped.elapsedMs} ms; stdout:\n${stopped.stdout}\nstderr:\n${stopped.stderr}`;
  if (failure !== undefined) throw new Error(`${failure.message}\n${ending}`, { cause: failure });
  return { mutations, stopped, ending, tempFiles: findTempFiles(dst) };
}

/** The seed of this run: MIRRORLOG_E2E_SEED when set (to replay a failure), else a random one. */
export function chooseSeed(): number {
  return Number(process.env.MIRRORLOG_E2E_SEED ?? Math.floor(Math.random() * 2 ** 32));
}
