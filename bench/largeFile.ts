// The large-file copy (issue 9: "4 GiB file copy throughput vs `rsync --whole-file`", and the peak
// RSS of both mirrorlog sides): one file of random bytes copied over ssh into a fresh target per
// trial, mirrorlog and rsync interleaved, every target checked (size + sha256, streamed) after each
// pair and then removed. Shared by bench/content.ts (`large`, its own sshd and `--bin`) and run.ts
// (scenario `large`, `largeScenario` below), which pass their own way of running each tool.
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { posix } from "node:path";
import { type BenchContext, freshPath, runMirrorlogSync, runRsync, runTarOverSsh, TAR_OVER_SSH } from "./contenders.js";
import { median, type ResultRow } from "./measurement.js";
import type { ScenarioResult } from "./oneShotScenarios.js";
import { checkMirrors, writeRandomFile } from "./workload.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** The file size. */
export const LARGE_FILE_BYTES = 4 * GiB;
/** The peer's flags: no delta algorithm, as for a first copy. */
export const RSYNC_WHOLE_FILE = ["-a", "--whole-file"];
/** The content issue's throughput goal (bench/content.ts): mirrorlog ≥ 0.8× rsync's, its time ≤ 1.25× rsync's. */
export const THROUGHPUT_GOAL = 0.8;
/** Issue 9's, for run.ts's row: "4 GiB file copy throughput vs `rsync --whole-file`" ≥ 1.0×. */
export const RUN_THROUGHPUT_GOAL = 1.0;

/** One copy of the file by one tool. */
export interface LargeCopyRun {
  ms: number;
  /** Peak RSS (KiB) of the local process (with its reaped children: the ssh client), when GNU time is there. */
  sourceRssKiB: number | undefined;
  /** Peak RSS (KiB) of the far side (mirrorlog's remote `serve`), when measured. */
  targetRssKiB: number | undefined;
}

/** How each tool copies `source` (a directory holding the file) into the fresh `target`. */
export interface LargeCopyTools {
  mirrorlog: (source: string, target: string) => Promise<LargeCopyRun>;
  rsync: (source: string, target: string) => Promise<LargeCopyRun>;
  /** The durable floor (see FloorRow), timed after rsync in each trial, when the caller reports one. */
  floor?: (source: string, target: string) => Promise<LargeCopyRun>;
}

/** The trials of both tools, in the order they ran. */
export interface LargeCopyResult {
  bytes: number;
  mirrorlog: LargeCopyRun[];
  rsync: LargeCopyRun[];
  floor: LargeCopyRun[];
}

/** Free bytes below `path` (df). */
export function freeBytes(path: string): number {
  const output = execFileSync("df", ["-B1", "--output=avail", path], { encoding: "utf8" });
  return Number(output.trim().split("\n").pop());
}

/** Disk the copy needs at its peak: the source and both targets of a pair, plus 2 GiB of room. */
export function largeCopyDiskNeeded(bytes: number): number {
  return 3 * bytes + 2 * GiB;
}

/** Median throughput of `runs` in bytes per second. */
export function throughputOf(bytes: number, runs: readonly LargeCopyRun[]): number {
  return bytes / (median(runs.map((run) => run.ms)) / 1000);
}

/** Writes the file, then `trials` interleaved copies of each tool (mirrorlog first), each checked and removed. */
export async function largeFileCopy(options: {
  bytes: number;
  trials: number;
  tools: LargeCopyTools;
  /** A path that has never been used, for the source and each target. */
  fresh: (label: string) => string;
  log: (message: string) => void;
  /** Keep the source and targets (--keep). */
  keep: boolean;
}): Promise<LargeCopyResult> {
  const { bytes, trials, tools, fresh, log } = options;
  const remove = (...paths: string[]): void => {
    if (!options.keep) for (const path of paths) rmSync(path, { recursive: true, force: true });
  };
  const source = fresh("large-source");
  mkdirSync(source, { recursive: true });
  log(`  large file: ${(bytes / GiB).toFixed(2)} GiB of random bytes, ${trials} trial(s) per tool, interleaved`);
  writeRandomFile(posix.join(source, "huge.bin"), bytes);
  const result: LargeCopyResult = { bytes, mirrorlog: [], rsync: [], floor: [] };
  for (let trial = 0; trial < trials; trial++) {
    const mirrorlogTarget = fresh("large-mirrorlog");
    const run = await tools.mirrorlog(source, mirrorlogTarget);
    result.mirrorlog.push(run);
    log(
      `  large mirrorlog ${(run.ms / 1000).toFixed(1)} s, RSS source ${kib(run.sourceRssKiB)}, target ${kib(run.targetRssKiB)}`,
    );
    const rsyncTarget = fresh("large-rsync");
    const peer = await tools.rsync(source, rsyncTarget);
    result.rsync.push(peer);
    log(`  large rsync ${(peer.ms / 1000).toFixed(1)} s, RSS ${kib(peer.sourceRssKiB)}`);
    const floorTargets: string[] = [];
    if (tools.floor !== undefined) {
      floorTargets.push(fresh("large-floor"));
      const floor = await tools.floor(source, floorTargets[0]!);
      result.floor.push(floor);
      log(`  large floor ${(floor.ms / 1000).toFixed(1)} s`);
    }
    checkMirrors(source, mirrorlogTarget, rsyncTarget, ...floorTargets);
    remove(mirrorlogTarget, rsyncTarget, ...floorTargets);
  }
  remove(source);
  return result;
}

/** KiB as "N MiB (M MB)" (the limit is in MB), or "not measured". */
export function kib(value: number | undefined): string {
  if (value === undefined) return "not measured";
  return `${(value / 1024).toFixed(1)} MiB (${((value * 1024) / 1e6).toFixed(0)} MB)`;
}

/**
 * Scenario `large` of run.ts: the copy over the run's ssh, as a results row (time ratio; the goal
 * ≤ 1.25× is the throughput ≥ 0.8×) and peak-RSS rows. Skipped, with the reason in the notes
 * and on stderr, when the temp dir lacks the disk space.
 */
export async function largeScenario(
  context: BenchContext,
  options: { bytes: number; trials: number; keep: boolean },
): Promise<ScenarioResult> {
  const needed = largeCopyDiskNeeded(options.bytes);
  const free = freeBytes(context.dir);
  if (free < needed) {
    const reason = `large skipped: it needs ${(needed / GiB).toFixed(1)} GiB free in ${context.dir}, ${(free / GiB).toFixed(1)} GiB are`;
    context.log(`  ${reason}`);
    return { rows: [], notes: [`${reason}.`] };
  }
  const result = await largeFileCopy({
    ...options,
    fresh: (label) => freshPath(context, label),
    log: context.log,
    tools: {
      mirrorlog: async (source, target) => {
        const run = await runMirrorlogSync(context, source, { path: target, overSsh: true });
        if (run.summary.filesWritten !== 1) throw new Error(`mirrorlog wrote ${run.summary.filesWritten} files, not 1`);
        return { ms: run.ms, sourceRssKiB: run.maxRssKiB, targetRssKiB: run.serveRssKiB };
      },
      rsync: async (source, target) => {
        const run = await runRsync(context, source, { path: target, overSsh: true }, { wholeFile: true });
        return { ms: run.ms, sourceRssKiB: run.maxRssKiB, targetRssKiB: undefined };
      },
      floor: async (source, target) => {
        const run = await runTarOverSsh(context, source, target);
        return { ms: run.ms, sourceRssKiB: undefined, targetRssKiB: undefined };
      },
    },
  });
  const label = `${(options.bytes / GiB).toFixed(options.bytes % GiB === 0 ? 0 : 2)} GiB file`;
  const peak = (runs: LargeCopyRun[], side: "sourceRssKiB" | "targetRssKiB"): number | undefined => {
    const values = runs.map((run) => run[side]).filter((value): value is number => value !== undefined);
    return values.length === 0 ? undefined : Math.max(...values);
  };
  for (const [what, value] of [
    [`mirrorlog sync (source side, incl. its ssh client), ${label}`, peak(result.mirrorlog, "sourceRssKiB")],
    [`mirrorlog serve (target side), ${label}`, peak(result.mirrorlog, "targetRssKiB")],
    [`rsync (local side), ${label}`, peak(result.rsync, "sourceRssKiB")],
  ] as const) {
    if (value !== undefined) context.memory.push({ what, peakKiB: value });
  }
  const mirrorlogRate = throughputOf(result.bytes, result.mirrorlog);
  const rsyncRate = throughputOf(result.bytes, result.rsync);
  const seconds = (runs: LargeCopyRun[]): string => runs.map((run) => `${(run.ms / 1000).toFixed(1)} s`).join(", ");
  const row: ResultRow = {
    scenario: `${label}, initial copy over ssh`,
    peer: `rsync ${RSYNC_WHOLE_FILE.join(" ")}`,
    unit: "s",
    mirrorlog: median(result.mirrorlog.map((run) => run.ms)),
    peerValue: median(result.rsync.map((run) => run.ms)),
    goal: 1 / RUN_THROUGHPUT_GOAL,
    note: `median of ${options.trials} interleaved trials (with the floor's); throughput ${(mirrorlogRate / MiB).toFixed(0)} vs ${(rsyncRate / MiB).toFixed(0)} MiB/s = ${(mirrorlogRate / rsyncRate).toFixed(2)}× (goal ≥ ${RUN_THROUGHPUT_GOAL}×)`,
  };
  return {
    rows: [row],
    floors: [
      {
        row,
        floor: TAR_OVER_SSH,
        floorValue: median(result.floor.map((run) => run.ms)),
      },
    ],
    notes: [
      `${label}: mirrorlog ${seconds(result.mirrorlog)}, rsync ${seconds(result.rsync)}; peak RSS goal ≤ 200 MB on each mirrorlog side (see the memory table).`,
    ],
  };
}
