import { posix } from "node:path";
import { HashingChunker, replicationChunking } from "../content/chunker.js";
import { decodeLiteral } from "../content/compression.js";
import { ContentHasher } from "../content/contentId.js";
import type { WriteFile } from "../events/operation.js";
import { parentOf } from "../events/paths.js";
import type { Content, FailureCode, Piece, Response, UploadRequest } from "../events/protocol.js";
import type { ContentIndex, IndexedFile } from "../events/stateStore.js";
import type { EntryMetadata, EntryStat, MirrorFileSystem, StagedFile, StagedWriter } from "../fs/fileSystem.js";
import { describeError, indexedHash, STREAM_PIECE } from "./scan.js";
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

/** What a TargetContent works with. */
export interface TargetContentOptions {
  fs: MirrorFileSystem;
  /** Absolute root of the target tree. */
  root: string;
  index: ContentIndex;
  maxFileBytes: number;
  /** Told before a directory's entries change (temps, the stash), so its metadata is restored after. */
  dirs: TargetDirectories;
}

/** A file being assembled by upload requests. */
interface Upload {
  writer: StagedWriter;
  hasher: ContentHasher;
  path: string;
  baseHash: string | undefined;
  failure?: string;
}

/** Removals set aside per session before the stash is emptied. */
const STASH_MAX_ENTRIES = 100_000;

/**
 * The target's side of "content travels only when the target lacks it": assembles a written file's
 * bytes from what the request carries (inline bytes, a delta against the file at the same path, an
 * upload) or from what the target already holds (a file with the same content elsewhere, or one this
 * session removed and set aside), verifying size and hash before anything can become visible.
 */
export class TargetContent {
  private readonly stashRoot: string;
  /** Removed files set aside for reuse, by hash: absolute path in the stash and what it looked like. */
  private readonly stash = new Map<string, { path: string; stat: IndexedFile }[]>();
  private stashCount = 0;
  private readonly uploads = new Map<string, Upload>();

  private readonly fs: MirrorFileSystem;
  private readonly root: string;
  private readonly index: ContentIndex;
  private readonly maxFileBytes: number;
  private readonly dirs: TargetDirectories;

  constructor(options: TargetContentOptions) {
    ({ fs: this.fs, root: this.root, index: this.index, maxFileBytes: this.maxFileBytes, dirs: this.dirs } = options);
    // Where removed files wait: inside the root (same file system, so taking one back is a rename), under
    // a name of the file system's own namespace, so no replicated name can collide with it.
    this.stashRoot = posix.join(this.root, this.fs.internalName("stash"));
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
    const absolute = posix.join(this.root, path);
    // Bounded: past the limit the stash is emptied; a source that assumed something in it then gets
    // "content missing" and sends the bytes.
    if (this.stashCount >= STASH_MAX_ENTRIES) {
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
    const answer = (upload: Upload | undefined, reason?: string): Response => ({
      type: "uploaded",
      uploadId: request.uploadId,
      size: upload?.writer.size ?? 0,
      ...(reason === undefined ? {} : { reason }),
    });
    let upload = this.uploads.get(request.uploadId);
    if (request.offset === 0) {
      upload?.writer.abort();
      this.dirs.willChange(parentOf(request.path));
      upload = {
        writer: this.fs.openStaged(posix.join(this.root, request.path)),
        hasher: new ContentHasher(),
        path: request.path,
        baseHash: request.baseHash,
      };
      this.uploads.set(request.uploadId, upload);
    }
    if (upload === undefined) return answer(undefined, `upload ${request.uploadId} missing: it never started`);
    if (upload.failure !== undefined) return answer(upload, upload.failure);
    if (request.path !== upload.path || request.offset !== upload.writer.size) {
      upload.failure = `upload ${request.uploadId} out of order: at ${upload.writer.size}, request offset ${request.offset}`;
      return answer(upload, upload.failure);
    }
    try {
      this.appendPieces(upload.writer, upload.hasher, request.pieces, upload.path, upload.baseHash);
    } catch (error) {
      upload.failure = describeError(error);
      return answer(upload, upload.failure);
    }
    return answer(upload);
  }

  /**
   * Stages the bytes `content` describes for `operation` beside its final path, verified to be exactly
   * `operation.size` bytes hashing to `operation.hash`. Throws ContentError when they cannot be had.
   */
  stage(operation: WriteFile, content: Content | undefined, metadata: EntryMetadata): StagedFile {
    const absolute = posix.join(this.root, operation.path);
    if (operation.size > this.maxFileBytes) {
      throw new ContentError(
        "io",
        `file of ${operation.size} bytes exceeds the target's limit of ${this.maxFileBytes}`,
      );
    }
    switch (content?.kind) {
      case undefined:
      case "local":
        return this.stageLocal(operation, absolute, metadata);
      case "inline": {
        const bytes = decodeLiteral(
          { encoding: content.encoding, data: content.data, size: operation.size },
          this.maxFileBytes,
        );
        const writer = this.fs.openStaged(absolute);
        const hasher = new ContentHasher();
        writer.write(bytes);
        hasher.update(bytes);
        return this.finish(writer, hasher, operation, metadata);
      }
      case "delta": {
        const writer = this.fs.openStaged(absolute);
        const hasher = new ContentHasher();
        try {
          this.appendPieces(writer, hasher, content.pieces, operation.path, content.baseHash);
        } catch (error) {
          writer.abort();
          throw error;
        }
        return this.finish(writer, hasher, operation, metadata);
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
          throw new ContentError("missing-content", `upload failed (content missing): ${upload.failure}`);
        }
        if (upload.path !== operation.path) {
          upload.writer.abort();
          throw new ContentError(
            "missing-content",
            `upload ${content.uploadId} was for ${upload.path}, not ${operation.path}`,
          );
        }
        return this.finish(upload.writer, upload.hasher, operation, metadata);
      }
    }
  }

  /** Chunk lists of files the target holds, for a source that has to compute a delta without them. */
  chunkLists(paths: readonly string[]): Response {
    const files: { path: string; hash: string; chunks: { offset: number; length: number; id: string }[] }[] = [];
    for (const path of paths) {
      const absolute = posix.join(this.root, path);
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

  private finish(
    writer: StagedWriter,
    hasher: ContentHasher,
    operation: WriteFile,
    metadata: EntryMetadata,
  ): StagedFile {
    const size = writer.size;
    const hash = hasher.digest();
    if (size !== operation.size || hash !== operation.hash) {
      writer.abort();
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
      const from = posix.join(this.root, path);
      const stat = this.fs.lstatIfExists(from);
      if (stat?.kind !== "file" || indexedHash(this.index, path, stat) !== operation.hash) continue;
      const writer = this.fs.openStaged(absolute);
      const hasher = new ContentHasher();
      try {
        for (let offset = 0; offset < stat.size; offset += STREAM_PIECE) {
          const bytes = this.fs.readFileRange(from, offset, STREAM_PIECE);
          writer.write(bytes);
          hasher.update(bytes);
        }
      } catch (error) {
        writer.abort();
        throw error;
      }
      return this.finish(writer, hasher, operation, metadata);
    }
    throw new ContentError("missing-content", `content ${operation.hash} missing: the target does not hold it`);
  }

  /** Writes pieces in order: literals decoded (within the size limit), copies read from the basis. */
  private appendPieces(
    writer: StagedWriter,
    hasher: ContentHasher,
    pieces: readonly Piece[],
    path: string,
    baseHash: string | undefined,
  ): void {
    const basis = posix.join(this.root, path);
    let basisChecked = false;
    for (const piece of pieces) {
      if (piece.kind === "literal") {
        const room = this.maxFileBytes - writer.size;
        const bytes = decodeLiteral(piece, room);
        writer.write(bytes);
        hasher.update(bytes);
        continue;
      }
      if (baseHash === undefined) throw new ContentError("missing-basis", "copy piece without a basis");
      if (!basisChecked) {
        this.checkBasis(path, basis, baseHash);
        basisChecked = true;
      }
      if (writer.size + piece.length > this.maxFileBytes)
        throw new ContentError("io", "delta output exceeds the size limit");
      for (let at = piece.offset; at < piece.offset + piece.length; at += STREAM_PIECE) {
        const want = Math.min(STREAM_PIECE, piece.offset + piece.length - at);
        const bytes = this.fs.readFileRange(basis, at, want);
        if (bytes.length !== want)
          throw new ContentError(
            "missing-basis",
            `basis missing: copy range ${at}+${want} lies past the end of ${path}`,
          );
        writer.write(bytes);
        hasher.update(bytes);
      }
    }
  }

  /** The file at `path` must be the version the delta was computed against. */
  private checkBasis(path: string, absolute: string, baseHash: string): void {
    const stat = this.fs.lstatIfExists(absolute);
    if (stat?.kind !== "file") throw new ContentError("missing-basis", `basis missing: no file at ${path}`);
    let hash = indexedHash(this.index, path, stat);
    if (hash === undefined) {
      const hasher = new ContentHasher();
      const scratch = new Uint8Array(STREAM_PIECE);
      for (let offset = 0; offset < stat.size; offset += STREAM_PIECE) {
        hasher.update(this.fs.readFileRange(absolute, offset, STREAM_PIECE, scratch));
      }
      hash = hasher.digest();
    }
    if (hash !== baseHash)
      throw new ContentError("missing-basis", `basis mismatch: ${path} holds ${hash}, the delta expects ${baseHash}`);
  }

  private clearStash(): void {
    this.stash.clear();
    if (!this.fs.exists(this.stashRoot)) return;
    this.dirs.willChange("");
    this.fs.removeDir(this.stashRoot);
  }
}
