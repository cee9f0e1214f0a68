import { isAtOrBelow, parentOf } from "../events/paths.js";

/**
 * The directories a source watches (relative paths, "" the root), each with the inode it was watched at,
 * and for each directory how many watched ones lie below it: a watch batch asks which watches a file's
 * plan ends (those at or below its path) once per file, and without the counts each question read every
 * watch (1,000 files against 1,000 watched directories: a million comparisons).
 */
export class WatchedDirs {
  private readonly inodes = new Map<string, number | undefined>();
  private readonly below = new Map<string, number>();

  /** Whether `dir` is watched. */
  has(dir: string): boolean {
    return this.inodes.has(dir);
  }

  /** The inode `dir` was watched at (undefined when not known, or not watched). */
  inodeOf(dir: string): number | undefined {
    return this.inodes.get(dir);
  }

  /** Records `dir` as watched at inode `ino` (again, when it was: the inode is replaced). */
  add(dir: string, ino: number | undefined): void {
    if (!this.inodes.has(dir)) this.countAbove(dir, 1);
    this.inodes.set(dir, ino);
  }

  /** Records `dir` as no longer watched. */
  delete(dir: string): void {
    if (this.inodes.delete(dir)) this.countAbove(dir, -1);
  }

  /** Every watched directory. */
  all(): string[] {
    return [...this.inodes.keys()];
  }

  /** The watched directories at or below `path`. */
  atOrBelow(path: string): string[] {
    if (!this.below.has(path)) return this.inodes.has(path) ? [path] : [];
    return this.all().filter((dir) => isAtOrBelow(path, dir));
  }

  /** Records nothing as watched. */
  clear(): void {
    this.inodes.clear();
    this.below.clear();
  }

  private countAbove(dir: string, change: 1 | -1): void {
    for (let ancestor = dir; ancestor !== ""; ) {
      ancestor = parentOf(ancestor);
      const count = (this.below.get(ancestor) ?? 0) + change;
      if (count === 0) this.below.delete(ancestor);
      else this.below.set(ancestor, count);
    }
  }
}
