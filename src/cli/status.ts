// `mirrorlog status [SRC]`: where each replication stands, read from the source's log.
import { realpathSync } from "node:fs";
import { posix } from "node:path";
import type { ResultTotals } from "../events/operationLog.js";
import { CliError } from "./cliError.js";
import { bytes } from "./report.js";
import { canonicalPath, closeStates, type OpenedState, openStates, readEach, reportDamaged } from "./stateFiles.js";
import { stateDirectory } from "./statePaths.js";
import { quoteText, terminalSafeJson } from "./terminalText.js";

/** Options of `mirrorlog status`. */
export interface StatusOptions {
  state?: string;
  json: boolean;
}

/** A failed apply still standing: no later operation on its path has been answered. */
export interface OpenProblem {
  path: string;
  position: string;
  reason: string | null;
  appliedAt: string;
}

/** The status of one replication; field names are the stable `--json` interface. */
export interface ReplicationStatus {
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
  problems: OpenProblem[];
}

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
/** Problems listed in the text output; --json lists all. */
const PROBLEMS_SHOWN = 20;

/** Reads the status of one opened state at time `now`. */
export function statusOf({ statePath, log, pair }: OpenedState, now: number): ReplicationStatus {
  const epochs = log.epochs();
  const current = epochs.at(-1);
  const progress = current === undefined ? undefined : log.epochProgress(current.epoch);
  return {
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
    problems:
      current === undefined
        ? []
        : log.openFailures(current.epoch).map((f) => ({
            path: f.path,
            position: `${f.position.epoch}:${f.position.seq}`,
            reason: f.reason,
            appliedAt: new Date(f.appliedAt).toISOString(),
          })),
  };
}

/** The text form of one status: a header line, then one labelled value per line. */
export function formatStatus(s: ReplicationStatus): string {
  const totals = (t: ResultTotals) =>
    `${t.operations} operations, ${bytes(t.bytesWritten)} written, ${bytes(t.wireBytes)} on the wire`;
  const header =
    s.sourceRoot === null
      ? "(source and target not recorded: written before mirrorlog kept them)"
      : `${quoteText(s.sourceRoot)} → ${quoteText(s.target ?? "")}`;
  const lines = [
    header,
    `  state        ${quoteText(s.statePath)}`,
    `  epoch        ${s.epoch === null ? "none yet" : `${s.epoch.epoch} since ${s.epoch.startedAt} (${quoteText(s.epoch.reason)})`}`,
    `  logged       ${s.lastLogged ?? "-"}`,
    `  applied      ${s.lastApplied ?? "-"}`,
    `  lag          ${s.lag} operations`,
    `  last minute  ${totals(s.lastMinute)}`,
    `  last hour    ${totals(s.lastHour)}`,
    `  problems     ${s.problems.length === 0 ? "none" : s.problems.length}`,
  ];
  for (const p of s.problems.slice(0, PROBLEMS_SHOWN)) {
    lines.push(`    ${p.position}  ${quoteText(p.path)}: ${p.reason === null ? "failed" : quoteText(p.reason)}`);
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

/**
 * `mirrorlog status [SRC]`: the status of every replication in the state directory (or `--state`),
 * or of those whose source root is SRC. Returns the exit code: 1 when SRC has no replication state, 2
 * when a state file is damaged (each is named on stderr).
 */
export function runStatus(
  src: string | undefined,
  options: StatusOptions,
  stdout: (text: string) => void,
  now: number = Date.now(),
  stderr: (text: string) => void = (text) => process.stderr.write(text),
): number {
  // A damaged state file is named (it may be SRC's: its recorded source cannot be read), never
  // passed over as "no replication state".
  const { opened: states, damaged } = openStates(options.state);
  try {
    const root = src === undefined ? undefined : recordedRootOf(src);
    const chosen = root === undefined ? states : states.filter((s) => s.pair?.sourceRoot === root);
    if (root !== undefined && chosen.length === 0 && damaged.length === 0) {
      throw new CliError(
        `no replication state for source ${quoteText(root)} in ${quoteText(options.state ?? stateDirectory())}`,
        1,
      );
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
