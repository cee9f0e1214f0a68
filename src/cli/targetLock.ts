import { closeSync, constants, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { CliError } from "./cliError.js";

/** A held lock file; `release` removes it. */
export interface TargetLock {
  release(): void;
}

/**
 * Fences a target root to one serving process at a time: a lock file beside the target's state, created
 * exclusively and holding the owner's pid. A second source reaching the same root while the first is
 * connected is refused; a lock left by a process that no longer exists is taken over.
 */
export function lockTarget(lockPath: string, root: string): TargetLock {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(
        lockPath,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o600,
      );
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return { release: () => unlinkQuietly(lockPath) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = Number.parseInt(readOwner(lockPath), 10);
      if (Number.isSafeInteger(owner) && owner > 0 && isAlive(owner)) {
        throw new CliError(
          `target ${root} is being written by another mirrorlog (pid ${owner}); refusing a second source`,
        );
      }
      unlinkQuietly(lockPath); // stale: its owner is gone
    }
  }
  throw new CliError(`cannot lock target ${root} (${lockPath})`);
}

function readOwner(path: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return "";
  }
}

/** True while `pid` runs and is a mirrorlog serve (not a zombie waiting to be reaped, nor a reused pid). */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The state letter follows the parenthesised command name, which may itself hold spaces.
    if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) return false;
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("serve");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}
