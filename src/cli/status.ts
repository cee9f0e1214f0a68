// `mirrorlog status [SRC]`: where each replication stands, read from the source's log.
import { existsSync, realpathSync } from "node:fs";
import { posix } from "node:path";
import type { ResultTotals } from "../events/operationLog.js";
import { CliError } from "./cliError.js";
import { type Liveness, livenessOf, readHeartbeat, readRunProblems } from "./heartbeat.js";
import { bytes, rate } from "./report.js";
import {
  canonicalPath,
  closeStates,
  forgetPair,
  idMatches,
  type OpenedState,
  openStates,
  pairIdOf,
  readEach,
  reportDamaged,
} from "./stateFiles.js";
import { stateDirectory } from "./statePaths.js";
import { quoteText, terminalSafeJson } from "./terminalText.js";

/** Options of `mirrorlog status`. */
export interface StatusOptions {
  state?: string;
  json: boolean;
  /** Remove the state of the pair named by SRC DST or by its id, instead of showing it. */
  forget?: boolean;
  /** Remove the state of every pair whose source or (local) target no longer exists. */
  prune?: boolean;
}

/**
 * A problem still standing: a failed apply no later answered operation on its path superseded
 * ("failed"), or a path the last run could not read or send, such as an unreadable file or a FIFO ("skipped").
 */
export interface OpenProblem {
  kind: "failed" | "skipped";
  path: string;
  /** `epoch:seq` of the failed operation; null for a skipped path (it was never logged). */
  position: string | null;
  reason: string | null;
  /** When the failure was answered, or when the run reported the skipped path. */
  appliedAt: string;
}

/** Whether a watch of the pair is running, from its heartbeat; times are ISO 8601. */
export interface WatchStatus {
  state: "live" | "stopped";
  /** The watch's pid (live), or the last one seen (stopped); null when never watched. */
  pid: number | null;
  /** Live: when the watch started and its latest beat. */
  since: string | null;
  lastBeat: string | null;
  /** Stopped: when the pair was last seen replicating (last beat, or the end of the last run), if ever. */
  lastSeen: string | null;
}

/** The status of one replication; field names are the stable `--json` interface. */
export interface ReplicationStatus {
  /** The pair's id: what `status --forget ID` takes (the state file's name without `source-` and `.db`). */
  id: string;
  statePath: string;
  /** Null for a log written before mirrorlog recorded its pair. */
  sourceRoot: string | null;
  target: string | null;
  logId: string;
  /** The current epoch and why it started; null before the first run. */
  epoch: { epoch: number; startedAt: string; reason: string } | null;
  /** `epoch:seq` of the last logged operation (seq 0: nothing logged in this epoch yet). */
  lastLogged: string | null;
  /** `epoch:seq` of the highest operation of the epoch with a recorded result; null when none has one. */
  lastApplied: string | null;
  /** Operations of the current epoch logged without a recorded result. */
  lag: number;
  /** Results recorded in the last minute and the last hour. */
  lastMinute: ResultTotals;
  lastHour: ResultTotals;
  watch: WatchStatus;
  /** Every open problem, failed applies first (by position), then skipped paths. */
  problems: OpenProblem[];
  /** How many problems of each kind. */
  problemCounts: { failed: number; skipped: number };
}

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
/** Problems listed in the text output; --json lists all. */
const PROBLEMS_SHOWN = 20;

/** The watch status of a heartbeat reading; `lastRunAt` stands in for "last seen" when no watch ever beat. */
function watchStatusOf(liveness: Liveness, lastRunAt: number | undefined): WatchStatus {
  const iso = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(ms).toISOString());
  if (liveness.state === "live") {
    return {
      state: "live",
      pid: liveness.pid,
      since: iso(liveness.since),
      lastBeat: iso(liveness.lastBeat),
      lastSeen: null,
    };
  }
  const lastSeen = Math.max(liveness.lastSeen ?? Number.NEGATIVE_INFINITY, lastRunAt ?? Number.NEGATIVE_INFINITY);
  return {
    state: "stopped",
    pid: liveness.pid,
    since: null,
    lastBeat: null,
    lastSeen: iso(Number.isFinite(lastSeen) ? lastSeen : null),
  };
}

/** Reads the status of one opened state at time `now`; `isAlive` tells whether a pid runs (injected for tests). */
export function statusOf(
  { statePath, log, pair }: OpenedState,
  now: number,
  isAlive?: (pid: number) => boolean,
): ReplicationStatus {
  const epochs = log.epochs();
  const current = epochs.at(-1);
  const progress = current === undefined ? undefined : log.epochProgress(current.epoch);
  const failed: OpenProblem[] =
    current === undefined
      ? []
      : log.openFailures(current.epoch).map((f) => ({
          kind: "failed",
          path: f.path,
          position: `${f.position.epoch}:${f.position.seq}`,
          reason: f.reason,
          appliedAt: new Date(f.appliedAt).toISOString(),
        }));
  // The run's own list holds its failed applies too: those are counted once, from the log.
  const failedPaths = new Set(failed.map((p) => p.path));
  const run = readRunProblems(log);
  const skipped: OpenProblem[] = (run?.problems ?? [])
    .filter((p) => !failedPaths.has(p.path))
    .map((p) => ({
      kind: "skipped",
      path: p.path,
      position: null,
      reason: p.reason,
      appliedAt: new Date(run!.at).toISOString(),
    }));
  return {
    id: pairIdOf(statePath),
    statePath,
    sourceRoot: pair?.sourceRoot ?? null,
    target: pair?.target ?? null,
    logId: log.logId,
    epoch:
      current === undefined
        ? null
        : { epoch: current.epoch, startedAt: new Date(current.startedAt).toISOString(), reason: current.reason },
    lastLogged: progress === undefined ? null : `${progress.epoch}:${progress.lastSeq}`,
    lastApplied:
      progress === undefined || progress.lastAnsweredSeq === 0 ? null : `${progress.epoch}:${progress.lastAnsweredSeq}`,
    lag: progress?.unanswered ?? 0,
    lastMinute: log.resultTotalsSince(now - MINUTE_MS),
    lastHour: log.resultTotalsSince(now - HOUR_MS),
    watch: watchStatusOf(livenessOf(readHeartbeat(log), now, isAlive), run?.at),
    problems: [...failed, ...skipped],
    problemCounts: { failed: failed.length, skipped: skipped.length },
  };
}

/** The one-line watch state: `live (pid N, since T, lag …)` or `stopped (last seen T)`. */
export function formatWatch(s: Pick<ReplicationStatus, "watch" | "lag">): string {
  const w = s.watch;
  if (w.state === "live")
    return `live (pid ${w.pid}, since ${w.since}, lag ${s.lag} operation${s.lag === 1 ? "" : "s"})`;
  return w.lastSeen === null ? "stopped (never seen)" : `stopped (last seen ${w.lastSeen})`;
}

/** "none", or the count with its kinds: "3 (1 failed, 2 skipped)". */
function formatProblemCount(counts: ReplicationStatus["problemCounts"]): string {
  const total = counts.failed + counts.skipped;
  if (total === 0) return "none";
  const kinds = Object.entries(counts)
    .filter(([, n]) => n > 0)
    .map(([kind, n]) => `${n} ${kind}`);
  return `${total} (${kinds.join(", ")})`;
}

/** The text form of one status: a header line, then one labelled value per line. */
export function formatStatus(s: ReplicationStatus): string {
  const totals = (t: ResultTotals, seconds: number) =>
    `${t.operations} operations, ${bytes(t.bytesWritten)} written, ${bytes(t.wireBytes)} on the wire (${rate(t.wireBytes / seconds)})`;
  const header =
    s.sourceRoot === null
      ? "(source and target not recorded: written before mirrorlog kept them)"
      : `${quoteText(s.sourceRoot)} → ${quoteText(s.target ?? "")}`;
  const lines = [
    header,
    `  id           ${quoteText(s.id)}`,
    `  watch        ${formatWatch(s)}`,
    `  state        ${quoteText(s.statePath)}`,
    `  epoch        ${s.epoch === null ? "none yet" : `${s.epoch.epoch} since ${s.epoch.startedAt} (${quoteText(s.epoch.reason)})`}`,
    `  logged       ${s.lastLogged ?? "-"}`,
    `  applied      ${s.lastApplied ?? "-"}`,
    `  lag          ${s.lag} operations`,
    `  last minute  ${totals(s.lastMinute, MINUTE_MS / 1000)}`,
    `  last hour    ${totals(s.lastHour, HOUR_MS / 1000)}`,
    `  problems     ${formatProblemCount(s.problemCounts)}`,
  ];
  for (const p of s.problems.slice(0, PROBLEMS_SHOWN)) {
    const where = p.position ?? p.kind;
    lines.push(`    ${where}  ${quoteText(p.path)}: ${p.reason === null ? p.kind : quoteText(p.reason)}`);
  }
  if (s.problems.length > PROBLEMS_SHOWN)
    lines.push(`    ... and ${s.problems.length - PROBLEMS_SHOWN} more (see --json)`);
  return lines.join("\n");
}

/** SRC as sources are recorded: absolute, symlinks resolved (as far as it still exists). */
function recordedRootOf(src: string): string {
  try {
    return realpathSync(posix.resolve(src));
  } catch {
    return canonicalPath(src);
  }
}

/** DST as pairs record their target: a remote `[user@]host:path` (a colon before any slash) as given, a local one absolute. */
function targetKeyOf(dst: string): string {
  return /^[^/]*:/.test(dst) ? dst : posix.resolve(dst);
}

/** One pair `--forget` or `--prune` removed, as `--json` lists it. */
export interface ForgottenPair {
  id: string;
  statePath: string;
  sourceRoot: string | null;
  target: string | null;
  /** Why `--prune` chose it ("source gone", "target gone"); null for `--forget`. */
  reason: string | null;
  /** The files removed. */
  removed: string[];
}

/** A pair chosen for forgetting: its state file and what it recorded (null when the file cannot be read). */
interface Doomed {
  statePath: string;
  pair: OpenedState["pair"];
  reason: string | null;
}

/** Refuses to forget a pair a watch is running for: its state would be pulled from under it. */
function refuseLive(state: OpenedState, now: number, isAlive?: (pid: number) => boolean): void {
  const liveness = livenessOf(readHeartbeat(state.log), now, isAlive);
  if (liveness.state === "live") {
    throw new CliError(
      `pair ${quoteText(pairIdOf(state.statePath))} is being watched by pid ${liveness.pid}; stop that watch first`,
    );
  }
}

/** Removes each doomed pair's files and says so (one line each, or the `--json` array). */
function forgetAll(doomed: readonly Doomed[], json: boolean, stdout: (text: string) => void): ForgottenPair[] {
  const forgotten = doomed.map((d) => ({
    id: pairIdOf(d.statePath),
    statePath: d.statePath,
    sourceRoot: d.pair?.sourceRoot ?? null,
    target: d.pair?.target ?? null,
    reason: d.reason,
    removed: forgetPair(d.statePath, d.pair?.target ?? null),
  }));
  if (json) stdout(`${terminalSafeJson(forgotten)}\n`);
  else {
    for (const f of forgotten) {
      const pair = f.sourceRoot === null ? "" : ` ${quoteText(f.sourceRoot)} → ${quoteText(f.target ?? "")}`;
      stdout(
        `forgot ${quoteText(f.id)}${pair}${f.reason === null ? "" : ` (${f.reason})`}: ${f.removed.length} files removed\n`,
      );
    }
  }
  return forgotten;
}

/** `status --forget SRC DST` or `status --forget ID`: removes that pair's state. Returns the exit code. */
function runForget(
  src: string | undefined,
  dst: string | undefined,
  options: StatusOptions,
  stdout: (text: string) => void,
  now: number,
): number {
  if (src === undefined) throw new CliError("--forget needs the pair: SRC DST, or its id as status shows it");
  const { opened: states, damaged } = openStates(options.state);
  let doomed: Doomed[];
  try {
    if (dst === undefined) {
      // By id; a damaged state file can be forgotten too (that may be why it is being forgotten).
      doomed = [
        ...states
          .filter((s) => idMatches(s.statePath, src))
          .map((s) => ({ statePath: s.statePath, pair: s.pair, reason: null })),
        ...damaged
          .filter((d) => idMatches(d.statePath, src))
          .map((d) => ({ statePath: d.statePath, pair: null, reason: null })),
      ];
    } else {
      const root = recordedRootOf(src);
      const key = targetKeyOf(dst);
      doomed = states
        .filter((s) => s.pair?.sourceRoot === root && s.pair.target === key)
        .map((s) => ({ statePath: s.statePath, pair: s.pair, reason: null }));
    }
    const named = dst === undefined ? `id ${quoteText(src)}` : `${quoteText(src)} → ${quoteText(dst)}`;
    if (doomed.length === 0) {
      throw new CliError(
        `no pair ${named} in ${quoteText(options.state ?? stateDirectory())} (status lists the pairs and their ids)`,
        1,
      );
    }
    if (doomed.length > 1) {
      throw new CliError(
        `${named} names ${doomed.length} pairs (${doomed.map((d) => pairIdOf(d.statePath)).join(", ")}); give a whole id`,
      );
    }
    for (const state of states) if (doomed.some((d) => d.statePath === state.statePath)) refuseLive(state, now);
  } finally {
    closeStates(states);
  }
  forgetAll(doomed, options.json, stdout);
  return 0;
}

/** `status --prune`: forgets every pair whose source or local target no longer exists. Returns the exit code. */
function runPrune(
  options: StatusOptions,
  stdout: (text: string) => void,
  now: number,
  stderr: (text: string) => void,
): number {
  const { opened: states, damaged } = openStates(options.state);
  const doomed: Doomed[] = [];
  try {
    for (const state of states) {
      const pair = state.pair;
      // A remote target cannot be checked from here (and may just be unreachable): it is kept.
      if (pair === null) continue;
      const reason = !existsSync(pair.sourceRoot)
        ? "source gone"
        : posix.isAbsolute(pair.target) && !existsSync(pair.target)
          ? "target gone"
          : null;
      if (reason === null) continue;
      if (livenessOf(readHeartbeat(state.log), now).state === "live") {
        stderr(`mirrorlog: keeping ${quoteText(pairIdOf(state.statePath))} (${reason}): a watch of it is running\n`);
        continue;
      }
      doomed.push({ statePath: state.statePath, pair, reason });
    }
  } finally {
    closeStates(states);
  }
  const code = reportDamaged(damaged, true, stderr);
  const forgotten = forgetAll(doomed, options.json, stdout);
  if (!options.json && forgotten.length === 0) stdout("nothing to prune: every pair's source and target exist\n");
  return code;
}

/**
 * `mirrorlog status [SRC [DST]]`: the status of every replication in the state directory (or `--state`),
 * or of those whose source root is SRC (and target DST); with `--forget` or `--prune`, removes pairs'
 * state instead. Returns the exit code: 1 when SRC has no replication state, 2 when a state file is
 * damaged (each is named on stderr).
 */
export function runStatus(
  src: string | undefined,
  dst: string | undefined,
  options: StatusOptions,
  stdout: (text: string) => void,
  now: number = Date.now(),
  stderr: (text: string) => void = (text) => process.stderr.write(text),
): number {
  if (options.forget && options.prune) throw new CliError("--forget and --prune cannot be combined");
  if (options.forget) return runForget(src, dst, options, stdout, now);
  if (options.prune) {
    if (src !== undefined) throw new CliError("--prune takes no SRC: it checks every pair");
    return runPrune(options, stdout, now, stderr);
  }
  // A damaged state file is named (it may be SRC's: its recorded source cannot be read), never
  // passed over as "no replication state".
  const { opened: states, damaged } = openStates(options.state);
  try {
    const root = src === undefined ? undefined : recordedRootOf(src);
    const key = dst === undefined ? undefined : targetKeyOf(dst);
    const chosen = states.filter(
      (s) => (root === undefined || s.pair?.sourceRoot === root) && (key === undefined || s.pair?.target === key),
    );
    if (root !== undefined && chosen.length === 0 && damaged.length === 0) {
      const pair = key === undefined ? `source ${quoteText(root)}` : `${quoteText(root)} → ${quoteText(key)}`;
      throw new CliError(`no replication state for ${pair} in ${quoteText(options.state ?? stateDirectory())}`, 1);
    }
    const statuses = readEach(chosen, damaged, (state) => statusOf(state, now));
    const hasOutput = options.json || statuses.length > 0 || damaged.length === 0;
    const code = reportDamaged(damaged, hasOutput, stderr);
    if (options.json) stdout(`${terminalSafeJson(statuses)}\n`);
    else if (statuses.length > 0) stdout(`${statuses.map(formatStatus).join("\n\n")}\n`);
    else if (damaged.length === 0) stdout(`no replication state in ${quoteText(stateDirectory())}\n`);
    return code;
  } finally {
    closeStates(states);
  }
}
