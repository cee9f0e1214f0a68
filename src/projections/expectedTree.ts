import { hash } from "node:crypto";
import { ATTRIBUTE_KEYS, type AttributeKey, type Operation } from "../events/operation.js";
import { childOf, compareWalkOrder, parentOf as parentOfPath, segmentsOf } from "../events/paths.js";
import type { DigestEntry, ManifestEntry, ManifestPageEntry } from "../events/protocol.js";
import { attributesMatch, type DirNode, definedAttributes, emptyDir, nodeAt, type TreeNode } from "../events/tree.js";
import type { Timestamp } from "../fs/fileSystem.js";

/** A change to the expected tree: an operation the target confirmed, or a path whose state is now unknown. */
export type TreeChange = Operation | { type: "unknown"; path: string };

/**
 * Folds confirmed operations into the expected target tree: what the target holds, content hashes
 * included. Path copying: the directories a change passes through are copied once per fold (changed in
 * place until it ends, then frozen), everything else is shared; a change that changes nothing keeps the
 * tree as it was. (An immer `produce` per planned event copied the directory's children a second time and
 * walked the new nodes to freeze them: 100 ms of a 1,000-file burst's 300.)
 */
export function foldExpectedTree(tree: DirNode, changes: readonly TreeChange[]): DirNode {
  if (changes.length === 0) return tree;
  const fold = new TreeFold();
  let next = tree;
  for (const change of changes) next = fold.apply(next, change);
  fold.freeze();
  return next;
}

/** One fold's copies: the directories it made or copied, which it may change until it freezes them. */
export class TreeFold {
  private readonly open = new Set<DirNode>();

  /** The tree with `change` applied (the tree itself when it changes nothing). */
  apply(root: DirNode, change: TreeChange): DirNode {
    const segments = segmentsOf(change.path);
    const name = segments.pop();
    // The root itself: only ensureDir can name it (its metadata).
    if (name === undefined) return change.type === "ensureDir" ? this.withAttributes(root, change) : root;
    const at = (dir: DirNode, depth: number): DirNode => {
      if (depth === segments.length) return this.withChange(dir, name, change);
      const segment = segments[depth]!;
      const held = dir.children.get(segment);
      if (held?.kind !== "dir" && change.type === "remove") return dir; // nothing stands below a non-directory
      // A parent that is missing or no longer a directory is made one (an unknown change below a replaced
      // directory; `-i` folding a listing read whole below one whose listing came as a digest).
      const next = held?.kind === "dir" ? held : this.made(emptyDir());
      const changed = at(next, depth + 1);
      return changed === held ? dir : this.withChild(dir, segment, changed);
    };
    return at(root, 0);
  }

  /** The tree with the children of directory `dir` (which it holds) changed by `update`. */
  edit(root: DirNode, dir: string, update: (children: Map<string, TreeNode>) => void): DirNode {
    const segments = segmentsOf(dir);
    const at = (node: DirNode, depth: number): DirNode => {
      const owned = this.owned(node);
      if (depth === segments.length) update(owned.children);
      else {
        const name = segments[depth]!;
        owned.children.set(name, at(owned.children.get(name) as DirNode, depth + 1));
      }
      return owned;
    };
    return at(root, 0);
  }

  /** `node`, new to the tree, as this fold places it: a directory stays open to it, anything else is frozen. */
  placed(node: TreeNode): TreeNode {
    return node.kind === "dir" ? this.made(node) : frozenNode(node);
  }

  /** Freezes what this fold made, as the nodes it shares already are. */
  freeze(): void {
    for (const dir of this.open) frozenNode(dir);
  }

  private withChange(dir: DirNode, name: string, change: TreeChange): DirNode {
    switch (change.type) {
      case "ensureDir": {
        const held = dir.children.get(name);
        if (held?.kind !== "dir") return this.withChild(dir, name, this.made(emptyDir(change)));
        const changed = this.withAttributes(held, change);
        return changed === held ? dir : this.withChild(dir, name, changed);
      }
      case "writeFile":
      case "writeSymlink":
        return this.withChild(dir, name, frozenNode(nodeOf(change)));
      case "remove":
        return dir.children.has(name) ? this.withChild(dir, name, undefined) : dir;
      case "unknown":
        return this.withChild(dir, name, Object.freeze({ kind: "unknown" }));
    }
  }

  /** `dir` with its attributes set to those `change` states, or `dir` itself when it holds them already. */
  private withAttributes(dir: DirNode, change: Extract<Operation, { type: "ensureDir" }>): DirNode {
    const attributes = definedAttributes(change);
    if (attributesMatch(dir, attributes)) return dir;
    return Object.assign(this.owned(dir), attributes);
  }

  /** `dir` with the child `name` set to `child` (removed when undefined). */
  private withChild(dir: DirNode, name: string, child: TreeNode | undefined): DirNode {
    const owned = this.owned(dir);
    if (child === undefined) owned.children.delete(name);
    else owned.children.set(name, child);
    return owned;
  }

  /** `dir` when this fold made it, else its copy (made once). */
  private owned(dir: DirNode): DirNode {
    return this.open.has(dir) ? dir : this.made({ ...dir, children: new Map(dir.children) });
  }

  private made(dir: DirNode): DirNode {
    this.open.add(dir);
    return dir;
  }
}

/** The tree node an operation, or a manifest entry, states (a directory without its children). */
export function nodeOf(
  state: Exclude<Operation, { type: "remove" }> | Exclude<ManifestEntry, { kind: "unknown" }>,
): Exclude<TreeNode, { kind: "unknown" }> {
  const kind = "kind" in state ? state.kind : kindOfOperation[state.type];
  switch (kind) {
    case "dir":
      return emptyDir(state);
    case "file": {
      const file = state as { hash: string; size: number; linkTo?: string };
      return {
        kind: "file",
        hash: file.hash,
        size: file.size,
        ...(file.linkTo === undefined ? {} : { linkTo: file.linkTo }),
        ...definedAttributes(state),
      };
    }
    case "symlink": {
      const { mode: _mode, ...attributes } = definedAttributes(state);
      return { kind: "symlink", target: (state as { target: string }).target, ...attributes };
    }
  }
}

const kindOfOperation = { ensureDir: "dir", writeFile: "file", writeSymlink: "symlink" } as const;

/** The change stating what a manifest entry says stands at its path (a directory keeps its children). */
export function changeOfEntry(entry: ManifestEntry): TreeChange {
  switch (entry.kind) {
    case "dir": {
      const { kind: _kind, ...state } = entry;
      return { type: "ensureDir", ...state };
    }
    case "file": {
      const { kind: _kind, ...state } = entry;
      return { type: "writeFile", ...state };
    }
    case "symlink": {
      const { kind: _kind, ...state } = entry;
      return { type: "writeSymlink", ...state };
    }
    case "unknown":
      return { type: "unknown", path: entry.path };
  }
}

/** The tree a manifest describes (entries parents first; the root entry "" carries the root's metadata). */
export function treeFromManifest(entries: readonly ManifestPageEntry[]): DirNode {
  const builder = new ManifestTreeBuilder();
  builder.add(entries);
  return builder.tree;
}

/**
 * Builds the tree a manifest describes page by page, as the pages arrive, so a source never holds the
 * entries of the whole manifest besides the tree they make (they were twice the tree's size in memory).
 */
export class ManifestTreeBuilder {
  /** The tree so far: entries parents first, the root entry "" carries the root's metadata. */
  readonly tree: DirNode = emptyDir();
  /** Entries taken so far, kept or not: the offset of the next page. */
  received = 0;
  /** The directory the previous entry went into: entries come grouped by directory, so it is usually the next one's. */
  private lastParent: { path: string; node: DirNode } = { path: "", node: this.tree };

  /**
   * Adds one page of entries; those `keep` rejects (excluded paths) are counted but left out. A whole
   * manifest is asked for without digests: a digest in it is refused.
   */
  add(entries: readonly ManifestPageEntry[], keep: (entry: ManifestEntry) => boolean = () => true): void {
    for (const entry of entries) {
      this.received += 1;
      if (entry.kind === "digest") {
        throw new ManifestOrderError(`a digest for ${JSON.stringify(entry.path)} came in a manifest asked for whole`);
      }
      if (keep(entry)) this.place(entry);
    }
  }

  private place(entry: ManifestEntry): void {
    const segments = segmentsOf(entry.path);
    const name = segments.pop();
    if (name === undefined) {
      if (entry.kind === "dir") Object.assign(this.tree, definedAttributes(entry));
      return;
    }
    const parentPath = segments.join("/");
    let parent: TreeNode | undefined;
    if (parentPath === this.lastParent.path) parent = this.lastParent.node;
    else {
      parent = this.tree;
      for (const segment of segments) parent = parent?.kind === "dir" ? parent.children.get(segment) : undefined;
    }
    if (parent?.kind !== "dir") throw new Error(`manifest lists ${JSON.stringify(entry.path)} before its parent`);
    this.lastParent = { path: parentPath, node: parent };
    parent.children.set(name, entry.kind === "unknown" ? { kind: "unknown" } : nodeOf(entry));
  }
}

/**
 * The manifest of a tree (the inverse of treeFromManifest), in the order every manifest follows: the root,
 * then each directory's children together, by name, directories listed in walk order (`compareWalkOrder`),
 * as the target's ManifestWalk lists them. A source adopts listings in that order as its walk reaches them.
 */
export function manifestFromTree(root: DirNode): ManifestEntry[] {
  const entries: ManifestEntry[] = [manifestEntryOf(root, "")];
  const visit = (dir: DirNode, prefix: string): void => {
    const dirs: [DirNode, string][] = [];
    for (const name of [...dir.children.keys()].sort()) {
      const node = dir.children.get(name)!;
      const path = prefix === "" ? name : `${prefix}/${name}`;
      entries.push(manifestEntryOf(node, path));
      if (node.kind === "dir") dirs.push([node, path]);
    }
    for (const [node, path] of dirs) visit(node, path);
  };
  visit(root, "");
  return entries;
}

/** One directory's listing as a manifest gave it, or (asked for with digests) the digest standing for it. */
export interface Listing {
  dir: string;
  entries: ManifestEntry[];
  /** Until the listing is read whole (`fill`) or the source's own stands in (`standIn`): entries unknown. */
  digest?: DigestEntry;
  /** The source's own children of `dir`, standing for a listing whose digest they match (`standIn`). */
  own?: ReadonlyMap<string, TreeNode>;
}

/**
 * A manifest read page by page and handed out one directory listing at a time, in walk order, as a
 * whole-tree walk reaches each directory: the source never holds the target's whole tree at once.
 * Each listing is complete once an entry of a later directory (or the last page) has arrived; a digest
 * stands for a whole listing at once.
 */
export class ManifestListings {
  /** Entries taken so far: the offset of the next page. */
  received = 0;
  complete = false;
  /** The root's own entry, until taken. */
  root: ManifestEntry | undefined;
  /** Listings not yet taken, in walk order; the last one may still grow (unless it is a digest). */
  private readonly pending: Listing[] = [];
  /** The directory of the latest listing: each new one must come after it. */
  private latest: string | undefined;
  /** Whether the latest listing came as a digest (nothing more can join it). */
  private latestWhole = false;

  /** Adds one page. A manifest out of walk order (a broken or hostile target) is refused. */
  add(entries: readonly ManifestPageEntry[], complete: boolean): void {
    for (const entry of entries) {
      this.received += 1;
      if (entry.kind === "digest") {
        this.open(entry.path).digest = entry;
        this.latestWhole = true;
        continue;
      }
      if (entry.path === "") {
        if (this.received !== 1) throw new ManifestOrderError(`the root's entry came at position ${this.received}`);
        this.root = entry;
        continue;
      }
      const dir = parentOfPath(entry.path);
      if (dir !== this.latest) this.open(dir);
      else if (this.latestWhole)
        throw new ManifestOrderError(`${JSON.stringify(entry.path)} came after its directory's digest`);
      this.pending.at(-1)!.entries.push(entry);
    }
    this.complete = complete;
  }

  /** Starts the listing of `dir`, which must come after the latest in walk order. */
  private open(dir: string): Listing {
    if (this.latest !== undefined && compareWalkOrder(dir, this.latest) <= 0) {
      throw new ManifestOrderError(`${JSON.stringify(dir)} was listed after ${JSON.stringify(this.latest)}`);
    }
    this.latest = dir;
    this.latestWhole = false;
    const listing: Listing = { dir, entries: [] };
    this.pending.push(listing);
    return listing;
  }

  /** True when every listing up to `dir` (in walk order) has arrived whole. */
  readyFor(dir: string): boolean {
    if (this.complete || this.latest === undefined) return this.complete;
    return compareWalkOrder(this.latest, dir) > 0 || (this.latestWhole && this.latest === dir);
  }

  /** The listings not taken yet (the last may still grow). */
  queued(): readonly Readonly<Listing>[] {
    return this.pending;
  }

  /** Gives the digest listing of `dir` its entries, read whole; a listing not asked for is refused. */
  fill(dir: string, entries: ManifestEntry[]): void {
    const listing = this.digestListing(dir);
    const stray = entries.find((entry) => entry.path === "" || parentOfPath(entry.path) !== dir);
    if (stray !== undefined) {
      throw new ManifestOrderError(`the listing of ${JSON.stringify(dir)} holds ${JSON.stringify(stray.path)}`);
    }
    listing.entries = entries;
    delete listing.digest;
  }

  /** Lets `own` (the source's children of `dir`, which match its digest) stand for the listing of `dir`. */
  standIn(dir: string, own: ReadonlyMap<string, TreeNode>): void {
    const listing = this.digestListing(dir);
    listing.own = own;
    delete listing.digest;
  }

  /** The queued listing of `dir` that came as a digest; none is a listing nobody asked for. */
  private digestListing(dir: string): Listing {
    const listing = this.pending.find((l) => l.dir === dir && l.digest !== undefined);
    if (listing === undefined) throw new ManifestOrderError(`no digest of ${JSON.stringify(dir)} is queued`);
    return listing;
  }

  /** Takes the listings of the directories up to `dir` in walk order that have arrived whole. */
  takeUpTo(dir: string): Listing[] {
    let count = 0;
    while (count < this.pending.length && compareWalkOrder(this.pending[count]!.dir, dir) <= 0) {
      const last = count === this.pending.length - 1;
      if (last && !this.complete && !this.readyFor(this.pending[count]!.dir)) break;
      count++;
    }
    return this.pending.splice(0, count);
  }
}

/**
 * The digest of a directory's listing as a manifest asked for with digests states it: its children's names
 * and kinds, files' hashes and sizes, symlinks' targets, and the attributes among `keys`. Source and target
 * compute it alike (over what each holds): equal digests mean planning that directory against the target's
 * listing changes nothing there. Hard-link leaders are not in it (a source that states them reads listings whole).
 */
export function listingDigest(children: ReadonlyMap<string, TreeNode>, keys: readonly AttributeKey[]): string {
  const stated = ATTRIBUTE_KEYS.filter((key) => keys.includes(key));
  // Fields joined by NUL, which no name or symlink target holds; a child's kind fixes how many it has.
  const fields: string[] = [];
  for (const name of [...children.keys()].sort()) {
    const node = children.get(name)!;
    fields.push(name, node.kind);
    if (node.kind === "file") fields.push(node.hash, String(node.size));
    else if (node.kind === "symlink") fields.push(node.target);
    if (node.kind === "unknown") continue;
    for (const key of stated) {
      const value = (node as { [k in AttributeKey]?: number | Timestamp })[key];
      fields.push(value === undefined ? "-" : typeof value === "number" ? String(value) : `${value.sec}.${value.nsec}`);
    }
  }
  return hash("sha256", fields.join("\0"), "hex");
}

/** The entries of a directory's children (as a listing states them), by name. */
export function listingEntries(dir: string, children: ReadonlyMap<string, TreeNode>): ManifestEntry[] {
  return [...children.keys()].sort().map((name) => manifestEntryOf(children.get(name)!, childOf(dir, name)));
}

/**
 * Folds whole directory listings into the tree: each fills the children of its directory, if the tree
 * holds that directory; entries `keep` rejects are left out (the source's own children, standing in for
 * a listing, are taken as they are). Returns the new tree, the files and symlinks added (a directory comes
 * empty: its own listing fills it), and the nodes of the listings dropped because the tree no longer holds
 * their directory (planned away, or below an excluded one): what the target still holds there, or set aside
 * when it removed it.
 *
 * With `ownFilesLeftOut` (a one-shot walk, which forgets a directory's files once it is planned), the
 * source's own children place only their directories and unknown entries: their files and symlinks are
 * still returned as adopted (the target holds them) and their directories in `leftOut`, which the walk
 * then does not plan (planning the source's listing against itself changes nothing).
 *
 * One fold for them all: the directories on the way are copied once, not once per listing. With `fold`,
 * that one, left open (the caller freezes it once no further adoption follows), so successive calls
 * share their copies too.
 */
export function adoptListings(
  tree: DirNode,
  listings: readonly Pick<Listing, "dir" | "entries" | "own">[],
  options: { keep?: (entry: ManifestEntry) => boolean; ownFilesLeftOut?: boolean; fold?: TreeFold } = {},
): { tree: DirNode; adopted: TreeNode[]; dropped: TreeNode[]; leftOut: string[] } {
  const { keep = () => true, ownFilesLeftOut = false } = options;
  const adopted: TreeNode[] = [];
  const dropped: TreeNode[] = [];
  const leftOut: string[] = [];
  const fold = options.fold ?? new TreeFold();
  let next = tree;
  for (const listing of listings) {
    // [name, node, kept] for each child the listing states.
    const named: [string, TreeNode, boolean][] =
      listing.own === undefined
        ? listing.entries.map((entry) => [
            entry.path.slice(entry.path.lastIndexOf("/") + 1),
            entry.kind === "unknown" ? { kind: "unknown" } : nodeOf(entry),
            keep(entry),
          ])
        : [...listing.own].map(([name, node]) => [name, node.kind === "dir" ? emptyDir(node) : node, true]);
    if (nodeAt(next, listing.dir)?.kind !== "dir") {
      for (const [, node] of named) dropped.push(frozenNode(node));
      continue;
    }
    const leaveFiles = ownFilesLeftOut && listing.own !== undefined;
    if (leaveFiles) leftOut.push(listing.dir);
    next = fold.edit(next, listing.dir, (children) => {
      for (const [name, node, kept] of named) {
        if (!kept) continue;
        if (node.kind !== "dir") adopted.push(node);
        if (!leaveFiles || !isFileLike(node)) children.set(name, fold.placed(node));
      }
    });
  }
  if (options.fold === undefined) fold.freeze();
  return { tree: next, adopted, dropped, leftOut };
}

/** The tree without the files and symlinks directly in `dir` (its subdirectories, and unknown paths, stay). */
export function withoutFilesOf(tree: DirNode, dir: string): DirNode {
  const node = nodeAt(tree, dir);
  if (node?.kind !== "dir" || !someChild(node, isFileLike)) return tree;
  return withChildrenAt(tree, dir, (children) => {
    for (const [name, child] of children) if (isFileLike(child)) children.delete(name);
  });
}

/** A file or a symlink: what a one-shot walk forgets of a directory it planned. */
function isFileLike(node: TreeNode): boolean {
  return node.kind === "file" || node.kind === "symlink";
}

function someChild(dir: DirNode, test: (child: TreeNode) => boolean): boolean {
  for (const child of dir.children.values()) if (test(child)) return true;
  return false;
}

/** The tree with the children of directory `dir` (which it holds) changed by `update`, on a copy (see TreeFold). */
function withChildrenAt(tree: DirNode, dir: string, update: (children: Map<string, TreeNode>) => void): DirNode {
  const fold = new TreeFold();
  const next = fold.edit(tree, dir, update);
  fold.freeze();
  return next;
}

/** `node` frozen, with its mtime and (for a directory) its children map. */
function frozenNode<T extends TreeNode>(node: T): T {
  if ("mtime" in node && node.mtime !== undefined) Object.freeze(node.mtime);
  if (node.kind === "dir") Object.freeze(node.children);
  return Object.freeze(node);
}

/** A target's manifest that does not follow walk order cannot be adopted listing by listing. */
export class ManifestOrderError extends Error {
  override readonly name = "ManifestOrderError";
  constructor(detail: string) {
    super(`target's manifest is out of order: ${detail}`);
  }
}

/** The manifest entry of one node (a directory without its children). */
export function manifestEntryOf(node: TreeNode, path: string): ManifestEntry {
  switch (node.kind) {
    case "dir":
      return { kind: "dir", path, ...definedAttributes(node) };
    case "file":
      return {
        kind: "file",
        path,
        hash: node.hash,
        size: node.size,
        ...(node.linkTo === undefined ? {} : { linkTo: node.linkTo }),
        ...definedAttributes(node),
      };
    case "symlink":
      return { kind: "symlink", path, target: node.target, ...definedAttributes(node) };
    case "unknown":
      return { kind: "unknown", path };
  }
}
