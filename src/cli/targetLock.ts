import { closeSync, constants, fstatSync, openSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { LOCK_EX, LOCK_NB, loadNativeCalls } from "../fs/nativeCalls.js";
import { CliError } from "./cliError.js";

/** A held target lock; `release` drops it (the kernel also drops it when the process ends, however it ends). */
export interface TargetLock {
  /** Writes our pid into `pidFile` (beside the target's state) for humans and tests; removed on release. */
  recordOwner(pidFile: string): void;
  release(): void;
}

/**
 * Fences a target root to one writing process at a time, by what the root is rather than how its path
 * is spelled or where the state lives: an exclusive `flock` on the root directory's own descriptor
 * (its device and inode), held until `release` or the process's end. The kernel decides: a lock cannot
 * be left stale by a crash, and no pid is guessed at. The holder named in a refusal comes from the
 * kernel's lock table too; a pid file (`recordOwner`) is only informative and never decides anything.
 */
export function lockTarget(root: string): TargetLock {
  const native = loadNativeCalls();
  if (native === undefined) {
    throw new CliError(`cannot lock target ${root}: flock is not available (koffi could not be loaded)`);
  }
  let fd: number;
  try {
    fd = openSync(root, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (error) {
    throw new CliError(`cannot open target ${root} to lock it: ${(error as Error).message}`);
  }
  try {
    native.flock(fd, LOCK_EX | LOCK_NB);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const holder = code === "EAGAIN" || code === "EWOULDBLOCK" ? lockHolder(fd) : undefined;
    closeSync(fd);
    if (code !== "EAGAIN" && code !== "EWOULDBLOCK") {
      throw new CliError(`cannot lock target ${root}: ${(error as Error).message}`);
    }
    const who = holder === undefined ? "" : ` (pid ${holder})`;
    throw new CliError(`target ${root} is being written by another mirrorlog${who}; refusing a second source`);
  }
  let held = true;
  let pidFile: string | undefined;
  return {
    recordOwner: (path) => {
      try {
        writeFileSync(path, `${process.pid}\n`, { mode: 0o600 });
        pidFile = path;
      } catch {
        // Only informative: the lock holds without it.
      }
    },
    release: () => {
      if (!held) return;
      held = false;
      // The pid file goes only once the lock is dropped: who waits for it to go may then take the lock.
      closeSync(fd); // closing the only descriptor of the open file drops the flock
      if (pidFile !== undefined && readQuietly(pidFile) === `${process.pid}\n`) unlinkQuietly(pidFile);
    },
  };
}

/**
 * The pid holding a flock on the file open as `fd`, from the kernel's own table (/proc/locks lists
 * each lock with its holder and the device and inode it covers), or undefined when it cannot be told.
 */
function lockHolder(fd: number): number | undefined {
  const stat = fstatSync(fd, { bigint: true });
  // /proc/locks writes the device as hex major:minor (glibc's encoding of st_dev) and the inode in decimal.
  const major = ((stat.dev >> 8n) & 0xfffn) | ((stat.dev >> 32n) & ~0xfffn);
  const minor = (stat.dev & 0xffn) | ((stat.dev >> 12n) & ~0xffn);
  const id = `${major.toString(16).padStart(2, "0")}:${minor.toString(16).padStart(2, "0")}:${stat.ino}`;
  for (const line of readQuietly("/proc/locks").split("\n")) {
    const fields = line.trim().split(/\s+/);
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; a waiter's line starts "1: ->".
    if (fields[1] !== "FLOCK" || fields[5] !== id) continue;
    const pid = Number(fields[4]);
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid) return pid;
  }
  return undefined;
}

function readQuietly(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}
