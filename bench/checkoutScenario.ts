// Scenario `checkout` (issue 9): the user's own `git checkout` between two distant commits while
// `mirrorlog watch` runs on the work tree, source and target on one disk, against the same checkout
// in an identical repository that nothing watches. Both repositories are built here: the generated
// tree as commit `a`, then `b` with a tenth of its files rewritten and a fortieth deleted and as many
// added in new directories (all from the workload's seeded PRNG; fixed author, committer and dates,
// so the commits are the same on every machine), objects packed. Trials alternate between the two
// work trees, each checking out `b`, then `a`, and so on; after a watched checkout the target is
// polled until it holds what the source holds (the changed paths and .git's HEAD, index and
// logs/HEAD): that time, from the checkout's exit, is reported beside the ratio.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { posix } from "node:path";
import { type BenchContext, flushDirtyPages, freshPath } from "./contenders.js";
import { childPids, holds, pause, peakRssOf, startMirrorlogWatch, stopReplicator } from "./liveScenarios.js";
import { interleave, median, percentile, timeCommandSync } from "./measurement.js";
import type { ScenarioResult } from "./oneShotScenarios.js";
import { generateTree, rewriteFiles, SeededRandom, type TreeShape, treeDifference } from "./workload.js";

/** The two branches; trial i checks out `b` when i is even, `a` when odd. */
type Branch = "a" | "b";
const branchOf = (index: number): Branch => (index % 2 === 0 ? "b" : "a");

/** Shares of the tree's files that differ between the commits. */
const MODIFIED_SHARE = 0.1;
const DELETED_SHARE = 0.025;
/** Files of `b` that `a` lacks go into new directories of this many files each. */
const ADDED_PER_DIRECTORY = 20;
/** How often the target is polled after a checkout, and how long it may take to catch up. */
const POLL_MS = 5;
const CONVERGENCE_DEADLINE_MS = 60_000;
/** Untimed checkouts per side before the trials (b, then back to a): page cache, git's index refresh. */
const WARMUP_CHECKOUTS = 2;
/** Quiet time after a watched checkout converged: the watch flushes every 2 s. */
const SETTLE_MS = 2_500;
/** Files of .git a checkout rewrites, also checked on the target. */
const GIT_STATE_FILES = [".git/HEAD", ".git/index", ".git/logs/HEAD"];

/**
 * git without the user's or the system's configuration, with a fixed identity and date, and no
 * automatic gc (a commit of 20,000 loose objects would start one in the background; the build packs
 * explicitly, and none may run during a trial).
 */
const GIT_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_CONFIG_COUNT: "1",
  GIT_CONFIG_KEY_0: "gc.auto",
  GIT_CONFIG_VALUE_0: "0",
  GIT_AUTHOR_NAME: "bench",
  GIT_AUTHOR_EMAIL: "bench@localhost",
  GIT_AUTHOR_DATE: "2024-06-01T00:00:00Z",
  GIT_COMMITTER_NAME: "bench",
  GIT_COMMITTER_EMAIL: "bench@localhost",
  GIT_COMMITTER_DATE: "2024-06-01T00:00:00Z",
};

function git(root: string, ...args: string[]): string {
  return execFileSync("git", ["-C", root, ...args], {
    env: GIT_ENV,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** A built repository: every path that differs between the commits and its bytes in each (null: absent). */
interface CheckoutRepository {
  root: string;
  versions: Record<Branch, Map<string, Buffer | null>>;
  modified: number;
  deleted: number;
  added: number;
  newDirectories: number;
  packBytes: number;
}

/** Builds the repository at `root` (must not exist), work tree at `a`. */
function buildRepository(root: string, shape: TreeShape): CheckoutRepository {
  const tree = generateTree(root, shape);
  git(root, "init", "-q", "-b", "a");
  git(root, "add", "-A");
  git(root, "commit", "-q", "-m", "a: the generated tree");
  git(root, "checkout", "-q", "-b", "b");

  const random = new SeededRandom(shape.seed + 900);
  const order = random.shuffled(tree.files);
  const modifiedCount = Math.round(tree.files.length * MODIFIED_SHARE);
  const deletedCount = Math.round(tree.files.length * DELETED_SHARE);
  const modified = order.slice(0, modifiedCount);
  const deleted = order.slice(modifiedCount, modifiedCount + deletedCount);
  const versions: Record<Branch, Map<string, Buffer | null>> = { a: new Map(), b: new Map() };
  for (const path of [...modified, ...deleted]) versions.a.set(path, readFileSync(posix.join(root, path)));

  rewriteFiles(root, modified, random, shape);
  for (const path of deleted) rmSync(posix.join(root, path));
  const newDirectories = Math.max(1, Math.ceil(deletedCount / ADDED_PER_DIRECTORY));
  const directories = Array.from({ length: newDirectories }, (_, k) => {
    const directory = posix.join(tree.directories[random.integer(0, tree.directories.length - 1)]!, `new${k}`);
    mkdirSync(posix.join(root, directory));
    return directory;
  });
  for (let i = 0; i < deletedCount; i++) {
    const path = posix.join(directories[i % newDirectories]!, `g${i}.bin`);
    writeFileSync(posix.join(root, path), random.bytes(random.integer(shape.minFileBytes, shape.maxFileBytes)));
    versions.a.set(path, null);
  }
  for (const path of versions.a.keys()) {
    const file = posix.join(root, path);
    versions.b.set(path, existsSync(file) ? readFileSync(file) : null);
  }
  git(root, "add", "-A");
  git(root, "commit", "-q", "-m", "b: rewritten, deleted and added files");
  git(root, "gc", "-q");
  git(root, "checkout", "-q", "a");
  const packDir = posix.join(root, ".git/objects/pack");
  const packBytes = execFileSync("du", ["-sb", packDir], { encoding: "utf8" }).split("\t")[0]!;
  return {
    root,
    versions,
    modified: modifiedCount,
    deleted: deletedCount,
    added: deletedCount,
    newDirectories,
    packBytes: Number(packBytes),
  };
}

/** Whether `path` holds `expected` (null: does not exist). */
function arrived(path: string, expected: Buffer | null): boolean {
  if (expected === null) return statSync(path, { throwIfNoEntry: false }) === undefined;
  return holds(path, expected);
}

/**
 * Polls `target` until every expected path holds its bytes; milliseconds from `since`, or Infinity
 * and the number still pending after the deadline.
 */
function waitUntilMirrored(
  target: string,
  expected: readonly (readonly [string, Buffer | null])[],
  since: number,
): { ms: number; pending: number } {
  let next = 0;
  for (;;) {
    while (next < expected.length && arrived(posix.join(target, expected[next]![0]), expected[next]![1])) next++;
    const elapsed = performance.now() - since;
    if (next === expected.length) return { ms: elapsed, pending: 0 };
    if (elapsed > CONVERGENCE_DEADLINE_MS) {
      const pending = expected.filter(([path, bytes]) => !arrived(posix.join(target, path), bytes)).length;
      return { ms: Number.POSITIVE_INFINITY, pending };
    }
    pause(POLL_MS);
  }
}

/** The checkout row: `git checkout` with `mirrorlog watch` on the work tree against without. */
export async function checkoutScenario(
  context: BenchContext,
  shape: TreeShape,
  trials: number,
): Promise<ScenarioResult> {
  const watchedRoot = freshPath(context, "checkout-watched");
  const plainRoot = freshPath(context, "checkout-plain");
  const target = freshPath(context, "checkout-target");
  context.log(`  checkout: building the repository (${shape.files} files, commits a and b)`);
  const repository = buildRepository(watchedRoot, shape);
  const changed = repository.versions.a.size;
  // The unwatched twin: the same repository, copied; its index refreshed (the copy changed ctimes).
  execFileSync("cp", ["-a", watchedRoot, plainRoot]);
  git(plainRoot, "update-index", "-q", "--refresh");
  context.log(`  checkout: ${changed} paths differ between a and b; starting mirrorlog watch (initial pass)`);
  const watch = await startMirrorlogWatch(context, watchedRoot, target, {
    logName: "checkout-watch",
    deadlineMs: 600_000,
  });
  try {
    const convergence: number[] = [];
    const pending: number[] = [];
    const checkoutTrial = (root: string, watched: boolean) => (index: number) => {
      const branch = branchOf(index);
      flushDirtyPages();
      const { ms } = timeCommandSync(["git", "-C", root, "checkout", "-q", branch], GIT_ENV);
      const ended = performance.now();
      if (!watched) {
        context.log(`  checkout ${branch} without watch ${ms.toFixed(0)} ms`);
        return ms;
      }
      const expected = [
        ...repository.versions[branch],
        ...GIT_STATE_FILES.map((path) => [path, readFileSync(posix.join(root, path))] as const),
      ];
      const mirrored = waitUntilMirrored(target, expected, ended);
      convergence.push(mirrored.ms);
      if (mirrored.pending > 0) pending.push(mirrored.pending);
      context.log(
        `  checkout ${branch} with watch    ${ms.toFixed(0)} ms, target equal ${mirrored.pending > 0 ? `never (${mirrored.pending} paths pending)` : `${mirrored.ms.toFixed(0)} ms later`}`,
      );
      pause(SETTLE_MS);
      return ms;
    };
    const contenders = [
      { name: "watched", trial: checkoutTrial(watchedRoot, true) },
      { name: "plain", trial: checkoutTrial(plainRoot, false) },
    ];
    context.log(`  checkout: ${WARMUP_CHECKOUTS} warm-up checkouts each (b, a; not counted)`);
    await interleave(WARMUP_CHECKOUTS, contenders);
    convergence.length = 0;
    pending.length = 0;
    context.log(`  checkout: ${trials} checkouts each, alternating b and a`);
    const times = await interleave(trials, contenders);

    // Peak RSS of the watch and its serve child, and one full comparison of source and target.
    const watchRss = peakRssOf(watch.process.pid!);
    if (watchRss !== undefined)
      context.memory.push({ what: "mirrorlog watch (source side), checkout", peakKiB: watchRss });
    for (const pid of childPids(watch.process.pid!)) {
      const rss = peakRssOf(pid);
      if (rss !== undefined) context.memory.push({ what: "mirrorlog serve (target side), checkout", peakKiB: rss });
    }
    const difference = treeDifference(watchedRoot, target);

    const withWatch = times.get("watched")!;
    const without = times.get("plain")!;
    const finite = convergence.filter(Number.isFinite);
    const notes = [
      `Checkout: ${shape.files} files (seed ${shape.seed}) as commit a; b rewrites ${repository.modified}, deletes ${repository.deleted} and adds ${repository.added} files in ${repository.newDirectories} new directories (${changed} paths differ); objects packed by \`git gc\` (${(repository.packBytes / 1024 / 1024).toFixed(0)} MiB); git ${git(
        watchedRoot,
        "--version",
      )
        .trim()
        .replace(
          /^git version /,
          "",
        )} without user or system config, \`gc.auto=0\`. \`mirrorlog watch\` replicates the whole work tree, .git included (no excludes), to a target on the same disk; the twin repository is an identical copy nothing watches. An untimed \`sync\` precedes every checkout; ${SETTLE_MS / 1000} s of quiet follow each watched one once the target caught up.`,
      `Checkout with watch, every trial: ${withWatch.map((ms) => ms.toFixed(0)).join(", ")} ms; without: ${without.map((ms) => ms.toFixed(0)).join(", ")} ms.`,
      finite.length > 0
        ? `Checkout with watch: the target held the source's state (the ${changed} changed paths, ${GIT_STATE_FILES.join(", ")}) ${median(convergence).toFixed(0)} ms after the checkout returned (median of ${convergence.length}; p95 ${percentile(convergence, 95).toFixed(0)} ms, max ${Math.max(...convergence).toFixed(0)} ms; polled every ${POLL_MS} ms).`
        : "Checkout with watch: the target never caught up.",
    ];
    if (pending.length > 0) {
      notes.push(
        `Checkout with watch: ${pending.length} of ${convergence.length} checkouts not mirrored within ${CONVERGENCE_DEADLINE_MS / 1000} s (paths pending: ${pending.join(", ")}).`,
      );
    }
    notes.push(
      difference === null
        ? "Checkout with watch: after the last trial the target was a byte-for-byte copy of the work tree, .git included."
        : `Checkout with watch: after the last trial the target differed from the work tree: ${difference}.`,
    );
    return {
      rows: [
        {
          scenario: `\`git checkout\` a↔b (${changed} paths differ), \`watch\` running`,
          peer: "same checkout, no watch",
          unit: "ms",
          mirrorlog: median(withWatch),
          peerValue: median(without),
          goal: 1.3,
          note: `median of ${trials} interleaved checkouts per side, \`sync\` before each`,
        },
      ],
      notes,
    };
  } finally {
    await stopReplicator(watch);
  }
}
