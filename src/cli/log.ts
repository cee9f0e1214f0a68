// `mirrorlog log PATH`: the audit trail of a path, like `git log PATH`, read from the source's log.
import { posix } from "node:path";
import type { DetectedBy, OperationType } from "../events/operation.js";
import type { LogEntry, LoggedResult } from "../events/operationLog.js";
import { isAtOrBelow } from "../events/paths.js";
import type { ApplyOutcome } from "../events/protocol.js";
import { isWithin } from "../fs/fileSystem.js";
import { CliError } from "./cliError.js";
import { bytes } from "./report.js";
import { canonicalPath, closeStates, type OpenedState, openStates, readEach, reportDamaged } from "./stateFiles.js";
import { stateDirectory } from "./statePaths.js";
import { quoteText, terminalSafeJson } from "./terminalText.js";
import { parseCount, parseTimeSpec } from "./timeSpec.js";

/** Options of `mirrorlog log`; `n`, `since` and `until` as typed (checked by runLog: a bad one exits 2). */
export interface LogOptions {
  state?: string;
  json: boolean;
  /** Show only the newest N entries (`-n N`, `--max-count N`). */
  maxCount?: string;
  /** Only entries logged at or after / at or before this time (ISO date-time or an age like `2h`). */
  since?: string;
  until?: string;
}

/** Which entries to show: a time window on `loggedAt` and how many of the newest. */
export interface LogSelection {
  since?: number;
  until?: number;
  newest?: number;
}

/** The selection the options ask for; a bad value is a usage error (exit 2) in one line. */
export function logSelection(options: Pick<LogOptions, "maxCount" | "since" | "until">, now: number): LogSelection {
  const selection: LogSelection = {};
  if (options.maxCount !== undefined) selection.newest = parseCount(options.maxCount, "-n");
  if (options.since !== undefined) selection.since = parseTimeSpec(options.since, "--since", now);
  if (options.until !== undefined) selection.until = parseTimeSpec(options.until, "--until", now);
  return selection;
}

/**
 * What `selection` keeps of each section (each newest first): the items inside the time window, then the
 * `newest` N of all sections together (by time logged; within a section, by order). Pure.
 */
export function selectEntries<T>(
  sections: readonly (readonly T[])[],
  selection: LogSelection,
  loggedAtOf: (item: T) => number,
): T[][] {
  const inWindow = (item: T): boolean => {
    const at = loggedAtOf(item);
    return (
      (selection.since === undefined || at >= selection.since) &&
      (selection.until === undefined || at <= selection.until)
    );
  };
  const windowed = sections.map((items) => items.filter(inWindow));
  if (selection.newest === undefined) return windowed;
  // Each section is newest first already: take from the heads, N times, whichever head is newest.
  const heads = windowed.map(() => 0);
  for (let taken = 0; taken < selection.newest; taken++) {
    let best = -1;
    for (const [i, items] of windowed.entries()) {
      const head = items[heads[i]!];
      if (head === undefined) continue;
      if (best === -1 || loggedAtOf(head) > loggedAtOf(windowed[best]![heads[best]!]!)) best = i;
    }
    if (best === -1) break;
    heads[best]!++;
  }
  return windowed.map((items, i) => items.slice(0, heads[i]));
}

/** One line of `mirrorlog log`; the field names are the stable `--json` interface (absent values are null). */
export interface PathLogEntry {
  statePath: string;
  sourceRoot: string;
  target: string;
  /** `epoch:seq`. */
  position: string;
  epoch: number;
  seq: number;
  /** When the operation was logged (ISO 8601, UTC). */
  loggedAt: string;
  type: OperationType;
  /** Relative to the source root ("" is the root). */
  path: string;
  /** The content the path held before, per the log: its previous writeFile's hash. */
  oldHash: string | null;
  /** The content written (writeFile only). */
  newHash: string | null;
  symlinkTarget: string | null;
  size: number | null;
  mode: number | null;
  detectedBy: DetectedBy;
  /** What the target did; "pending" while no result is recorded. */
  outcome: ApplyOutcome | "pending";
  reason: string | null;
  wireBytes: number | null;
  bytesWritten: number | null;
  appliedAt: string | null;
}

/** Where the entries of one log come from. */
interface LogSource {
  statePath: string;
  sourceRoot: string;
  target: string;
}

/** One item of a log's history: an operation and its result, when recorded. */
type HistoryItem = { entry: LogEntry; result?: LoggedResult };

/**
 * Each operation's old hash: the path's content before the operation as the log tells it (null after
 * anything but a writeFile, and after a removal or replacement of the path or a directory above it in
 * `history`). Pure; one pass that builds nothing per operation, so a selection can be built alone.
 */
function oldHashesOf(history: readonly HistoryItem[]): (string | null)[] {
  const contentOf = new Map<string, string>();
  // Directories with a tracked file below them (possibly stale): only those need a scan when replaced.
  const holdsContent = new Set<string>();
  return history.map(({ entry: { operation } }) => {
    const oldHash = contentOf.get(operation.path) ?? null;
    contentOf.delete(operation.path);
    // A remove, or a file or symlink written over a directory, takes everything below the path with it;
    // ensureDir keeps an existing directory's children.
    if (operation.type !== "ensureDir" && holdsContent.delete(operation.path)) {
      for (const path of [...contentOf.keys()]) if (isAtOrBelow(operation.path, path)) contentOf.delete(path);
    }
    if (operation.type === "writeFile") {
      contentOf.set(operation.path, operation.hash);
      for (let dir = posix.dirname(operation.path); dir !== "."; dir = posix.dirname(dir)) holdsContent.add(dir);
    }
    return oldHash;
  });
}

/** The log line of one history item. Pure. */
function entryOf(source: LogSource, { entry, result }: HistoryItem, oldHash: string | null): PathLogEntry {
  const { operation } = entry;
  return {
    ...source,
    position: `${entry.position.epoch}:${entry.position.seq}`,
    epoch: entry.position.epoch,
    seq: entry.position.seq,
    loggedAt: new Date(entry.loggedAt).toISOString(),
    type: operation.type,
    path: operation.path,
    oldHash,
    newHash: operation.type === "writeFile" ? operation.hash : null,
    symlinkTarget: operation.type === "writeSymlink" ? operation.target : null,
    size: operation.type === "writeFile" ? operation.size : null,
    mode: operation.type === "writeFile" || operation.type === "ensureDir" ? (operation.mode ?? null) : null,
    detectedBy: entry.detectedBy,
    outcome: result?.outcome ?? "pending",
    reason: result?.reason ?? null,
    wireBytes: result?.wireBytes ?? null,
    bytesWritten: result?.bytesWritten ?? null,
    appliedAt: result === undefined ? null : new Date(result.appliedAt).toISOString(),
  };
}

/**
 * The history of a path and everything below it as log lines, oldest first. Pure. Each line's old
 * hash is the path's content before the operation as the log tells it (see oldHashesOf).
 */
export function pathLogEntries(source: LogSource, history: readonly HistoryItem[]): PathLogEntry[] {
  const oldHashes = oldHashesOf(history);
  return history.map((item, i) => entryOf(source, item, oldHashes[i]!));
}

/**
 * The selected lines of a history, newest first. The whole history is folded for the old hashes (they
 * come from before any window), but only the selected lines are built: `-n 10` of a long log is quick.
 */
function selectedLogEntries(
  source: LogSource,
  history: readonly HistoryItem[],
  newestFirst: readonly number[],
): PathLogEntry[] {
  const oldHashes = oldHashesOf(history);
  return newestFirst.map((i) => entryOf(source, history[i]!, oldHashes[i]!));
}

/** Hashes shown in text output are shortened like git's abbreviated ids; --json keeps them whole. */
const SHORT_HASH = 12;

/** One text line of `mirrorlog log`; every path, target and reason is quoted with controls escaped. */
export function formatPathLogEntry(e: PathLogEntry): string {
  const short = (hash: string | null) => (hash === null ? "-" : hash.slice(0, SHORT_HASH));
  const change =
    e.type === "writeSymlink"
      ? `${short(e.oldHash)} → symlink ${quoteText(e.symlinkTarget ?? "")}`
      : `${short(e.oldHash)} → ${short(e.newHash)}`;
  const outcome = e.reason === null ? e.outcome : `${e.outcome} (${quoteText(e.reason)})`;
  return [
    e.position,
    e.loggedAt,
    e.type.padEnd("writeSymlink".length),
    quoteText(e.path === "" ? "." : e.path),
    change,
    `size ${e.size === null ? "-" : bytes(e.size)}`,
    `wire ${e.wireBytes === null ? "-" : bytes(e.wireBytes)}`,
    e.detectedBy,
    outcome,
  ].join("  ");
}

/** The states whose recorded source root contains `absolutePath`, each with the path relative to that root. */
function statesContaining(
  states: readonly OpenedState[],
  candidates: readonly string[],
): { state: OpenedState & { pair: NonNullable<OpenedState["pair"]> }; relative: string }[] {
  const found = [];
  for (const state of states) {
    const pair = state.pair;
    if (pair === null) continue;
    const inside = candidates.find((p) => isWithin(pair.sourceRoot, p));
    if (inside !== undefined)
      found.push({ state: { ...state, pair }, relative: posix.relative(pair.sourceRoot, inside) });
  }
  return found;
}

/**
 * `mirrorlog log PATH`: every logged operation on PATH or below it, newest first, for each replication
 * whose source contains PATH, optionally only the newest N and those in a time window. Returns the exit code.
 */
export function runLog(
  path: string,
  options: LogOptions,
  stdout: (text: string) => void,
  stderr: (text: string) => void = (text) => process.stderr.write(text),
  now: number = Date.now(),
): number {
  // Checked before any state file is opened: a typo is a usage error, whatever the state directory holds.
  const selection = logSelection(options, now);
  // A damaged state file is named (its recorded source cannot be read: PATH may be in it), never
  // passed over as "no replication state".
  const { opened: states, damaged } = openStates(options.state);
  try {
    const literal = posix.resolve(path);
    const candidates = [canonicalPath(path), literal];
    const matching = statesContaining(states, candidates);
    if (matching.length === 0) {
      reportDamaged(damaged, false, stderr);
      if (options.state !== undefined && states[0]?.pair === null) {
        throw new CliError(`state file ${options.state} does not record its source root; run sync with it once`);
      }
      const where = options.state ?? stateDirectory();
      throw new CliError(`no replication state in ${where} has a source containing ${quoteText(literal)}`, 1);
    }
    let entries: PathLogEntry[] = [];
    const sections: string[] = [];
    const histories = readEach(
      matching.map((m) => m.state),
      damaged,
      (state) => state.log.history(matching.find((m) => m.state === state)!.relative),
    );
    const readable = matching.filter(({ state }) => !damaged.some((d) => d.statePath === state.statePath));
    const sourceOf = ({ state }: (typeof readable)[number]) => ({
      statePath: state.statePath,
      sourceRoot: state.pair.sourceRoot,
      target: state.pair.target,
    });
    // Newest first, like git log: each section lists its history's indices, newest first.
    const newestFirst = histories.map((history, section) =>
      history.map((_, i) => ({ section, index: history.length - 1 - i })),
    );
    const selected = selectEntries(newestFirst, selection, (at) => histories[at.section]![at.index]!.entry.loggedAt);
    for (const [i, { state }] of readable.entries()) {
      const source = sourceOf(readable[i]!);
      const lines = selectedLogEntries(
        source,
        histories[i]!,
        selected[i]!.map((at) => at.index),
      );
      // Not push(...lines): a long history would overflow the call stack.
      entries = entries.concat(lines);
      const header =
        matching.length > 1
          ? [`# ${quoteText(source.sourceRoot)} → ${quoteText(source.target)} (${quoteText(state.statePath)})`]
          : [];
      sections.push([...header, ...lines.map(formatPathLogEntry)].join("\n"));
    }
    const code = reportDamaged(damaged, options.json || readable.length > 0, stderr);
    if (options.json) stdout(`${terminalSafeJson(entries)}\n`);
    else if (entries.length > 0 || readable.length > 1) stdout(`${sections.join("\n\n")}\n`);
    return code;
  } finally {
    closeStates(states);
  }
}
