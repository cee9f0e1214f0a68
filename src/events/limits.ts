/*
 * The one place for every limit the target and the transport enforce against a peer (and the source
 * sizes it must stay within to be accepted). Each limit fails closed with a typed error naming it;
 * `checkLimits` states how they depend on one another and runs where targets and transports are built,
 * so a change to one that breaks another fails at start, not on a peer's request.
 */

/** Every limit a target or a stream transport enforces, with the sizes a source must keep to be accepted. */
export interface Limits {
  /** Largest frame payload either side accepts or sends: a hostile length is refused before it is read. */
  readonly maxFrameBytes: number;
  /** Time from a frame's first byte to its last: a peer stalled mid-frame cannot hold the target (and its lock). */
  readonly frameTimeoutMs: number;
  /**
   * Time the serving side waits between whole requests. A quiet `watch` sends nothing while nothing changes
   * (a rescan that finds nothing sends nothing), so the default is unbounded; a gone peer ends the stream.
   */
  readonly idleTimeoutMs: number;
  /** Time for the peer's hello (ssh set-up included): nothing but a hello is read before it. */
  readonly handshakeTimeoutMs: number;
  /** Bytes one literal (inline content, a piece, a pack) may decode to: a compressed bomb is refused unread. */
  readonly maxDecodedPieceBytes: number;
  /** Literal bytes one request may decode to in all (its pack, inline contents and pieces). */
  readonly maxDecodedRequestBytes: number;
  /** Largest file the target stages, whatever the free space (capped by free space minus the reserve too). */
  readonly maxFileBytes: number;
  /** Free space never staged into, in bytes, when the file system is larger than this many bytes × 100... */
  readonly reserveBytes: number;
  /** ...otherwise this fraction of the file system: a small disk keeps 1 %, like Syncthing's minDiskFree. */
  readonly reserveFraction: number;
  /** Operations one apply request may carry (the source sends at most `sourceOperationsPerRequest`). */
  readonly maxOperationsPerRequest: number;
  /** Uploads assembled at once (each holds an open temp file): a peer cannot exhaust file descriptors. */
  readonly maxOpenUploads: number;
  /** Removed files set aside for reuse per session before the stash is emptied. */
  readonly maxStashEntries: number;
  /** Manifest entries per response page... */
  readonly manifestPageEntries: number;
  /** ...and their estimated encoded bytes: a page of long names still fits a frame. */
  readonly manifestPageBytes: number;
  /** Operations per apply request the source builds. */
  readonly sourceOperationsPerRequest: number;
  /** Decoded content bytes per apply request the source builds before it starts another. */
  readonly sourceRequestContentBytes: number;
  /** Files up to this size travel inside an apply request (one literal); larger ones stream as uploads. */
  readonly inlineFileBytes: number;
  /** Literal bytes per upload request the source builds. */
  readonly uploadRequestBytes: number;
}

const MiB = 1024 * 1024;

/** The limits in force unless a caller passes its own (tests pass smaller ones). */
export const DEFAULT_LIMITS: Limits = Object.freeze({
  maxFrameBytes: 16 * MiB,
  frameTimeoutMs: 120_000,
  idleTimeoutMs: Number.POSITIVE_INFINITY,
  handshakeTimeoutMs: 30_000,
  maxDecodedPieceBytes: 16 * MiB,
  maxDecodedRequestBytes: 64 * MiB,
  maxFileBytes: 2 ** 36,
  reserveBytes: 64 * MiB,
  reserveFraction: 0.01,
  maxOperationsPerRequest: 10_000,
  maxOpenUploads: 64,
  maxStashEntries: 100_000,
  manifestPageEntries: 4_096,
  manifestPageBytes: 8 * MiB,
  sourceOperationsPerRequest: 8192,
  sourceRequestContentBytes: 8 * MiB,
  inlineFileBytes: 4 * MiB,
  uploadRequestBytes: 2 * MiB,
});

/**
 * Encoded bytes of one manifest entry at most: two names of up to 4096 bytes (a path and a symlink target
 * or a hard link's leader), each byte up to 3 in UTF-8 (a non-UTF-8 byte travels as one U+EF80-U+EFFF code
 * point), and the metadata.
 */
export const MAX_MANIFEST_ENTRY_BYTES = 3 * (4096 + 4096) + 512;

/** Limits that contradict one another; the message names the invariant. */
export class LimitsError extends Error {
  override readonly name = "LimitsError";
}

/**
 * Checks the invariants between limits and returns them; throws LimitsError naming the first one broken.
 * (Ratios of 2 leave room for the envelope and msgpack overhead of what a frame carries besides content.)
 */
export function checkLimits(limits: Limits): Limits {
  const invariants: [boolean, string][] = [
    [Object.values(limits).every((v) => typeof v === "number" && v > 0), "every limit is a positive number"],
    [limits.maxFrameBytes <= 0xffffffff, "maxFrameBytes fits the u32 frame header"],
    [
      limits.sourceRequestContentBytes * 2 <= limits.maxFrameBytes,
      "a source request (content plus its operations) fits a frame",
    ],
    [limits.uploadRequestBytes * 2 <= limits.maxFrameBytes, "an upload request fits a frame"],
    [limits.inlineFileBytes * 2 <= limits.maxFrameBytes, "an inline file that did not compress fits a frame"],
    [limits.inlineFileBytes <= limits.maxDecodedPieceBytes, "an inline file decodes within the piece limit"],
    [limits.maxDecodedPieceBytes <= limits.maxDecodedRequestBytes, "a piece decodes within the request limit"],
    [
      limits.sourceRequestContentBytes + limits.inlineFileBytes <= limits.maxDecodedRequestBytes,
      "a source request (its content plus the file that overflowed it) decodes within the request limit",
    ],
    [
      limits.sourceOperationsPerRequest <= limits.maxOperationsPerRequest,
      "the source's requests carry no more operations than the target accepts",
    ],
    [
      limits.manifestPageBytes + MAX_MANIFEST_ENTRY_BYTES <= limits.maxFrameBytes,
      "a manifest page (plus the entry that overflowed it) fits a frame",
    ],
    [limits.reserveFraction < 1, "the free-space reserve leaves something to stage into"],
    [Number.isSafeInteger(limits.maxFileBytes), "maxFileBytes is a safe integer"],
  ];
  for (const [holds, invariant] of invariants) {
    if (!holds) throw new LimitsError(`inconsistent limits: not true that ${invariant}`);
  }
  return limits;
}

/** The bytes of free space never staged into on a file system of `totalBytes`. */
export function reservedBytes(limits: Limits, totalBytes: number): number {
  return Math.min(limits.reserveBytes, Math.ceil(totalBytes * limits.reserveFraction));
}
