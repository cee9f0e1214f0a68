import { type Chunk, DELTA_MIN_SIZE, replicationChunking } from "../content/chunker.js";
import { type EncodedLiteral, encodeLiteral } from "../content/compression.js";
import { contentIdOf } from "../content/contentId.js";
import { planDelta } from "../content/delta.js";
import { HashCounts } from "../content/hashCounts.js";
import { DEFAULT_LIMITS } from "../events/limits.js";
import type { WriteFile } from "../events/operation.js";
import type { ContentSplit } from "../events/operationLog.js";
import type { ApplyEntry, ApplyRequest, Content, Piece, UploadRequest } from "../events/protocol.js";
import type { TreeNode } from "../events/tree.js";
import { type FileSystem, pathUnder } from "../fs/fileSystem.js";
import { isMirrorFileSystem, type KeptContent, type ReadContent } from "./scan.js";

/** Chunk lists of content versions by hash: what a delta is computed against. A Map fits. */
export interface ChunkLists {
  get(hash: string): Chunk[] | undefined;
  set(hash: string, chunks: Chunk[]): void;
}

/** How a shipped file's bytes travelled, for accounting (the log keeps it per operation). */
export type ContentBytes = ContentSplit;

/** What the target held at a path before an operation: the basis a delta may use. */
export interface ContentBasis {
  hash: string;
  size: number;
}

/**
 * Literal bytes are read and sent in pieces of this size (several per upload request): small pieces
 * keep the short-lived buffers of reading, compressing and framing small, so memory stays flat.
 */
export const PIECE_BYTES = 1024 * 1024;
/** Literal bytes per upload request: a few pieces, so little is held per request in flight. */
const UPLOAD_REQUEST_BYTES = DEFAULT_LIMITS.uploadRequestBytes;
/**
 * Pieces of PIECE_BYTES an upload request holds at most (uploads() closes a request once its literal bytes
 * reach UPLOAD_REQUEST_BYTES): an upload read into this many buffers in turn never has a request point twice
 * at one, as long as each request is encoded before the next piece is read (see uploadAhead).
 */
export const PIECES_PER_UPLOAD = Math.ceil(UPLOAD_REQUEST_BYTES / PIECE_BYTES);
/** zstd level of a pack of small files (it compresses across files, so a little more effort pays)... */
const PACK_LEVEL = 6;
/** ...and of the literal pieces of larger files and deltas. */
const LITERAL_LEVEL = 3;
/** Samples of a large input compressed at level 1 to judge whether the whole is worth compressing... */
const SAMPLES = 4;
/** ...of this many bytes each. */
const SAMPLE_BYTES = 16 * 1024;
/** Whole files up to this size travel in the request's pack (compressed with their neighbours). */
const PACK_FILE_MAX = 1024 * 1024;
/** Files up to this size travel inside the apply request; larger ones stream as uploads. */
export const INLINE_MAX = DEFAULT_LIMITS.inlineFileBytes;
/**
 * Scan-read bytes kept for shipping; beyond them a file is read again (and re-verified) when shipped. The
 * walk plans a directory soon after reading it and ships 1 MiB requests, so a few MiB serve (32 MiB did
 * not make an initial mirror faster, and made it hold that much more).
 */
const CONTENT_CACHE_BYTES = 4 * 1024 * 1024;
/** Consecutive files that did not compress before compression is only probed... */
const COMPRESSION_MISSES_BEFORE_PROBING = 8;
/** ...on one file in this many. */
const COMPRESSION_PROBE_EVERY = 16;

/**
 * Decides how each written file's bytes reach the target, with no round trip: nothing but a reference
 * when the target already holds the content (at any path, or among what this session removed), a
 * delta against the file's previous version when both chunk lists are known, or the whole file,
 * compressed when that pays; files over INLINE_MAX stream as uploads of bounded pieces.
 */
export class ContentShipping {
  readonly totals: ContentBytes = { literal: 0, compressed: 0, matched: 0, reused: 0 };
  /** How many files of each content the target holds, by hash (from its manifest and our operations). */
  private readonly held = new HashCounts();
  /** Content the target set aside when this session removed it (it keeps it for reuse until the session ends). */
  private readonly stashed = new Set<string>();
  /** Content the target turned out not to hold after all: never referenced again this session. */
  private readonly missing = new Set<string>();
  private readonly contents = new Map<string, KeptContent>();
  private contentBytes = 0;
  private compressionMisses = 0;
  private skippedCompressions = 0;
  private nextUpload = 0;
  /** Sizes of the files the target holds (counted as `held` is), and of the content it set aside. */
  private readonly heldSizes = new HashCounts();
  private readonly stashedSizes = new Set<number>();
  /** Uploads sent ahead of their writes (see uploadAhead), by path: the content's hash and what it cost. */
  private readonly uploadedAhead = new Map<string, { uploadId: string; hash: string; content: ContentBytes }>();
  private pack: Uint8Array[] = [];
  private packSize = 0;

  constructor(
    private readonly fs: FileSystem,
    private readonly root: string,
    readonly chunkLists: ChunkLists = new Map(),
  ) {}

  /** Forgets what the target holds (a new manifest follows). */
  resetTarget(): void {
    this.held.clear();
    this.stashed.clear();
    this.heldSizes.clear();
    this.stashedSizes.clear();
    this.uploadedAhead.clear();
  }

  /**
   * Counts the files of a subtree as held by the target, or with -1 as gone from their paths; `stashed`
   * says the target set them aside (it does so for what it removes, not for a file overwritten in place).
   */
  countHeld(node: TreeNode | undefined, delta: 1 | 0 | -1, stashed = false): void {
    if (node === undefined) return;
    if (node.kind === "file") {
      if (delta !== 0) {
        this.held.add(node.hash, delta);
        this.heldSizes.add(String(node.size), delta);
      }
      if (stashed) {
        this.stashed.add(node.hash);
        this.stashedSizes.add(node.size);
      }
    } else if (node.kind === "dir") {
      for (const child of node.children.values()) this.countHeld(child, delta, stashed);
    }
  }

  /**
   * True when the target may hold content of `size` bytes (at any path, or set aside): a file of that size
   * may then travel as a reference, and is not uploaded before its hash is known.
   */
  mayHoldSize(size: number): boolean {
    return this.heldSizes.get(String(size)) > 0 || this.stashedSizes.has(size);
  }

  /**
   * Uploads a file while it is read (`pieces`, which returns what reading it gave), before its write is
   * planned: a large new file then travels while it is hashed and cut instead of after. The write that names it
   * with the hash read ships as that upload (see ship); its bytes count there. A request yielded points at the
   * pieces it holds: `pieces` may reuse a piece's buffer once PIECES_PER_UPLOAD more were read, so each
   * request must be encoded (sent) before this generator is resumed.
   */
  *uploadAhead(path: string, pieces: Generator<Uint8Array, ReadContent>): Generator<UploadRequest, ReadContent> {
    const uploadId = (this.nextUpload++).toString(36);
    const before = { ...this.totals };
    let read: ReadContent | undefined;
    const self = this;
    const literals = (function* (): Generator<Piece> {
      try {
        let step = pieces.next();
        for (; !step.done; step = pieces.next()) yield self.literalPiece(step.value);
        read = step.value;
      } finally {
        // Ended early (the pass was refused, the connection lost): the reader's own `finally` frees the
        // hashing thread it holds.
        if (read === undefined) pieces.return(undefined as unknown as ReadContent);
      }
    })();
    yield* this.uploads(uploadId, path, undefined, literals);
    const content = splitSince(before, this.totals);
    for (const key of CONTENT_KEYS) this.totals[key] -= content[key];
    this.uploadedAhead.set(path, { uploadId, hash: read!.hash, content });
    return read!;
  }

  /** Marks content the target reported missing: it is sent in full from now on. */
  markMissing(hash: string): void {
    this.missing.add(hash);
  }

  /** Keeps bytes read by a scan for shipping, within a budget; beyond it they are read again when shipped. */
  keepContent(path: string, kept: KeptContent): void {
    this.dropContent(path);
    if (this.contentBytes + kept.bytes.length > CONTENT_CACHE_BYTES) return;
    this.contents.set(path, kept);
    this.contentBytes += kept.bytes.length;
  }

  /**
   * The shipped form of a write (and, first, the uploads it needs). `basis` is what the target held at
   * the path before; undefined content means the target already holds exactly these bytes there.
   */
  *ship(seq: number, operation: WriteFile, basis: ContentBasis | undefined): Generator<UploadRequest, ApplyEntry> {
    if (basis?.hash === operation.hash) return { seq, operation };
    const ahead = this.uploadedAhead.get(operation.path);
    this.uploadedAhead.delete(operation.path);
    if (ahead?.hash === operation.hash) {
      for (const key of CONTENT_KEYS) this.totals[key] += ahead.content[key];
      return { seq, operation, content: { kind: "upload", uploadId: ahead.uploadId } };
    }
    if (operation.size > 0 && this.targetHolds(operation.hash)) {
      this.dropContent(operation.path);
      this.totals.reused += operation.size;
      return { seq, operation, content: { kind: "local" } };
    }
    const delta = this.deltaPieces(operation, basis);
    if (operation.size === 0)
      return { seq, operation, content: { kind: "inline", encoding: "raw", data: new Uint8Array(0) } };
    if (delta === undefined && operation.size <= PACK_FILE_MAX) {
      // Small whole files join the request's pack: compressed together, they compress like a stream.
      const bytes = this.reader(operation)(0, operation.size);
      if (bytes === undefined) return { seq, operation }; // changed since scanned: the target answers "missing"
      const offset = this.packSize;
      this.pack.push(bytes);
      this.packSize += bytes.length;
      return { seq, operation, content: { kind: "packed", offset, length: bytes.length } };
    }
    const pieces = delta ?? this.wholePieces(operation);
    if (operation.size <= INLINE_MAX) {
      const content = this.inlineContent(basis, [...pieces]);
      return content === undefined ? { seq, operation } : { seq, operation, content };
    }
    const uploadId = (this.nextUpload++).toString(36);
    // A piece undefined: changed since scanned, the target answers "missing".
    if (!(yield* this.uploads(uploadId, operation.path, pieces.baseHash, pieces))) return { seq, operation };
    return { seq, operation, content: { kind: "upload", uploadId } };
  }

  /**
   * The upload requests carrying `pieces` (about UPLOAD_REQUEST_BYTES of literals each, at least one); false
   * when a piece is undefined (the file no longer reads as scanned): the upload stops there.
   */
  private *uploads(
    uploadId: string,
    path: string,
    baseHash: string | undefined,
    pieces: Iterable<Piece | undefined>,
  ): Generator<UploadRequest, boolean> {
    let offset = 0;
    let batch: Piece[] = [];
    let batchBytes = 0;
    for (const piece of pieces) {
      if (piece === undefined) return false;
      batch.push(piece);
      batchBytes += piece.kind === "literal" ? piece.data.length : 0;
      if (batchBytes >= UPLOAD_REQUEST_BYTES) {
        yield this.upload(uploadId, path, offset, baseHash, batch);
        offset += sizeOfPieces(batch);
        batch = [];
        batchBytes = 0;
      }
    }
    if (batch.length > 0 || offset === 0) yield this.upload(uploadId, path, offset, baseHash, batch);
    return true;
  }

  /** Drops a pack left by requests that were never sent (a refused or broken pass). */
  discardPack(): void {
    this.pack = [];
    this.packSize = 0;
  }

  /**
   * Closes the current pack for the request about to go: its bytes (zstd level 3 when that shrinks them)
   * and the wire share of each packed byte (1 when sent raw), for the per-operation accounting.
   */
  takePack(): { pack: NonNullable<ApplyRequest["pack"]>; wireShare: number } | undefined {
    if (this.packSize === 0) return undefined;
    const raw = this.pack.length === 1 ? this.pack[0]! : Buffer.concat(this.pack);
    this.pack = [];
    this.packSize = 0;
    const literal = this.encode(raw, PACK_LEVEL);
    if (literal.encoding === "zstd") this.totals.compressed += literal.data.length;
    else this.totals.literal += literal.data.length;
    return {
      pack: { encoding: literal.encoding, size: literal.size, data: literal.data },
      wireShare: literal.data.length / Math.max(1, literal.size),
    };
  }

  private upload(uploadId: string, path: string, offset: number, baseHash: string | undefined, pieces: Piece[]) {
    const request: UploadRequest = { type: "upload", uploadId, path, offset, pieces };
    if (baseHash !== undefined) request.baseHash = baseHash;
    return request;
  }

  private inlineContent(basis: ContentBasis | undefined, pieces: (Piece | undefined)[]): Content | undefined {
    if (pieces.some((p) => p === undefined)) return undefined;
    const valid = pieces as Piece[];
    if (valid.length === 1 && valid[0]!.kind === "literal") {
      const only = valid[0]!;
      return { kind: "inline", encoding: only.encoding, data: only.data };
    }
    if (valid.length === 0) return { kind: "inline", encoding: "raw", data: new Uint8Array(0) };
    return { kind: "delta", baseHash: basis!.hash, pieces: valid };
  }

  /** Copy and literal pieces against the previous version, or undefined when a delta cannot help. */
  /**
   * True when a delta for this write is possible but the basis's chunk list is unknown (the target held
   * that version before this source ever read it): worth one `chunks` request for a whole batch.
   */
  needsBasisChunks(operation: WriteFile, basis: ContentBasis | undefined): boolean {
    return (
      basis !== undefined &&
      this.deltaPossible(operation, basis) &&
      this.chunkLists.get(basis.hash) === undefined &&
      this.chunkLists.get(operation.hash) !== undefined
    );
  }

  private deltaPossible(operation: WriteFile, basis: ContentBasis): boolean {
    if (operation.size < DELTA_MIN_SIZE || basis.size < DELTA_MIN_SIZE || this.missing.has(basis.hash)) return false;
    if (this.targetHolds(operation.hash)) return false;
    // Both versions must be cut with the same chunk sizes for their chunks to match.
    return replicationChunking(basis.size).averageSize === replicationChunking(operation.size).averageSize;
  }

  private deltaPieces(operation: WriteFile, basis: ContentBasis | undefined): PieceSource | undefined {
    if (basis === undefined || !this.deltaPossible(operation, basis)) return undefined;
    const baseChunks = this.chunkLists.get(basis.hash);
    const newChunks = this.chunkLists.get(operation.hash);
    if (baseChunks === undefined || newChunks === undefined) return undefined;
    const plan = planDelta(baseChunks, newChunks);
    if (plan.copyBytes === 0) return undefined;
    const reader = this.reader(operation);
    const self = this;
    const source = (function* (): Generator<Piece | undefined> {
      for (const range of plan.ranges) {
        if (range.kind === "copy") {
          self.totals.matched += range.length;
          yield { kind: "copy", offset: range.basisOffset, length: range.length };
          continue;
        }
        for (let at = range.offset; at < range.offset + range.length; at += PIECE_BYTES) {
          const bytes = reader(at, Math.min(PIECE_BYTES, range.offset + range.length - at));
          yield bytes === undefined ? undefined : self.literalPiece(bytes);
        }
      }
    })() as PieceSource;
    source.baseHash = basis.hash;
    return source;
  }

  /** The whole file as literal pieces of at most PIECE_BYTES. */
  private wholePieces(operation: WriteFile): PieceSource {
    const reader = this.reader(operation);
    const self = this;
    return (function* (): Generator<Piece | undefined> {
      // A file sent inline is one piece (one literal); a larger one streams in PIECE_BYTES pieces.
      const pieceBytes = operation.size <= INLINE_MAX ? INLINE_MAX : PIECE_BYTES;
      for (let at = 0; at < operation.size; at += pieceBytes) {
        const bytes = reader(at, Math.min(pieceBytes, operation.size - at));
        yield bytes === undefined ? undefined : self.literalPiece(bytes);
      }
    })() as PieceSource;
  }

  /**
   * Reads ranges of the file as scanned: from the scan's bytes when kept (if they are the version the write
   * states), else from disk. A small file read again is re-hashed (it must still be the scanned version); a
   * large one is verified by the target's final hash.
   */
  private reader(operation: WriteFile): (offset: number, length: number) => Uint8Array | undefined {
    const absolute = pathUnder(this.root, operation.path);
    let kept = this.contents.get(operation.path);
    this.dropContent(operation.path);
    if (kept === undefined && operation.size <= INLINE_MAX) {
      try {
        const bytes = this.fs.readFile(absolute);
        kept = { bytes, hash: contentIdOf(bytes) };
      } catch {
        return () => undefined;
      }
    }
    if (kept !== undefined) {
      const bytes = kept.hash === operation.hash ? kept.bytes : undefined;
      return (offset, length) => bytes?.subarray(offset, offset + length);
    }
    const fs = this.fs;
    if (!isMirrorFileSystem(fs)) return () => undefined;
    return (offset, length) => {
      try {
        const bytes = fs.readFileRange(absolute, offset, length);
        return bytes.length === length ? bytes : undefined;
      } catch {
        return undefined;
      }
    };
  }

  private literalPiece(bytes: Uint8Array): Piece {
    const literal = this.encode(bytes);
    if (literal.encoding === "zstd") this.totals.compressed += literal.data.length;
    else this.totals.literal += literal.data.length;
    return { kind: "literal", encoding: literal.encoding, size: literal.size, data: literal.data };
  }

  /**
   * Compresses when it pays. After a run of incompressible files (media, archives, random data) only every
   * COMPRESSION_PROBE_EVERY-th literal is tried, until one compresses again: no CPU spent for nothing.
   */
  private encode(bytes: Uint8Array, level = LITERAL_LEVEL): EncodedLiteral {
    const probe =
      this.compressionMisses < COMPRESSION_MISSES_BEFORE_PROBING ||
      ++this.skippedCompressions >= COMPRESSION_PROBE_EVERY;
    const raw: EncodedLiteral = { encoding: "raw", data: bytes, size: bytes.length };
    if (!probe) return raw;
    this.skippedCompressions = 0;
    // A large input is sampled first, cheaply, at a few spread-out spots (a pack mixes files): random
    // data, media and archives then cost a few small attempts instead of one large one.
    if (bytes.length > SAMPLES * SAMPLE_BYTES * 4 && !someSampleCompresses(bytes)) {
      this.compressionMisses++;
      return raw;
    }
    const literal = encodeLiteral(bytes, { level });
    this.compressionMisses = literal.encoding === "raw" ? this.compressionMisses + 1 : 0;
    return literal;
  }

  private targetHolds(hash: string): boolean {
    return !this.missing.has(hash) && (this.held.get(hash) > 0 || this.stashed.has(hash));
  }

  private dropContent(path: string): void {
    const kept = this.contents.get(path);
    if (kept === undefined) return;
    this.contents.delete(path);
    this.contentBytes -= kept.bytes.length;
  }
}

const CONTENT_KEYS = ["literal", "compressed", "matched", "reused"] as const;

/** What `after` counts beyond `before`. */
export function splitSince(before: ContentBytes, after: ContentBytes): ContentBytes {
  return {
    literal: after.literal - before.literal,
    compressed: after.compressed - before.compressed,
    matched: after.matched - before.matched,
    reused: after.reused - before.reused,
  };
}

/** Pieces of one file, produced lazily; undefined marks a read that no longer matches the scan. */
type PieceSource = Generator<Piece | undefined> & { baseHash?: string };

function sizeOfPieces(pieces: readonly Piece[]): number {
  let size = 0;
  for (const piece of pieces) size += piece.kind === "copy" ? piece.length : piece.size;
  return size;
}

/** True when any of SAMPLES evenly spread SAMPLE_BYTES-long pieces of `bytes` shrinks under zstd. */
function someSampleCompresses(bytes: Uint8Array): boolean {
  const step = Math.floor((bytes.length - SAMPLE_BYTES) / (SAMPLES - 1));
  for (let i = 0; i < SAMPLES; i++) {
    const at = i * step;
    if (encodeLiteral(bytes.subarray(at, at + SAMPLE_BYTES)).encoding === "zstd") return true;
  }
  return false;
}
