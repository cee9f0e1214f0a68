// Finding and opening source-side state files for the audit commands (log, status). Audits never
// change a state file: each is opened read-only, so a running `watch` and its log are left alone.
import { existsSync, mkdirSync, readdirSync, realpathSync, renameSync, unlinkSync } from "node:fs";
import { posix } from "node:path";
import { closedRecordPath, OperationLog, type ReplicationPair, StateFileError } from "../events/operationLog.js";
import { escapeForDisplay } from "../events/paths.js";
import { CliError } from "./cliError.js";
import { pairConfigPath } from "./pairConfig.js";
import { defaultTargetStatePath, stateDirectory } from "./statePaths.js";

/** A source state file opened for reading, with the pair it recorded (null for logs from before pairs were kept). */
export interface OpenedState {
  statePath: string;
  log: OperationLog;
  pair: ReplicationPair | null;
}

/** Source state files (`source-*.db`) in the state directory, sorted by name; none when it does not exist. */
export function sourceStatePaths(directory: string = stateDirectory()): string[] {
  if (!existsSync(directory)) return [];
  return readdirSync(directory)
    .filter((name) => name.startsWith("source-") && name.endsWith(".db"))
    .sort()
    .map((name) => posix.join(directory, name));
}

/** Creates the directory a state file goes in; failing that is a CliError naming it. */
export function makeStateDirectory(statePath: string): void {
  try {
    mkdirSync(posix.dirname(statePath), { recursive: true });
  } catch (error) {
    throw new CliError(`cannot create the state directory ${posix.dirname(statePath)}: ${(error as Error).message}`);
  }
}

/** The flag that moves a damaged state file aside and rebuilds the state from a scan. */
export const REBUILD_FLAG = "--rebuild-state";

/** Exit status of `serve` when its state file cannot be used: the source reports it and does not retry. */
export const STATE_UNUSABLE_EXIT = 3;

/** The one line the CLI prints for a state file that cannot be used: what is wrong, and what to do. */
export function stateFileAdvice(error: StateFileError): string {
  const what = escapeForDisplay(error.message);
  switch (error.problem) {
    case "full":
      return `${what}; free space on its file system and run again`;
    case "busy":
      return `${what}; wait for the other mirrorlog using it to finish`;
    case "io":
      return `${what}; check the disk it lies on, or run sync or watch again with ${REBUILD_FLAG} to move it aside and rebuild the state from a scan`;
    default:
      return `${what}; run sync or watch again with ${REBUILD_FLAG} to move it aside and rebuild the state from a scan`;
  }
}

/** True when `--rebuild-state` can help: the file's bytes are damaged or the file cannot be opened or read. */
export function isRebuildable(error: StateFileError): boolean {
  return error.problem === "damaged" || error.problem === "unreadable" || error.problem === "io";
}

/**
 * Moves a damaged state file aside as FILE.corrupt-TIMESTAMP (with its -wal beside it, so the pair still
 * opens for a post-mortem; the -shm is only a cache and its closed record no longer true: both are removed).
 * Returns the new name.
 */
export function moveStateAside(statePath: string, now: Date = new Date()): string {
  const aside = `${statePath}.corrupt-${now.toISOString().replaceAll(/[:.]/g, "-")}`;
  renameSync(statePath, aside);
  for (const suffix of ["-wal", "-journal"]) {
    if (existsSync(`${statePath}${suffix}`)) renameSync(`${statePath}${suffix}`, `${aside}${suffix}`);
  }
  for (const companion of [`${statePath}-shm`, closedRecordPath(statePath)]) {
    try {
      unlinkSync(companion);
    } catch {
      // none
    }
  }
  return aside;
}

/**
 * Opens a state file with `open`. When it cannot be used: with `rebuild` and a problem a rebuild can
 * help, the file is moved aside and opened afresh (`rebuilt` says why, for the new epoch's reason);
 * otherwise the StateFileError is thrown.
 */
export function openStateFile<T>(
  statePath: string,
  rebuild: boolean,
  open: () => T,
): { value: T; rebuilt: string | undefined } {
  try {
    return { value: open(), rebuilt: undefined };
  } catch (error) {
    if (!(error instanceof StateFileError) || !rebuild || !isRebuildable(error)) throw error;
    const aside = moveStateAside(statePath);
    const value = open();
    return { value, rebuilt: `${error.message}; moved aside to ${aside}` };
  }
}

/** Opens one state file read-only; a missing file or one that is not a log is a CliError naming it. */
export function openState(statePath: string): OpenedState {
  if (!existsSync(statePath)) throw new CliError(`state file ${statePath} does not exist`);
  let log: OperationLog;
  try {
    log = new OperationLog(statePath, { readOnly: true, verify: true });
  } catch (error) {
    if (error instanceof StateFileError) throw new CliError(stateFileAdvice(error));
    throw new CliError(`state file ${statePath} cannot be read as a mirrorlog log: ${(error as Error).message}`);
  }
  try {
    return { statePath, log, pair: log.pair() };
  } catch (error) {
    log.close();
    if (error instanceof StateFileError) throw new CliError(stateFileAdvice(error));
    throw error;
  }
}

/** A state file of the directory that cannot be read: its path and the line saying what to do. */
export interface DamagedState {
  statePath: string;
  message: string;
}

/**
 * Opens `--state FILE` when given, else every source state file of the state directory. A file of the
 * directory that cannot be read goes into `damaged` (named, with what to do), so one bad file neither
 * hides the others nor passes silently for "no replication state".
 */
export function openStates(stateOption: string | undefined): { opened: OpenedState[]; damaged: DamagedState[] } {
  if (stateOption !== undefined) return { opened: [openState(posix.resolve(stateOption))], damaged: [] };
  const opened: OpenedState[] = [];
  const damaged: DamagedState[] = [];
  for (const statePath of sourceStatePaths()) {
    try {
      opened.push(openState(statePath));
    } catch (error) {
      damaged.push({ statePath, message: (error as Error).message });
    }
  }
  return { opened, damaged };
}

/**
 * Runs `read` on each opened state; one that turns out damaged while read joins `damaged` instead.
 * Returns the results of the others, in order.
 */
export function readEach<T>(
  states: readonly OpenedState[],
  damaged: DamagedState[],
  read: (state: OpenedState) => T,
): T[] {
  const results: T[] = [];
  for (const state of states) {
    try {
      results.push(read(state));
    } catch (error) {
      if (!(error instanceof StateFileError)) throw error;
      damaged.push({ statePath: state.statePath, message: stateFileAdvice(error) });
    }
  }
  return results;
}

/**
 * Says which state files are damaged: one line each on `stderr` when there is other output, else one
 * CliError (exit 2). Returns the exit code the command ends with (2 when any is damaged).
 */
export function reportDamaged(
  damaged: readonly DamagedState[],
  hasOutput: boolean,
  stderr: (text: string) => void,
): number {
  if (damaged.length === 0) return 0;
  if (!hasOutput) throw new CliError(damaged.map((d) => d.message).join("; "));
  for (const d of damaged) stderr(`mirrorlog: ${d.message}\n`);
  return 2;
}

/** Closes every opened state. */
export function closeStates(states: readonly OpenedState[]): void {
  for (const state of states) state.log.close();
}

/**
 * An absolute path for `path` (relative to `cwd`) with symlinks resolved in its parent directories, the
 * way source roots are recorded. The last component is not followed (its own history is wanted, not
 * its target's), and components that no longer exist are kept as written: deleted paths have a history.
 */
export function canonicalPath(path: string, cwd: string = process.cwd()): string {
  const absolute = posix.resolve(cwd, path);
  if (absolute === "/") return absolute;
  const parent = posix.dirname(absolute);
  let resolvedParent: string;
  try {
    resolvedParent = realpathSync(parent);
  } catch {
    resolvedParent = canonicalPath(parent, "/");
  }
  return posix.join(resolvedParent, posix.basename(absolute));
}

/** A pair's id as `status` shows it: its state file's name without `source-` and `.db` (unique per state directory). */
export function pairIdOf(statePath: string): string {
  const name = posix.basename(statePath);
  return name.replace(/^source-/, "").replace(/\.db$/, "");
}

/** True when `id` names the pair of `statePath`: its whole id, or the hash at the id's end (as long as given). */
export function idMatches(statePath: string, id: string): boolean {
  const own = pairIdOf(statePath);
  return own === id || (/^[0-9a-f]{8,}$/.test(id) && own.endsWith(`-${id}`));
}

/** A state file and the files SQLite and mirrorlog keep beside it (WAL, shared memory, journal, closed record). */
function stateFileWithCompanions(statePath: string): string[] {
  return [statePath, `${statePath}-wal`, `${statePath}-shm`, `${statePath}-journal`, closedRecordPath(statePath)];
}

/**
 * Removes a pair's state: its source state file (with -wal, -shm), its pair config and, for a local target
 * that no longer exists, the target's own state file in the state directory (nothing else can use it).
 * The caller has closed the log. Returns the files removed.
 */
export function forgetPair(statePath: string, target: string | null): string[] {
  const files = [...stateFileWithCompanions(statePath), pairConfigPath(statePath)];
  if (target !== null && posix.isAbsolute(target) && !existsSync(target)) {
    const targetState = defaultTargetStatePath(target);
    files.push(...stateFileWithCompanions(targetState), `${targetState}.lock`);
  }
  const removed: string[] = [];
  for (const file of files) {
    try {
      unlinkSync(file);
      removed.push(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        throw new CliError(`cannot remove ${escapeForDisplay(file)}: ${(error as Error).message}`);
      }
    }
  }
  return removed;
}
