// Length-prefixed msgpack frames: the byte format of every stream transport (stdio, ssh).
// A frame is an 8-byte header — the payload's length and its CRC-32, both big-endian u32 — followed by
// that many bytes of msgpack. The checksum is what catches a flipped bit that still decodes and validates
// (a mode, a name, a size: content is checked by its hash, metadata by nothing else); ssh's MAC covers the
// wire, but a stdio pipe or a proxy in between may not.
// The decoder treats its input as hostile: it checks a declared length against the local cap
// before it waits for, or allocates, anything of that size, and it only yields plain data
// (no Buffers, Dates, Maps or msgpackr extension objects) so decoded values survive
// structuredClone and zod validation unchanged.
// The "msgpackr/pack" entry is msgpackr without its native string extractor (msgpackr-extract): finding and
// loading that addon costs ~15 ms at every start (it probes the libc and the prebuilds), a tenth of a small
// job's own work, and its gain is decoding string-heavy frames faster (~15 ms on a 20,000-entry manifest).
import { crc32 } from "node:zlib";
import { Packr, RESERVE_START_SPACE } from "msgpackr/pack";
import { DEFAULT_LIMITS } from "../events/limits.js";

/** The largest payload a frame may carry unless a caller sets its own cap (the Limits' `maxFrameBytes`). */
export const DEFAULT_MAX_FRAME_BYTES = DEFAULT_LIMITS.maxFrameBytes;

/** Bytes in a frame header: the payload's length and CRC-32, each a big-endian u32. */
export const FRAME_HEADER_BYTES = 8;

/** A frame that cannot be encoded or decoded: oversized, zero-length, corrupt or malformed. */
export class FrameError extends Error {
  override readonly name = "FrameError";
}

// useRecords: false keeps objects as plain msgpack maps (records would make the stream stateful);
// moreTypes: false keeps the encoder to the standard msgpack types plus msgpackr's defaults.
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true });

/** Encodes one message as a frame's payload (no header: what an in-process transport needs). */
export function encodeFramePayload(message: unknown, maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES): Uint8Array {
  return frameBuffers.pack(message, 0, maxFrameBytes).packed;
}

/**
 * Encodes one message as header + payload in a single buffer, so a stream gets it in one write. msgpackr
 * leaves room for the header in front of the payload, so the payload (an upload's megabytes) is copied
 * once, into msgpackr's buffer, and not again into a frame of its own. The frame's bytes stay as they are
 * for as long as it is referenced.
 */
export function encodeFrame(message: unknown, maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES): Buffer {
  return withHeader(frameBuffers.pack(message, FRAME_HEADER_BYTES, maxFrameBytes).packed);
}

/**
 * Encodes one message as encodeFrame does, into a buffer that is packed into again once `written` was called
 * for every frame in it: call it once the stream no longer needs the frame's bytes (its write completed or
 * failed), and never touch the frame after. A stream's frames then stop being garbage: a 256 MiB upload
 * made ≈ 25 full collections on the source, one per ≈ 10 MiB of frames (V8 collects for its external memory).
 */
export function encodeReusableFrame(
  message: unknown,
  maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES,
): { frame: Buffer; written: () => void } {
  const { packed, written } = frameBuffers.pack(message, FRAME_HEADER_BYTES, maxFrameBytes, true);
  return { frame: withHeader(packed), written: written! };
}

/** Fills in the header msgpackr left room for: the payload's length and CRC-32. */
function withHeader(packed: Uint8Array): Buffer {
  const frame = packed as Buffer;
  const payload = frame.subarray(FRAME_HEADER_BYTES);
  frame.writeUInt32BE(payload.length, 0);
  frame.writeUInt32BE(crc32(payload), 4);
  return frame;
}

/**
 * The buffers msgpackr packs into, and when each may be packed into again. msgpackr packs one message after
 * another into its current buffer, takes a new one (four times the message) when a message does not fit, and
 * never writes over what it handed out; so every frame became garbage once written. Here a buffer msgpackr
 * moved on from, whose frames were all said written, is handed back to it (`useBuffer`) when the current one
 * runs short. A frame never said written (encodeFrame's, a payload's) keeps its buffer from ever being reused.
 * msgpackr's packing state is its module's, shared by every Packr: a pack elsewhere in between (the position
 * moved without us) makes the buffer it packed into unusable here for good.
 */
class FrameBuffers {
  /** Frames of each buffer not yet said written. */
  readonly #unwritten = new WeakMap<ArrayBuffer, number>();
  /** Buffers another packer packed into: never handed back. */
  readonly #foreign = new WeakSet<ArrayBuffer>();
  /** Buffers msgpackr moved on from whose frames are all written, largest last. */
  #free: Buffer[] = [];
  /** The buffer msgpackr packs into (as of this module's last pack). */
  #current: ArrayBuffer | undefined;
  /** msgpackr's position after this module's last pack. */
  #position = -1;
  /** The largest message packed so far: a buffer with less room left than this is changed before a pack. */
  #largest = 0;

  pack(message: unknown, headerBytes: number, maxFrameBytes: number, reusable = false) {
    // Another packer packed since (or our last pack failed): into the buffer we knew, or into a new one that
    // this pack may land in too. Neither is handed back.
    const foreignPack = packr.position !== this.#position;
    if (foreignPack) {
      if (this.#current !== undefined) this.#foreign.add(this.#current);
      this.#current = undefined;
    } else if (this.#current !== undefined && this.#current.byteLength - packr.position < this.#largest + PACK_MARGIN) {
      this.#handBack();
    }
    let packed: Uint8Array;
    try {
      packed = packChecked(message, headerBytes, maxFrameBytes);
    } catch (error) {
      // Where msgpackr stopped is unknown: the next pack treats it as another packer's.
      this.#position = -1;
      throw error;
    }
    const buffer = packed.buffer as ArrayBuffer;
    if (foreignPack) this.#foreign.add(buffer);
    if (buffer !== this.#current) {
      if (this.#current !== undefined) this.#leave(this.#current);
      this.#current = buffer;
    }
    this.#position = packr.position;
    this.#largest = Math.max(this.#largest, packed.length);
    this.#unwritten.set(buffer, (this.#unwritten.get(buffer) ?? 0) + 1);
    if (!reusable) return { packed };
    let said = false;
    const written = (): void => {
      if (said) return;
      said = true;
      const left = this.#unwritten.get(buffer)! - 1;
      this.#unwritten.set(buffer, left);
      if (left === 0 && buffer !== this.#current) this.#keep(buffer);
    };
    return { packed, written };
  }

  /** Has msgpackr pack into the largest free buffer (when it has room for the largest message) from its start. */
  #handBack(): void {
    const next = this.#free.pop();
    if (next === undefined || next.byteLength < this.#largest + PACK_MARGIN) return;
    this.#leave(this.#current!);
    packr.useBuffer(next);
    this.#current = next.buffer as ArrayBuffer;
    this.#position = packr.position;
  }

  /** msgpackr moved on from `buffer`: free once its frames are written. */
  #leave(buffer: ArrayBuffer): void {
    if ((this.#unwritten.get(buffer) ?? 0) === 0) this.#keep(buffer);
  }

  #keep(buffer: ArrayBuffer): void {
    if (this.#foreign.has(buffer) || buffer.byteLength < this.#largest + PACK_MARGIN) return;
    this.#free.push(Buffer.from(buffer));
    this.#free.sort((a, b) => a.byteLength - b.byteLength);
    if (this.#free.length > MAX_FREE_BUFFERS) this.#free.shift();
  }
}

/** Room beyond a message that msgpackr wants before it starts one in a buffer (it takes a new one below 2 KiB). */
const PACK_MARGIN = 4096;
/** Free buffers kept: a stream's frames in flight fill one or two (msgpackr's are 4 × the largest message). */
const MAX_FREE_BUFFERS = 2;

const frameBuffers = new FrameBuffers();

/**
 * Packs `message` after `headerBytes` reserved bytes. msgpackr hands out views of a shared buffer it never
 * writes over again (a later pack continues after them; see FrameBuffers for when one is reused).
 */
function packChecked(message: unknown, headerBytes: number, maxFrameBytes: number): Uint8Array {
  let packed: Uint8Array;
  try {
    packed = headerBytes === 0 ? packr.pack(message) : packr.pack(message, RESERVE_START_SPACE | headerBytes);
  } catch (cause) {
    throw new FrameError(`cannot encode message: ${describeError(cause)}`, { cause });
  }
  const payloadBytes = packed.length - headerBytes;
  if (payloadBytes > maxFrameBytes) {
    throw new FrameError(`oversized frame: ${payloadBytes} bytes > max ${maxFrameBytes}`);
  }
  return packed;
}

/** Decodes one frame payload (without its header) into plain data; throws FrameError if it is not exactly one value. */
export function decodeFramePayload(payload: Uint8Array): unknown {
  let value: unknown;
  try {
    value = packr.unpack(payload);
  } catch (cause) {
    throw new FrameError(`malformed frame: ${describeError(cause)}`, { cause });
  }
  return toPlainValue(value, 0);
}

// Deep enough for any message this project sends, shallow enough that a hostile nesting
// cannot blow the stack of the walk below.
const MAX_NESTING = 256;

/** Rebuilds a decoded value as plain data: Buffers become Uint8Arrays; anything non-plain is malformed. */
function toPlainValue(value: unknown, depth: number): unknown {
  if (depth > MAX_NESTING) throw new FrameError(`malformed frame: nesting deeper than ${MAX_NESTING}`);
  if (value === null || value === undefined) return value;
  switch (typeof value) {
    case "string":
    case "number":
    case "boolean":
    case "bigint":
      return value;
    case "object":
      break;
    default:
      throw new FrameError(`malformed frame: unexpected ${typeof value}`);
  }
  if (value instanceof Uint8Array) {
    // msgpackr yields Buffers that are views into the frame; a plain Uint8Array is what the rest
    // of the code and structuredClone expect. A view that spans a quarter of its buffer or more (an
    // upload's pieces in their frame) is kept as it is, pinning at most four times its own size;
    // a smaller one is copied, so a small value never pins a large frame.
    // (Explicit constructors: slice() on a Buffer would make another Buffer through its species.)
    if (value.byteLength * 4 >= value.buffer.byteLength) {
      return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    }
    const copy = new Uint8Array(value.byteLength);
    copy.set(value);
    return copy;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = toPlainValue(value[i], depth + 1);
    return value;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) {
    const kind = (value as { constructor?: { name?: string } }).constructor?.name ?? "object";
    throw new FrameError(`malformed frame: ${kind} is not plain data`);
  }
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) record[key] = toPlainValue(record[key], depth + 1);
  return record;
}

/**
 * Reassembles frames from arbitrarily split chunks. Chunks are kept in a list and only the
 * bytes of one frame are ever joined, so many small chunks cost O(total bytes), not O(n^2).
 * After it throws, the decoder is poisoned: the stream position is unknown, so every later
 * push throws the same error.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  /** Index of the first chunk with unread bytes; consumed chunks before it are dropped in batches. */
  private headIndex = 0;
  /** Offset of the first unread byte inside chunks[headIndex]. */
  private headOffset = 0;
  private buffered = 0;
  /** Payload length of the frame being assembled, once its header has been read. */
  private pendingLength: number | undefined;
  /** The CRC-32 its header declared. */
  private pendingChecksum = 0;
  /** Frames decoded so far (names the frame a corruption was found in). */
  private framesDecoded = 0;
  private failure: FrameError | undefined;

  /** Creates a decoder that rejects any frame whose payload is larger than `maxFrameBytes`. */
  constructor(private readonly maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {
    if (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < 1 || maxFrameBytes > 0xffffffff) {
      throw new RangeError(`maxFrameBytes must be an integer in 1..2^32-1, got ${maxFrameBytes}`);
    }
  }

  /** Bytes received but not yet returned as part of a decoded frame. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** True while a frame has started (header or payload bytes buffered) but is not complete. */
  get inFrame(): boolean {
    return this.buffered > 0 || this.pendingLength !== undefined;
  }

  /** Adds received bytes and returns every message completed by them, in order. */
  push(chunk: Uint8Array): unknown[] {
    if (this.failure) throw this.failure;
    if (chunk.length > 0) {
      this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.buffered += chunk.length;
    }
    const messages: unknown[] = [];
    try {
      for (;;) {
        if (this.pendingLength === undefined) {
          if (this.buffered < FRAME_HEADER_BYTES) break;
          const header = this.take(FRAME_HEADER_BYTES);
          const length = header.readUInt32BE(0);
          // Checked before waiting for (or allocating) the payload: a hostile length costs nothing.
          if (length === 0) throw new FrameError("malformed frame: zero-length payload");
          if (length > this.maxFrameBytes) {
            throw new FrameError(`oversized frame: ${length} bytes > max ${this.maxFrameBytes}`);
          }
          this.pendingLength = length;
          this.pendingChecksum = header.readUInt32BE(4);
        }
        if (this.buffered < this.pendingLength) break;
        const payload = this.take(this.pendingLength);
        this.pendingLength = undefined;
        if (crc32(payload) !== this.pendingChecksum) {
          throw new FrameError(
            `corrupt frame: frame ${this.framesDecoded} (${payload.length} bytes) does not match its CRC-32` +
              (this.framesDecoded === 0 ? " (a damaged stream, or a peer of another mirrorlog version)" : ""),
          );
        }
        this.framesDecoded++;
        messages.push(decodeFramePayload(payload));
      }
    } catch (error) {
      this.failure =
        error instanceof FrameError
          ? error
          : new FrameError(`malformed frame: ${describeError(error)}`, { cause: error });
      this.chunks = [];
      this.headIndex = 0;
      this.buffered = 0;
      throw this.failure;
    }
    return messages;
  }

  /** Removes exactly `length` buffered bytes (caller checked they are there); zero-copy when one chunk holds them. */
  private take(length: number): Buffer {
    const first = this.chunks[this.headIndex]!;
    const available = first.length - this.headOffset;
    if (available >= length) {
      const out = first.subarray(this.headOffset, this.headOffset + length);
      this.advance(first, length);
      return out;
    }
    const out = Buffer.allocUnsafe(length);
    let written = 0;
    while (written < length) {
      const chunk = this.chunks[this.headIndex]!;
      const count = Math.min(chunk.length - this.headOffset, length - written);
      chunk.copy(out, written, this.headOffset, this.headOffset + count);
      written += count;
      this.advance(chunk, count);
    }
    return out;
  }

  private advance(chunk: Buffer, count: number): void {
    this.headOffset += count;
    this.buffered -= count;
    if (this.headOffset === chunk.length) {
      this.headIndex++;
      this.headOffset = 0;
      // Dropping consumed chunks one shift at a time would be O(n^2) for a frame arriving in many
      // tiny chunks; drop them in one splice once they are the larger part of the list.
      if (this.headIndex === this.chunks.length) {
        this.chunks = [];
        this.headIndex = 0;
      } else if (this.headIndex >= 1024 && this.headIndex * 2 >= this.chunks.length) {
        this.chunks = this.chunks.slice(this.headIndex);
        this.headIndex = 0;
      }
    }
  }
}

/** A short human description of a thrown value. */
function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
