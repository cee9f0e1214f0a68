import { statfsSync } from "node:fs";
import { posix } from "node:path";
import type { ZodError } from "zod";
import { decodeLiteral } from "../content/compression.js";
import { ContentHasher, contentIdOf } from "../content/contentId.js";
import { checkLimits, DEFAULT_LIMITS, type Limits, MAX_MANIFEST_ENTRY_BYTES } from "../events/limits.js";
import type { AttributeKey, Attributes, Operation, WriteFile } from "../events/operation.js";
import { isAtOrBelow, parentOf, segmentsOf } from "../events/paths.js";
import {
  type AppliedPosition,
  type ApplyEntry,
  type ApplyRequest,
  type ApplyResult,
  type Content,
  type ErrorCode,
  type ErrorResponse,
  type FailureCode,
  type HelloRequest,
  type ManifestEntry,
  type ManifestPageEntry,
  PROTOCOL_VERSION,
  RequestSchema,
  type Response,
} from "../events/protocol.js";
import { type ContentIndex, ContentIndexMap, type DigestCache, type PositionStore } from "../events/stateStore.js";
import { attributesMatch } from "../events/tree.js";
import {
  type EntryKind,
  type EntryMetadata,
  type EntryStat,
  type FileSystem,
  FileSystemError,
  type MirrorFileSystem,
  pathUnder,
  type StagedFile,
} from "../fs/fileSystem.js";
import { NodeFileSystem } from "../fs/nodeFileSystem.js";
import { FreshDirectories } from "./freshDirectories.js";
import { entriesDescribed, ManifestWalk } from "./manifestWalk.js";
import { describeError, indexEntry, indexedHash, isMirrorFileSystem, STREAM_PIECE } from "./scan.js";
import { ContentError, type FreeSpace, TargetContent } from "./targetContent.js";
import { TargetDirectories } from "./targetDirectories.js";

/** Entries of the manifest's first page at most: the source plans the top of the tree while the rest is listed. */
const FIRST_PAGE_ENTRIES = 512;
/**
 * Entries listed ahead per turn (see listAhead): ≈ 1 ms of listing. One directory a turn reopened the root and
 * the directory by path (each checked through /proc/self/fd) for every directory, a turn's handles being let
 * go of when it ends.
 */
const LIST_AHEAD_TURN_ENTRIES = 128;
/**
 * How long no request must have come for the interval's flush to run (see flushIfDue): longer than the
 * gaps between the parts of a burst (a few ms to tens of ms), short beside the interval.
 */
const FLUSH_PAUSE_MS = 100;

/** Options of a target beyond the seed's constructor. */
export interface ReplicatorTargetOptions {
  /** Keeps the durable position (memory when not given); see `flushIntervalMs` for when it is saved. */
  positionStore?: PositionStore;
  /**
   * Defers durability: requests are answered once applied, and all changes since the last flush are made
   * durable together (one file-system flush, then the position saved) when this many milliseconds have
   * passed and requests pause (see flushIfDue), after two intervals while they do not, on a release that
   * asks for it, and at close. Not given: every apply request is flushed and its position saved before it
   * is answered.
   */
  flushIntervalMs?: number;
  /** The clock of the flush interval (milliseconds). */
  now?: () => number;
  /** Lets the manifest skip re-reading files that have not changed since they were hashed. */
  index?: ContentIndex;
  /** Lets the manifest state an unchanged directory's digest without computing it again (see ManifestWalk). */
  digestCache?: DigestCache;
  /** The limits in force against the peer (checked here; DEFAULT_LIMITS when not given). */
  limits?: Limits;
  /** Largest file the target accepts, in bytes (overrides the limits' `maxFileBytes`). */
  maxFileBytes?: number;
  /**
   * Free and total bytes of the file system holding the target: staging never eats into the reserve the
   * limits keep. Default: `statfs` of the root on a NodeFileSystem, no check on other file systems.
   */
  freeSpace?: FreeSpace;
  /** Whether owners and groups stated by operations are applied (default: when running as root). */
  canSetOwner?: boolean;
  /** Keeps each file or directory before it is removed or replaced (serve --backup-dir); a throw keeps it in place. */
  backup?: { keep(path: string, absolute: string): void };
}

/**
 * The target side of the seed's contract: `handleRequest` validates every request with zod,
 * confines every path to the root (no `..`, no absolute path, never through a symlink), and
 * applies the log's operations in order, idempotently. A request it refuses changes nothing.
 */
export class ReplicatorTarget {
  private readonly root: string;
  private readonly mirror: MirrorFileSystem | undefined;
  private readonly store: PositionStore | undefined;
  private readonly limits: Limits;
  private readonly index: ContentIndex;
  private readonly digestCache: DigestCache | undefined;
  /** Assembles written files' bytes and keeps removed ones for reuse (real or in-memory file systems). */
  private readonly content: TargetContent | undefined;
  /** The walk behind the manifest pages being read (lazy: it lists directories as pages ask for them). */
  private manifestWalk: ManifestWalk | undefined;
  /** Directories of this request (relative paths) already checked to be real directories below the root. */
  private readonly verifiedDirs = new Set<string>();
  /** Directories created during this burst: a new name in one needs no lookup (not with a backup: see there). */
  private readonly fresh: FreshDirectories | undefined;
  /** The decoded pack of the request being applied, or why it could not be decoded. */
  private pack: Uint8Array | undefined;
  private packProblem: string | undefined;
  /** Writes of this request staged beside their final names, by relative path, committed together. */
  private readonly staged = new Map<
    string,
    { file: StagedFile; hash: string; metadata: EntryMetadata; result: Omit<ApplyResult, "seq"> }
  >();
  /** Every directory above a staged write: replacing or removing one must commit the writes first. */
  private readonly stagedDirs = new Set<string>();
  /** The last position applied (answered), and the last one made durable (what a restart resumes from). */
  private applied: AppliedPosition | null;
  private durable: AppliedPosition | null;
  /**
   * How far the source's log is durable in the applied epoch, when it said it is not durable through what was
   * applied (ApplyRequest's `logDurableSeq`): no later position is made durable. Undefined: through all of it.
   */
  private sourceDurableSeq: number | undefined;
  private readonly flushIntervalMs: number | undefined;
  private readonly now: () => number;
  private lastFlushAt: number;
  /** When the last request was answered (see flushIfDue). */
  private lastRequestAt: number;
  /** Why a flush failed: nothing more may be applied (the kernel may have dropped what it could not write). */
  private flushFailure: string | undefined;
  private session: { logId: string; epoch: number } | null = null;
  private readonly canSetOwner: boolean;
  /** Keeps directories' mode and mtime final while their entries change (real or in-memory mirrors). */
  private readonly dirs: TargetDirectories | undefined;
  private readonly backup: ReplicatorTargetOptions["backup"];

  constructor(
    private readonly fs: FileSystem,
    dirPath: string,
    options: ReplicatorTargetOptions = {},
  ) {
    this.root = posix.normalize(dirPath);
    this.mirror = isMirrorFileSystem(fs) ? fs : undefined;
    this.store = options.positionStore;
    this.limits = checkLimits({
      ...(options.limits ?? DEFAULT_LIMITS),
      ...(options.maxFileBytes === undefined ? {} : { maxFileBytes: options.maxFileBytes }),
    });
    this.index = options.index ?? new ContentIndexMap();
    this.digestCache = options.digestCache;
    this.applied = this.store?.load() ?? null;
    this.durable = this.applied;
    this.flushIntervalMs = options.flushIntervalMs;
    this.now = options.now ?? Date.now;
    this.lastFlushAt = this.now();
    this.lastRequestAt = this.lastFlushAt;
    if (!fs.exists(this.root)) fs.makeDirs(this.root);
    this.canSetOwner = options.canSetOwner ?? process.getuid?.() === 0;
    this.backup = options.backup;
    // A replaced file must be found to be kept: with a backup, every name is looked up.
    this.fresh = options.backup === undefined ? new FreshDirectories() : undefined;
    this.dirs = this.mirror === undefined ? undefined : new TargetDirectories(this.mirror, this.root);
    this.content =
      this.mirror === undefined || this.dirs === undefined
        ? undefined
        : new TargetContent({
            fs: this.mirror,
            root: this.root,
            index: this.index,
            limits: this.limits,
            freeSpace: options.freeSpace ?? (fs instanceof NodeFileSystem ? statfsOf(this.root) : () => undefined),
            dirs: this.dirs,
          });
  }

  /** Decodes the request's pack once (bounded by its declared size and the limit); a bad one fails its files. */
  private unpackRequest(request: ApplyRequest): void {
    this.pack = undefined;
    this.packProblem = undefined;
    if (request.pack === undefined) return;
    try {
      if (this.content === undefined) throw new Error("this target cannot unpack small files");
      this.pack = this.content.unpack(request.pack);
    } catch (error) {
      this.packProblem = `could not be decoded: ${describeError(error)}`;
    }
  }

  /** Ends the session: what was applied is made durable; unfinished uploads and files set aside for reuse are removed. */
  close(): void {
    this.manifestWalk = undefined;
    try {
      this.flush();
    } finally {
      this.dropKept();
    }
  }

  /** Unfinished uploads and files set aside for reuse are removed; cached handles let go. */
  private dropKept(): void {
    this.fresh?.forget();
    try {
      this.content?.close();
    } finally {
      this.finishRequest();
    }
  }

  /**
   * Makes every change applied so far durable, then records the applied position as the durable one.
   *
   * Why deferring this is safe (RELIABILITY rule 3): the durable position only ever names operations whose
   * effects were flushed before it was saved (one syncfs, then one SQLite transaction with
   * synchronous=FULL, which also writes the buffered index rows: an index row is never more durable than
   * the file it describes). After a crash the target reports its durable position and the source replays
   * its log from there (it keeps the whole log); every operation states an after-state, so applying one
   * again is a no-op or a rewrite. A kill -9 loses no written byte (the kernel keeps them; files are
   * renamed into place only once complete), so no final name is ever partial. A power loss may leave a file
   * renamed since the last flush torn, but it has no committed index row, so the replayed write finds its
   * hash wrong and rewrites it: once the replay is done, every final name holds a complete version.
   */
  flush(): void {
    if (this.flushFailure !== undefined) throw new Error(this.flushFailure);
    try {
      this.mirror?.flush();
    } catch (error) {
      this.flushFailure = `could not make the applied changes durable: ${describeError(error)}`;
      throw error;
    }
    const position = this.positionToMakeDurable();
    if (position !== null) this.store?.save(position);
    this.durable = position;
    this.lastFlushAt = this.now();
  }

  /**
   * The applied position, or an earlier one of its epoch as far as the source's log is durable: after a power
   * cut of the source, its log may lack the operations after that, and a target position naming one of them
   * would let a new operation under the same number pass for it.
   */
  private positionToMakeDurable(): AppliedPosition | null {
    const applied = this.applied;
    if (applied === null || this.sourceDurableSeq === undefined || this.sourceDurableSeq >= applied.seq) {
      return this.appliedPosition();
    }
    return { ...applied, seq: this.sourceDurableSeq };
  }

  /**
   * Flushes when the flush interval has passed since the last flush and no request came for FLUSH_PAUSE_MS
   * (a driver's timer calls it between requests): between the parts of a burst a flush (a syncfs and a
   * commit, 20–80 ms) would hold up the rest. Requests that never pause are flushed after two intervals
   * (see flushAfterRequest).
   */
  flushIfDue(): void {
    if (this.flushIntervalMs === undefined || this.now() - this.lastRequestAt < FLUSH_PAUSE_MS) return;
    this.flushOnceElapsed(this.flushIntervalMs);
  }

  /** After a request: at once without an interval, else once two intervals have passed (see flushIfDue). */
  private flushAfterRequest(): void {
    if (this.flushIntervalMs === undefined) this.flush();
    else this.flushOnceElapsed(2 * this.flushIntervalMs);
  }

  /** Flushes when `ms` have passed since the last flush and something applied is not durable yet. */
  private flushOnceElapsed(ms: number): void {
    const now = this.now();
    if (now - this.lastFlushAt < ms) return;
    const position = this.positionToMakeDurable();
    if (this.durable?.seq === position?.seq && this.durable?.epoch === position?.epoch) {
      this.lastFlushAt = now;
      return;
    }
    this.flush();
  }

  /** The last position made durable: what this target reports after a restart. */
  durablePosition(): AppliedPosition | null {
    return this.durable === null ? null : { ...this.durable };
  }

  /** Directories get their final metadata back, cached handles are let go. */
  private finishRequest(): { dir: string; error: unknown }[] {
    const failures = this.dirs?.restore() ?? [];
    this.mirror?.releaseHandles();
    return failures;
  }

  /** Handles one request; anything malformed or unsafe gets an error response and changes nothing. */
  handleRequest(request: unknown): Response {
    try {
      return this.respond(request);
    } finally {
      this.lastRequestAt = this.now();
    }
  }

  private respond(request: unknown): Response {
    const parsed = RequestSchema.safeParse(request);
    if (!parsed.success) return refusal(parsed.error, request);
    const valid = parsed.data;
    if (this.flushFailure !== undefined && valid.type !== "manifest") {
      return errorResponse("internal", `${this.flushFailure}; this target must be restarted`);
    }
    try {
      switch (valid.type) {
        case "hello":
          return this.hello(valid);
        case "manifest": {
          // Read-only (verify asks for it without a session): it lists, changes nothing.
          // Offset 0 walks afresh; an offset the walk already let go of (a client that asks out of order) too.
          const digests = valid.digests?.attributes;
          let walk = this.manifestWalk;
          if (valid.offset === 0 || walk?.reaches(valid.offset) !== true || !walk.digestsOver(digests)) {
            walk = this.newManifestWalk(digests);
            this.manifestWalk = walk;
          }
          return this.manifestPage(walk, valid.offset);
        }
        case "listing":
          // Read-only too: the listing a digest of the manifest stood for, as it stands now.
          return {
            type: "listing",
            dir: valid.dir,
            entries: (this.manifestWalk ?? this.newManifestWalk(undefined)).listingOf(valid.dir),
          };
        case "apply":
          return this.apply(valid);
        case "upload": {
          if (this.session === null) return errorResponse("no-session", "upload before hello");
          this.content?.beginRequest();
          const answer =
            this.content?.upload(valid) ?? errorResponse("invalid-request", "this target cannot assemble uploads");
          this.finishRequest();
          return answer;
        }
        case "chunks":
          // Reading whole files on a peer's word is work: only for a source that said hello.
          if (this.session === null) return errorResponse("no-session", "chunks before hello");
          return this.content?.chunkLists(valid.paths) ?? { type: "chunks", files: [] };
        case "release":
          // A flush that fails fails the release (the pass is not durable); the cleanup after it cannot: what
          // it cannot remove now (a racer renaming inside the stash) is an ordinary entry to the next pass's
          // manifest, which the source removes.
          // Sent once the source's log is durable through everything it shipped.
          this.sourceDurableSeq = undefined;
          if (valid.durable === true) this.flush();
          else this.flushAfterRequest();
          try {
            this.dropKept();
          } catch {
            // See above: left for the next pass.
          }
          return { type: "released", durable: this.durablePosition() };
      }
    } catch (error) {
      this.finishRequest();
      return errorResponse("internal", describeError(error));
    }
  }

  /** The last position applied, or null before the first session. */
  appliedPosition(): AppliedPosition | null {
    return this.applied === null ? null : { ...this.applied };
  }

  /** A manifest walk of this target's tree, stating listings as digests over `digests` when given. */
  private newManifestWalk(digests: readonly AttributeKey[] | undefined): ManifestWalk {
    const { manifestPageEntries, manifestPageBytes } = this.limits;
    // A listing a digest stands for must fit one page when it is asked for whole.
    const fits = (entries: readonly ManifestEntry[]) =>
      entries.length <= manifestPageEntries && pageBytes(entries) <= manifestPageBytes;
    return new ManifestWalk({
      fs: this.fs,
      root: this.root,
      index: this.index,
      ...(digests === undefined
        ? {}
        : {
            digests: {
              attributes: digests,
              fits,
              key: `${digests.join()};${manifestPageEntries};${manifestPageBytes}`,
              ...(this.digestCache === undefined ? {} : { cache: this.digestCache }),
            },
          }),
    });
  }

  /**
   * The page of the manifest walk at `offset`: entries standing for up to `manifestPageEntries` of the
   * tree's (see entriesDescribed) and about `manifestPageBytes` of them, so a page of long names still fits
   * a frame.
   */
  private manifestPage(walk: ManifestWalk, offset: number): Response {
    const { manifestPageBytes } = this.limits;
    // A short first page: the source starts planning while the rest is listed (see listAhead).
    const limit = this.limits.manifestPageEntries;
    const manifestPageEntries = offset === 0 ? Math.min(FIRST_PAGE_ENTRIES, limit) : limit;
    // Pages before this one were answered (a repeated request for this one is still served).
    walk.releaseBefore(offset);
    const entries: ManifestPageEntry[] = [];
    let bytes = 0;
    let described = 0;
    let at = offset;
    let entry = walk.entryAt(at);
    while (entry !== undefined && described < manifestPageEntries && bytes < manifestPageBytes) {
      entries.push(entry);
      described += entriesDescribed(entry);
      bytes += estimatedEntryBytes(entry);
      entry = walk.entryAt(++at);
    }
    if (entry !== undefined) this.listAhead(walk);
    return { type: "manifest", entries, complete: entry === undefined };
  }

  /**
   * While the source reads a page, the walk lists the next one, LIST_AHEAD_TURN_ENTRIES entries' worth of
   * directories per turn (a request that comes meanwhile is answered between two turns), so the next page
   * is ready when it is asked for. Stops once a page is held, when another walk replaces this one, or when
   * the target closes.
   */
  private listAhead(walk: ManifestWalk): void {
    const ahead = 2 * this.limits.manifestPageEntries;
    const step = () => {
      if (this.manifestWalk !== walk) return;
      try {
        if (walk.listAhead(ahead, LIST_AHEAD_TURN_ENTRIES)) setImmediate(step);
      } catch {
        // The page that needs this listing meets the same failure and answers it.
      }
    };
    setImmediate(step);
  }

  private hello(request: HelloRequest): Response {
    if (request.version !== PROTOCOL_VERSION) {
      return errorResponse(
        "version-mismatch",
        `source speaks protocol version ${request.version}, this target speaks ${PROTOCOL_VERSION}`,
      );
    }
    const current = this.applied;
    if (current !== null && current.logId === request.logId && request.epoch < current.epoch) {
      return {
        ...errorResponse("stale-epoch", `epoch ${request.epoch} is older than the applied epoch ${current.epoch}`),
        applied: { ...current },
      };
    }
    // The answer is where the target stood before this hello: the source judges continuity by it.
    const before = this.appliedPosition();
    if (current === null || current.logId !== request.logId || current.epoch !== request.epoch) {
      // Made durable with what came before: saving the position writes the buffered index rows, which
      // must never describe files that are not durable yet.
      this.applied = { logId: request.logId, epoch: request.epoch, seq: 0 };
      this.sourceDurableSeq = undefined;
      this.flush();
    }
    this.session = { logId: request.logId, epoch: request.epoch };
    this.fresh?.forget();
    return { type: "hello", version: PROTOCOL_VERSION, applied: before, canSetOwner: this.canSetOwner };
  }

  private apply(request: ApplyRequest): Response {
    const session = this.session;
    const applied = this.applied;
    if (session === null || applied === null) return errorResponse("no-session", "apply before hello");
    if (request.entries.length > this.limits.maxOperationsPerRequest) {
      return errorResponse(
        "limit",
        `apply carries ${request.entries.length} operations, over the limit maxOperationsPerRequest ${this.limits.maxOperationsPerRequest}`,
      );
    }
    if (request.logId !== session.logId || request.epoch !== session.epoch) {
      return errorResponse(
        "stale-epoch",
        `apply for epoch ${request.epoch} outside the session's epoch ${session.epoch}`,
      );
    }
    // Positions must be consecutive, starting at or before the next expected one: a gap means lost operations.
    const first = request.entries[0]!.seq;
    if (first > applied.seq + 1) {
      return errorResponse("position-gap", `next position is ${applied.seq + 1}, request starts at ${first}`);
    }
    for (let i = 1; i < request.entries.length; i++) {
      if (request.entries[i]!.seq !== first + i) {
        return errorResponse("position-gap", `positions in the request are not consecutive at index ${i}`);
      }
    }
    // The log's durable part only grows: what an earlier request or a release said still holds.
    const durableSeq = request.logDurableSeq;
    this.sourceDurableSeq =
      durableSeq === undefined || durableSeq >= request.entries.at(-1)!.seq
        ? undefined
        : Math.max(durableSeq, this.sourceDurableSeq ?? applied.seq);
    const results: ApplyResult[] = [];
    const pathsBySeq = new Map(request.entries.map((e) => [e.seq, e.operation.path]));
    this.verifiedDirs.clear();
    this.content?.beginRequest();
    this.unpackRequest(request);
    for (const entry of request.entries) {
      if (entry.seq <= this.applied!.seq) {
        results.push({ seq: entry.seq, outcome: "duplicate", wroteFile: false, bytesWritten: 0 });
        continue;
      }
      if (this.touchesStaged(entry.operation)) this.commitStaged();
      results.push(this.applyEntry(entry));
      this.applied = { ...this.applied!, seq: entry.seq };
    }
    this.commitStaged();
    for (const { dir, error } of this.finishRequest()) {
      // A directory whose final mode or mtime could not be set: the last result of this request at or
      // below it says so, so the source states it again.
      const last = [...results].reverse().find((r) => isAtOrBelow(dir, pathsBySeq.get(r.seq) ?? ""));
      if (last !== undefined && last.outcome !== "failed")
        Object.assign(last, failedWith("metadata", `directory ${dir}: ${describeError(error)}`));
    }
    // Apply, then record, then answer: a crash before the flush replays operations that are idempotent.
    this.flushAfterRequest();
    return { type: "applied", results, applied: this.appliedPosition()! };
  }

  private applyEntry(entry: ApplyEntry): ApplyResult {
    const { operation } = entry;
    const absolute = pathUnder(this.root, operation.path);
    if (this.mirror !== undefined && segmentsOf(operation.path).some((s) => this.mirror!.isInternalName(s))) {
      return { seq: entry.seq, ...failedWith("unsafe-path", "names one of the target's own temp files") };
    }
    const parentProblem = this.parentProblem(operation.path);
    if (parentProblem !== null) return { seq: entry.seq, ...parentProblem };
    try {
      // Object.assign keeps the object: a staged write's result may still turn into a failure at commit.
      return Object.assign(this.applyOperation(operation, absolute, entry), { seq: entry.seq });
    } catch (error) {
      return { seq: entry.seq, ...failed(error) };
    }
  }

  /**
   * Why the parent chain of `path` cannot be used: a missing parent, a non-directory, or a symlink.
   * Directories checked earlier in the same request are not checked again until something is removed.
   * (The real disk also resolves every path through no-follow directory handles: this check names the
   * problem; the handles make a racer's swap after it harmless.)
   */
  private parentProblem(path: string): Omit<ApplyResult, "seq"> | null {
    // Each ancestor is a prefix of the path up to a slash: no copies for those already verified.
    for (let slash = path.indexOf("/"); slash !== -1; slash = path.indexOf("/", slash + 1)) {
      const at = path.slice(0, slash);
      if (this.verifiedDirs.has(at)) continue;
      const kind = this.kindOf(pathUnder(this.root, at));
      if (kind === undefined) return failedWith("not-found", `parent directory ${at} does not exist`);
      if (kind === "symlink") return failedWith("unsafe-path", `path traverses symlink ${at}`);
      if (kind !== "dir") return failedWith("not-found", `parent ${at} is not a directory`);
      this.verifiedDirs.add(at);
    }
    return null;
  }

  /** True when `operation` names a path with a staged write or a directory holding one (it may replace it). */
  private touchesStaged(operation: Operation): boolean {
    return (
      this.staged.has(operation.path) ||
      this.stagedDirs.has(operation.path) ||
      (operation.type === "writeFile" && operation.linkTo !== undefined && this.staged.has(operation.linkTo))
    );
  }

  /**
   * Makes every staged write visible at once (one flush for many files). A file that cannot be renamed into
   * place fails alone; a failed flush fails them all (the source plans those paths again, and a file already
   * renamed is then found unchanged).
   */
  private commitStaged(): void {
    if (this.staged.size === 0 || this.mirror === undefined) return;
    const mirror = this.mirror;
    const staged = [...this.staged.entries()];
    this.staged.clear();
    this.stagedDirs.clear();
    let failures: { file: StagedFile; error: unknown }[];
    try {
      failures = mirror.commitStaged(staged.map(([, s]) => s.file));
    } catch (error) {
      for (const [, s] of staged) Object.assign(s.result, failed(error));
      return;
    }
    const failedFiles = new Map(failures.map((f) => [f.file, f.error]));
    for (const [path, s] of staged) {
      const error = failedFiles.get(s.file);
      if (error !== undefined) {
        Object.assign(s.result, failed(error));
        continue;
      }
      const stat = mirror.lstat(s.file.path);
      this.index?.set(path, indexEntry(stat, s.hash));
      // The kernel may drop bits it does not allow (setgid of a group the target is not in): say so.
      if (s.metadata.mode !== undefined && stat.mode !== s.metadata.mode) {
        Object.assign(
          s.result,
          failedWith("metadata", `mode ${octal(s.metadata.mode)} could not be set (it is ${octal(stat.mode)})`),
        );
      }
    }
  }

  private applyOperation(operation: Operation, absolute: string, entry: ApplyEntry): Omit<ApplyResult, "seq"> {
    const knownAbsent = operation.type !== "remove" && this.fresh?.isAbsent(operation.path) === true;
    this.fresh?.named(operation.path);
    // One lookup: a missing entry must not be asked about again through the plain interface.
    const existing = knownAbsent ? undefined : this.entryAt(absolute);
    // Removing or replacing anything may remove a directory verified earlier in this request.
    if (existing !== undefined && operation.type !== "writeFile") this.verifiedDirs.clear();
    switch (operation.type) {
      case "remove":
        if (existing === undefined) return unchanged();
        this.replaceEntry(operation.path, absolute, existing.kind);
        return done();
      case "ensureDir":
        return this.ensureDir(operation, absolute, existing);
      case "writeSymlink": {
        if (this.mirror === undefined) return failedWith("io", "this file system cannot hold symlinks");
        const wanted = this.metadataOf(operation);
        if (existing?.kind === "symlink" && this.mirror.readLink(absolute) === operation.target) {
          if (attributesMatch(existing, wanted)) return unchanged();
          this.mirror.setMetadata(absolute, wanted);
          return done();
        }
        if (existing !== undefined) this.replaceEntry(operation.path, absolute, existing.kind);
        else this.dirs?.willChangeEntry(operation.path);
        this.mirror.makeSymlink(absolute, operation.target);
        if (Object.keys(wanted).length > 0) this.mirror.setMetadata(absolute, wanted);
        return done();
      }
      case "writeFile":
        if (operation.linkTo !== undefined) return this.writeLink(operation, operation.linkTo, absolute, existing);
        return this.writeFile(operation, absolute, existing, entry);
    }
  }

  private ensureDir(
    operation: Extract<Operation, { type: "ensureDir" }>,
    absolute: string,
    existing: EntryStat | undefined,
  ): Omit<ApplyResult, "seq"> {
    const { mode, mtime, ...owner } = this.metadataOf(operation);
    const final = { ...(mode === undefined ? {} : { mode }), ...(mtime === undefined ? {} : { mtime }) };
    if (operation.path === "" || existing?.kind === "dir") {
      if (existing === undefined || this.mirror === undefined) return unchanged();
      const same = attributesMatch(existing, this.metadataOf(operation));
      if (!attributesMatch(existing, owner)) this.mirror.setMetadata(absolute, owner);
      // Mode and mtime are set once the request's changes inside the directory are in.
      this.dirs?.state(operation.path, final);
      return same ? unchanged() : done();
    }
    if (existing !== undefined) this.replaceEntry(operation.path, absolute, existing.kind);
    else this.dirs?.willChangeEntry(operation.path);
    this.fs.makeDir(absolute);
    this.fresh?.created(operation.path);
    if (this.mirror !== undefined && Object.keys(owner).length > 0) this.mirror.setMetadata(absolute, owner);
    this.dirs?.state(operation.path, final);
    return done();
  }

  /** A hard link to the file at `linkTo` (which must hold the operation's content), replacing what is at the path. */
  private writeLink(
    operation: WriteFile,
    linkTo: string,
    absolute: string,
    existing: EntryStat | undefined,
  ): Omit<ApplyResult, "seq"> {
    const mirror = this.mirror;
    if (mirror === undefined || this.content === undefined)
      return failedWith("io", "this file system cannot hold hard links");
    const leaderPath = pathUnder(this.root, linkTo);
    const leader = mirror.lstatIfExists(leaderPath);
    if (leader?.kind !== "file" || this.hashOf(linkTo, leaderPath, leader) !== operation.hash) {
      return failedWith("missing-basis", `hard link target ${linkTo} does not hold ${operation.hash}`);
    }
    // The metadata a link states is its inode's, so the leader's too.
    const metadata = this.metadataOf(operation);
    if (existing?.kind === "file" && existing.ino === leader.ino && existing.dev === leader.dev) {
      return attributesMatch(existing, metadata) ? unchanged() : this.setFileMetadata(operation, absolute, metadata);
    }
    if (existing !== undefined && existing.kind !== "dir") this.backup?.keep(operation.path, absolute);
    if (existing?.kind === "dir") this.replaceEntry(operation.path, absolute, existing.kind);
    else this.dirs?.willChangeEntry(operation.path);
    if (!attributesMatch(leader, metadata)) this.setFileMetadata({ ...operation, path: linkTo }, leaderPath, metadata);
    const file = mirror.stageLink(leaderPath, absolute);
    return this.stage(operation, file, {}, { outcome: "applied", wroteFile: false, bytesWritten: 0 });
  }

  /**
   * Sets the metadata of the file at `operation.path`, which already holds the operation's content; its index
   * entry follows (chmod and utimes change ctime), so the file can still lend its bytes to later writes.
   */
  private setFileMetadata(operation: WriteFile, absolute: string, metadata: EntryMetadata): Omit<ApplyResult, "seq"> {
    const mirror = this.mirror!;
    mirror.setMetadata(absolute, metadata);
    const after = mirror.lstat(absolute);
    this.index.set(operation.path, indexEntry(after, operation.hash));
    if (metadata.mode !== undefined && after.mode !== metadata.mode) {
      return failedWith("metadata", `mode ${octal(metadata.mode)} could not be set (it is ${octal(after.mode)})`);
    }
    return done();
  }

  private writeFile(
    operation: WriteFile,
    absolute: string,
    existing: EntryStat | undefined,
    entry: ApplyEntry,
  ): Omit<ApplyResult, "seq"> {
    const metadata = this.metadataOf(operation);
    if (existing?.kind === "file" && this.holds(operation, absolute, existing, entry.content !== undefined)) {
      // Same bytes already there: never rewrite them; bring the metadata in line if it differs.
      if (this.mirror === undefined || attributesMatch(existing, metadata)) return unchanged();
      return this.setFileMetadata(operation, absolute, metadata);
    }
    let content = entry.content;
    if (content?.kind === "packed") {
      const unpacked = this.unpack(content, operation);
      if (typeof unpacked === "string") return failedWith("missing-content", unpacked);
      content = unpacked;
    }
    if (existing !== undefined && existing.kind !== "dir") this.backup?.keep(operation.path, absolute);
    if (existing?.kind === "dir") {
      this.replaceEntry(operation.path, absolute, existing.kind);
      this.verifiedDirs.clear();
    } else {
      this.dirs?.willChangeEntry(operation.path);
    }
    if (this.content === undefined) return this.writePlainFile(operation, absolute, content);
    // Atomic replace, committed with the rest of the request: a symlink, FIFO or older file under the
    // final name is swapped out by rename, and nothing is visible before its bytes are verified and durable.
    let file: StagedFile;
    try {
      file = this.content.stage(operation, content, metadata);
    } catch (error) {
      return failed(error);
    }
    return this.stage(operation, file, metadata, {
      outcome: "applied",
      wroteFile: true,
      bytesWritten: operation.size,
    });
  }

  /** Queues a staged file for the request's commit; the result object may still turn into a failure then. */
  private stage(
    operation: WriteFile,
    file: StagedFile,
    metadata: EntryMetadata,
    result: Omit<ApplyResult, "seq">,
  ): Omit<ApplyResult, "seq"> {
    this.staged.set(operation.path, { file, hash: operation.hash, metadata, result });
    for (let dir = parentOf(operation.path); dir !== ""; dir = parentOf(dir)) this.stagedDirs.add(dir);
    return result;
  }

  /** The metadata of an operation this target applies: owner and group only when it may set them. */
  private metadataOf(operation: Attributes): EntryMetadata {
    const out: EntryMetadata = {};
    if (operation.mode !== undefined) out.mode = operation.mode;
    if (operation.mtime !== undefined) out.mtime = operation.mtime;
    if (this.canSetOwner && operation.uid !== undefined) out.uid = operation.uid;
    if (this.canSetOwner && operation.gid !== undefined) out.gid = operation.gid;
    return out;
  }

  /** The seed's plain FileSystem: whole inline content only, written in place. */
  /** A packed file's bytes out of the request's pack, as inline content; or why they cannot be had. */
  private unpack(content: { offset: number; length: number }, operation: WriteFile): Content | string {
    if (this.pack === undefined) return `content missing: the request's pack ${this.packProblem ?? "is absent"}`;
    if (content.length !== operation.size || content.offset + content.length > this.pack.length) {
      return `packed range ${content.offset}+${content.length} does not fit the pack (${this.pack.length} bytes) or the declared size ${operation.size}`;
    }
    return {
      kind: "inline",
      encoding: "raw",
      data: this.pack.subarray(content.offset, content.offset + content.length),
    };
  }

  private writePlainFile(
    operation: WriteFile,
    absolute: string,
    content: Content | undefined,
  ): Omit<ApplyResult, "seq"> {
    if (content?.kind !== "inline")
      return failedWith("missing-content", `content ${operation.hash} missing: send it inline`);
    if (operation.size > this.limits.maxDecodedPieceBytes)
      return failedWith(
        "limit",
        `${JSON.stringify(operation.path)}: ${operation.size} bytes inline, over the limit maxDecodedPieceBytes ${this.limits.maxDecodedPieceBytes}`,
      );
    const bytes = decodeLiteral(
      { encoding: content.encoding, data: content.data, size: operation.size },
      operation.size,
    );
    const actual = contentIdOf(bytes);
    if (actual !== operation.hash)
      return failedWith("hash-mismatch", `hash mismatch: received ${actual}, operation declares ${operation.hash}`);
    this.fs.writeFile(absolute, bytes);
    return { outcome: "applied", wroteFile: true, bytesWritten: bytes.length };
  }

  /**
   * Removes the entry at `path` (to be replaced, or gone); on a mirror file system it is set aside for reuse
   * until the session ends. Its directory's metadata is kept; nothing below it is restored any more.
   */
  private replaceEntry(path: string, absolute: string, kind: EntryKind): void {
    this.fresh?.forget();
    this.backup?.keep(path, absolute);
    this.dirs?.willChangeEntry(path);
    this.dirs?.forget(path);
    if (this.content !== undefined && (kind === "file" || kind === "dir")) {
      this.content.removeToStash(path, kind);
      return;
    }
    if (kind === "dir") this.fs.removeDir(absolute);
    else this.fs.removeFile(absolute);
  }

  private kindOf(absolute: string): EntryKind | undefined {
    return this.entryAt(absolute)?.kind;
  }

  /** The entry at `absolute`, as much of it as the file system can tell; undefined when there is none. */
  private entryAt(absolute: string): EntryStat | undefined {
    return this.mirror !== undefined ? this.mirror.lstatIfExists(absolute) : this.plainStat(absolute);
  }

  /** What the seed's plain FileSystem can tell of an entry: its kind (no metadata). */
  private plainStat(absolute: string): EntryStat | undefined {
    if (!this.fs.exists(absolute)) return undefined;
    const kind = this.fs.isDir(absolute) ? "dir" : "file";
    const time = { sec: 0, nsec: 0 };
    return { kind, size: 0, mtimeMs: 0, ctimeMs: 0, mtime: time, mode: 0, ino: 0, dev: 0, nlink: 1, uid: 0, gid: 0 };
  }

  /**
   * Whether the file at the operation's path holds its content. When the source sent the bytes it believes
   * the file differs, so the index's word alone does not overrule it: the file is read, and a row that
   * turns out wrong is corrected (index rows are hints; a wrong one heals here).
   */
  private holds(operation: WriteFile, absolute: string, stat: EntryStat, contentSent: boolean): boolean {
    const fromIndex = indexedHash(this.index, operation.path, stat) !== undefined;
    if (this.hashOf(operation.path, absolute, stat) !== operation.hash) return false;
    if (!contentSent || !fromIndex) return true;
    const hash = this.readHash(absolute, stat);
    if (hash === operation.hash) return true;
    const after = this.mirror?.lstatIfExists(absolute);
    if (after?.kind === "file" && after.size === stat.size && after.mtimeMs === stat.mtimeMs)
      this.index.set(operation.path, indexEntry(after, hash));
    else this.index.delete(operation.path);
    return false;
  }

  /** The content hash of the file at `absolute`, read in pieces (a large file is never held whole). */
  private readHash(absolute: string, stat: EntryStat): string {
    if (this.mirror === undefined) return contentIdOf(this.fs.readFile(absolute));
    const hasher = new ContentHasher();
    const scratch = new Uint8Array(STREAM_PIECE);
    for (let offset = 0; offset < stat.size; offset += STREAM_PIECE) {
      hasher.update(this.mirror.readFileRange(absolute, offset, STREAM_PIECE, scratch));
    }
    return hasher.digest();
  }

  /** The content hash of the file at `path`, from the index when the file has not changed since. */
  private hashOf(path: string, absolute: string, stat = this.mirror?.lstat(absolute)): string {
    const known = stat === undefined ? undefined : indexedHash(this.index, path, stat);
    if (known !== undefined) return known;
    if (stat === undefined) return contentIdOf(this.fs.readFile(absolute));
    // Read in pieces: a peer naming a large file must not make the target hold it whole.
    const hash = this.readHash(absolute, stat);
    const after = this.mirror?.lstatIfExists(absolute);
    // Indexed only when the file held still while it was read.
    if (after?.kind === "file" && after.size === stat.size && after.mtimeMs === stat.mtimeMs && after.ino === stat.ino)
      this.index.set(path, indexEntry(after, hash));
    return hash;
  }
}

/** Free and total bytes of the file system holding `root`, by statfs (unprivileged blocks only). */
function statfsOf(root: string): FreeSpace {
  return () => {
    const stats = statfsSync(root);
    return { free: stats.bavail * stats.bsize, total: stats.blocks * stats.bsize };
  };
}

/** About how many bytes a manifest entry takes on the wire: its names plus a margin for hash and metadata. */
function estimatedEntryBytes(entry: ManifestPageEntry): number {
  const texts =
    entry.path.length +
    ("target" in entry ? entry.target.length : 0) +
    ("linkTo" in entry ? (entry.linkTo?.length ?? 0) : 0);
  // UTF-16 length × 3 bounds the UTF-8 bytes; 200 covers kind, hash (or digest), size, mode, mtime and owners.
  return Math.min(MAX_MANIFEST_ENTRY_BYTES, texts * 3 + 200);
}

/** About how many bytes a page of these entries takes on the wire. */
function pageBytes(entries: readonly ManifestEntry[]): number {
  let bytes = 0;
  for (const entry of entries) bytes += estimatedEntryBytes(entry);
  return bytes;
}

function done(): Omit<ApplyResult, "seq"> {
  return { outcome: "applied", wroteFile: false, bytesWritten: 0 };
}

function unchanged(): Omit<ApplyResult, "seq"> {
  return { outcome: "unchanged", wroteFile: false, bytesWritten: 0 };
}

/** A failed result for `error`, with the code the source decides on. */
function failed(error: unknown): Omit<ApplyResult, "seq"> {
  return failedWith(failureCodeOf(error), describeError(error));
}

function failedWith(code: FailureCode, reason: string): Omit<ApplyResult, "seq"> {
  return { outcome: "failed", wroteFile: false, bytesWritten: 0, code, reason };
}

/** The failure code of an error: content problems say what was missing; file-system errors by errno. */
export function failureCodeOf(error: unknown): FailureCode {
  if (error instanceof ContentError) return error.code;
  const code = error instanceof FileSystemError ? error.code : (error as { code?: unknown } | null)?.code;
  switch (code) {
    case "EACCES":
    case "EPERM":
      return "permission";
    case "EROFS":
      return "read-only";
    case "ENOSPC":
    case "EDQUOT":
      return "no-space";
    case "ELOOP":
      return "unsafe-path";
    case "ENOENT":
    case "ENOTDIR":
      return "not-found";
    default:
      return "io";
  }
}

function octal(mode: number): string {
  return mode.toString(8).padStart(4, "0");
}

function errorResponse(code: ErrorCode, message: string, path?: string): ErrorResponse {
  return path === undefined ? { type: "error", code, message } : { type: "error", code, message, path };
}

/** The error response for a request that failed validation, naming the offending path if there is one. */
function refusal(error: ZodError, request: unknown): ErrorResponse {
  for (const issue of error.issues) {
    if (issue.message.startsWith("unsafe path")) {
      const value = valueAt(request, issue.path);
      return errorResponse("unsafe-path", issue.message, typeof value === "string" ? value : undefined);
    }
  }
  const first = error.issues[0];
  const where = first === undefined || first.path.length === 0 ? "" : ` at ${first.path.join(".")}`;
  return errorResponse("invalid-request", `invalid request${where}: ${first?.message ?? "unknown problem"}`);
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let current = value;
  for (const key of path) {
    if (current === null || typeof current !== "object") return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}
