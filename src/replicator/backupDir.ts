// --backup-dir on the target: what a sync deletes or replaces is kept in a directory, under its relative
// path, like rsync's --backup --backup-dir. Each file (and symlink) is hard-linked there just before the
// target removes or replaces it, so the backup costs no copy and the removal itself is unchanged (the
// removed file may still lend its bytes to a move). Hence the backup directory must be on the target's
// file system.
import { existsSync, linkSync, lstatSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { posix } from "node:path";
import { bytesOfName } from "../fs/byteNames.js";

/** Keeps copies (hard links) of the entries a target removes or replaces. */
export class BackupDir {
  /** `dir` is absolute (a relative --backup-dir is resolved against the target root by the caller). */
  constructor(readonly dir: string) {}

  /**
   * Links the entry at `absolute` (relative path `path` below the target root) and everything below it
   * into the backup directory at the same relative path, replacing an older backup there. Throws (so the
   * removal does not happen) when it cannot.
   */
  keep(path: string, absolute: string): void {
    this.link(bytesOfName(absolute), bytesOfName(posix.join(this.dir, path)));
  }

  private link(from: Buffer, to: Buffer): void {
    const stat = lstatSync(from);
    if (stat.isDirectory()) {
      if (existsSync(to) && !lstatSync(to).isDirectory()) rmSync(to, { force: true });
      mkdirSync(to, { recursive: true });
      for (const name of readdirSync(from, { encoding: "buffer" })) {
        const slash = Buffer.from("/");
        this.link(Buffer.concat([from, slash, name]), Buffer.concat([to, slash, name]));
      }
      return;
    }
    mkdirSync(parentOf(to), { recursive: true });
    rmSync(to, { recursive: true, force: true });
    // link(2) does not follow a symlink: the backup of a symlink is the symlink.
    linkSync(from, to);
  }
}

function parentOf(path: Buffer): Buffer {
  const slash = path.lastIndexOf("/");
  return slash <= 0 ? Buffer.from("/") : path.subarray(0, slash);
}

/**
 * Why `dir` cannot be the backup directory of the target `root` (another file system: hard links cannot
 * reach it), or null. A directory that does not exist yet is judged by its nearest existing ancestor.
 */
export function backupDirProblem(dir: string, root: string): string | null {
  const existing = nearestExisting(dir);
  const stat = statSync(existing);
  if (existing === dir && !stat.isDirectory()) return `backup dir ${dir} exists and is not a directory`;
  if (stat.dev !== statSync(nearestExisting(root)).dev)
    return `backup dir ${dir} is not on the file system of target ${root}`;
  return null;
}

/** `path` or its nearest ancestor that exists. */
function nearestExisting(path: string): string {
  let at = path;
  while (!existsSync(at) && at !== "/") at = posix.dirname(at);
  return at;
}
