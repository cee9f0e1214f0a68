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

/** Options of `mirrorlog log`. */
export interface LogOptions {
  state?: string;
  json: boolean;
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

/**
 * The history of a path and everything below it as log lines, oldest first. Pure. Each line's old
 * hash is the path's content before the operation as the log tells it (null after anything but a
 * writeFile, and after a removal or replacement of the path or a directory above it in `history`).
 */
export function pathLogEntries(
  source: LogSource,
  history: readonly { entry: LogEntry; result?: LoggedResult }[],
): PathLogEntry[] {
  const contentOf = new Map<string, string>();
  // Directories with a tracked file below them (possibly stale): only those need a scan when replaced.
  const holdsContent = new Set<string>();
  return history.map(({ entry, result }) => {
    const { operation } = entry;
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
  });
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
 * whose source contains PATH. Returns the exit code.
 */
export function runLog(
  path: string,
  options: LogOptions,
  stdout: (text: string) => void,
  stderr: (text: string) => void = (text) => process.stderr.write(text),
): number {
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
    const entries: PathLogEntry[] = [];
    const sections: string[] = [];
    const histories = readEach(
      matching.map((m) => m.state),
      damaged,
      (state) => state.log.history(matching.find((m) => m.state === state)!.relative),
    );
    const readable = matching.filter(({ state }) => !damaged.some((d) => d.statePath === state.statePath));
    for (const [i, { state }] of readable.entries()) {
      const source = { statePath: state.statePath, sourceRoot: state.pair.sourceRoot, target: state.pair.target };
      // Newest first, like git log.
      const lines = pathLogEntries(source, histories[i]!).reverse();
      entries.push(...lines);
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
