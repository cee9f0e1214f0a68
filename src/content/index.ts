/*
 * Layer: content. Owns content ids (sha256), FastCDC content-defined chunking, the delta format
 * (build, plan, apply), literal compression and counts by content hash. Pure: values in, values out;
 * its only imports are node:crypto, node:buffer, node:module (to load zstd-napi when first needed)
 * and zstd-napi. It must not import from fs, events, projections,
 * transport, replicator or cli, and must not touch the file system, sockets, timers or process.
 */
export {
  type Chunk,
  type ChunkBoundary,
  type ChunkedContent,
  Chunker,
  type ChunkerOptions,
  chunkBuffer,
  chunkContent,
  DEFAULT_CHUNKER_OPTIONS,
  DELTA_MIN_SIZE,
  gearTableValues,
  HashingChunker,
  replicationChunking,
  resolveChunkerOptions,
} from "./chunker.js";
export {
  CompressionError,
  type CompressionErrorReason,
  decodeLiteral,
  type EncodedLiteral,
  type EncodeLiteralOptions,
  encodeLiteral,
  type LiteralEncoding,
} from "./compression.js";
export {
  ContentHasher,
  type ContentId,
  contentIdOf,
  EMPTY_CONTENT_ID,
  isContentId,
  type WholeContentHasher,
} from "./contentId.js";
export {
  type ApplyDeltaOptions,
  applyDelta,
  type BuildDeltaOptions,
  buildDelta,
  type Delta,
  type DeltaBasis,
  DeltaError,
  type DeltaErrorReason,
  type DeltaInstruction,
  type DeltaPlan,
  type DeltaPlanRange,
  deltaLiteralSize,
  planDelta,
} from "./delta.js";
