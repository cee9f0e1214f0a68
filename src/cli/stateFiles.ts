// Finding and opening source-side state files for the audit commands (log, status). Audits never
// change a state file: each is opened read-only, so a running `watch` and its log are left alone.
import { existsSync, readdirSync, realpathSync } from "node:fs";
import { posix } from "node:path";
import { OperationLog, type ReplicationPair } from "../events/operationLog.js";
import { CliError } from "./cliError.js";
import { stateDirectory } from "./statePaths.js";

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

/** Opens one state file read-only; a missing file or one that is not a log is a CliError. */
export function openState(statePath: string): OpenedState {
  let log: OperationLog;
  try {
    log = new OperationLog(statePath, { readOnly: true });
  } catch (error) {
    throw new CliError(`state file ${statePath} cannot be read as a mirrorlog log: ${(error as Error).message}`);
  }
  return { statePath, log, pair: log.pair() };
}

/**
 * Opens `--state FILE` when given, else every source state file of the state directory. Files of the
 * directory that cannot be read (another program's, half-written) are skipped: one bad file must not
 * hide the others.
 */
export function openStates(stateOption: string | undefined): OpenedState[] {
  if (stateOption !== undefined) return [openState(posix.resolve(stateOption))];
  const opened: OpenedState[] = [];
  for (const statePath of sourceStatePaths()) {
    try {
      opened.push(openState(statePath));
    } catch {
      // Skipped, see above.
    }
  }
  return opened;
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
