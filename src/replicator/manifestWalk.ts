import { childOf } from "../events/paths.js";
import type { ManifestEntry } from "../events/protocol.js";
import type { ContentIndex } from "../events/stateStore.js";
import { emptyDir, type TreeNode } from "../events/tree.js";
import type { FileSystem } from "../fs/fileSystem.js";
import { manifestEntryOf } from "../projections/expectedTree.js";
import { scanPath } from "./scan.js";

/** What a manifest walk reads. */
export interface ManifestWalkOptions {
  fs: FileSystem;
  /** Absolute, normalised root of the tree. */
  root: string;
  /** Lets the walk skip re-reading files that have not changed since they were hashed. */
  index: ContentIndex;
}

/**
 * The target's tree as a manifest, produced lazily one directory listing at a time, so memory holds the
 * entries of the pages being served and a stack of directories still to list, never the whole tree
 * (200,000 entries held at once were the target's largest allocation on a re-run). Entries come parents
 * first: the root, then each directory's children by name as that directory is listed (depth first).
 * Unchanged files take their hash from the index; what cannot be described (a FIFO, an unreadable file)
 * is "unknown"; our temp files are left out (the file system's listing hides them).
 */
export class ManifestWalk {
  /** Directories still to list, the next on top. */
  private readonly stack: string[] = [""];
  /** Entries produced and still held; `held[0]` is entry number `heldFrom` of the walk. */
  private held: ManifestEntry[] = [];
  private heldFrom = 0;
  /** Entries before this offset are never asked for again (pages already answered). */
  private floor = 0;
  /** The first name of each hard-link group in walk order leads it; later names are stated as links to it. */
  private readonly leaders = new Map<string, string>();

  constructor(private readonly options: ManifestWalkOptions) {}

  /** True when entry `offset` can still be produced by this walk (it has not been let go of). */
  reaches(offset: number): boolean {
    return offset >= this.heldFrom;
  }

  /** Lets go of the entries before `offset`: the pages before it were answered. */
  releaseBefore(offset: number): void {
    this.floor = Math.max(this.floor, offset);
    this.trim();
  }

  /** Entry number `offset` of the walk (listing directories as far as needed), or undefined past the end. */
  entryAt(offset: number): ManifestEntry | undefined {
    if (offset < this.heldFrom) throw new RangeError(`manifest entry ${offset} was already let go of`);
    while (offset >= this.heldFrom + this.held.length && this.stack.length > 0) this.listNext();
    return this.held[offset - this.heldFrom];
  }

  /**
   * Lists one more directory when the walk holds fewer than `entries` entries past the last page asked for;
   * false when it need not (or the walk is over). Lets the target list the next page while it waits.
   */
  listAhead(entries: number): boolean {
    if (this.stack.length === 0 || this.heldFrom + this.held.length >= this.floor + entries) return false;
    this.listNext();
    return true;
  }

  private listNext(): void {
    const dir = this.stack.pop()!;
    const scan = scanPath(
      {
        fs: this.options.fs,
        root: this.options.root,
        keepContentUpTo: -1,
        index: this.options.index,
        owners: { uid: true, gid: true },
        onLinkedFile: (path, inode) => {
          const leader = this.leaders.get(inode);
          if (leader === undefined) this.leaders.set(inode, path);
          return leader;
        },
      },
      dir,
      false,
    );
    const node: TreeNode | undefined = scan.node ?? (dir === "" ? emptyDir() : undefined);
    if (dir === "") this.held.push(manifestEntryOf(node?.kind === "dir" ? node : emptyDir(), ""));
    // A directory replaced or removed since its parent was listed: its entry stands as listed then.
    if (node?.kind !== "dir") {
      this.trim();
      return;
    }
    const names = [...node.children.keys()].sort();
    const dirs: string[] = [];
    for (const name of names) {
      const child = node.children.get(name)!;
      const path = childOf(dir, name);
      this.held.push(manifestEntryOf(child, path));
      if (child.kind === "dir") dirs.push(path);
    }
    for (let i = dirs.length - 1; i >= 0; i--) this.stack.push(dirs[i]!);
    this.trim();
  }

  private trim(): void {
    const drop = Math.min(this.held.length, this.floor - this.heldFrom);
    if (drop <= 0) return;
    this.held = this.held.slice(drop);
    this.heldFrom += drop;
  }
}
