import { posix } from "node:path";
import { HashingChunker, replicationChunking } from "../content/chunker.js";
import { CompressionError, decodeLiteral, type EncodedLiteral } from "../content/compression.js";
import { ContentHasher } from "../content/contentId.js";
import { type Limits, reservedBytes } from "../events/limits.js";
import type { WriteFile } from "../events/operation.js";
import { parentOf } from "../events/paths.js";
import type { Content, FailureCode, Piece, Response, UploadRequest } from "../events/protocol.js";
import type { ContentIndex, IndexedFile } from "../events/stateStore.js";
import {
  type EntryMetadata,
  type EntryStat,
  type MirrorFileSystem,
  pathUnder,
  type StagedFile,
  type StagedWriter,
} from "../fs/fileSystem.js";
import { describeError, indexEntry, indexedHash, STREAM_PIECE } from "./scan.js";
import type { TargetDirectories } from "./targetDirectories.js";

/** Why content could not be assembled; the code says what the target lacked or what did not match. */
export class ContentError extends Error {
  override readonly name = "ContentError";
  constructor(
    readonly code: FailureCode,
    message: string,
  ) {
    super(message);
  }
}

/** Free and total bytes of the file system holding the target, or undefined when it cannot tell. */
export type FreeSpace = () => { free: number; total: number } | undefined;

/** What a TargetContent works with. */
export interface TargetContentOptions {
  fs: MirrorFileSystem;
  /** Absolute root of the target tree. */
  root: string;
  index: ContentIndex;
  /** The limits in force (checked by the target that builds this). */
  limits: Limits;
  /** Space staging may use; nothing is staged into the reserve the limits keep free. */
  freeSpace: FreeSpace;
  /** Told before a directory's entries change (temps, the stash), so its metadata is restored after. */
  dirs: TargetDirectories;
}

/** A file being assembled by upload requests. */
interface Upload {
  writer: StagedWriter;
  hasher: ContentHasher;
  path: string;
  baseHash: string | undefined;
  /** The basis was taken on the index's word: a wrong final hash then means the index row was wrong. */
  basisFromIndex: boolean;
  failure?: { code: FailureCode; reason: string };
}

/** Bytes a file being assembled may grow to, and which limit says so (named in a refusal). */
interface GrowthCap {
  bytes: number;
  limit: string;
}

/**
 * The target's side of "content travels only when the target lacks it": assembles a written file's
 * bytes from what the request carries (inline bytes, a delta against the file at the same path, an
 * upload) or from what the target already holds (a file with the same content elsewhere, or one this
 * session removed and set aside), verifying size and hash before anything can become visible.
 * Every byte a peer makes it decode, copy or stage is counted against a limit before it is spent.
 */
export class TargetContent {
  private readonly stashRoot: string;
  /** Removed files set aside for reuse, by hash: absolute path in the stash and what it looked like. */
  private readonly stash = new Map<string, { path: string; stat: IndexedFile }[]>();
  private stashCount = 0;
  private readonly uploads = new Map<string, Upload>();
  /** Literal bytes decoded for the request being handled (the limit `maxDecodedRequestBytes`). */
  private decodedThisRequest = 0;
  /**
   * Free space as the request found it (one statfs per request, not per file) and the bytes staged since:
   * what the request stages in all must fit, so the check is as strict as asking before every file.
   */
  private spaceThisRequest: { free: number; total: number } | undefined;
  private stagedThisRequest = 0;

  private readonly fs: MirrorFileSystem;
  private readonly root: string;
  private readonly index: ContentIndex;
  private readonly limits: Limits;
  private readonly freeSpace: FreeSpace;
  private readonly dirs: TargetDirectories;

  constructor(options: TargetContentOptions) {
    ({
      fs: this.fs,
      root: this.root,
      index: this.index,
      limits: this.limits,
      freeSpace: this.freeSpace,
      dirs: this.dirs,
    } = options);
    // Where removed files wait: inside the root (same file system, so taking one back is a rename), under
    // a name of the file system's own namespace, so no replicated name can collide with it.
    this.stashRoot = posix.join(this.root, this.fs.internalName("stash"));
  }

  /** Starts counting a new request's decoded bytes. */
  beginRequest(): void {
    this.decodedThisRequest = 0;
    this.spaceThisRequest = undefined;
    this.stagedThisRequest = 0;
  }

  /** Ends the session: unfinished uploads and the stash are removed. */
  close(): void {
    for (const upload of this.uploads.values()) upload.writer.abort();
    this.uploads.clear();
    this.clearStash();
  }

  /**
   * Removes the entry at `path` (relative) by moving it into the stash, so its content can be reused by a
   * later write in this session (a rename or move costs no bytes). Its index entries move with it.
   */
  removeToStash(path: string, kind: EntryStat["kind"]): void {
    const absolute = pathUnder(this.root, path);
    // Bounded: past the limit the stash is emptied; a source that assumed something in it then gets
    // "content missing" and sends the bytes.
    if (this.stashCount >= this.limits.maxStashEntries) {
      this.clearStash();
      this.stashCount = 0;
    }
    this.dirs.willChangeEntry(path);
    if (!this.fs.exists(this.stashRoot)) {
      this.dirs.willChange("");
      this.fs.makeDir(this.stashRoot);
    }
    const stashed = posix.join(this.stashRoot, (this.stashCount++).toString(36));
    // Moving a directory to another parent rewrites its ".." entry: a non-root owner needs write on it.
    if (kind === "dir") {
      const mode = this.fs.lstat(absolute).mode;
      if ((mode & 0o700) !== 0o700) this.fs.setMetadata(absolute, { mode: mode | 0o700 });
    }
    this.fs.rename(absolute, stashed);
    const entries =
      kind === "dir" ? this.index.entriesBelow(path) : kind === "file" ? [[path, this.index.get(path)]] : [];
    for (const [indexed, entry] of entries as [string, IndexedFile | undefined][]) {
      this.index.delete(indexed);
      if (entry === undefined) continue;
      const at = indexed === path ? stashed : posix.join(stashed, indexed.slice(path.length + 1));
      const list = this.stash.get(entry.hash) ?? [];
      list.push({ path: at, stat: entry });
      this.stash.set(entry.hash, list);
    }
  }

  /** Appends an upload request's pieces to the file it assembles. */
  upload(request: UploadRequest): Response {
    const answer = (upload: Upload | undefined, failure?: { code: FailureCode; reason: string }): Response => ({
      type: "uploaded",
      uploadId: request.uploadId,
      size: upload?.writer.size ?? 0,
      ...(failure === undefined ? {} : failure),
    });
    let upload = this.uploads.get(request.uploadId);
    if (request.offset === 0) {
      if (upload !== undefined) {
        upload.writer.abort();
        this.uploads.delete(request.uploadId);
      }
      // Each upload holds an open temp file until an apply names it: their number is bounded.
      if (this.uploads.size >= this.limits.maxOpenUploads) {
        return answer(undefined, {
          code: "limit",
          reason: `${quote(request.path)}: ${this.uploads.size} uploads already open (limit maxOpenUploads ${this.limits.maxOpenUploads})`,
        });
      }
      this.dirs.willChange(parentOf(request.path));
      upload = {
        writer: this.fs.openStaged(pathUnder(this.root, request.path)),
        hasher: new ContentHasher(),
        path: request.path,
        baseHash: request.baseHash,
        basisFromIndex: false,
      };
      this.uploads.set(request.uploadId, upload);
    }
    if (upload === undefined)
      return answer(undefined, {
        code: "missing-content",
        reason: `upload ${request.uploadId} missing: it never started`,
      });
    if (upload.failure !== undefined) return answer(upload, upload.failure);
    if (request.path !== upload.path || request.offset !== upload.writer.size) {
      upload.failure = {
        code: "missing-content",
        reason: `upload ${request.uploadId} out of order: at ${upload.writer.size}, request offset ${request.offset}`,
      };
      return answer(upload, upload.failure);
    }
    try {
      // The final size is stated only by the apply that names the upload: until then it may grow to the
      // per-file limit, and each request's growth must fit the free space before any of it is written.
      this.checkSpace(upload.path, sizeOfPieces(request.pieces));
      const cap = { bytes: this.limits.maxFileBytes, limit: `maxFileBytes ${this.limits.maxFileBytes}` };
      const assembly = this.appendPieces(
        upload.writer,
        upload.hasher,
        request.pieces,
        upload.path,
        upload.baseHash,
        cap,
      );
      upload.basisFromIndex ||= assembly.basisFromIndex;
    } catch (error) {
      upload.failure = { code: error instanceof ContentError ? error.code : "io", reason: describeError(error) };
      // The temp goes now, not when an apply names it: a refused upload holds no disk and no descriptor.
      upload.writer.abort();
      return answer(upload, upload.failure);
    }
    return answer(upload);
  }

  /**
   * Decodes the request's pack of small files (bounded by the piece and request limits). Throws
   * ContentError naming the limit when it declares more than they allow.
   */
  unpack(pack: EncodedLiteral): Uint8Array {
    return this.decode(pack, "the request's pack", pack.size);
  }

  /**
   * Stages the bytes `content` describes for `operation` beside its final path, verified to be exactly
   * `operation.size` bytes hashing to `operation.hash`. Throws ContentError when they cannot be had, or
   * when they would pass a limit (checked before anything is decoded, copied or written). The caller has
   * looked at the final path and replaced a directory there, or knows it absent (FreshDirectories): the temp
   * is not checked against one again; one that appears meanwhile fails the commit's rename.
   */
  stage(operation: WriteFile, content: Content | undefined, metadata: EntryMetadata): StagedFile {
    const absolute = pathUnder(this.root, operation.path);
    if (operation.size > this.limits.maxFileBytes) {
      throw new ContentError(
        "limit",
        `${quote(operation.path)}: file of ${operation.size} bytes exceeds the target's limit maxFileBytes ${this.limits.maxFileBytes}`,
      );
    }
    // A delta may grow the temp to the declared size and not one byte further.
    const cap = { bytes: operation.size, limit: `the declared size ${operation.size}` };
    switch (content?.kind) {
      case undefined:
      case "local":
        return this.stageLocal(operation, absolute, metadata);
      case "inline": {
        // The temp will hold the declared size: it must fit beside the reserve before a byte is decoded.
        this.checkSpace(operation.path, operation.size);
        const bytes = this.decode(
          { encoding: content.encoding, data: content.data, size: operation.size },
          quote(operation.path),
          operation.size,
        );
        const writer = this.fs.openStaged(absolute, metadata.mode, true);
        const hasher = new ContentHasher();
        writer.write(bytes);
        hasher.update(bytes);
        return this.finish(writer, hasher, operation, metadata);
      }
      case "delta": {
        this.checkSpace(operation.path, operation.size);
        const writer = this.fs.openStaged(absolute, metadata.mode, true);
        const hasher = new ContentHasher();
        let basisFromIndex: boolean;
        try {
          ({ basisFromIndex } = this.appendPieces(
            writer,
            hasher,
            content.pieces,
            operation.path,
            content.baseHash,
            cap,
          ));
        } catch (error) {
          writer.abort();
          throw error;
        }
        return this.finish(writer, hasher, operation, metadata, basisFromIndex);
      }
      case "packed":
        throw new ContentError("io", "packed content is taken out of its request's pack before staging");
      case "upload": {
        const upload = this.uploads.get(content.uploadId);
        this.uploads.delete(content.uploadId);
        if (upload === undefined)
          throw new ContentError("missing-content", `content missing: upload ${content.uploadId} is unknown`);
        if (upload.failure !== undefined) {
          upload.writer.abort();
          // A limit stays a limit: sending the same bytes again would pass it again.
          const code =
            upload.failure.code === "limit" || upload.failure.code === "no-space"
              ? upload.failure.code
              : "missing-content";
          throw new ContentError(code, `upload failed (content missing): ${upload.failure.reason}`);
        }
        if (upload.path !== operation.path) {
          upload.writer.abort();
          throw new ContentError(
            "missing-content",
            `upload ${content.uploadId} was for ${upload.path}, not ${operation.path}`,
          );
        }
        return this.finish(upload.writer, upload.hasher, operation, metadata, upload.basisFromIndex);
      }
    }
  }

  /** Chunk lists of files the target holds, for a source that has to compute a delta without them. */
  chunkLists(paths: readonly string[]): Response {
    const files: { path: string; hash: string; chunks: { offset: number; length: number; id: string }[] }[] = [];
    for (const path of paths) {
      const absolute = pathUnder(this.root, path);
      try {
        const stat = this.fs.lstat(absolute);
        if (stat.kind !== "file") continue;
        const chunker = new HashingChunker(replicationChunking(stat.size));
        const chunks = [];
        const scratch = new Uint8Array(STREAM_PIECE);
        for (let offset = 0; offset < stat.size; offset += STREAM_PIECE) {
          chunks.push(...chunker.push(this.fs.readFileRange(absolute, offset, STREAM_PIECE, scratch)));
        }
        chunks.push(...chunker.finish());
        files.push({ path, hash: chunker.contentId, chunks });
      } catch {
        // Unreadable: left out; the source sends that file whole.
      }
    }
    return { type: "chunks", files };
  }

  /**
   * Refuses to stage `bytes` more at `path` unless they fit the free space minus the reserve the limits
   * keep (checked before a byte is written, so a full disk is a refusal, not a half-written temp).
   */
  private checkSpace(path: string, bytes: number): void {
    if (bytes === 0) return;
    this.spaceThisRequest ??= this.freeSpace();
    const space = this.spaceThisRequest;
    if (space === undefined) return;
    const usable = space.free - this.stagedThisRequest - reservedBytes(this.limits, space.total);
    if (bytes > usable) {
      throw new ContentError(
        "no-space",
        // Worded like the kernel's refusal (the same condition, found before a byte is written), with the
        // absolute path, as a file system error names it.
        `ENOSPC: no space left on device: ${pathUnder(this.root, path)} needs ${bytes} bytes, ${Math.max(0, usable)} free beyond the reserve (limits reserveBytes/reserveFraction)`,
      );
    }
    this.stagedThisRequest += bytes;
  }

  /**
   * Decodes a literal of `declared` bytes for `what`, refusing before any work when it declares more than
   * one piece or what is left of this request's budget may decode to (the decoder never outgrows it).
   */
  private decode(literal: EncodedLiteral, what: string, declared: number): Uint8Array {
    const { maxDecodedPieceBytes, maxDecodedRequestBytes } = this.limits;
    if (declared > maxDecodedPieceBytes) {
      throw new ContentError(
        "limit",
        `${what}: literal declares ${declared} bytes, over the limit maxDecodedPieceBytes ${maxDecodedPieceBytes}`,
      );
    }
    if (this.decodedThisRequest + declared > maxDecodedRequestBytes) {
      throw new ContentError(
        "limit",
        `${what}: literal of ${declared} bytes after ${this.decodedThisRequest} decoded in this request passes the limit maxDecodedRequestBytes ${maxDecodedRequestBytes}`,
      );
    }
    this.decodedThisRequest += declared;
    try {
      return decodeLiteral(literal, declared);
    } catch (error) {
      if (error instanceof CompressionError) throw new ContentError("io", `${what}: ${error.message}`);
      throw error;
    }
  }

  /** Checks the assembled bytes; a wrong final hash over a basis taken on the index's word drops its row. */
  private finish(
    writer: StagedWriter,
    hasher: ContentHasher,
    operation: WriteFile,
    metadata: EntryMetadata,
    basisFromIndex = false,
  ): StagedFile {
    const size = writer.size;
    const hash = hasher.digest();
    if (size !== operation.size || hash !== operation.hash) {
      writer.abort();
      // The copies came from a basis whose hash only the index vouched for: it may be the index that lied.
      if (basisFromIndex) this.index.delete(operation.path);
      throw new ContentError(
        "hash-mismatch",
        `hash mismatch: assembled ${size} bytes hashing to ${hash}, operation declares ${operation.size} bytes ${operation.hash}`,
      );
    }
    return writer.finish(metadata);
  }

  /** Takes the content from the stash (a move) or copies it from a live file holding it. */
  private stageLocal(operation: WriteFile, absolute: string, metadata: EntryMetadata): StagedFile {
    const stashed = this.stash.get(operation.hash) ?? [];
    while (stashed.length > 0) {
      const candidate = stashed.pop()!;
      const stat = this.fs.lstatIfExists(candidate.path);
      // A rename changes ctime, so the stash trusts size, mtime and inode.
      if (
        stat?.kind === "file" &&
        stat.size === candidate.stat.size &&
        stat.mtimeMs === candidate.stat.mtimeMs &&
        stat.ino === candidate.stat.ino
      ) {
        return this.fs.stageExisting(candidate.path, absolute, metadata);
      }
    }
    for (const path of this.index.pathsWithHash(operation.hash)) {
      const from = pathUnder(this.root, path);
      const stat = this.fs.lstatIfExists(from);
      if (stat?.kind !== "file" || indexedHash(this.index, path, stat) !== operation.hash) continue;
      // A copy takes space (taking a file back from the stash above is a rename, and takes none).
      this.checkSpace(operation.path, operation.size);
      const writer = this.fs.openStaged(absolute, metadata.mode, true);
      const hasher = new ContentHasher();
      try {
        for (let offset = 0; offset < stat.size && offset < operation.size; offset += STREAM_PIECE) {
          const bytes = this.fs.readFileRange(from, offset, STREAM_PIECE);
          writer.write(bytes);
          hasher.update(bytes);
        }
      } catch (error) {
        writer.abort();
        throw error;
      }
      if (writer.size === operation.size && hasher.digest() === operation.hash) return writer.finish(metadata);
      // The index vouched for bytes the file does not hold: forget that, and try the next holder.
      writer.abort();
      this.index.delete(path);
    }
    throw new ContentError("missing-content", `content ${operation.hash} missing: the target does not hold it`);
  }

  /**
   * Writes pieces in order: literals decoded, copies read from the basis. The file never grows past `cap`
   * (checked before each piece is decoded or copied), and a copy must lie inside the basis.
   */
  private appendPieces(
    writer: StagedWriter,
    hasher: ContentHasher,
    pieces: readonly Piece[],
    path: string,
    baseHash: string | undefined,
    cap: GrowthCap,
  ): { basisFromIndex: boolean } {
    const basis = pathUnder(this.root, path);
    let basisState: { size: number; fromIndex: boolean } | undefined;
    const grow = (bytes: number) => {
      if (writer.size + bytes > cap.bytes) {
        throw new ContentError(
          "limit",
          `${quote(path)}: ${bytes} bytes more after ${writer.size} pass ${cap.limit} (temp bytes per file)`,
        );
      }
    };
    for (const piece of pieces) {
      if (piece.kind === "literal") {
        grow(piece.size);
        const bytes = this.decode(piece, quote(path), piece.size);
        writer.write(bytes);
        hasher.update(bytes);
        continue;
      }
      if (baseHash === undefined) throw new ContentError("missing-basis", "copy piece without a basis");
      basisState ??= this.checkBasis(path, basis, baseHash);
      if (piece.offset + piece.length > basisState.size) {
        throw new ContentError(
          "missing-basis",
          `basis missing: copy range ${piece.offset}+${piece.length} lies past the end of ${quote(path)} (${basisState.size} bytes)`,
        );
      }
      grow(piece.length);
      for (let at = piece.offset; at < piece.offset + piece.length; at += STREAM_PIECE) {
        const want = Math.min(STREAM_PIECE, piece.offset + piece.length - at);
        const bytes = this.fs.readFileRange(basis, at, want);
        if (bytes.length !== want)
          throw new ContentError(
            "missing-basis",
            `basis missing: copy range ${at}+${want} lies past the end of ${quote(path)}`,
          );
        writer.write(bytes);
        hasher.update(bytes);
      }
    }
    return { basisFromIndex: basisState?.fromIndex ?? false };
  }

  /**
   * The file at `path` must be the version the delta was computed against. The index is a hint: when it
   * disagrees with the delta, the file is read, and a row that turns out wrong is corrected.
   */
  private checkBasis(path: string, absolute: string, baseHash: string): { size: number; fromIndex: boolean } {
    const stat = this.fs.lstatIfExists(absolute);
    if (stat?.kind !== "file") throw new ContentError("missing-basis", `basis missing: no file at ${path}`);
    const indexed = indexedHash(this.index, path, stat);
    if (indexed === baseHash) return { size: stat.size, fromIndex: true };
    const hasher = new ContentHasher();
    const scratch = new Uint8Array(STREAM_PIECE);
    for (let offset = 0; offset < stat.size; offset += STREAM_PIECE) {
      hasher.update(this.fs.readFileRange(absolute, offset, STREAM_PIECE, scratch));
    }
    const hash = hasher.digest();
    const after = this.fs.lstatIfExists(absolute);
    // Only a file that held still while it was read may correct its row.
    if (
      indexed !== undefined &&
      indexed !== hash &&
      after !== undefined &&
      indexedHash(this.index, path, after) === indexed
    )
      this.index.set(path, indexEntry(after, hash));
    if (hash !== baseHash)
      throw new ContentError("missing-basis", `basis mismatch: ${path} holds ${hash}, the delta expects ${baseHash}`);
    return { size: stat.size, fromIndex: false };
  }

  /**
   * Removes the stash. Someone renaming entries inside it meanwhile makes a removal fail with ENOTEMPTY
   * (or ENOENT); each new attempt lists it afresh. A stash that still cannot go is reported by the caller
   * (and, with a random per-instance name, listed and removed by the next run).
   */
  private clearStash(): void {
    this.stash.clear();
    for (let attempt = 1; this.fs.exists(this.stashRoot); attempt++) {
      this.dirs.willChange("");
      try {
        this.fs.removeDir(this.stashRoot);
      } catch (error) {
        const code = (error as { code?: string }).code;
        if ((code !== "ENOTEMPTY" && code !== "ENOENT") || attempt >= STASH_REMOVAL_ATTEMPTS) throw error;
      }
    }
  }
}

/** Times the stash's removal is tried again when entries move inside it meanwhile. */
const STASH_REMOVAL_ATTEMPTS = 5;

/** Bytes `pieces` add to a file: literal sizes as declared plus copy lengths. */
function sizeOfPieces(pieces: readonly Piece[]): number {
  let bytes = 0;
  for (const piece of pieces) bytes += piece.kind === "literal" ? piece.size : piece.length;
  return bytes;
}

/** A relative path as refusals name it: quoted, so a hostile name cannot break the line. */
function quote(path: string): string {
  return JSON.stringify(path);
}
