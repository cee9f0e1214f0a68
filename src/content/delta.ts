import { constants as bufferConstants } from "node:buffer";
import { type Chunk, type ChunkerOptions, chunkBuffer } from "./chunker.js";
import { type ContentId, contentIdOf, isContentId } from "./contentId.js";

/*
 * The delta format. The target holds the previous version of a file (the basis); the source
 * remembers that version's chunk list. A delta rebuilds the new version from copy ranges of the
 * basis plus literal bytes, in output order. Deltas are plain data (objects, arrays, strings,
 * numbers, Uint8Array) so they survive structuredClone and msgpackr unchanged, and the target
 * trusts nothing in them: `applyDelta` checks every number against the basis and the declared
 * size before it copies, and the sha256 of both the basis and the result.
 */

/** One step of a delta: copy a range of the basis, or emit literal bytes. */
export type DeltaInstruction =
  | {
      kind: "copy";
      /** Id of the first basis chunk in the range (a range may span several adjacent chunks). */
      chunkId: ContentId;
      /** Start of the range in the basis. */
      offset: number;
      /** Bytes to copy. */
      length: number;
    }
  | { kind: "literal"; bytes: Uint8Array };

/** Instructions that turn the basis `baseId` into the content `resultId` of `resultSize` bytes. */
export interface Delta {
  baseId: ContentId;
  resultId: ContentId;
  resultSize: number;
  instructions: DeltaInstruction[];
}

/** One range of the new content in a delta plan; `offset` is always a position in the new content. */
export type DeltaPlanRange =
  | { kind: "copy"; offset: number; length: number; basisOffset: number; chunkId: ContentId }
  | { kind: "literal"; offset: number; length: number };

/** A delta without its literal bytes, so a caller can read the literal ranges from disk itself. */
export interface DeltaPlan {
  ranges: DeltaPlanRange[];
  /** Size of the new content (the sum of all range lengths). */
  resultSize: number;
  /** Bytes the target copies from its basis. */
  copyBytes: number;
  /** Bytes that must travel. */
  literalBytes: number;
}

/** What the source knows about the target's current version of a file. */
export interface DeltaBasis {
  contentId: ContentId;
  chunks: readonly Chunk[];
}

/** Options for `buildDelta`. */
export interface BuildDeltaOptions {
  /** Chunk sizes for the new content; must match those the basis was chunked with. */
  chunking?: Partial<ChunkerOptions>;
}

/** Options for `applyDelta`. */
export interface ApplyDeltaOptions {
  /** Largest result accepted, checked before anything is allocated. Defaults to the largest Buffer. */
  maxResultSize?: number;
}

/** Why `applyDelta` refused a delta. */
export type DeltaErrorReason =
  | "malformed"
  | "invalid-range"
  | "copy-out-of-range"
  | "result-too-large"
  | "output-too-long"
  | "output-too-short"
  | "base-mismatch"
  | "result-mismatch";

/** A delta that cannot be applied to this basis; `reason` says which check failed. */
export class DeltaError extends Error {
  override readonly name = "DeltaError";
  readonly reason: DeltaErrorReason;
  /** Index of the offending instruction, when one instruction is to blame. */
  readonly instructionIndex: number | undefined;

  constructor(reason: DeltaErrorReason, message: string, instructionIndex?: number) {
    super(instructionIndex === undefined ? message : `instruction ${instructionIndex}: ${message}`);
    this.reason = reason;
    this.instructionIndex = instructionIndex;
  }
}

/**
 * Matches the new content's chunks against the basis chunks by id. Consecutive matches that are
 * also consecutive in the basis merge into one copy range; consecutive misses merge into one
 * literal range. When an id occurs several times in the basis, the occurrence that continues the
 * previous copy range wins (it merges), else the first occurrence.
 */
export function planDelta(basisChunks: readonly Chunk[], newChunks: readonly Chunk[]): DeltaPlan {
  const firstById = new Map<ContentId, Chunk>();
  const byOffset = new Map<number, Chunk>();
  for (const chunk of basisChunks) {
    if (!firstById.has(chunk.id)) firstById.set(chunk.id, chunk);
    byOffset.set(chunk.offset, chunk);
  }
  const ranges: DeltaPlanRange[] = [];
  let copyBytes = 0;
  let literalBytes = 0;
  let resultSize = 0;
  for (const chunk of newChunks) {
    const previous = ranges.at(-1);
    const continuing = previous?.kind === "copy" ? byOffset.get(previous.basisOffset + previous.length) : undefined;
    const match =
      continuing !== undefined && continuing.id === chunk.id && continuing.length === chunk.length
        ? continuing
        : firstById.get(chunk.id);
    if (match !== undefined && match.length === chunk.length) {
      copyBytes += chunk.length;
      if (previous?.kind === "copy" && match === continuing) previous.length += chunk.length;
      else
        ranges.push({
          kind: "copy",
          offset: chunk.offset,
          length: chunk.length,
          basisOffset: match.offset,
          chunkId: match.id,
        });
    } else {
      literalBytes += chunk.length;
      if (previous?.kind === "literal") previous.length += chunk.length;
      else ranges.push({ kind: "literal", offset: chunk.offset, length: chunk.length });
    }
    resultSize += chunk.length;
  }
  return { ranges, resultSize, copyBytes, literalBytes };
}

/** Builds the delta that turns the basis into `newBytes` (chunking `newBytes` with the same sizes). */
export function buildDelta(basis: DeltaBasis, newBytes: Uint8Array, options: BuildDeltaOptions = {}): Delta {
  const plan = planDelta(basis.chunks, chunkBuffer(newBytes, options.chunking));
  const instructions: DeltaInstruction[] = plan.ranges.map((range) =>
    range.kind === "copy"
      ? { kind: "copy", chunkId: range.chunkId, offset: range.basisOffset, length: range.length }
      : // A copy, not a view (Buffer#slice is a view): a view would drag the whole new file
        // through structuredClone and pin it in memory.
        { kind: "literal", bytes: new Uint8Array(newBytes.subarray(range.offset, range.offset + range.length)) },
  );
  return { baseId: basis.contentId, resultId: contentIdOf(newBytes), resultSize: newBytes.length, instructions };
}

/** Sum of the literal bytes a delta carries (what travels, before compression). */
export function deltaLiteralSize(delta: Delta): number {
  let total = 0;
  for (const instruction of delta.instructions) if (instruction.kind === "literal") total += instruction.bytes.length;
  return total;
}

function isPositionOrLength(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Rebuilds the new content from the basis and a delta, or throws DeltaError. Every instruction
 * is checked before any output is allocated; the output is allocated once, at exactly the
 * declared size, and its sha256 must equal `resultId`.
 */
export function applyDelta(basis: Uint8Array, delta: Delta, options: ApplyDeltaOptions = {}): Uint8Array {
  const maxResultSize = options.maxResultSize ?? bufferConstants.MAX_LENGTH;
  if (typeof delta !== "object" || delta === null || !Array.isArray(delta.instructions)) {
    throw new DeltaError("malformed", "delta must be an object with an instructions array");
  }
  if (!isContentId(delta.baseId) || !isContentId(delta.resultId)) {
    throw new DeltaError("malformed", "baseId and resultId must be sha256 hex ids");
  }
  if (!isPositionOrLength(delta.resultSize)) {
    throw new DeltaError("invalid-range", `resultSize ${String(delta.resultSize)} is not a non-negative integer`);
  }
  if (delta.resultSize > maxResultSize) {
    throw new DeltaError("result-too-large", `resultSize ${delta.resultSize} exceeds the limit ${maxResultSize}`);
  }

  // Pass 1: validate every instruction and the total length without touching memory.
  let total = 0;
  delta.instructions.forEach((instruction: unknown, index) => {
    if (typeof instruction !== "object" || instruction === null) {
      throw new DeltaError("malformed", "instruction is not an object", index);
    }
    const { kind } = instruction as { kind?: unknown };
    let length: number;
    if (kind === "copy") {
      const copy = instruction as { chunkId?: unknown; offset?: unknown; length?: unknown };
      if (!isContentId(copy.chunkId)) throw new DeltaError("malformed", "copy chunkId is not a sha256 hex id", index);
      if (!isPositionOrLength(copy.offset) || !isPositionOrLength(copy.length) || copy.length === 0) {
        throw new DeltaError(
          "invalid-range",
          `copy offset ${String(copy.offset)} / length ${String(copy.length)} must be integers, offset >= 0, length > 0`,
          index,
        );
      }
      if (copy.offset + copy.length > basis.length) {
        throw new DeltaError(
          "copy-out-of-range",
          `copy [${copy.offset}, ${copy.offset + copy.length}) ends past the basis (${basis.length} bytes)`,
          index,
        );
      }
      length = copy.length;
    } else if (kind === "literal") {
      const { bytes } = instruction as { bytes?: unknown };
      if (!(bytes instanceof Uint8Array)) throw new DeltaError("malformed", "literal bytes is not a Uint8Array", index);
      if (bytes.length === 0) throw new DeltaError("invalid-range", "literal is empty", index);
      length = bytes.length;
    } else {
      throw new DeltaError("malformed", `unknown instruction kind ${JSON.stringify(kind)}`, index);
    }
    total += length;
    if (total > delta.resultSize) {
      throw new DeltaError("output-too-long", `output reaches ${total} bytes, declared ${delta.resultSize}`, index);
    }
  });
  if (total < delta.resultSize) {
    throw new DeltaError("output-too-short", `output is ${total} bytes, declared ${delta.resultSize}`);
  }
  // Checked after the cheap checks so malformed deltas cost no hashing.
  if (contentIdOf(basis) !== delta.baseId) {
    throw new DeltaError("base-mismatch", "the basis is not the version this delta was built against");
  }

  // Pass 2: assemble. Safe: every range was checked above and the lengths sum to resultSize.
  const output = new Uint8Array(delta.resultSize);
  let position = 0;
  for (const instruction of delta.instructions) {
    if (instruction.kind === "copy") {
      output.set(basis.subarray(instruction.offset, instruction.offset + instruction.length), position);
      position += instruction.length;
    } else {
      output.set(instruction.bytes, position);
      position += instruction.bytes.length;
    }
  }
  if (contentIdOf(output) !== delta.resultId) {
    throw new DeltaError("result-mismatch", "the rebuilt content does not hash to resultId");
  }
  return output;
}
