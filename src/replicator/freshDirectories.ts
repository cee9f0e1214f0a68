import { parentOf } from "../events/paths.js";

/** Names tracked at most before the whole record is forgotten (lookups then resume: it only saves time). */
const MAX_TRACKED = 100_000;

/**
 * Directories a target created during a burst, with the entries it has named in each since. Any other name
 * in one is known to be absent, so a new entry there is written without first looking it up: most of an
 * initial mirror (a name lookup per file). Something another process puts there meanwhile meets what it
 * meets after a lookup too, the rename that replaces a file or fails on a directory (a failure the source
 * plans again); the record is forgotten on any removal or replacement, and at the end of each burst.
 */
export class FreshDirectories {
  /** Relative path of each directory created, to the relative paths named in it since. */
  private readonly dirs = new Map<string, Set<string>>();
  private tracked = 0;

  /** True when `path` lies in a directory created during this burst and has not been named since. */
  isAbsent(path: string): boolean {
    return this.dirs.get(parentOf(path))?.has(path) === false;
  }

  /** Records that an operation names `path` (whatever it leaves there): it is no longer known absent. */
  named(path: string): void {
    const names = this.dirs.get(parentOf(path));
    if (names === undefined || names.has(path)) return;
    names.add(path);
    if (++this.tracked > MAX_TRACKED) this.forget();
  }

  /** Records that the directory at `path` was just created, empty. */
  created(path: string): void {
    this.named(path);
    this.dirs.set(path, new Set());
    if (++this.tracked > MAX_TRACKED) this.forget();
  }

  forget(): void {
    this.dirs.clear();
    this.tracked = 0;
  }
}
