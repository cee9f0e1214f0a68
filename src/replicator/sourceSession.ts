import { posix } from "node:path";
import { DEFAULT_LIMITS } from "../events/limits.js";
import { type AttributeKey, checkOperation, type DetectedBy, type Operation } from "../events/operation.js";
import { type LogEntry, type LoggedResult, OperationLog } from "../events/operationLog.js";
import { childOf, compareWalkOrder, isAtOrBelow, parentOf, segmentsOf } from "../events/paths.js";
import { operationOf, planChanges } from "../events/plan.js";
import {
  type ApplyEntry,
  type ApplyRequest,
  type ApplyResponse,
  type ApplyResult,
  type ChunksRequest,
  type HelloRequest,
  type ManifestRequest,
  type Piece,
  PROTOCOL_VERSION,
  type Response,
  type UploadRequest,
} from "../events/protocol.js";
import type { ContentIndex, DigestCache } from "../events/stateStore.js";
import { attributesMatch, type DirNode, dirPaths, emptyDir, nodeAt, type TreeNode } from "../events/tree.js";
import {
  type EntryStat,
  type FileSystem,
  type FileSystemEvent,
  isWithin,
  type MirrorFileSystem,
  pathUnder,
  type WatchCallback,
} from "../fs/fileSystem.js";
import {
  adoptListings,
  foldExpectedTree,
  listingDigest,
  ManifestListings,
  ManifestOrderError,
  ManifestTreeBuilder,
  nodeOf,
  TreeFold,
  withoutFilesOf,
} from "../projections/expectedTree.js";
import {
  type ChunkLists,
  type ContentBasis,
  type ContentBytes,
  ContentShipping,
  INLINE_MAX,
  PIECE_BYTES,
  PIECES_PER_UPLOAD,
  splitSince,
} from "./contentShipping.js";
import { LinkGroups } from "./linkGroups.js";
import {
  attributesOf,
  completeDeferred,
  isMirrorFileSystem,
  type Problem,
  type ReadContent,
  readInPieces,
  type ScanOptions,
  type ScanResult,
  STREAM_THRESHOLD,
  scanPath,
} from "./scan.js";
import { WatchedDirs } from "./watchedDirs.js";
import { type WireEntry, wireShares } from "./wireShares.js";

/** Totals of one source session, as `--stats`/`--json` report them. */
export interface SyncStats {
  filesScanned: number;
  filesWritten: number;
  filesDeleted: number;
  dirsCreated: number;
  dirsDeleted: number;
  /** Bytes written to target files. */
  bytesWritten: number;
  operationsLogged: number;
  /** How the shipped files' bytes travelled (literal, compressed, matched by deltas, reused). */
  content: ContentBytes;
  /** Open problems: per-path failures not (yet) resolved by a later success. */
  problems: Problem[];
}

/** How a source session reads, logs and watches. */
export interface SourceSessionOptions {
  fs: FileSystem;
  /** Absolute root of the source tree. */
  root: string;
  /** The operation log; a fresh in-memory one when not given. */
  log?: OperationLog;
  now?: () => number;
  index?: ContentIndex;
  /**
   * The digests of the source's own listings (see digestDiffers), each recorded with its listing's
   * signature: a listing that states as then has the same digest. Only where nothing else decides what a
   * listing holds: not with `isExcluded` (rules may change between runs), `hardLinks`, or an index that
   * trusts no stat (--checksum).
   */
  digestCache?: DigestCache;
  /** Chunk lists of content versions (persisted across runs by the CLI); in memory when not given. */
  chunkLists?: ChunkLists;
  isExcluded?: (path: string, isDir: boolean) => boolean;
  /** When given, every directory of the source tree is watched with this callback, and nothing else. */
  onWatchEvent?: WatchCallback;
  /** Called for every file a scan reads or checks, with its size (progress display). */
  onFileScanned?: (size: number) => void;
  /** Refuse to mirror an empty source root onto a non-empty target (B8: an unmounted source looks empty). */
  refuseEmptySource?: boolean;
  /** Content bytes per apply request before a new one starts (default 4 MiB). */
  maxRequestContentBytes?: number;
  /** Replicate owners and groups by numeric id (rsync -o/-g), when the target can set them (root). */
  preserveOwner?: boolean;
  preserveGroup?: boolean;
  /** Keep hard-link groups as links on the target (rsync -H). */
  hardLinks?: boolean;
  /**
   * A one-shot run (no watches): once a whole-tree walk has planned a directory, the expected tree keeps
   * its subdirectories but forgets its files (`forgetFilesOf`), so memory does not grow with the tree.
   * Ignored with `hardLinks` (other names of a group are looked up in the tree) and with watches.
   */
  oneShot?: boolean;
}

/** The target refused a whole request (position gap, stale epoch, ...): the session must be re-established. */
export class SessionRefusedError extends Error {
  override readonly name = "SessionRefusedError";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`target refused the request (${code}): ${message}`);
  }
}

/** The source root is gone: stop rather than propagate "delete everything" to the target. */
export class SourceRootMissingError extends Error {
  override readonly name = "SourceRootMissingError";
  constructor(readonly root: string) {
    super(`source root ${root} is missing or not a directory; refusing to mirror its absence`);
  }
}

/**
 * The source root is empty while the target holds entries: an unmounted or wiped source looks like
 * that. Refused rather than mirrored as "delete everything" (when `refuseEmptySource` is set).
 */
export class SourceRootEmptyError extends Error {
  override readonly name = "SourceRootEmptyError";
  constructor(
    readonly root: string,
    readonly targetEntries: number,
  ) {
    super(
      `source root ${root} is empty but the target holds ${targetEntries} entries; refusing to delete them all ` +
        "(an unmounted or wiped source looks like this; use --allow-empty-source if it is meant)",
    );
  }
}

/** What the session remembers of a logged operation until the target has answered for it. */
interface PendingEntry {
  beforeKind: TreeNode["kind"] | undefined;
  /** The file the target held at the path before (a delta's basis), if any. */
  basis: ContentBasis | undefined;
  needsContent: boolean;
  /** How its bytes travelled, once shipped. */
  content?: ContentBytes;
}

/** Content per apply request: large enough that one flush on the target covers many files, far below the frame limit. */
const DEFAULT_MAX_REQUEST_CONTENT = DEFAULT_LIMITS.sourceRequestContentBytes;
const MAX_ENTRIES_PER_REQUEST = DEFAULT_LIMITS.sourceOperationsPerRequest;
/** Logged operations a resuming session ships again at most; a target further behind starts a new epoch. */
const MAX_REPLAY = 10_000;

/**
 * The source's synchronous core, shared by the seed's `ReplicatorSource` and the CLI: scan what a hint
 * names, plan against the expected target tree, append to the log, fold the expected tree, keep
 * the watches exact, and turn logged entries into apply requests. It sends nothing itself.
 */
export class SourceSession {
  readonly log: OperationLog;
  readonly root: string;
  private readonly counts = {
    filesScanned: 0,
    filesWritten: 0,
    filesDeleted: 0,
    dirsCreated: 0,
    dirsDeleted: 0,
    bytesWritten: 0,
    operationsLogged: 0,
  };
  /** Open problems reading the source, by path; a clean rescan of the path resolves them. */
  private readonly readProblems = new Map<string, string>();
  /** Open problems applying on the target, by path; a later success at the path resolves them. */
  private readonly applyProblems = new Map<string, string>();
  private readonly shipping: ContentShipping;
  private uploadBuffers: Uint8Array[] | undefined;
  /** The expected tree (read and replaced through `expected`). */
  private expectedRoot: DirNode = emptyDir();
  /**
   * The fold successive adoptions share (see adoptListingsUpTo): each directory on the way is copied once
   * per walk instead of once per listing. Sealed (its copies frozen) before the tree changes otherwise or
   * is handed out, so no other tree ever shares a directory it may still change.
   */
  private adoption: TreeFold | undefined;
  /** The target's manifest being read, built into a tree page by page. */
  private manifest = new ManifestTreeBuilder();
  /** ...or, after `streamManifest`, handed out listing by listing as a whole-tree walk reaches each directory. */
  private listings: ManifestListings | undefined;
  /** Directories a streamed pass removed before their listings came (their content may be reused). */
  private removedUnlisted: string[] = [];
  /** Directories whose streamed digest differs from the source's listing (see digestDiffers). */
  private readonly digestsDiffering = new Set<string>();
  /** Adopted levels whose digests the source's own listing matched, their files left out (until planned). */
  private readonly matchedLevels = new Set<string>();
  /** Whether the opening hello started a new epoch (nothing to resume). */
  private openedNewEpoch = false;
  private readonly pending = new Map<number, PendingEntry>();
  /** Planned operations waiting for `logPlanned`. */
  private unlogged: { operation: Operation; detectedBy: DetectedBy; pending: PendingEntry }[] = [];
  /** The watched directories: the file system does not tell us what we watch. */
  private readonly watched = new WatchedDirs();
  /** Directory lstats taken in the current round of a watch batch, by relative path (see reuseDirectoryStats). */
  private batchDirectoryStats: Map<string, EntryStat | undefined> | undefined;
  private readonly now: () => number;
  /** The attributes plans compare and state: owners only when asked for and the target can set them (its hello says). */
  private stated: AttributeKey[] = ["mode", "mtime"];
  /** The source's hard-link groups: an edit through one name is an edit of every name. */
  private readonly links = new LinkGroups();
  /** Names being planned again because another name of their inode changed (guards against cycles). */
  private readonly replanning = new Set<string>();
  /** Scan options, made once per kind of scan (a walk scans every directory with the same ones). */
  private readonly scanOptionsBy: Partial<Record<"recursive" | "level" | "deferring", ScanOptions>> = {};

  constructor(private readonly options: SourceSessionOptions) {
    this.root = posix.normalize(options.root);
    this.log = options.log ?? new OperationLog();
    this.now = options.now ?? Date.now;
    this.shipping = new ContentShipping(options.fs, this.root, options.chunkLists);
  }

  /** Which ids scans observe (see `stated` for which ones plans state). */
  private get owners(): { uid: boolean; gid: boolean } {
    return { uid: this.options.preserveOwner ?? false, gid: this.options.preserveGroup ?? false };
  }

  /** Totals since the session started. */
  get stats(): SyncStats {
    return {
      ...this.counts,
      content: { ...this.shipping.totals },
      problems: [...this.readProblems, ...this.applyProblems].map(([path, reason]) => ({ path, reason })),
    };
  }

  /** Records a per-path problem (e.g. from the file system's watcher) until the path is fine again. */
  reportProblem(problem: Problem): void {
    this.readProblems.set(problem.path, problem.reason);
  }

  /** The expected target tree: what the target holds once every logged operation is applied. */
  expectedTree(): DirNode {
    this.sealAdoptions();
    return this.expected;
  }

  private get expected(): DirNode {
    return this.expectedRoot;
  }

  private set expected(tree: DirNode) {
    if (tree !== this.expectedRoot) this.sealAdoptions();
    this.expectedRoot = tree;
  }

  private sealAdoptions(): void {
    this.adoption?.freeze();
    this.adoption = undefined;
  }

  /** Starts a new epoch (continuity with the target cannot be proven) and returns the hello to send. */
  beginEpoch(reason: string, atLeast = 0): HelloRequest {
    const epoch = this.log.startEpoch(reason, this.now(), atLeast);
    this.listings = undefined;
    this.pending.clear();
    this.unlogged = [];
    return { type: "hello", version: PROTOCOL_VERSION, logId: this.log.logId, epoch };
  }

  /**
   * The hello that opens a session: it continues the log's current epoch when there is one (the target's
   * answer tells whether continuity holds, see `resume`), or starts the log's first epoch.
   */
  openingHello(): HelloRequest {
    const head = this.log.lastPosition();
    this.listings = undefined;
    this.openedNewEpoch = head.epoch === 0;
    if (this.openedNewEpoch) return this.beginEpoch("new log: first session");
    return { type: "hello", version: PROTOCOL_VERSION, logId: this.log.logId, epoch: head.epoch };
  }

  /**
   * Judges the answer to the opening hello. Continuity holds when the target follows this log's current
   * epoch at or before its head: the logged operations it has not applied are returned, to ship first.
   * Otherwise a new epoch starts, with the reason in the log, and its hello is returned to send.
   */
  resume(response: Response): { replay: LogEntry[] } | { hello: HelloRequest } {
    // A target on a later epoch of this log than the log itself (a damaged frame or state told it so) refuses
    // the hello as stale: a new epoch beyond it re-establishes from its manifest.
    if (response.type === "error" && response.code === "stale-epoch" && response.applied?.logId === this.log.logId) {
      const head = this.log.lastPosition();
      return {
        hello: this.beginEpoch(
          `continuity not proven: target is on epoch ${response.applied.epoch}, beyond the log's ${head.epoch}`,
          response.applied.epoch + 1,
        ),
      };
    }
    const { applied } = this.acceptHello(response);
    if (this.openedNewEpoch) return { replay: [] }; // a new epoch owes the target nothing
    const head = this.log.lastPosition();
    let reason: string | undefined;
    if (applied === null) reason = "target has no applied position";
    else if (applied.logId !== this.log.logId) reason = "target follows another log";
    else if (applied.epoch !== head.epoch) reason = `target is on epoch ${applied.epoch}, the log on ${head.epoch}`;
    else if (applied.seq > head.seq) reason = `target applied ${applied.seq}, beyond the log's head ${head.seq}`;
    else if (head.seq - applied.seq > MAX_REPLAY) reason = `target is ${head.seq - applied.seq} operations behind`;
    if (reason !== undefined) return { hello: this.beginEpoch(`continuity not proven: ${reason}`) };
    const replay = this.log.readAfter(head.epoch, applied?.seq ?? 0, MAX_REPLAY);
    // What these ask for is unknown now (the source may have moved on): whole content, verified on arrival.
    for (const entry of replay)
      this.pending.set(entry.position.seq, { beforeKind: undefined, basis: undefined, needsContent: true });
    return { replay };
  }

  /** Checks the target's hello answer and returns it. */
  acceptHello(response: Response): Extract<Response, { type: "hello" }> {
    const hello = this.expectType(response, "hello");
    if (hello.version !== PROTOCOL_VERSION) {
      throw new SessionRefusedError("version-mismatch", `target speaks ${hello.version}, we speak ${PROTOCOL_VERSION}`);
    }
    this.stated = [
      ...(this.options.preserveOwner && hello.canSetOwner ? (["uid"] as const) : []),
      ...(this.options.preserveGroup && hello.canSetOwner ? (["gid"] as const) : []),
      "mode",
      "mtime",
    ];
    return hello;
  }

  /** Folds replayed operations into the expected tree (after the manifest) so planning builds on them. */
  adoptReplay(entries: readonly LogEntry[]): void {
    this.expected = foldExpectedTree(
      this.expected,
      entries.map((e) => e.operation),
    );
  }

  /** The request for the next page of the target's manifest. */
  manifestRequest(): ManifestRequest {
    const listings = this.listings;
    if (listings === undefined) return { type: "manifest", offset: this.manifest.received };
    // Hard-link leaders are not in digests: a source that states them reads listings whole.
    if (this.options.hardLinks) return { type: "manifest", offset: listings.received };
    return { type: "manifest", offset: listings.received, digests: { attributes: this.stated } };
  }

  /**
   * Reads the target's manifest listing by listing from now on: a whole-tree walk adopts each directory's
   * listing as it reaches it (`manifestReadyFor`, `adoptListingsUpTo`), so neither the manifest nor,
   * with `oneShot`, the expected tree is ever held whole. The expected tree starts empty. Listings come as
   * digests where the target can (see `listingsToRead`).
   */
  streamManifest(): void {
    this.listings = new ManifestListings();
    this.removedUnlisted = [];
    this.digestsDiffering.clear();
    this.matchedLevels.clear();
    this.manifest = new ManifestTreeBuilder();
    this.expected = emptyDir();
    this.shipping.resetTarget();
  }

  /** Ends a streamed manifest (the walk is over): listings not taken are dropped, later manifests are read whole. */
  endManifestStream(): void {
    this.listings = undefined;
    this.matchedLevels.clear();
  }

  /**
   * How far (walk order) the streamed manifest must be read before planned writes ship, or undefined:
   * past every directory the pass removed before its listing came (one renamed to a name the walk
   * reaches first). The target sets removed files aside, so the renamed ones reuse them instead of
   * travelling again; what their listings say is counted here. Listings read meanwhile stay queued.
   */
  manifestNeededBeforeShipping(): string | undefined {
    const listings = this.listings;
    if (listings === undefined || this.removedUnlisted.length === 0) return undefined;
    const removed = this.removedUnlisted;
    for (const listing of listings.queued()) {
      if (!removed.some((dir) => isAtOrBelow(dir, listing.dir))) continue;
      for (const entry of listing.entries) if (entry.kind === "file") this.shipping.countHeld(nodeOf(entry), 0, true);
    }
    // Past all of a directory's subtree: after its last possible descendant.
    const pastSubtree = (dir: string) => `${dir}/\uffff`;
    this.removedUnlisted = removed.filter((dir) => !listings.readyFor(pastSubtree(dir)));
    let last: string | undefined;
    for (const dir of this.removedUnlisted) if (last === undefined || compareWalkOrder(dir, last) > 0) last = dir;
    return last === undefined ? undefined : pastSubtree(last);
  }

  /**
   * Compares the digest the target stated for the listing of `dir`, if it came, with the digest of `scan`
   * (the source's own listing of it): equal, the source's listing stands for the target's (planning the
   * directory changes nothing there). True when they differ: the listing must be read whole (a `listing`
   * request, see `acceptListing`). False too while no digest of `dir` is queued.
   */
  digestDiffers(dir: string, scan: ScanResult): boolean {
    const listings = this.listings;
    if (listings === undefined) return false;
    if (this.digestsDiffering.has(dir)) return true;
    const digest = listings.queued().find((listing) => listing.dir === dir)?.digest;
    if (digest === undefined) return false;
    // Files left unread are not in the source's listing yet: it cannot stand in for the target's.
    const own = scan.node?.kind === "dir" && scan.deferred.length === 0 ? scan.node.children : undefined;
    if (own !== undefined && own.size === digest.count && this.ownDigest(dir, scan, own) === digest.digest) {
      listings.standIn(dir, own);
      return false;
    }
    this.digestsDiffering.add(dir);
    return true;
  }

  /**
   * The digest of the source's own listing of `dir` (its children `own` as `scan` found them): recalled when
   * the listing has the signature it had when recorded (the stats the content index trusts, and the
   * attributes stated), else computed and recorded. A scan with problems in `dir` is not recorded.
   */
  private ownDigest(dir: string, scan: ScanResult, own: ReadonlyMap<string, TreeNode>): string {
    const cache = this.options.digestCache;
    const listed = scan.signatures.get(dir);
    if (
      cache === undefined ||
      listed === undefined ||
      this.options.isExcluded !== undefined ||
      this.options.hardLinks
    ) {
      return listingDigest(own, this.stated);
    }
    // What is stated is known from the hello on, which a scan may precede: keyed here, not in the scan.
    const signature = `${listed};${this.stated.join()}`;
    const recalled = cache.recallDigest(dir, signature);
    if (recalled !== undefined && recalled.count === own.size) return recalled.digest;
    const digest = listingDigest(own, this.stated);
    if (!scan.problems.some((problem) => isAtOrBelow(dir, problem.path))) {
      cache.recordDigest(dir, signature, digest, own.size);
    }
    return digest;
  }

  /**
   * The directories whose listings came as digests and must be read whole before the listings up to `dir`
   * (walk order) are adopted: those of directories the expected tree holds (`dir` itself when its digest
   * differs, see `digestDiffers`), and of directories the pass removed or below them (their files may be
   * reused, see manifestNeededBeforeShipping), without `dir` too. Other digests are of directories the
   * expected tree no longer holds, dropped unread.
   */
  listingsToRead(dir?: string): string[] {
    const listings = this.listings;
    // Without `dir`, only the pass's removals make a digest worth reading (asked before every shipment).
    if (listings === undefined || (dir === undefined && this.removedUnlisted.length === 0)) return [];
    const read: string[] = [];
    for (const listing of listings.queued()) {
      if (listing.digest === undefined) continue;
      if (dir !== undefined && compareWalkOrder(listing.dir, dir) > 0) break;
      const removed = this.removedUnlisted.some((removedDir) => isAtOrBelow(removedDir, listing.dir));
      if (removed || (dir !== undefined && nodeAt(this.expected, listing.dir)?.kind === "dir")) read.push(listing.dir);
    }
    return read;
  }

  /** Takes the listing of `dir` read whole (the answer to a `listing` request) in place of its digest. */
  acceptListing(dir: string, response: Response): void {
    const listing = this.expectType(response, "listing");
    try {
      if (listing.dir !== dir)
        throw new ManifestOrderError(`asked for ${JSON.stringify(dir)}, got ${JSON.stringify(listing.dir)}`);
      this.listings?.fill(dir, listing.entries);
      this.digestsDiffering.delete(dir);
    } catch (error) {
      if (error instanceof ManifestOrderError) throw new SessionRefusedError("invalid-request", error.message);
      throw error;
    }
  }

  /** True when the listings up to `dir` (walk order) have arrived, or the manifest is not streamed. */
  manifestReadyFor(dir: string): boolean {
    return this.listings?.readyFor(dir) ?? true;
  }

  /**
   * Folds the listings of the directories up to `dir` (walk order) into the expected tree, those of
   * directories it still holds (one the walk planned away, or that the source excludes, is dropped).
   */
  adoptListingsUpTo(dir: string): void {
    const listings = this.listings;
    if (listings === undefined) return;
    const root = listings.root;
    if (root !== undefined && root.kind === "dir") {
      listings.root = undefined;
      this.expected = { ...nodeOf(root), children: this.expected.children } as DirNode;
    }
    const taken = listings.takeUpTo(dir);
    if (taken.length === 0) return;
    const isExcluded = this.options.isExcluded;
    this.adoption ??= new TreeFold();
    const { tree, adopted, dropped, leftOut } = adoptListings(this.expected, taken, {
      keep: isExcluded === undefined ? undefined : (e) => !isExcludedPath(isExcluded, e.path, e.kind === "dir"),
      ownFilesLeftOut: this.forgetsPlannedFiles,
      fold: this.adoption,
    });
    this.expectedRoot = tree; // not through `expected`: the fold stays open for the next adoption
    for (const dir of leftOut) this.matchedLevels.add(dir);
    for (const child of adopted) this.shipping.countHeld(child, 1);
    // A directory the walk removed before its listing came (a renamed one): the target set its files
    // aside for reuse, as it does with every removal, so they are not sent again under the new name.
    for (const child of dropped) this.shipping.countHeld(child, 0, true);
  }

  /**
   * With `oneShot`, forgets the files and symlinks of a directory the walk has planned (its
   * subdirectories stay: later plans start from them); a path planned again later (a retry) is then
   * written whole, as if the target lacked it.
   */
  forgetFilesOf(dir: string): void {
    if (this.forgetsPlannedFiles) this.expected = withoutFilesOf(this.expected, dir);
  }

  private get forgetsPlannedFiles(): boolean {
    return this.options.oneShot === true && !this.options.hardLinks && this.options.onWatchEvent === undefined;
  }

  /**
   * Takes one page of the target's manifest; on the last page the manifest becomes the expected tree
   * (excluded paths left out: they are never touched). Returns true once the manifest is complete.
   * After `streamManifest` pages are only queued, for `adoptListingsUpTo`.
   */
  acceptManifest(response: Response): boolean {
    const page = this.expectType(response, "manifest");
    if (this.listings !== undefined) {
      try {
        this.listings.add(page.entries, page.complete);
      } catch (error) {
        if (error instanceof ManifestOrderError) throw new SessionRefusedError("invalid-request", error.message);
        throw error;
      }
      return page.complete;
    }
    const isExcluded = this.options.isExcluded;
    // Each page goes into the tree as it arrives: the manifest's entries are never all held at once.
    if (isExcluded === undefined) this.manifest.add(page.entries);
    else this.manifest.add(page.entries, (e) => !isExcludedPath(isExcluded, e.path, e.kind === "dir"));
    if (!page.complete) return false;
    this.expected = this.manifest.tree;
    this.manifest = new ManifestTreeBuilder();
    this.shipping.resetTarget();
    this.shipping.countHeld(this.expected, 1);
    return true;
  }

  /** Plans the change a watch event hints at; events outside the root are ignored. */
  planEvent(event: FileSystemEvent, detectedBy: DetectedBy = "watch"): LogEntry[] {
    this.planEventUnlogged(event, detectedBy);
    return this.logPlanned();
  }

  /** Like `planEvent`, but what it plans waits for `logPlanned` (see `planUnlogged`). */
  planEventUnlogged(event: FileSystemEvent, detectedBy: DetectedBy = "watch"): void {
    const absolute = posix.normalize(event.path);
    if (!isWithin(this.root, absolute)) return;
    // Handles held across a batch's turns may be of a directory since replaced or moved at this path (whose
    // replacement is this event): listed through them, its new entries would be missed, or another's seen.
    const { fs } = this.options;
    if (isMirrorFileSystem(fs)) fs.forgetHandlesAt(absolute);
    this.planUnlogged(this.planRootFor(posix.relative(this.root, absolute)), detectedBy);
  }

  /**
   * Re-reads relative `path` (recursively for a directory), logs the operations that make the target
   * match it, folds them into the expected tree and keeps the watches exact. Returns the new entries.
   */
  planPath(path: string, detectedBy: DetectedBy, recursive = true): LogEntry[] {
    this.planUnlogged(path, detectedBy, recursive);
    return this.logPlanned();
  }

  /**
   * Like `planPath`, but the operations wait in memory until `logPlanned` appends them all in one
   * transaction (a walk of many directories costs one durable commit per batch, not per directory).
   * The expected tree and the watches are updated at once, so the next plan builds on this one.
   */
  planUnlogged(path: string, detectedBy: DetectedBy, recursive = true): void {
    this.planScanned(path, this.scan(path, recursive), detectedBy, recursive);
  }

  /**
   * Keeps the source's directory handles from one directory to the next until the returned function is
   * called (a whole-tree walk: each directory opens through its parent's handle, see holdHandles).
   */
  holdHandles(): () => void {
    const { fs } = this.options;
    return isMirrorFileSystem(fs) ? fs.holdHandles() : () => {};
  }

  /**
   * Until the returned function is called (one round of a watch batch), a directory's lstat is taken once,
   * not once or twice per file planned in it: a burst's files share a few directories. Sound because a
   * change made to a directory after its stat raises a hint of its own, planned in a later round.
   */
  reuseDirectoryStats(): () => void {
    const stats = new Map<string, EntryStat | undefined>();
    this.batchDirectoryStats = stats;
    return () => {
      if (this.batchDirectoryStats === stats) this.batchDirectoryStats = undefined;
    };
  }

  /** The lstat of relative `path` (undefined where nothing stands), once per round (see reuseDirectoryStats). */
  private directoryStat(fs: MirrorFileSystem, path: string): EntryStat | undefined {
    const stats = this.batchDirectoryStats;
    if (stats?.has(path)) return stats.get(path);
    const stat = fs.lstatIfExists(this.absolute(path));
    stats?.set(path, stat);
    return stat;
  }

  /**
   * Reads relative `path` (recursively, or one directory level) without planning anything yet. A level read
   * with `deferLargeFiles` leaves its large files unknown so far unread (see readDeferred).
   */
  scan(path: string, recursive: boolean, listed?: EntryStat, deferLargeFiles = false): ScanResult {
    this.links.forgetScanned(path, recursive);
    const scan = scanPath(this.scanOptions(recursive, deferLargeFiles && !recursive), path, recursive, listed);
    if (path === "" && scan.node?.kind !== "dir") throw new SourceRootMissingError(this.root);
    for (const p of [...this.readProblems.keys()]) if (isAtOrBelow(path, p)) this.readProblems.delete(p);
    this.keepScanned(scan, scan.node);
    return scan;
  }

  /**
   * Takes in what a scan read: its problems from the `problemsFrom`-th on, its chunk lists from the
   * `chunksFrom`-th on (each recorded once: the state file writes what is set), and the files of `node`.
   */
  private keepScanned(scan: ScanResult, node: TreeNode | undefined, problemsFrom = 0, chunksFrom = 0): void {
    for (const problem of scan.problems.slice(problemsFrom)) this.readProblems.set(problem.path, problem.reason);
    this.counts.filesScanned += countFiles(node);
    let index = 0;
    for (const [hash, chunks] of scan.chunks) if (index++ >= chunksFrom) this.shipping.chunkLists.set(hash, chunks);
  }

  /** The options of a scan, recursive or of one level (leaving large files unread with `deferLargeFiles`). */
  private scanOptions(recursive: boolean, deferLargeFiles = false): ScanOptions {
    const key = recursive ? "recursive" : deferLargeFiles ? "deferring" : "level";
    let options = this.scanOptionsBy[key];
    if (options === undefined) {
      options = this.newScanOptions(recursive);
      if (deferLargeFiles) options.deferFilesOver = STREAM_THRESHOLD;
      this.scanOptionsBy[key] = options;
    }
    return options;
  }

  private newScanOptions(recursive: boolean): ScanOptions {
    return {
      ...this.options,
      root: this.root,
      // A directory is watched before it is listed: a change made while it is read still raises an event.
      onDirectory: (dir, ino) => this.watch(dir, ino),
      // Scans may run before the hello (a walk starts while the target answers): they observe what the
      // options ask for, and plans state only what the target can set.
      owners: this.owners,
      // A walk's levels, whose digests are compared (see ownDigest).
      ...(this.options.digestCache !== undefined && !recursive ? { signListings: "source" } : {}),
      onLinkedFile: (file, inode) => {
        const leader = this.links.add(file, inode);
        return this.options.hardLinks ? leader : undefined;
      },
    };
  }

  /**
   * Reads the files a level's scan left unread (see `scan`), once the target's listing of the level is
   * adopted. One the target cannot hold yet (no file at its path to be a delta's basis, no content of its
   * size anywhere) is uploaded while it is read: the uploads are yielded to be sent as they come, and its
   * write, planned with the level, names them (ContentShipping.uploadAhead). Others are read at once.
   * The caller sends what is planned before, so the directories above an upload exist when it arrives. With
   * `reuseBuffers` an upload's pieces are read into the same few buffers (PIECES_PER_UPLOAD) in turn: the
   * caller must encode each upload before it asks for the next.
   */
  *readDeferred(scan: ScanResult, reuseBuffers = false): Generator<UploadRequest, void> {
    const fs = this.options.fs;
    for (const file of scan.deferred) {
      let read: ReadContent | undefined;
      const basis = nodeAt(this.expected, file.path);
      if (isMirrorFileSystem(fs) && basis?.kind !== "file" && !this.shipping.mayHoldSize(file.stat.size)) {
        const scratch = reuseBuffers ? this.uploadScratch() : undefined;
        const pieces = readInPieces(fs, this.absolute(file.path), file.stat.size, PIECE_BYTES, scratch);
        try {
          read = yield* this.shipping.uploadAhead(file.path, pieces);
        } catch {
          read = undefined; // read again below, as a scan reads: a problem is reported there
        }
      }
      const [problems, chunks] = [scan.problems.length, scan.chunks.size];
      const node = completeDeferred(this.scanOptions(false), scan, file, read);
      this.keepScanned(scan, node, problems, chunks);
    }
    scan.deferred = [];
  }

  /** The buffers uploads are read into when they may be reused (see readDeferred), made by the first. */
  private uploadScratch(): Uint8Array[] {
    this.uploadBuffers ??= Array.from({ length: PIECES_PER_UPLOAD }, () => new Uint8Array(PIECE_BYTES));
    return this.uploadBuffers;
  }

  /** Plans what an earlier `scan` of `path` found (see planUnlogged). */
  planScanned(path: string, scan: ScanResult, detectedBy: DetectedBy, recursive: boolean): void {
    if (path === "" && this.options.refuseEmptySource && scan.node?.kind === "dir" && scan.node.children.size === 0) {
      const held = this.expected.children.size;
      if (held > 0) throw new SourceRootEmptyError(this.root, held);
    }
    // A hard link's leader outside this scan must hold the new content before a link to it is stated.
    if (this.options.hardLinks) {
      for (const { inode, hash } of scan.linked) {
        const leader = this.links.leaderOf(inode);
        if (leader === undefined || isAtOrBelow(path, leader)) continue;
        const held = nodeAt(this.expected, leader);
        if (held?.kind !== "file" || held.hash !== hash) this.replanLinked(leader, detectedBy);
      }
    }
    // A level whose listing the source's own stood in for, adopted without its files (see adoptListingsUpTo).
    const matched = !recursive && this.matchedLevels.delete(path);
    const planned = matched
      ? []
      : planChanges(nodeAt(this.expected, path), scan.node, path, { recursive, attributes: this.stated });
    if (path !== "" && planned.length > 0) planned.push(...this.parentMetadataChange(path));
    const operations = this.valid(planned);
    for (const operation of operations) {
      const pending = this.pendingFor(operation);
      // A directory removed before its listing came: its files are set aside by the target (see manifestNeededBeforeShipping).
      if (this.listings !== undefined && pending.beforeKind === "dir" && operation.type !== "ensureDir")
        this.removedUnlisted.push(operation.path);
      this.unlogged.push({ operation, detectedBy, pending });
      const kept = pending.needsContent ? scan.contents.get(operation.path) : undefined;
      if (kept !== undefined) this.shipping.keepContent(operation.path, kept);
    }
    this.expected = foldExpectedTree(this.expected, operations);
    this.updateWatches(path, scan.node, recursive);
    this.replanOtherNames(path, scan, detectedBy);
  }

  /**
   * The operations the log can hold; one it cannot (a value out of the protocol's range, such as an mtime
   * beyond year 30,000) becomes a one-line problem for its path, and the others go on.
   */
  private valid(operations: Operation[]): Operation[] {
    return operations.filter((operation) => {
      const parsed = checkOperation(operation);
      if (parsed.success) return true;
      const issue = parsed.error.issues[0];
      const field = issue === undefined || issue.path.length === 0 ? "" : `${issue.path.join(".")}: `;
      this.readProblems.set(operation.path, `cannot be replicated: ${field}${issue?.message ?? "invalid"}`);
      return false;
    });
  }

  /**
   * A change of an entry changes its directory's mtime: when the directory's metadata on the source no
   * longer matches what the target is expected to hold, state it again (after the entry's operations, so
   * the target sets it once they are in).
   */
  private parentMetadataChange(path: string): Operation[] {
    const { fs } = this.options;
    const parent = parentOf(path);
    const expected = nodeAt(this.expected, parent);
    if (!isMirrorFileSystem(fs) || expected?.kind !== "dir") return [];
    const stat = this.directoryStat(fs, parent);
    if (stat?.kind !== "dir") return [];
    const observed = attributesOf(stat, { owners: this.owners });
    return attributesMatch(expected, observed, this.stated)
      ? []
      : [operationOf(parent, emptyDir(observed), this.stated)];
  }

  /**
   * The other names of the hard-linked files a scan of `path` read hold the same (maybe new) content, and
   * with --hard-links may have a new leader: state those that the expected tree does not show so.
   */
  private replanOtherNames(path: string, scan: ScanResult, detectedBy: DetectedBy): void {
    for (const { inode, hash, attributes } of scan.linked) {
      const leader = this.links.leaderOf(inode);
      for (const name of this.links.namesOf(inode)) {
        if (isAtOrBelow(path, name)) continue;
        const held = nodeAt(this.expected, name);
        const linkTo = this.options.hardLinks && name !== leader ? leader : undefined;
        const stale =
          held?.kind !== "file" ||
          held.hash !== hash ||
          !attributesMatch(held, attributes, this.stated) ||
          (this.options.hardLinks && held.linkTo !== linkTo);
        if (stale) {
          this.replanLinked(name, detectedBy);
        }
      }
    }
  }

  private replanLinked(name: string, detectedBy: DetectedBy): void {
    if (this.replanning.has(name)) return;
    this.replanning.add(name);
    try {
      this.planUnlogged(name, detectedBy, false);
    } finally {
      this.replanning.delete(name);
    }
  }

  /** Number of planned operations not yet logged, and the file bytes they will ship. */
  unloggedSize(): { operations: number; contentBytes: number } {
    let contentBytes = 0;
    for (const { operation, pending } of this.unlogged) {
      if (operation.type === "writeFile" && pending.needsContent) contentBytes += operation.size;
    }
    return { operations: this.unlogged.length, contentBytes };
  }

  /** Appends every planned operation to the log in one transaction and returns the entries to ship. */
  logPlanned(): LogEntry[] {
    const planned = this.unlogged;
    this.unlogged = [];
    if (planned.length === 0) return [];
    const entries = this.log.append(planned, this.now());
    entries.forEach((entry, i) => {
      this.pending.set(entry.position.seq, planned[i]!.pending);
    });
    this.counts.operationsLogged += entries.length;
    return entries;
  }

  /**
   * Groups entries into apply requests, attaching the bytes of every file the target lacks. Lazy: each
   * request's content is read only when the caller takes it, so memory holds a few requests, not the tree.
   */
  *requestsFor(entries: readonly LogEntry[]): Generator<ApplyRequest | UploadRequest> {
    const maxBytes = this.options.maxRequestContentBytes ?? DEFAULT_MAX_REQUEST_CONTENT;
    this.shipping.discardPack();
    let batch: ApplyEntry[] = [];
    let batchBytes = 0;
    for (const entry of entries) {
      const { operation } = entry;
      const pending = this.pending.get(entry.position.seq);
      const needsContent = operation.type === "writeFile" && pending?.needsContent !== false;
      // Decided before shipping: a shipped small file already sits in the next request's pack.
      const atMost = needsContent ? Math.min(operation.size, maxBytes) : 0;
      if (batch.length > 0 && (batchBytes + atMost > maxBytes || batch.length >= MAX_ENTRIES_PER_REQUEST)) {
        yield this.applyRequest(batch);
        batch = [];
        batchBytes = 0;
      }
      // An upload is staged beside its final name before the apply naming it arrives: a directory this
      // batch creates above it must be applied first, or the upload finds no place to go.
      if (
        operation.type === "writeFile" &&
        needsContent &&
        operation.size > INLINE_MAX &&
        batch.some((b) => b.operation.type === "ensureDir" && isAtOrBelow(b.operation.path, operation.path))
      ) {
        yield this.applyRequest(batch);
        batch = [];
        batchBytes = 0;
      }
      let shipped: ApplyEntry = { seq: entry.position.seq, operation };
      if (operation.type === "writeFile" && needsContent) {
        const before = { ...this.shipping.totals };
        // Large files stream ahead of the request that names them, as uploads.
        shipped = yield* this.shipping.ship(entry.position.seq, operation, pending?.basis);
        if (pending !== undefined) pending.content = splitSince(before, this.shipping.totals);
      }
      batch.push(shipped);
      // Counted as the target decodes it (its limit maxDecodedRequestBytes), not as it travels: a thousand
      // well-compressed files are small on the wire and large once decoded. An upload's bytes went ahead
      // in their own requests but still end a batch, so open uploads stay few (limit maxOpenUploads).
      batchBytes += shipped.content?.kind === "upload" ? maxBytes : decodedSize(shipped);
    }
    if (batch.length > 0) yield this.applyRequest(batch);
  }

  /**
   * The one `chunks` request these entries need before they can ship as deltas (files the target held
   * before this source read them), or undefined. The answer goes to `acceptChunks`.
   */
  chunksRequestFor(entries: readonly LogEntry[]): ChunksRequest | undefined {
    const paths: string[] = [];
    for (const { operation, position } of entries) {
      const pending = this.pending.get(position.seq);
      if (operation.type === "writeFile" && this.shipping.needsBasisChunks(operation, pending?.basis)) {
        paths.push(operation.path);
      }
    }
    return paths.length === 0 ? undefined : { type: "chunks", paths };
  }

  /** Takes the target's chunk lists (kept by content hash; a list for a version other than expected is harmless). */
  acceptChunks(response: Response): void {
    for (const file of this.expectType(response, "chunks").files) this.shipping.chunkLists.set(file.hash, file.chunks);
  }

  private applyRequest(entries: ApplyEntry[]): ApplyRequest {
    const epoch = this.log.lastPosition().epoch;
    const request: ApplyRequest = { type: "apply", logId: this.log.logId, epoch, entries };
    // Shipped before the log reached the disk (OperationLog's deferDurability): the target is told how far it has.
    const durable = this.log.durablePosition();
    if (durable.epoch !== epoch || durable.seq < entries.at(-1)!.seq) {
      request.logDurableSeq = durable.epoch === epoch ? durable.seq : 0;
    }
    const packed = this.shipping.takePack();
    if (packed === undefined) return request;
    request.pack = packed.pack;
    // Each packed file's share of the pack on the wire, for the per-operation accounting.
    for (const entry of entries) {
      const pending = this.pending.get(entry.seq);
      if (entry.content?.kind !== "packed" || pending === undefined) continue;
      const wire = Math.round(entry.content.length * packed.wireShare);
      pending.content = {
        literal: packed.pack.encoding === "raw" ? wire : 0,
        compressed: packed.pack.encoding === "zstd" ? wire : 0,
        matched: 0,
        reused: 0,
      };
    }
    return request;
  }

  /**
   * Records the target's answer to `request`: results go to the log, totals to the stats, and a failed
   * path becomes unknown in the expected tree. Returns the paths to plan again (the target lacked
   * content we assumed it had, or the source changed while we read it).
   */
  settle(request: ApplyRequest | UploadRequest, response: Response, wireBytes = 0): string[] {
    if (request.type === "upload") {
      // A failed upload fails the write that names it; that result is what gets settled.
      this.expectType(response, "uploaded");
      return [];
    }
    const applied: ApplyResponse = this.expectType(response, "applied");
    const operations = new Map(request.entries.map((e) => [e.seq, e.operation]));
    const appliedAt = this.now();
    const shares = wireShares(
      request.entries.map((e) => this.entryWire(e)),
      wireBytes,
    );
    const wireOf = new Map(request.entries.map((e, i) => [e.seq, shares[i]!]));
    const logged: LoggedResult[] = [];
    const unknown: { type: "unknown"; path: string }[] = [];
    const retry: string[] = [];
    for (const result of applied.results) {
      const operation = operations.get(result.seq);
      if (operation === undefined) continue;
      const pending = this.pending.get(result.seq);
      this.pending.delete(result.seq);
      logged.push({
        position: { epoch: request.epoch, seq: result.seq },
        outcome: result.outcome,
        ...(result.reason === undefined ? {} : { reason: result.reason }),
        wireBytes: wireOf.get(result.seq) ?? 0,
        bytesWritten: result.bytesWritten,
        appliedAt,
        ...(pending?.content === undefined ? {} : { content: pending.content }),
      });
      if (result.outcome === "failed") {
        unknown.push({ type: "unknown", path: operation.path });
        this.applyProblems.set(operation.path, result.reason ?? "apply failed");
        if (isDrift(result)) {
          // The target lacked what we assumed (content, basis) or the file changed while we read it:
          // send those bytes in full next time, and plan the path again.
          if (operation.type === "writeFile") this.shipping.markMissing(operation.hash);
          // The hash we stated may be the index's mistake, not the target's: the next read hashes the file.
          this.options.index?.delete(operation.path);
          if (pending?.basis !== undefined) this.shipping.markMissing(pending.basis.hash);
          retry.push(operation.path);
        }
        continue;
      }
      // Success at a path settles what failed there before (and below it: a removal or replacement).
      for (const path of [...this.applyProblems.keys()])
        if (isAtOrBelow(operation.path, path)) this.applyProblems.delete(path);
      if (operation.type === "writeFile") {
        this.shipping.countHeld({ kind: "file", hash: operation.hash, size: operation.size }, 1);
      }
      if (result.outcome === "applied") this.count(operation, pending, result.wroteFile, result.bytesWritten);
    }
    this.log.recordResults(logged);
    this.expected = foldExpectedTree(this.expected, unknown);
    return retry;
  }

  /** What an entry's content put on the wire, for `wireShares` (before `settle` forgets its pending entry). */
  private entryWire(entry: ApplyEntry): WireEntry {
    const content = this.pending.get(entry.seq)?.content;
    return {
      contentWire: content === undefined ? 0 : content.literal + content.compressed,
      inRequest: entry.content?.kind !== "upload",
    };
  }

  /** Releases every watch this session holds. */
  releaseWatches(): void {
    for (const dir of this.watched.all()) this.options.fs.unwatchDir(this.absolute(dir));
    this.watched.clear();
  }

  private count(operation: Operation, pending: PendingEntry | undefined, wroteFile: boolean, bytes: number): void {
    const before = pending?.beforeKind;
    if (before === "dir" && operation.type !== "ensureDir") this.counts.dirsDeleted++;
    else if (
      before !== undefined &&
      before !== "dir" &&
      (operation.type === "remove" || operation.type === "ensureDir")
    ) {
      this.counts.filesDeleted++;
    }
    if (operation.type === "ensureDir" && before !== "dir" && operation.path !== "") this.counts.dirsCreated++;
    if (wroteFile) {
      this.counts.filesWritten++;
      this.counts.bytesWritten += bytes;
    }
  }

  /**
   * What to remember of an operation until the target answers, and the bookkeeping of which content the
   * target holds: what the operation replaces is gone (a removal is set aside by the target for reuse).
   */
  private pendingFor(operation: Operation): PendingEntry {
    const before = nodeAt(this.expected, operation.path);
    const basis = before?.kind === "file" ? { hash: before.hash, size: before.size } : undefined;
    const replaces = before !== undefined && !(operation.type === "ensureDir" && before.kind === "dir");
    // Content counts as held once the target confirms it (settle), so a write never references itself.
    if (replaces) this.shipping.countHeld(before, -1, operation.type !== "writeFile" || before.kind !== "file");
    return {
      beforeKind: before?.kind,
      basis,
      needsContent: operation.type === "writeFile" && basis?.hash !== operation.hash,
    };
  }

  /**
   * Where to re-read for a hint at `path`: the path itself when its parent is a directory on both sides,
   * otherwise the nearest ancestor that is (an event may arrive before the one for its new parent).
   */
  private planRootFor(path: string): string {
    let candidate = path;
    while (candidate !== "") {
      const parent = parentOf(candidate);
      if (nodeAt(this.expected, parent)?.kind === "dir" && this.isSourceDir(parent)) return candidate;
      candidate = parent;
    }
    return "";
  }

  private isSourceDir(path: string): boolean {
    const { fs } = this.options;
    const absolute = this.absolute(path);
    try {
      if (isMirrorFileSystem(fs)) return this.directoryStat(fs, path)?.kind === "dir";
      return fs.exists(absolute) && fs.isDir(absolute);
    } catch {
      return false;
    }
  }

  /**
   * Watches a directory (relative path) unless it already is; one that vanished meanwhile is not a
   * problem. A directory deleted and re-created under the same name (another inode) is watched anew:
   * the old watch went with the old directory.
   */
  private watch(dir: string, ino?: number): void {
    const callback = this.options.onWatchEvent;
    if (callback === undefined) return;
    if (this.watched.has(dir)) {
      const watchedIno = this.watched.inodeOf(dir);
      if (ino === undefined || watchedIno === undefined || watchedIno === ino) return;
      this.watched.delete(dir);
      try {
        this.options.fs.unwatchDir(this.absolute(dir));
      } catch {
        // already released by the file system
      }
    }
    try {
      this.options.fs.watchDir(this.absolute(dir), callback);
      this.watched.add(dir, ino);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code !== "ENOENT" && code !== "ENOTDIR") this.readProblems.set(dir, `cannot watch: ${String(error)}`);
    }
  }

  /**
   * Releases the watches of directories no longer under `path` (scans watch what they list). A one-level
   * scan only judges `path` and its child directories; deeper ones are judged when their level is planned.
   */
  private updateWatches(path: string, node: TreeNode | undefined, recursive: boolean): void {
    if (this.options.onWatchEvent === undefined) return;
    const present = new Set(dirPaths(node, path));
    const judged = (dir: string): string => {
      if (recursive || dir === path) return dir;
      const below = path === "" ? dir : dir.slice(path.length + 1);
      return childOf(path, below.split("/")[0]!);
    };
    for (const dir of this.watched.atOrBelow(path)) {
      if (!present.has(judged(dir))) {
        this.watched.delete(dir);
        this.options.fs.unwatchDir(this.absolute(dir));
      }
    }
    for (const dir of present) this.watch(dir);
  }

  private absolute(path: string): string {
    return pathUnder(this.root, path);
  }

  /** Responses arrive validated by the transport (zod at the edge); this only checks which one it is. */
  private expectType<T extends Response["type"]>(response: Response, type: T): Extract<Response, { type: T }> {
    if (response.type === "error") throw new SessionRefusedError(response.code, response.message);
    if (response.type !== type) {
      throw new SessionRefusedError("invalid-request", `expected a ${type} response, got ${response.type}`);
    }
    return response as Extract<Response, { type: T }>;
  }
}

/** Bytes of file content an apply entry carries. */
function contentSize(entry: ApplyEntry): number {
  const content = entry.content;
  if (content === undefined) return 0;
  if (content.kind === "inline") return content.data.length;
  if (content.kind === "delta") return literalBytes(content.pieces);
  if (content.kind === "packed") return content.length;
  return 0;
}

/** Bytes of file content an apply entry decodes to on the target. */
function decodedSize(entry: ApplyEntry): number {
  const content = entry.content;
  if (content === undefined) return 0;
  if (content.kind === "inline") return entry.operation.type === "writeFile" ? entry.operation.size : 0;
  if (content.kind === "delta")
    return content.pieces.reduce((n, piece) => n + (piece.kind === "literal" ? piece.size : 0), 0);
  if (content.kind === "packed") return content.length;
  return 0;
}

function literalBytes(pieces: readonly Piece[]): number {
  return pieces.reduce((n, piece) => n + (piece.kind === "literal" ? piece.data.length : 0), 0);
}

/** Bytes of file content a request carries (for progress displays). */
export function requestContentBytes(request: ApplyRequest | UploadRequest): number {
  if (request.type === "upload") return literalBytes(request.pieces);
  return request.entries.reduce((n, entry) => n + contentSize(entry), 0);
}

/** True for failures that mean the target lacked what we assumed, or the bytes changed under us: retried in full. */
function isDrift(result: ApplyResult): boolean {
  switch (result.code) {
    case "missing-content":
    case "missing-basis":
    case "hash-mismatch":
      return true;
    case undefined:
    case "permission":
    case "read-only":
    case "no-space":
    case "unsafe-path":
    case "not-found":
    case "metadata":
    case "limit":
    case "io":
      return false;
  }
}

/** True when `path` or any of its ancestors is excluded. */
function isExcludedPath(isExcluded: (path: string, isDir: boolean) => boolean, path: string, isDir: boolean): boolean {
  const segments = segmentsOf(path);
  for (let i = 1; i <= segments.length; i++) {
    if (isExcluded(segments.slice(0, i).join("/"), i < segments.length || isDir)) return true;
  }
  return false;
}

function countFiles(node: TreeNode | undefined): number {
  if (node === undefined) return 0;
  if (node.kind !== "dir") return node.kind === "file" ? 1 : 0;
  let count = 0;
  for (const child of node.children.values()) count += countFiles(child);
  return count;
}
