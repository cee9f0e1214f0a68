import { createHash, type Hash } from "node:crypto";
import { ContentHasher, type ContentId, contentIdOf, type WholeContentHasher } from "./contentId.js";

/*
 * FastCDC content-defined chunking (Xia et al., 2016/2020) with a 32-bit gear hash and
 * normalised chunking. Chunk boundaries are part of the wire protocol: the source remembers
 * the target's chunk list and ships copy instructions against it, so the same bytes must cut
 * at the same places on every machine and every release. Hence the gear table below is
 * generated from a fixed seed by a fixed PRNG and must never change; `test/content` pins it.
 *
 * The cut rule, per chunk (L = the chunk's length once the current byte is included):
 *   - bytes with L <= minSize are not hashed (FastCDC's cut-point skipping);
 *   - hash state starts at 0 for every chunk and is h = (h << 1) + GEAR[byte], mod 2^32;
 *   - with L < averageSize the cut test is (h & MASK_STRICT) === 0, else (h & MASK_LOOSE) === 0;
 *   - a cut includes the current byte; L === maxSize always cuts; the input's end always cuts.
 * Both masks take the top bits of h, because bit k of a gear hash depends on the last k + 1
 * bytes: the top bits see the widest window. MASK_STRICT has log2(averageSize) + 2 bits and
 * MASK_LOOSE log2(averageSize) - 2 (normalisation level 2), which pulls chunk sizes toward the
 * average from both sides.
 */

/** Seed of the gear table's PRNG. Changing it changes every chunk boundary: never change it. */
const GEAR_SEED = 0x6d6c6f67; // "mlog"

/**
 * splitmix32: add the golden-ratio increment, then the murmur3 32-bit finaliser. Small, has no
 * bad seeds, and is fully specified here so the table can be regenerated anywhere.
 */
function splitmix32Sequence(seed: number, count: number): Int32Array {
  const values = new Int32Array(count);
  let state = seed | 0;
  for (let i = 0; i < count; i++) {
    state = (state + 0x9e3779b9) | 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    values[i] = z ^ (z >>> 16);
  }
  return values;
}

/** Signed 32-bit views of the gear values keep the hot loop in small-integer arithmetic. */
const GEAR = splitmix32Sequence(GEAR_SEED, 256);

/** The 256 gear-table values as unsigned 32-bit numbers (a copy, for pinning and inspection). */
export function gearTableValues(): number[] {
  return Array.from(GEAR, (value) => value >>> 0);
}

/** Chunk size limits in bytes. The average also sets the cut masks. */
export interface ChunkerOptions {
  /** No chunk is shorter than this, except the last chunk of the input. */
  minSize: number;
  /** The size chunking aims at; the strict mask applies below it, the loose one above it. */
  averageSize: number;
  /** No chunk is longer than this. */
  maxSize: number;
}

/** The protocol's chunk sizes: 16 KiB / 64 KiB / 256 KiB. */
export const DEFAULT_CHUNKER_OPTIONS: Readonly<ChunkerOptions> = Object.freeze({
  minSize: 16 * 1024,
  averageSize: 64 * 1024,
  maxSize: 256 * 1024,
});

/** Where one chunk lies in the input: `length` bytes starting at absolute `offset`. */
export interface ChunkBoundary {
  offset: number;
  length: number;
}

/** A chunk and its content id (sha256 hex of its bytes). */
export interface Chunk {
  offset: number;
  length: number;
  id: ContentId;
}

/** A whole byte string described by its content id, its size and its chunks. */
export interface ChunkedContent {
  contentId: ContentId;
  size: number;
  chunks: Chunk[];
}

/** Fills in defaults and checks the limits; throws RangeError on nonsense sizes. */
export function resolveChunkerOptions(options?: Partial<ChunkerOptions>): Readonly<ChunkerOptions> {
  const resolved = { ...DEFAULT_CHUNKER_OPTIONS, ...options };
  const { minSize, averageSize, maxSize } = resolved;
  for (const [name, value] of Object.entries(resolved)) {
    if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`chunker ${name} must be a positive integer`);
  }
  if (!(minSize <= averageSize && averageSize <= maxSize)) {
    throw new RangeError(`chunker sizes must satisfy min <= average <= max (got ${minSize}/${averageSize}/${maxSize})`);
  }
  if (averageSize < 8 || averageSize > 2 ** 30) throw new RangeError("chunker averageSize must be in [8, 2^30]");
  return Object.freeze(resolved);
}

/** Whether a Uint32Array's words hold their bytes lowest first (x86, ARM: every usual Node platform). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * The 4-byte-aligned words of `bytes` (a word holds 4 input bytes, read with one load instead of four:
 * the gear loop runs about twice as fast), or undefined on a big-endian machine or when no word fits;
 * `start` is the index in `bytes` of the first word's first byte.
 */
function wordsOf(bytes: Uint8Array): { view: Uint32Array; start: number } | undefined {
  if (!LITTLE_ENDIAN) return undefined;
  const start = (4 - (bytes.byteOffset & 3)) & 3;
  const count = (bytes.length - start) >> 2;
  return count > 0 ? { view: new Uint32Array(bytes.buffer, bytes.byteOffset + start, count), start } : undefined;
}

/** The gear hash after `roll` returns (a second result, kept out of an allocation per call). */
let rolled = 0;

/**
 * Rolls the gear hash `h` over bytes[from, to) and stops after the first byte that leaves (h & mask) === 0:
 * returns that byte's index, or `to` when none does; the hash is then in `rolled`. Whole words of `words`
 * are read at once where the range covers them; the bytes before and after them one by one.
 */
function roll(
  bytes: Uint8Array,
  words: { view: Uint32Array; start: number } | undefined,
  from: number,
  to: number,
  h: number,
  mask: number,
): number {
  const gear = GEAR;
  let i = from;
  if (words !== undefined) {
    const { view, start } = words;
    for (; i < to && (i < start || ((i - start) & 3) !== 0); i++) {
      h = ((h << 1) + gear[bytes[i]!]!) | 0;
      if ((h & mask) === 0) {
        rolled = h;
        return i;
      }
    }
    const last = Math.min(view.length, (to - start) >> 2);
    for (let w = (i - start) >> 2; w < last; w++, i += 4) {
      const x = view[w]!;
      h = ((h << 1) + gear[x & 0xff]!) | 0;
      if ((h & mask) === 0) {
        rolled = h;
        return i;
      }
      h = ((h << 1) + gear[(x >>> 8) & 0xff]!) | 0;
      if ((h & mask) === 0) {
        rolled = h;
        return i + 1;
      }
      h = ((h << 1) + gear[(x >>> 16) & 0xff]!) | 0;
      if ((h & mask) === 0) {
        rolled = h;
        return i + 2;
      }
      h = ((h << 1) + gear[x >>> 24]!) | 0;
      if ((h & mask) === 0) {
        rolled = h;
        return i + 3;
      }
    }
  }
  for (; i < to; i++) {
    h = ((h << 1) + gear[bytes[i]!]!) | 0;
    if ((h & mask) === 0) break;
  }
  rolled = h;
  return i;
}

/** The top `bits` bits of a 32-bit word, as a signed 32-bit mask. */
function topBitsMask(bits: number): number {
  return (-1 << (32 - bits)) | 0;
}

/**
 * Streaming FastCDC boundary finder. Feed it the input in any split; the boundaries it reports
 * are the same as for the whole input at once. It keeps no input bytes, only the position and
 * the rolling hash of the chunk in progress.
 */
export class Chunker {
  readonly options: Readonly<ChunkerOptions>;
  readonly #maskStrict: number;
  readonly #maskLoose: number;
  /** Absolute offset of the chunk in progress. */
  #chunkStart = 0;
  /** Bytes of the chunk in progress seen so far. */
  #chunkLength = 0;
  #hash = 0;
  #finished = false;

  constructor(options?: Partial<ChunkerOptions>) {
    this.options = resolveChunkerOptions(options);
    const averageBits = Math.round(Math.log2(this.options.averageSize));
    this.#maskStrict = topBitsMask(averageBits + 2);
    this.#maskLoose = topBitsMask(averageBits - 2);
  }

  /** Total bytes pushed so far. */
  get position(): number {
    return this.#chunkStart + this.#chunkLength;
  }

  /** Consumes the next input bytes; returns the chunks that this buffer completed. */
  push(bytes: Uint8Array): ChunkBoundary[] {
    if (this.#finished) throw new Error("Chunker.push called after finish");
    const { minSize, averageSize, maxSize } = this.options;
    const maskStrict = this.#maskStrict;
    const maskLoose = this.#maskLoose;
    const words = wordsOf(bytes);
    const boundaries: ChunkBoundary[] = [];
    const end = bytes.length;
    let pos = 0;
    let length = this.#chunkLength;
    let h = this.#hash;

    while (pos < end) {
      if (length < minSize) {
        const skip = Math.min(minSize - length, end - pos);
        length += skip;
        pos += skip;
        continue;
      }
      // Strict phase: bytes that make the chunk length < averageSize.
      const strictStop = Math.min(end, pos + Math.max(0, averageSize - 1 - length));
      let i = roll(bytes, words, pos, strictStop, h, maskStrict);
      h = rolled;
      let cut = i < strictStop;
      if (!cut) {
        // Loose phase: bytes that make the chunk length averageSize .. maxSize.
        const looseStop = Math.min(end, i + (maxSize - (length + (i - pos))));
        i = roll(bytes, words, i, looseStop, h, maskLoose);
        h = rolled;
        cut = i < looseStop;
      }
      if (cut) i++; // the matching byte belongs to the chunk it ends
      length += i - pos;
      pos = i;
      if (cut || length === maxSize) {
        boundaries.push({ offset: this.#chunkStart, length });
        this.#chunkStart += length;
        length = 0;
        h = 0;
      }
    }
    this.#chunkLength = length;
    this.#hash = h;
    return boundaries;
  }

  /** Ends the input: returns the last, possibly short, chunk (none if it is empty). */
  finish(): ChunkBoundary[] {
    if (this.#finished) throw new Error("Chunker.finish called twice");
    this.#finished = true;
    if (this.#chunkLength === 0) return [];
    const last = { offset: this.#chunkStart, length: this.#chunkLength };
    this.#chunkStart += this.#chunkLength;
    this.#chunkLength = 0;
    return [last];
  }
}

/** Chunks a buffer held in memory, hashing each chunk. Empty input has no chunks. */
export function chunkBuffer(bytes: Uint8Array, options?: Partial<ChunkerOptions>): Chunk[] {
  const chunker = new Chunker(options);
  const boundaries = chunker.push(bytes);
  boundaries.push(...chunker.finish());
  return boundaries.map(({ offset, length }) => ({
    offset,
    length,
    id: contentIdOf(bytes.subarray(offset, offset + length)),
  }));
}

/** Chunks and hashes a buffer held in memory: its content id, size and chunk list. */
export function chunkContent(bytes: Uint8Array, options?: Partial<ChunkerOptions>): ChunkedContent {
  return { contentId: contentIdOf(bytes), size: bytes.length, chunks: chunkBuffer(bytes, options) };
}

/**
 * Streaming chunker that also hashes: each chunk is hashed as its bytes pass, and the whole
 * content is hashed alongside, so one read of a large file yields its id and its chunk list.
 * It retains no input bytes (only running sha256 states), so memory stays bounded whatever
 * the file size or read-buffer size.
 */
export class HashingChunker {
  readonly #chunker: Chunker;
  readonly #contentHasher: WholeContentHasher;
  /** Running hash of the chunk in progress, created only when a chunk spans read buffers. */
  #chunkHash: Hash | null = null;
  #contentId: ContentId | null = null;

  /** `contentHasher` hashes the whole content (another thread's, say); a ContentHasher by default. */
  constructor(options?: Partial<ChunkerOptions>, contentHasher: WholeContentHasher = new ContentHasher()) {
    this.#chunker = new Chunker(options);
    this.#contentHasher = contentHasher;
  }

  /** The resolved chunk size limits. */
  get options(): Readonly<ChunkerOptions> {
    return this.#chunker.options;
  }

  /** Total bytes pushed so far. */
  get size(): number {
    return this.#contentHasher.size;
  }

  /** Content id of everything pushed; available once `finish` has run. */
  get contentId(): ContentId {
    if (this.#contentId === null) throw new Error("HashingChunker.contentId read before finish");
    return this.#contentId;
  }

  /** Consumes the next input bytes; returns the chunks (with ids) that this buffer completed. */
  push(bytes: Uint8Array): Chunk[] {
    const bufferStart = this.#chunker.position;
    this.#contentHasher.update(bytes);
    const boundaries = this.#chunker.push(bytes);
    const chunks: Chunk[] = [];
    let cursor = 0;
    for (const { offset, length } of boundaries) {
      const stop = offset + length - bufferStart;
      chunks.push({ offset, length, id: this.#completeChunk(bytes.subarray(cursor, stop)) });
      cursor = stop;
    }
    if (cursor < bytes.length) {
      this.#chunkHash ??= createHash("sha256");
      this.#chunkHash.update(bytes.subarray(cursor));
    }
    return chunks;
  }

  /** Ends the input: returns the last chunk (none if the input was empty) and fixes `contentId`. */
  finish(): Chunk[] {
    const chunks = this.#chunker.finish().map(({ offset, length }) => ({
      offset,
      length,
      id: this.#completeChunk(new Uint8Array(0)),
    }));
    this.#contentId = this.#contentHasher.digest();
    return chunks;
  }

  /** Hashes the tail of the chunk in progress together with what it already holds. */
  #completeChunk(tail: Uint8Array): ContentId {
    const pending = this.#chunkHash;
    if (pending === null) return contentIdOf(tail);
    this.#chunkHash = null;
    return pending.update(tail).digest("hex");
  }
}

/** Files smaller than this travel whole (compressed): a delta could not beat one chunk by much. */
export const DELTA_MIN_SIZE = 64 * 1024;

/** Files from this size on are chunked coarser, so chunk lists stay small (a few MB for tens of GB). */
const LARGE_FILE_SIZE = 1024 * 1024 * 1024;

/**
 * The chunk sizes replication uses, by file size; both sides must agree, so they are part of the protocol.
 * Up to 1 GiB: 2/8/32 KiB. An 8 KiB average keeps the bytes a small edit costs near the edit itself
 * (1 MiB overwritten costs 1 MiB plus about two chunks; 100 inserted bytes cost one or two chunks),
 * while a 256 MiB file's chunk list is about 32k entries. From 1 GiB: 16/64/256 KiB, so a 4 GiB file's
 * list stays near 64k entries (bounded memory); a file crossing the line is sent whole once.
 */
export function replicationChunking(size: number): ChunkerOptions {
  return size >= LARGE_FILE_SIZE
    ? { minSize: 16 * 1024, averageSize: 64 * 1024, maxSize: 256 * 1024 }
    : { minSize: 2 * 1024, averageSize: 8 * 1024, maxSize: 32 * 1024 };
}
