// Scenario 4: live replication latency, `mirrorlog watch` against lsyncd (default.rsync, delay 0).
// Each tool watches its own copy of the same (smaller) tree, so one tool's events never wake the
// other; trials alternate between the two. The clock starts before the file is written and stops
// when the target holds the complete bytes, polled every ~0.5 ms.
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { posix } from "node:path";
import { type BenchContext, freshPath, MIRRORLOG_COMMAND } from "./contenders.js";
import { interleave, percentile } from "./measurement.js";
import type { ScenarioResult } from "./oneShotScenarios.js";
import { type GeneratedTree, generateTree, LIVE_TREE, SeededRandom, treeDifference } from "./workload.js";

/** Blocks the thread for `ms` (sub-millisecond works; setTimeout cannot go below 1 ms). */
const sleeper = new Int32Array(new SharedArrayBuffer(4));
export function pause(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

/** How often the target is polled while waiting for a file. */
const POLL_MS = 0.5;
/** A single file that takes longer than this counts as not replicated. */
const FILE_DEADLINE_MS = 10_000;
/** A burst that takes longer than this counts as incomplete. */
const BURST_DEADLINE_MS = 20_000;
/** Quiet time between trials, so each starts with an idle replicator. */
const SETTLE_MS = 100;
/** Quiet time between bursts. */
const BURST_SETTLE_MS = 1_000;

/** Whether `path` holds exactly `expected` right now. */
export function holds(path: string, expected: Buffer): boolean {
  const stats = statSync(path, { throwIfNoEntry: false });
  if (stats === undefined || stats.size !== expected.length) return false;
  try {
    return readFileSync(path).equals(expected);
  } catch {
    // Replaced or removed between stat and read: not there yet.
    return false;
  }
}

/** The outcome of one live trial: milliseconds until all files arrived, or Infinity and how many never did. */
interface Arrival {
  ms: number;
  missing: number;
}

/**
 * Writes each file under `sourceRoot` and waits until all are complete under `targetRoot`. A file
 * still missing after `deadlineMs` makes the trial incomplete (Infinity): that is a result, so the
 * benchmark goes on and reports it.
 */
function replicateAndWait(
  replicator: { source: string; target: string },
  files: readonly { path: string; bytes: Buffer }[],
  directories: readonly string[],
  deadlineMs: number,
): Arrival {
  const started = performance.now();
  for (const directory of directories) mkdirSync(posix.join(replicator.source, directory));
  for (const file of files) writeFileSync(posix.join(replicator.source, file.path), file.bytes);
  let next = 0;
  for (;;) {
    while (next < files.length && holds(posix.join(replicator.target, files[next]!.path), files[next]!.bytes)) next++;
    const elapsed = performance.now() - started;
    if (next === files.length) return { ms: elapsed, missing: 0 };
    if (elapsed > deadlineMs) {
      const missing = files.filter((file) => !holds(posix.join(replicator.target, file.path), file.bytes)).length;
      return { ms: Number.POSITIVE_INFINITY, missing };
    }
    pause(POLL_MS);
  }
}

/** A replicator running in the background for the live trials. */
export interface LiveReplicator {
  name: string;
  source: string;
  target: string;
  process: ChildProcess;
  logPath: string;
}

/** Polls `logPath` until it contains `marker` (the replicator finished its start-up sync). */
async function waitForLog(replicator: LiveReplicator, marker: RegExp, deadlineMs: number): Promise<void> {
  const started = performance.now();
  for (;;) {
    const log = existsSync(replicator.logPath) ? readFileSync(replicator.logPath, "utf8") : "";
    if (marker.test(log)) return;
    if (replicator.process.exitCode !== null || replicator.process.signalCode !== null) {
      throw new Error(`${replicator.name} exited during start-up:\n${log.slice(-4000)}`);
    }
    if (performance.now() - started > deadlineMs) {
      throw new Error(`${replicator.name} did not finish its start-up sync in ${deadlineMs} ms:\n${log.slice(-4000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Starts a background process with stdout and stderr in `logPath` (a file: a full pipe would stall it). */
function startLogged(
  name: string,
  argv: string[],
  env: NodeJS.ProcessEnv,
  paths: { source: string; target: string; logPath: string },
): LiveReplicator {
  const log = openSync(paths.logPath, "a");
  const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ["ignore", log, log] });
  closeSync(log);
  return { name, process: child, ...paths };
}

/**
 * Starts `mirrorlog watch SRC DST` and waits for its initial sync ("watching" on stderr). Each watch
 * of a run needs its own `logName`: the log is appended to, and an earlier "watching" would count.
 */
export async function startMirrorlogWatch(
  context: BenchContext,
  source: string,
  target: string,
  options: { logName?: string; deadlineMs?: number } = {},
): Promise<LiveReplicator> {
  const replicator = startLogged("mirrorlog watch", [...MIRRORLOG_COMMAND, "watch", source, target], context.env, {
    source,
    target,
    logPath: posix.join(context.dir, `${options.logName ?? "mirrorlog-watch"}.log`),
  });
  await waitForLog(replicator, /mirrorlog: watching /, options.deadlineMs ?? 120_000);
  return replicator;
}

/** Starts lsyncd (default.rsync, delay 0, in the foreground) and waits for its start-up rsync. */
async function startLsyncd(context: BenchContext, source: string, target: string): Promise<LiveReplicator> {
  const configPath = posix.join(context.dir, "lsyncd.conf.lua");
  const logPath = posix.join(context.dir, "lsyncd.log");
  // lsyncd 2.2 syntax (Debian 12): nodaemon keeps it a child we can stop; archive = true makes its
  // rsync carry permissions and mtimes as mirrorlog does.
  writeFileSync(
    configPath,
    [
      "settings {",
      "  nodaemon = true,",
      "}",
      "sync {",
      "  default.rsync,",
      `  source = ${JSON.stringify(source)},`,
      `  target = ${JSON.stringify(target)},`,
      "  delay = 0,",
      "  rsync = { archive = true },",
      "}",
      "",
    ].join("\n"),
  );
  const replicator = startLogged("lsyncd", ["lsyncd", configPath], process.env, { source, target, logPath });
  await waitForLog(replicator, /Startup of .* finished/, 120_000);
  return replicator;
}

/** Sends SIGTERM and waits for the exit (SIGKILL after 10 s). */
export async function stopReplicator(replicator: LiveReplicator): Promise<void> {
  const child = replicator.process;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(killer);
}

/** VmHWM (peak RSS, KiB) of a live process, read from /proc. */
export function peakRssOf(pid: number): number | undefined {
  try {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The pids of a process's children (Linux /proc). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Counts of the live scenario's trials. */
export interface LiveTrials {
  latency: number;
  /** Single files per tool before the latency trials, not counted. */
  warmup: number;
  /**
   * Bursts per tool before the counted ones, not counted: a watch's first burst runs code its process has
   * not run before (mirrorlog's was often the slowest by a third or more), a cost paid once per watch.
   */
  burstWarmup: number;
  bursts: number;
}

/** Scenario 4: single-file latency (p50/p95) and a 1,000-file burst, mirrorlog watch vs lsyncd. */
export async function liveScenario(context: BenchContext, trials: LiveTrials): Promise<ScenarioResult> {
  context.log(`  live: generating two copies of a ${LIVE_TREE.files}-file tree`);
  const trees: Record<string, GeneratedTree> = {
    mirrorlog: generateTree(freshPath(context, "live-source-mirrorlog"), LIVE_TREE),
    lsyncd: generateTree(freshPath(context, "live-source-lsyncd"), LIVE_TREE),
  };
  const replicators: LiveReplicator[] = [];
  try {
    context.log("  live: starting mirrorlog watch and lsyncd (start-up syncs)");
    replicators.push(
      await startMirrorlogWatch(context, trees.mirrorlog!.root, freshPath(context, "live-target-mirrorlog")),
    );
    replicators.push(await startLsyncd(context, trees.lsyncd!.root, freshPath(context, "live-target-lsyncd")));
    for (const replicator of replicators) {
      const difference = treeDifference(replicator.source, replicator.target);
      if (difference !== null) throw new Error(`${replicator.name} start-up sync incomplete: ${difference}`);
    }

    const random = new SeededRandom(LIVE_TREE.seed + 1);
    const missingFiles = new Map<string, number[]>(replicators.map((replicator) => [replicator.name, []]));
    /** Milliseconds of a trial; incomplete trials also record how many files never arrived. */
    const record = (replicator: LiveReplicator, arrival: Arrival): number => {
      if (arrival.missing > 0) {
        missingFiles.get(replicator.name)!.push(arrival.missing);
        context.log(`  live ${replicator.name}: ${arrival.missing} file(s) did not arrive before the deadline`);
      }
      return arrival.ms;
    };
    const singleFileTrial = (replicator: LiveReplicator, label: string) => (index: number) => {
      // Both copies come from the same seed, so they have the same directories.
      const directories = trees.mirrorlog!.directories;
      const path = posix.join(directories[random.integer(0, directories.length - 1)]!, `${label}-${index}.bin`);
      const bytes = random.bytes(random.integer(LIVE_TREE.minFileBytes, LIVE_TREE.maxFileBytes));
      const arrival = replicateAndWait(replicator, [{ path, bytes }], [], FILE_DEADLINE_MS);
      pause(SETTLE_MS);
      return record(replicator, arrival);
    };
    const [mirrorlog, lsyncd] = replicators as [LiveReplicator, LiveReplicator];
    context.log(`  live: ${trials.warmup} warm-up files each (not counted)`);
    await interleave(trials.warmup, [
      { name: "mirrorlog", trial: singleFileTrial(mirrorlog, "warmup") },
      { name: "lsyncd", trial: singleFileTrial(lsyncd, "warmup") },
    ]);
    for (const missing of missingFiles.values()) missing.length = 0;
    context.log(`  live: ${trials.latency} single-file trials each`);
    const latency = await interleave(trials.latency, [
      { name: "mirrorlog", trial: singleFileTrial(mirrorlog, "single") },
      { name: "lsyncd", trial: singleFileTrial(lsyncd, "single") },
    ]);
    const singleIncomplete = new Map([...missingFiles].map(([name, missing]) => [name, missing.length]));
    for (const missing of missingFiles.values()) missing.length = 0;

    // Each burst its own directories, warm-up ones included.
    let burstsWritten = 0;
    const burstTrial = (replicator: LiveReplicator) => () => {
      const index = burstsWritten++;
      const directories = Array.from({ length: 10 }, (_, d) => `burst-${index}-${d}`);
      const files = Array.from({ length: 1_000 }, (_, i) => ({
        path: posix.join(directories[i % directories.length]!, `b${i}.bin`),
        bytes: random.bytes(random.integer(LIVE_TREE.minFileBytes, LIVE_TREE.maxFileBytes)),
      }));
      const arrival = replicateAndWait(replicator, files, directories, BURST_DEADLINE_MS);
      context.log(`  live burst ${replicator.name}: ${arrival.ms.toFixed(0)} ms`);
      pause(BURST_SETTLE_MS);
      return record(replicator, arrival);
    };
    context.log(`  live: ${trials.burstWarmup} warm-up burst(s) each (not counted)`);
    await interleave(trials.burstWarmup, [
      { name: "mirrorlog", trial: burstTrial(mirrorlog) },
      { name: "lsyncd", trial: burstTrial(lsyncd) },
    ]);
    for (const missing of missingFiles.values()) missing.length = 0;
    const bursts = await interleave(trials.bursts, [
      { name: "mirrorlog", trial: burstTrial(mirrorlog) },
      { name: "lsyncd", trial: burstTrial(lsyncd) },
    ]);

    // Peak RSS while still running: the watch process, its serve child, and lsyncd itself.
    const watchPid = mirrorlog.process.pid!;
    const watchRss = peakRssOf(watchPid);
    if (watchRss !== undefined) context.memory.push({ what: "mirrorlog watch (source side), live", peakKiB: watchRss });
    for (const pid of childPids(watchPid)) {
      const rss = peakRssOf(pid);
      if (rss !== undefined) context.memory.push({ what: "mirrorlog serve (target side), live", peakKiB: rss });
    }
    const lsyncdRss = peakRssOf(lsyncd.process.pid!);
    if (lsyncdRss !== undefined)
      context.memory.push({ what: "lsyncd (without its rsync children), live", peakKiB: lsyncdRss });

    const notes = [
      `Live scenarios use a smaller tree (${LIVE_TREE.files} files in ${LIVE_TREE.directories} directories) per tool, so the watchers' start-up syncs stay short; lsyncd runs default.rsync with delay = 0 and rsync archive = true; targets are local; ${trials.warmup} warm-up files and ${trials.burstWarmup} warm-up burst(s) per tool are not counted.`,
    ];
    for (const replicator of replicators) {
      const singles = singleIncomplete.get(replicator.name) ?? 0;
      const burstMissing = missingFiles.get(replicator.name)!;
      if (singles > 0) {
        notes.push(
          `${replicator.name}: ${singles} of ${trials.latency} single files did not arrive within ${FILE_DEADLINE_MS / 1000} s.`,
        );
      }
      if (burstMissing.length > 0) {
        notes.push(
          `${replicator.name}: ${burstMissing.length} of ${trials.bursts} bursts incomplete after ${BURST_DEADLINE_MS / 1000} s (files missing: ${burstMissing.join(", ")}).`,
        );
      }
      const difference = treeDifference(replicator.source, replicator.target);
      if (difference !== null)
        notes.push(`${replicator.name}: target differs from the source after the live trials: ${difference}.`);
    }
    const ml = latency.get("mirrorlog")!;
    const ls = latency.get("lsyncd")!;
    const latencyNote = `${trials.latency} interleaved single-file trials, ${LIVE_TREE.files}-file tree`;
    return {
      rows: [
        {
          scenario: "live latency p50, one new file",
          peer: "lsyncd",
          unit: "ms",
          mirrorlog: percentile(ml, 50),
          peerValue: percentile(ls, 50),
          goal: 1.0,
          note: latencyNote,
        },
        {
          scenario: "live latency p95, one new file",
          peer: "lsyncd",
          unit: "ms",
          mirrorlog: percentile(ml, 95),
          peerValue: percentile(ls, 95),
          goal: 1.0,
          note: latencyNote,
        },
        {
          scenario: "live burst, 1,000 new files in 10 new dirs",
          peer: "lsyncd",
          unit: "ms",
          mirrorlog: percentile(bursts.get("mirrorlog")!, 50),
          peerValue: percentile(bursts.get("lsyncd")!, 50),
          goal: 0.5,
          note: `median of ${trials.bursts} interleaved bursts, until the last file is complete`,
        },
      ],
      notes,
    };
  } finally {
    for (const replicator of replicators) await stopReplicator(replicator);
  }
}
