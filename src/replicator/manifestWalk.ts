import type { AttributeKey } from "../events/operation.js";
import { childOf, listedChildProblem } from "../events/paths.js";
import type { ManifestEntry, ManifestPageEntry } from "../events/protocol.js";
import type { ContentIndex, DigestCache } from "../events/stateStore.js";
import { type DirNode, emptyDir } from "../events/tree.js";
import { type DirEntryStat, type FileSystem, pathUnder } from "../fs/fileSystem.js";
import { listingDigest, listingEntries, manifestEntryOf } from "../projections/expectedTree.js";
import { isMirrorFileSystem, listingSignature, scanPath } from "./scan.js";

/** What a manifest walk reads. */
export interface ManifestWalkOptions {
  fs: FileSystem;
  /** Absolute, normalised root of the tree. */
  root: string;
  /** Lets the walk skip re-reading files that have not changed since they were hashed. */
  index: ContentIndex;
  /**
   * State each directory's listing as one digest over these attributes (see listingDigest), where the
   * listing would fit `fits` (the source may ask for it whole, in one frame).
   */
  digests?: {
    attributes: readonly AttributeKey[];
    fits: (entries: readonly ManifestEntry[]) => boolean;
    /** What else the digests depend on (the page limits `fits` applies), for `cache`. */
    key: string;
    /**
     * Digests computed before, each with its listing's signature: a directory whose children all state
     * as then (names, kinds, sizes, times, inodes, modes, owners: what the content index trusts too) has
     * the same digest, so its files' hashes are neither looked up nor its digest computed again.
     */
    cache?: DigestCache;
  };
}

/** How many of the tree's entries a manifest entry stands for (pages and the walk ahead are sized by it). */
export function entriesDescribed(entry: ManifestPageEntry): number {
  return entry.kind === "digest" ? entry.count : 1;
}

/**
 * The target's tree as a manifest, produced lazily one directory listing at a time, so memory holds the
 * entries of the pages being served and a stack of directories still to list, never the whole tree
 * (200,000 entries held at once were the target's largest allocation on a re-run). Entries come parents
 * first: the root, then each directory's children by name as that directory is listed (depth first), or
 * with `digests` one digest per directory instead of its children.
 * Unchanged files take their hash from the index; what cannot be described (a FIFO, an unreadable file)
 * is "unknown"; our temp files are left out (the file system's listing hides them).
 */
export class ManifestWalk {
  /** Directories still to list, the next on top. */
  private readonly stack: string[] = [""];
  /** Entries produced and still held; `held[0]` is entry number `heldFrom` of the walk. */
  private held: ManifestPageEntry[] = [];
  private heldFrom = 0;
  /** How many of the tree's entries those held stand for (see entriesDescribed). */
  private heldDescribed = 0;
  /** The work done so far: one per directory listed, and what each entry produced stands for. */
  private listedWork = 0;
  /** Entries before this offset are never asked for again (pages already answered). */
  private floor = 0;
  /** The first name of each hard-link group in walk order leads it; later names are stated as links to it. */
  private readonly leaders = new Map<string, string>();

  constructor(private readonly options: ManifestWalkOptions) {}

  /** True when this walk states listings as digests over exactly `attributes` (or, both undefined, whole). */
  digestsOver(attributes: readonly AttributeKey[] | undefined): boolean {
    return this.options.digests?.attributes.join() === attributes?.join();
  }

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
  entryAt(offset: number): ManifestPageEntry | undefined {
    if (offset < this.heldFrom) throw new RangeError(`manifest entry ${offset} was already let go of`);
    while (offset >= this.heldFrom + this.held.length && this.stack.length > 0) this.listNext();
    return this.held[offset - this.heldFrom];
  }

  /**
   * Lists directories while the walk holds fewer than `entries` entries past the last page asked for
   * (counted as entriesDescribed), until the directories listed in this call and what they produced
   * stand for `turn` entries (an empty directory for one); false when it need not list more (or the walk
   * is over). Lets the target list the next page while it waits, a few directories a turn: a turn's
   * directory handles (let go of when it ends) then open the next ones.
   */
  listAhead(entries: number, turn: number): boolean {
    const until = this.listedWork + turn;
    while (this.stack.length > 0 && this.heldDescribed < entries) {
      if (this.listedWork >= until) return true;
      this.listNext();
      this.listedWork += 1;
    }
    return false;
  }

  /** The entries of directory `dir`'s children as they stand now (none when it is not a directory). */
  listingOf(dir: string): ManifestEntry[] {
    const node = this.list(dir);
    return node === undefined ? [] : listingEntries(dir, node.children);
  }

  private listNext(): void {
    const dir = this.stack.pop()!;
    // The scan below reads the same listing; a file that changes while it is hashed states otherwise next
    // time, so the digest recorded with this signature is never recalled for a state it did not see.
    const signed = this.signedListing(dir);
    const recalled =
      signed === undefined ? undefined : this.options.digests?.cache?.recallDigest(dir, signed.signature);
    if (recalled !== undefined) {
      this.hold({ kind: "digest", path: dir, count: recalled.count, digest: recalled.digest });
      // Its subdirectories, pushed as a scan's entries are below (the first by name on top): the listing is
      // sorted by name already (listDirStats), so it is pushed from its end.
      const listing = signed!.listing;
      for (let i = listing.length - 1; i >= 0; i--) {
        const { name, stat } = listing[i]!;
        if (stat.kind === "dir" && listedChildProblem(dir, name) === null) this.stack.push(childOf(dir, name));
      }
      this.trim();
      return;
    }
    const node = this.list(dir, signed?.listing);
    if (dir === "") this.hold(manifestEntryOf(node ?? emptyDir(), ""));
    // A directory replaced or removed since its parent was listed: its entry stands as listed then.
    if (node === undefined) {
      this.trim();
      return;
    }
    const entries = listingEntries(dir, node.children);
    const digests = this.options.digests;
    if (digests !== undefined && entries.length > 0 && digests.fits(entries)) {
      const digest = listingDigest(node.children, digests.attributes);
      this.hold({ kind: "digest", path: dir, count: entries.length, digest });
      if (signed !== undefined) digests.cache?.recordDigest(dir, signed.signature, digest, entries.length);
    } else {
      for (const entry of entries) this.hold(entry);
    }
    for (let i = entries.length - 1; i >= 0; i--) if (entries[i]!.kind === "dir") this.stack.push(entries[i]!.path);
    this.trim();
  }

  /**
   * Directory `dir`'s listing and its signature for the digest cache (the listing is scanned when the
   * signature is new); undefined without a cache, for the root (its own entry is stated from a scan), or
   * when `dir` cannot be listed as a directory now (the scan then says what it is).
   */
  private signedListing(dir: string): { signature: string; listing: DirEntryStat[] } | undefined {
    const { fs, root, digests } = this.options;
    if (digests?.cache === undefined || dir === "" || !isMirrorFileSystem(fs)) return undefined;
    let listing: DirEntryStat[];
    try {
      listing = fs.listDirStats(pathUnder(root, dir));
    } catch {
      return undefined;
    }
    return { signature: listingSignature(digests.key, listing), listing };
  }

  private hold(entry: ManifestPageEntry): void {
    this.held.push(entry);
    this.heldDescribed += entriesDescribed(entry);
    this.listedWork += entriesDescribed(entry);
  }

  /**
   * One level of directory `dir` (a directory node whose children are listed), or undefined when it is none;
   * `listing` is its listing when read already.
   */
  private list(dir: string, listing?: DirEntryStat[]): DirNode | undefined {
    const scan = scanPath(
      {
        ...(listing === undefined ? {} : { listing: { path: dir, entries: listing } }),
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
    const node = scan.node ?? (dir === "" ? emptyDir() : undefined);
    return node?.kind === "dir" ? node : undefined;
  }

  private trim(): void {
    const drop = Math.min(this.held.length, this.floor - this.heldFrom);
    if (drop <= 0) return;
    for (let i = 0; i < drop; i++) this.heldDescribed -= entriesDescribed(this.held[i]!);
    this.held = this.held.slice(drop);
    this.heldFrom += drop;
  }
}
