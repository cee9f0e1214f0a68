import type { Attributes } from "../events/operation.js";
import { parentOf, segmentsOf } from "../events/paths.js";
import { attributesDiffering } from "../events/tree.js";
import { type MirrorFileSystem, pathUnder } from "../fs/fileSystem.js";

/** Owner read, write and search: what the target needs on a directory to change its entries. */
const OWNER_RWX = 0o700;

/**
 * Keeps directories' mode and mtime final although the target writes into them (rsync sets them after a
 * directory's contents, for the same reasons). Before the first change of a directory's entries in a request
 * its metadata is noted (and a read-only directory opened for its owner); `ensureDir` may state new values;
 * `restore` sets them all, deepest first, once the request's changes are in. A crash between a change and
 * `restore` leaves a directory with its old or a fresh mtime: the next run's manifest shows it and the
 * source states it again.
 */
export class TargetDirectories {
  /** Relative directory path → the mode and mtime it must end with. */
  private readonly final = new Map<string, Attributes>();

  constructor(
    private readonly fs: MirrorFileSystem,
    private readonly root: string,
  ) {}

  /** Call before creating, replacing or removing an entry of relative directory `dir`. */
  willChange(dir: string): void {
    if (this.final.has(dir)) return;
    const absolute = this.absolute(dir);
    const stat = this.fs.lstatIfExists(absolute);
    if (stat?.kind !== "dir") return;
    this.final.set(dir, { mode: stat.mode, mtime: stat.mtime });
    if ((stat.mode & OWNER_RWX) !== OWNER_RWX) this.fs.setMetadata(absolute, { mode: stat.mode | OWNER_RWX });
  }

  /** Call before changing the entry at relative `path` (its parent's entries change). */
  willChangeEntry(path: string): void {
    if (path !== "") this.willChange(parentOf(path));
  }

  /** The directory at `dir` must end with these mode and mtime (those left out: as it is now). */
  state(dir: string, attributes: Attributes): void {
    this.willChange(dir);
    const wanted = this.final.get(dir);
    if (wanted === undefined) return;
    if (attributes.mode !== undefined) wanted.mode = attributes.mode;
    if (attributes.mtime !== undefined) wanted.mtime = attributes.mtime;
  }

  /** The entry at `path` is gone (or replaced): nothing at or below it is restored. */
  forget(path: string): void {
    for (const dir of [...this.final.keys()]) {
      if (dir === path || (path === "" ? true : dir.startsWith(`${path}/`))) this.final.delete(dir);
    }
  }

  /** Sets every noted directory's final mode and mtime, deepest first; returns the ones that failed, with why. */
  restore(): { dir: string; error: unknown }[] {
    const failures: { dir: string; error: unknown }[] = [];
    const dirs = [...this.final.keys()].sort((a, b) => segmentsOf(b).length - segmentsOf(a).length);
    for (const dir of dirs) {
      const wanted = this.final.get(dir)!;
      try {
        const stat = this.fs.lstatIfExists(this.absolute(dir));
        // Only what differs: writing entries moves a directory's mtime, seldom its mode (which costs a handle).
        const differing = stat?.kind === "dir" ? attributesDiffering(stat, wanted) : {};
        if (Object.keys(differing).length > 0) this.fs.setMetadata(this.absolute(dir), differing);
      } catch (error) {
        failures.push({ dir, error });
      }
    }
    this.final.clear();
    return failures;
  }

  private absolute(dir: string): string {
    return pathUnder(this.root, dir);
  }
}
