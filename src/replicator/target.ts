import { posix } from "node:path";
import type { ZodError } from "zod";
import { decodeLiteral } from "../content/compression.js";
import { contentIdOf } from "../content/contentId.js";
import type { Operation, WriteFile } from "../events/operation.js";
import { parentOf, segmentsOf } from "../events/paths.js";
import {
  type AppliedPosition,
  type ApplyEntry,
  type ApplyRequest,
  type ApplyResult,
  type Content,
  type ErrorCode,
  type ErrorResponse,
  type HelloRequest,
  type ManifestEntry,
  PROTOCOL_VERSION,
  RequestSchema,
  type Response,
} from "../events/protocol.js";
import { type ContentIndex, ContentIndexMap, type PositionStore } from "../events/stateStore.js";
import { emptyDir } from "../events/tree.js";
import type { EntryKind, FileSystem, MirrorFileSystem, StagedFile } from "../fs/fileSystem.js";
import { manifestFromTree } from "../projections/expectedTree.js";
import { describeError, indexEntry, indexedHash, isMirrorFileSystem, scanPath } from "./scan.js";
import { TargetContent } from "./targetContent.js";

/** Options of a target beyond the seed's constructor. */
export interface ReplicatorTargetOptions {
  /** Keeps the applied position durable (memory when not given); saved once per apply request, before the answer. */
  positionStore?: PositionStore;
  /** Lets the manifest skip re-reading files that have not changed since they were hashed. */
  index?: ContentIndex;
  /** Largest file the target accepts, in bytes (default 4 GiB · 16). */
  maxFileBytes?: number;
}

const DEFAULT_MAX_FILE_BYTES = 2 ** 36;
/** Largest pack of small files one request may carry, decoded (requests carry about 8 MiB). */
const MAX_PACK_BYTES = 64 * 1024 * 1024;
/** Manifest entries per response page: keeps each frame far below the frame limit. */
const MANIFEST_PAGE_ENTRIES = 20_000;

/**
 * The target side of the seed's contract: `handleRequest` validates every request with zod,
 * confines every path to the root (no `..`, no absolute path, never through a symlink), and
 * applies the log's operations in order, idempotently. A request it refuses changes nothing.
 */
export class ReplicatorTarget {
  private readonly root: string;
  private readonly mirror: MirrorFileSystem | undefined;
  private readonly store: PositionStore | undefined;
  private readonly maxFileBytes: number;
  private readonly index: ContentIndex;
  /** Assembles written files' bytes and keeps removed ones for reuse (real or in-memory file systems). */
  private readonly content: TargetContent | undefined;
  /** The walk behind the manifest pages being read. */
  private manifestWalk: ManifestEntry[] = [];
  /** Directories of this request already checked to be real directories below the root. */
  private readonly verifiedDirs = new Set<string>();
  /** The decoded pack of the request being applied, or why it could not be decoded. */
  private pack: Uint8Array | undefined;
  private packProblem: string | undefined;
  /** Writes of this request staged beside their final names, by relative path, committed together. */
  private readonly staged = new Map<string, { file: StagedFile; hash: string; result: Omit<ApplyResult, "seq"> }>();
  /** Every directory above a staged write: replacing or removing one must commit the writes first. */
  private readonly stagedDirs = new Set<string>();
  private applied: AppliedPosition | null;
  private session: { logId: string; epoch: number } | null = null;

  constructor(
    private readonly fs: FileSystem,
    dirPath: string,
    options: ReplicatorTargetOptions = {},
  ) {
    this.root = posix.normalize(dirPath);
    this.mirror = isMirrorFileSystem(fs) ? fs : undefined;
    this.store = options.positionStore;
    this.maxFileBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
    this.index = options.index ?? new ContentIndexMap();
    this.applied = this.store?.load() ?? null;
    if (!fs.exists(this.root)) fs.makeDirs(this.root);
    this.content =
      this.mirror === undefined ? undefined : new TargetContent(this.mirror, this.root, this.index, this.maxFileBytes);
  }

  /** Decodes the request's pack once (bounded by its declared size and the limit); a bad one fails its files. */
  private unpackRequest(request: ApplyRequest): void {
    this.pack = undefined;
    this.packProblem = undefined;
    if (request.pack === undefined) return;
    try {
      this.pack = decodeLiteral(request.pack, MAX_PACK_BYTES);
    } catch (error) {
      this.packProblem = `could not be decoded: ${describeError(error)}`;
    }
  }

  /** Ends the session: unfinished uploads and files set aside for reuse are removed. */
  close(): void {
    this.content?.close();
  }

  /** Handles one request; anything malformed or unsafe gets an error response and changes nothing. */
  handleRequest(request: unknown): Response {
    const parsed = RequestSchema.safeParse(request);
    if (!parsed.success) return refusal(parsed.error, request);
    const valid = parsed.data;
    try {
      switch (valid.type) {
        case "hello":
          return this.hello(valid);
        case "manifest": {
          if (valid.offset === 0) this.manifestWalk = this.manifest();
          const end = valid.offset + MANIFEST_PAGE_ENTRIES;
          const entries = this.manifestWalk.slice(valid.offset, end);
          return { type: "manifest", entries, complete: end >= this.manifestWalk.length };
        }
        case "apply":
          return this.apply(valid);
        case "upload":
          return this.content?.upload(valid) ?? errorResponse("invalid-request", "this target cannot assemble uploads");
        case "chunks":
          return this.content?.chunkLists(valid.paths) ?? { type: "chunks", files: [] };
        case "release":
          this.content?.close();
          return { type: "released" };
      }
    } catch (error) {
      return errorResponse("internal", describeError(error));
    }
  }

  /** The last position applied, or null before the first session. */
  appliedPosition(): AppliedPosition | null {
    return this.applied === null ? null : { ...this.applied };
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
      return errorResponse("stale-epoch", `epoch ${request.epoch} is older than the applied epoch ${current.epoch}`);
    }
    // The answer is where the target stood before this hello: the source judges continuity by it.
    const before = this.appliedPosition();
    if (current === null || current.logId !== request.logId || current.epoch !== request.epoch) {
      this.applied = { logId: request.logId, epoch: request.epoch, seq: 0 };
      this.store?.save(this.applied);
    }
    this.session = { logId: request.logId, epoch: request.epoch };
    return { type: "hello", version: PROTOCOL_VERSION, applied: before };
  }

  private apply(request: ApplyRequest): Response {
    const session = this.session;
    const applied = this.applied;
    if (session === null || applied === null) return errorResponse("no-session", "apply before hello");
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
    const results: ApplyResult[] = [];
    this.verifiedDirs.clear();
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
    this.mirror?.flush();
    // Apply, then record, then answer: a crash before this line replays operations that are idempotent.
    this.store?.save(this.applied!);
    return { type: "applied", results, applied: this.appliedPosition()! };
  }

  private applyEntry(entry: ApplyEntry): ApplyResult {
    const { operation } = entry;
    const absolute = posix.join(this.root, operation.path);
    const parentProblem = this.parentProblem(operation.path);
    if (parentProblem !== null) return { seq: entry.seq, ...failed(parentProblem) };
    try {
      // Object.assign keeps the object: a staged write's result may still turn into a failure at commit.
      return Object.assign(this.applyOperation(operation, absolute, entry), { seq: entry.seq });
    } catch (error) {
      return { seq: entry.seq, ...failed(describeError(error)) };
    }
  }

  /**
   * Why the parent chain of `path` cannot be used: a missing parent, a non-directory, or a symlink.
   * Directories checked earlier in the same request are not checked again until something is removed.
   */
  private parentProblem(path: string): string | null {
    let current = this.root;
    for (const segment of segmentsOf(path).slice(0, -1)) {
      current = posix.join(current, segment);
      if (this.verifiedDirs.has(current)) continue;
      const kind = this.kindOf(current);
      if (kind === undefined) return `parent directory ${posix.relative(this.root, current)} does not exist`;
      if (kind === "symlink") return `path traverses symlink ${posix.relative(this.root, current)}`;
      if (kind !== "dir") return `parent ${posix.relative(this.root, current)} is not a directory`;
      this.verifiedDirs.add(current);
    }
    return null;
  }

  /** True when `operation` names a path with a staged write or a directory holding one (it may replace it). */
  private touchesStaged(operation: Operation): boolean {
    return this.staged.has(operation.path) || this.stagedDirs.has(operation.path);
  }

  /**
   * Makes every staged write visible at once (one flush for many files). A failure fails each staged
   * result: the source plans those paths again, and a file already renamed is then found unchanged.
   */
  private commitStaged(): void {
    if (this.staged.size === 0 || this.mirror === undefined) return;
    const mirror = this.mirror;
    const staged = [...this.staged.entries()];
    this.staged.clear();
    this.stagedDirs.clear();
    try {
      mirror.commitStaged(staged.map(([, s]) => s.file));
    } catch (error) {
      for (const [, s] of staged) Object.assign(s.result, failed(describeError(error)));
      return;
    }
    for (const [path, s] of staged) this.index?.set(path, indexEntry(mirror.lstat(s.file.path), s.hash));
  }

  private applyOperation(operation: Operation, absolute: string, entry: ApplyEntry): Omit<ApplyResult, "seq"> {
    const existing = this.kindOf(absolute);
    // Removing or replacing anything may remove a directory verified earlier in this request.
    if (existing !== undefined && operation.type !== "writeFile") this.verifiedDirs.clear();
    switch (operation.type) {
      case "remove":
        if (existing === undefined) return unchanged();
        this.removeEntry(operation.path, absolute, existing);
        return done();
      case "ensureDir": {
        if (operation.path === "" || existing === "dir") {
          if (
            operation.mode !== undefined &&
            this.mirror !== undefined &&
            this.mirror.lstat(absolute).mode !== operation.mode
          ) {
            this.mirror.setMetadata(absolute, { mode: operation.mode });
            return done();
          }
          return unchanged();
        }
        if (existing !== undefined) this.removeEntry(operation.path, absolute, existing);
        this.fs.makeDir(absolute);
        if (operation.mode !== undefined) this.mirror?.setMetadata(absolute, { mode: operation.mode });
        return done();
      }
      case "writeSymlink": {
        if (existing === "symlink" && this.mirror!.readLink(absolute) === operation.target) return unchanged();
        if (this.mirror === undefined) return failed("this file system cannot hold symlinks");
        if (existing !== undefined) this.removeEntry(operation.path, absolute, existing);
        this.mirror.makeSymlink(absolute, operation.target);
        return done();
      }
      case "writeFile":
        return this.writeFile(operation, absolute, existing, entry);
    }
  }

  private writeFile(
    operation: WriteFile,
    absolute: string,
    existing: EntryKind | undefined,
    entry: ApplyEntry,
  ): Omit<ApplyResult, "seq"> {
    const metadata = {
      ...(operation.mode === undefined ? {} : { mode: operation.mode }),
      ...(operation.mtimeMs === undefined ? {} : { mtimeMs: operation.mtimeMs }),
    };
    if (existing === "file" && this.hashOf(operation.path, absolute) === operation.hash) {
      // Same bytes already there: never rewrite them; bring the metadata in line if it differs.
      if (this.mirror === undefined || !metadataDiffers(this.mirror, absolute, metadata)) return unchanged();
      this.mirror.setMetadata(absolute, metadata);
      return done();
    }
    let content = entry.content;
    if (content?.kind === "packed") {
      const unpacked = this.unpack(content, operation);
      if (typeof unpacked === "string") return failed(unpacked);
      content = unpacked;
    }
    if (existing === "dir") {
      this.removeEntry(operation.path, absolute, existing);
      this.verifiedDirs.clear();
    }
    if (this.content === undefined) return this.writePlainFile(operation, absolute, content);
    // Atomic replace, committed with the rest of the request: a symlink, FIFO or older file under the
    // final name is swapped out by rename, and nothing is visible before its bytes are verified and durable.
    let file: StagedFile;
    try {
      file = this.content.stage(operation, content, metadata);
    } catch (error) {
      return failed(describeError(error));
    }
    const result = { outcome: "applied" as const, wroteFile: true, bytesWritten: operation.size };
    this.staged.set(operation.path, { file, hash: operation.hash, result });
    for (let dir = parentOf(operation.path); dir !== ""; dir = parentOf(dir)) this.stagedDirs.add(dir);
    return result;
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
    if (content?.kind !== "inline") return failed(`content ${operation.hash} missing: send it inline`);
    const bytes = decodeLiteral(
      { encoding: content.encoding, data: content.data, size: operation.size },
      this.maxFileBytes,
    );
    const actual = contentIdOf(bytes);
    if (actual !== operation.hash)
      return failed(`hash mismatch: received ${actual}, operation declares ${operation.hash}`);
    this.fs.writeFile(absolute, bytes);
    return { outcome: "applied", wroteFile: true, bytesWritten: bytes.length };
  }

  /** Removes an entry; on a mirror file system it is set aside for reuse until the session ends. */
  private removeEntry(path: string, absolute: string, kind: EntryKind): void {
    if (this.content !== undefined && (kind === "file" || kind === "dir")) {
      this.content.removeToStash(path, kind);
      return;
    }
    if (kind === "dir") this.fs.removeDir(absolute);
    else this.fs.removeFile(absolute);
  }

  private kindOf(absolute: string): EntryKind | undefined {
    if (this.mirror !== undefined) return this.mirror.lstatIfExists(absolute)?.kind;
    if (!this.fs.exists(absolute)) return undefined;
    return this.fs.isDir(absolute) ? "dir" : "file";
  }

  /** The content hash of the file at `path`, from the index when the file has not changed since. */
  private hashOf(path: string, absolute: string, stat = this.mirror?.lstat(absolute)): string {
    const known = stat === undefined ? undefined : indexedHash(this.index, path, stat);
    if (known !== undefined) return known;
    const bytes = this.fs.readFile(absolute);
    const hash = contentIdOf(bytes);
    if (stat !== undefined && stat.size === bytes.length) this.index?.set(path, indexEntry(stat, hash));
    return hash;
  }

  /**
   * Every entry below the root, parents first, with hashes (unchanged files from the index, not re-read);
   * our temp files are left out, and what cannot be described (a FIFO, an unreadable file) is "unknown".
   */
  private manifest(): ManifestEntry[] {
    const scan = scanPath(
      { fs: this.fs, root: this.root, keepContentUpTo: -1, ...(this.index ? { index: this.index } : {}) },
      "",
    );
    return manifestFromTree(scan.node?.kind === "dir" ? scan.node : emptyDir());
  }
}

function metadataDiffers(fs: MirrorFileSystem, absolute: string, wanted: { mode?: number; mtimeMs?: number }): boolean {
  const stat = fs.lstat(absolute);
  return (
    (wanted.mode !== undefined && stat.mode !== wanted.mode) ||
    (wanted.mtimeMs !== undefined && Math.abs(stat.mtimeMs - wanted.mtimeMs) >= 1)
  );
}

function done(): Omit<ApplyResult, "seq"> {
  return { outcome: "applied", wroteFile: false, bytesWritten: 0 };
}

function unchanged(): Omit<ApplyResult, "seq"> {
  return { outcome: "unchanged", wroteFile: false, bytesWritten: 0 };
}

function failed(reason: string): Omit<ApplyResult, "seq"> {
  return { outcome: "failed", wroteFile: false, bytesWritten: 0, reason };
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
