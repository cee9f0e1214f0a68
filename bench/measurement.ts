// Timing and statistics: wall-clock runs of one command (wrapped in GNU time for its peak RSS),
// interleaved trials of two contenders, medians and percentiles, and the results table.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";

/** GNU time, which reports a command's peak resident set size; runs are timed without it if missing. */
const GNU_TIME = "/usr/bin/time";

/** One timed run of a command. */
export interface TimedRun {
  ms: number;
  /** Peak RSS of the command's own process in KiB (GNU time's %M), when GNU time is installed. */
  maxRssKiB: number | undefined;
  stdout: string;
}

/** What timeCommand needs besides argv. */
export interface TimedCommand {
  argv: string[];
  env?: NodeJS.ProcessEnv;
  /** Where GNU time writes the peak RSS; a fresh path per run. */
  rssFile: string;
}

/** Whether peak RSS can be measured here. */
export function canMeasureRss(): boolean {
  return existsSync(GNU_TIME);
}

/** The argv prefix that makes GNU time write a command's peak RSS (KiB) to `rssFile`, or [] without GNU time. */
export function rssWrapper(rssFile: string): string[] {
  return canMeasureRss() ? [GNU_TIME, "-f", "%M", "-o", rssFile] : [];
}

/** The peak RSS GNU time wrote to `rssFile` (its last number; a killed command adds a line before it). */
export function readRss(rssFile: string): number | undefined {
  if (!existsSync(rssFile)) return undefined;
  const numbers = readFileSync(rssFile, "utf8").match(/^\d+$/gm);
  return numbers ? Number(numbers[numbers.length - 1]) : undefined;
}

/**
 * Runs `argv` to completion and returns its wall-clock time (spawn to exit, as a user would see it).
 * Asynchronous on purpose: the benchmark's own event loop must keep draining the test sshd's log
 * pipe, or sshd blocks on a full pipe and stops answering. A failing command stops the benchmark:
 * a number for a run that did not do its job is no result.
 */
export async function timeCommand(command: TimedCommand): Promise<TimedRun> {
  const argv = [...rssWrapper(command.rssFile), ...command.argv];
  const started = performance.now();
  const child = spawn(argv[0]!, argv.slice(1), { env: command.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
  child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
  const status = await new Promise<number | string>((resolve, reject) => {
    child.once("error", (error) => reject(new Error(`could not run ${command.argv.join(" ")}: ${error.message}`)));
    child.once("close", (code, signal) => resolve(code ?? signal ?? "unknown"));
  });
  const ms = performance.now() - started;
  if (status !== 0) {
    throw new Error(
      `${command.argv.join(" ")} exited with ${status}:\n${Buffer.concat(stderr).toString("utf8").slice(-4000)}`,
    );
  }
  return { ms, maxRssKiB: readRss(command.rssFile), stdout: Buffer.concat(stdout).toString("utf8") };
}

/**
 * Runs `argv` to completion synchronously and returns its wall-clock milliseconds (spawn to exit),
 * without GNU time: for start-up trials of ~0.1 s, where the wrapper's own fork and exec and the
 * event loop's latency would be a visible share. Only while nothing else needs the event loop (no ssh
 * traffic). A failing command stops the benchmark.
 */
export function timeCommandSync(argv: readonly string[], env?: NodeJS.ProcessEnv): { ms: number; stdout: string } {
  const started = performance.now();
  const result = spawnSync(argv[0]!, argv.slice(1), {
    env: env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  const ms = performance.now() - started;
  if (result.error) throw new Error(`could not run ${argv.join(" ")}: ${result.error.message}`);
  if (result.status !== 0) {
    throw new Error(`${argv.join(" ")} exited with ${result.status ?? result.signal}:\n${result.stderr.slice(-4000)}`);
  }
  return { ms, stdout: result.stdout };
}

/** The median of `values` (mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** The p-th percentile of `values`, linearly interpolated between the closest ranks. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const below = Math.floor(rank);
  const above = Math.ceil(rank);
  // Incomplete trials are Infinity; Infinity - Infinity would make the interpolation NaN.
  if (sorted[below] === sorted[above]) return sorted[below]!;
  return sorted[below]! + (sorted[above]! - sorted[below]!) * (rank - below);
}

/** One side of an A/B comparison: a trial function returning milliseconds. */
export interface Contender {
  name: string;
  trial: (index: number) => number | Promise<number>;
}

/**
 * Runs `trials` trials of each contender strictly interleaved (A, B, A, B, ...), so slow drift of
 * the machine (page cache, ext4 housekeeping, thermal) lands on both sides alike. Returns the
 * milliseconds of each contender's trials by name.
 */
export async function interleave(trials: number, contenders: readonly Contender[]): Promise<Map<string, number[]>> {
  const times = new Map<string, number[]>(contenders.map((contender) => [contender.name, []]));
  for (let index = 0; index < trials; index++) {
    for (const contender of contenders) times.get(contender.name)!.push(await contender.trial(index));
  }
  return times;
}

/** One line of the results table: mirrorlog against a peer on the same workload in the same run. */
export interface ResultRow {
  scenario: string;
  peer: string;
  unit: "s" | "ms";
  /** Milliseconds. */
  mirrorlog: number;
  /** Milliseconds. */
  peerValue: number;
  /** The largest acceptable ratio mirrorlog/peer, when the issue sets one. */
  goal?: number;
  /** How the numbers were taken (trial count, statistic). */
  note: string;
}

/** The ratio mirrorlog/peer of a row. */
export function ratioOf(row: ResultRow): number {
  return row.mirrorlog / row.peerValue;
}

/** The results as a Markdown table (the format of bench/README.md). */
export function formatResultsTable(rows: readonly ResultRow[]): string {
  const show = (ms: number, unit: "s" | "ms"): string => {
    if (!Number.isFinite(ms)) return "incomplete";
    return unit === "s" ? `${(ms / 1000).toFixed(3)} s` : `${ms.toFixed(1)} ms`;
  };
  const lines = ["| scenario | mirrorlog | peer | ratio | goal | met? | how |", "|---|---:|---:|---:|---:|:---:|---|"];
  for (const row of rows) {
    const ratio = ratioOf(row);
    // One decimal unless the goal needs two (1.25× is the inverse of a ≥ 0.8× throughput goal).
    const goal = row.goal === undefined ? "—" : `≤ ${row.goal.toFixed(Number.isInteger(row.goal * 10) ? 1 : 2)}×`;
    const met = row.goal === undefined ? "—" : ratio <= row.goal ? "yes" : "**no**";
    const shownRatio = Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : "∞";
    lines.push(
      `| ${row.scenario} | ${show(row.mirrorlog, row.unit)} | ${show(row.peerValue, row.unit)} (${row.peer}) | ${shownRatio} | ${goal} | ${met} | ${row.note} |`,
    );
  }
  return lines.join("\n");
}

/**
 * The least time a job takes here whatever the tool, as long as it does the job's work and ends durable as
 * mirrorlog does (e.g. `cp -a`, then one syncfs), timed in the same trials as the row's rsync: when even the
 * floor is slower than the row's goal allows, no change to mirrorlog can meet that goal on this machine.
 */
export interface FloorRow {
  /** The mirrorlog/rsync row whose goal the floor bounds. */
  row: ResultRow;
  /** What was timed, as a reader would run it. */
  floor: string;
  /** Milliseconds (median). */
  floorValue: number;
}

/** The floors as a Markdown table: each against its row's rsync and goal. */
export function formatFloorTable(rows: readonly FloorRow[]): string {
  const lines = [
    "| job | floor | floor's time | rsync | floor / rsync | goal for mirrorlog | the goal is |",
    "|---|---|---:|---:|---:|---:|---|",
  ];
  for (const { row, floor, floorValue } of rows) {
    const ratio = floorValue / row.peerValue;
    const goal = row.goal === undefined ? "—" : `≤ ${row.goal.toFixed(1)}×`;
    const verdict = row.goal === undefined ? "—" : ratio <= row.goal ? "above the floor" : "**below the floor**";
    lines.push(
      `| ${row.scenario} | ${floor} | ${(floorValue / 1000).toFixed(3)} s | ${(row.peerValue / 1000).toFixed(3)} s | ${ratio.toFixed(2)}× | ${goal} | ${verdict} |`,
    );
  }
  return lines.join("\n");
}

/** One peak-RSS observation. */
export interface MemoryRow {
  what: string;
  /** KiB; the largest of the observed runs. */
  peakKiB: number;
}

/** Peak RSS observations as a Markdown table. */
export function formatMemoryTable(rows: readonly MemoryRow[]): string {
  const lines = ["| process | peak RSS |", "|---|---:|"];
  for (const row of rows) lines.push(`| ${row.what} | ${(row.peakKiB / 1024).toFixed(1)} MiB |`);
  return lines.join("\n");
}

/** The largest defined value, or undefined. */
export function largest(values: readonly (number | undefined)[]): number | undefined {
  const defined = values.filter((value): value is number => value !== undefined);
  return defined.length === 0 ? undefined : Math.max(...defined);
}
