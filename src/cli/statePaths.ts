import { createHash } from "node:crypto";
import { homedir } from "node:os";
import { posix } from "node:path";
import { isWithin } from "../fs/fileSystem.js";

/** The directory holding mirrorlog's state: $XDG_STATE_HOME/mirrorlog or ~/.local/state/mirrorlog. */
export function stateDirectory(env: NodeJS.ProcessEnv = process.env): string {
  const base =
    env.XDG_STATE_HOME && posix.isAbsolute(env.XDG_STATE_HOME)
      ? env.XDG_STATE_HOME
      : posix.join(homedir(), ".local/state");
  return posix.join(base, "mirrorlog");
}

/** The default log file of one source/target pair: one state per pair, named by both ends. */
export function defaultSourceStatePath(sourceRoot: string, targetSpec: string, env?: NodeJS.ProcessEnv): string {
  const id = createHash("sha256").update(`${sourceRoot}\0${targetSpec}`).digest("hex").slice(0, 16);
  return posix.join(stateDirectory(env), `source-${posix.basename(sourceRoot) || "root"}-${id}.db`);
}

/** The default state file of a target root on its own machine (applied position and content index). */
export function defaultTargetStatePath(targetRoot: string, env?: NodeJS.ProcessEnv): string {
  const id = createHash("sha256").update(targetRoot).digest("hex").slice(0, 16);
  return posix.join(stateDirectory(env), `target-${posix.basename(targetRoot) || "root"}-${id}.db`);
}

/** Why `statePath` may not be used for the pair (inside SRC or DST), or null. */
export function statePathProblem(statePath: string, roots: readonly string[]): string | null {
  for (const root of roots) {
    if (isWithin(root, statePath))
      return `state file ${statePath} would lie inside ${root}; choose a path outside both trees`;
  }
  return null;
}
