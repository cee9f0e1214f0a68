import { createRequire } from "node:module";

/*
 * Literal compression with zstd. The encoder compresses only when it pays; the decoder treats
 * its input as hostile: the declared size is checked against the caller's limit before any
 * work, the output buffer is exactly the declared size, and the streaming decoder stops the
 * moment the frame tries to produce one byte more (a decompression bomb costs the declared
 * size, never the inflated size). The frame header's content size is never trusted.
 */

/** zstd-napi's binding, as `import zstd from "zstd-napi/binding.js"` would give it. */
type Zstd = typeof import("zstd-napi/binding.js");

let loadedZstd: Zstd | undefined;

/**
 * The zstd binding, loaded on first use: a run that compresses and decompresses nothing (a small job
 * with no change) does not pay for loading the addon at start-up.
 */
function zstd(): Zstd {
  loadedZstd ??= createRequire(import.meta.url)("zstd-napi/binding.js") as Zstd;
  return loadedZstd;
}

/** How a literal's bytes are stored on the wire. */
export type LiteralEncoding = "raw" | "zstd";

/** Literal bytes as they travel: `data` decodes to exactly `size` bytes. Plain data. */
export interface EncodedLiteral {
  encoding: LiteralEncoding;
  data: Uint8Array;
  size: number;
}

/** Options for `encodeLiteral`. */
export interface EncodeLiteralOptions {
  /** zstd level, 1 (fastest) to 9; default 1. Inputs up to 16 MiB keep the window within the decoder's limit. */
  level?: number;
}

/** Why `decodeLiteral` refused its input. */
export type CompressionErrorReason = "malformed" | "too-large" | "exceeds-declared-size" | "size-mismatch" | "corrupt";

/** A literal that cannot be decoded within its limits; `reason` says which check failed. */
export class CompressionError extends Error {
  override readonly name = "CompressionError";
  readonly reason: CompressionErrorReason;

  constructor(reason: CompressionErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

/** Below this size zstd's frame overhead eats any gain, so we do not try. */
const MIN_COMPRESSIBLE_SIZE = 64;

/**
 * Largest zstd window accepted (2^24 = 16 MiB). Our encoder at levels 1-3 uses at most 2^21;
 * the limit stops a crafted frame from making the decoder allocate a huge window.
 */
const MAX_WINDOW_LOG = 24;

let sharedCompressor: InstanceType<Zstd["CCtx"]> | undefined;

/** Encodes literal bytes: zstd when the frame is strictly smaller, otherwise the bytes as they are. */
export function encodeLiteral(bytes: Uint8Array, options: EncodeLiteralOptions = {}): EncodedLiteral {
  const raw: EncodedLiteral = { encoding: "raw", data: bytes, size: bytes.length };
  if (bytes.length < MIN_COMPRESSIBLE_SIZE) return raw;
  sharedCompressor ??= new (zstd().CCtx)();
  // Capacity of size - 1: the frame is only useful if strictly smaller, and zstd reports
  // "destination too small" (thrown) when it is not, which saves building a useless frame.
  const frame = new Uint8Array(bytes.length - 1);
  let written: number;
  try {
    written = sharedCompressor.compress(frame, bytes, options.level ?? 1);
  } catch {
    return raw;
  }
  return { encoding: "zstd", data: frame.slice(0, written), size: bytes.length };
}

/**
 * Decodes a literal, refusing anything that is not exactly `encoded.size` bytes or that
 * declares more than `maxSize` bytes. Throws CompressionError; never allocates beyond the
 * declared size. The output is allocated at the declared size, so `maxSize` is what a caller
 * lets one literal cost in memory: pass the smaller of the size it expects and its limit
 * (the target passes at most its Limits' `maxDecodedPieceBytes`).
 */
export function decodeLiteral(encoded: EncodedLiteral, maxSize: number): Uint8Array {
  const { encoding, data, size } = encoded;
  if (!(data instanceof Uint8Array)) throw new CompressionError("malformed", "literal data is not a Uint8Array");
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    throw new CompressionError("malformed", `literal size ${String(size)} is not a non-negative integer`);
  }
  if (size > maxSize) throw new CompressionError("too-large", `literal declares ${size} bytes, limit is ${maxSize}`);
  if (encoding === "raw") {
    if (data.length !== size) {
      throw new CompressionError("size-mismatch", `raw literal has ${data.length} bytes, declared ${size}`);
    }
    return data;
  }
  if (encoding !== "zstd")
    throw new CompressionError("malformed", `unknown literal encoding ${JSON.stringify(encoding)}`);
  return decompressCapped(data, size);
}

function decompressCapped(frame: Uint8Array, size: number): Uint8Array {
  const binding = zstd();
  const dctx = new binding.DCtx();
  dctx.setParameter(binding.DParameter.windowLogMax, MAX_WINDOW_LOG);
  const output = new Uint8Array(size);
  // Once the output is full, a one-byte probe catches any further output without allocating it.
  const probe = new Uint8Array(1);
  let produced = 0;
  let consumed = 0;
  let frameComplete = false;
  for (;;) {
    const full = produced === size;
    let result: [number, number, number];
    try {
      result = dctx.decompressStream(full ? probe : output.subarray(produced), frame.subarray(consumed));
    } catch (error) {
      throw new CompressionError("corrupt", "zstd frame could not be decoded", { cause: error });
    }
    const [hint, wrote, read] = result;
    if (full && wrote > 0) {
      throw new CompressionError("exceeds-declared-size", `zstd frame inflates past the declared ${size} bytes`);
    }
    produced += full ? 0 : wrote;
    consumed += read;
    frameComplete = hint === 0;
    if (frameComplete && consumed === frame.length) break;
    // No progress means the input ran out mid-frame (or is garbage): calling again cannot help.
    if (wrote === 0 && read === 0) break;
  }
  if (!frameComplete || consumed !== frame.length) {
    throw new CompressionError("corrupt", "zstd frame is truncated or followed by garbage");
  }
  if (produced !== size) {
    throw new CompressionError("size-mismatch", `zstd frame inflates to ${produced} bytes, declared ${size}`);
  }
  return output;
}
