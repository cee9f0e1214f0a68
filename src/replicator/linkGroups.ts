import { compareWalkOrder, isAtOrBelow, parentOf } from "../events/paths.js";

/**
 * The hard-link groups of the source tree as scans have seen them: inode key ("dev:ino") → its names.
 * Only files with more than one link are kept. A scan of a subtree first forgets every name in it
 * (`forgetBelow`) and then reports what it finds (`add`), so a removed or replaced name leaves its group.
 */
export class LinkGroups {
  private readonly namesByInode = new Map<string, Set<string>>();
  private readonly inodeByName = new Map<string, string>();

  /** Forgets the names a scan of relative `path` reads again: all below it, or with `recursive` false, one level. */
  forgetScanned(path: string, recursive: boolean): void {
    for (const [name, inode] of [...this.inodeByName]) {
      const scanned = recursive ? isAtOrBelow(path, name) : name === path || parentOf(name) === path;
      if (scanned) this.remove(name, inode);
    }
  }

  /** The group's leader: its first known name in walk order. */
  leaderOf(inode: string): string | undefined {
    return this.namesOf(inode)[0];
  }

  /**
   * Records that `path` is a name of `inode` and returns the group's leader: its first known name in walk
   * order. A name found later that precedes the leader takes over; the session then states the others again.
   */
  add(path: string, inode: string): string {
    const previous = this.inodeByName.get(path);
    if (previous !== undefined && previous !== inode) this.remove(path, previous);
    let names = this.namesByInode.get(inode);
    if (names === undefined) {
      names = new Set();
      this.namesByInode.set(inode, names);
    }
    names.add(path);
    this.inodeByName.set(path, inode);
    return this.leaderOf(inode)!;
  }

  /** The known names of `inode`, in walk order. */
  namesOf(inode: string): string[] {
    return [...(this.namesByInode.get(inode) ?? [])].sort(compareWalkOrder);
  }

  private remove(name: string, inode: string): void {
    this.inodeByName.delete(name);
    const names = this.namesByInode.get(inode);
    names?.delete(name);
    if (names?.size === 0) this.namesByInode.delete(inode);
  }
}
