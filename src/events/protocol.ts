import * as z from "zod";
import {
  ATTRIBUTE_KEYS,
  AttributesShape,
  ContentHashSchema,
  EntryPathSchema,
  OperationSchema,
  PositionSchema,
  RelativePathSchema,
  SymlinkTargetSchema,
  WriteSymlinkSchema,
} from "./operation.js";

/**
 * Bumped whenever a request, a response or the frame format changes; both sides must agree exactly (4: frames
 * carry a CRC-32; 5: manifests of directory digests, the listing request; 6: an apply states how far the
 * source's log is durable).
 */
export const PROTOCOL_VERSION = 6;

const BytesSchema = z.custom<Uint8Array>((value) => value instanceof Uint8Array, "expected bytes");
const SizeSchema = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/** Identifies one source log; a target that sees another log id re-establishes from a manifest. */
export const LogIdSchema = z.string().regex(/^[0-9a-f-]{8,64}$/, "log id must be hex");

/** The bytes of a written file as they travel: raw, or zstd-compressed when that shrinks them. */
export const InlineContentSchema = z.strictObject({
  kind: z.literal("inline"),
  encoding: z.enum(["raw", "zstd"]),
  data: BytesSchema,
});

/** Literal bytes of a piece: `data` decodes to exactly `size` bytes. */
export const LiteralPieceSchema = z.strictObject({
  kind: z.literal("literal"),
  encoding: z.enum(["raw", "zstd"]),
  size: SizeSchema,
  data: BytesSchema,
});

/** `length` bytes at `offset` of the basis: the file the target holds at the same path, hashing to `baseHash`. */
export const CopyPieceSchema = z.strictObject({
  kind: z.literal("copy"),
  offset: SizeSchema,
  length: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
});

/** One piece of a file assembled on the target, in order: literal bytes or a range of the basis. */
export const PieceSchema = z.discriminatedUnion("kind", [LiteralPieceSchema, CopyPieceSchema]);
/** A piece of an assembled file. */
export type Piece = z.infer<typeof PieceSchema>;

/** The target already holds these bytes (at another path, or in what this session removed): no bytes travel. */
export const LocalContentSchema = z.strictObject({
  kind: z.literal("local"),
});

/** The new bytes as pieces against the file at the same path, whose content must be `baseHash`. */
export const DeltaContentSchema = z.strictObject({
  kind: z.literal("delta"),
  baseHash: ContentHashSchema,
  pieces: z.array(PieceSchema).max(1_000_000),
});

/** The bytes were assembled by earlier `upload` requests under `uploadId`. */
export const UploadContentSchema = z.strictObject({
  kind: z.literal("upload"),
  uploadId: z.string().regex(/^[0-9a-z]{1,32}$/),
});

/**
 * The bytes are `length` bytes at `offset` of the apply request's `pack`: small files of one request
 * travel together, compressed as one frame, so compression sees across files (as a stream would).
 */
export const PackedContentSchema = z.strictObject({
  kind: z.literal("packed"),
  offset: SizeSchema,
  length: SizeSchema,
});

/** How a written file's bytes reach the target. */
export const ContentSchema = z.discriminatedUnion("kind", [
  InlineContentSchema,
  LocalContentSchema,
  DeltaContentSchema,
  UploadContentSchema,
  PackedContentSchema,
]);
/** Content as it travels. */
export type Content = z.infer<typeof ContentSchema>;

/** Where the target stands: the log it follows and the last position it applied. */
export const AppliedPositionSchema = z.strictObject({
  logId: LogIdSchema,
  epoch: PositionSchema.shape.epoch,
  seq: PositionSchema.shape.seq,
});
/** The target's applied position. */
export type AppliedPosition = z.infer<typeof AppliedPositionSchema>;

/** Opens a session: the source names its protocol version, log and epoch. */
export const HelloRequestSchema = z.strictObject({
  type: z.literal("hello"),
  version: z.number().int(),
  logId: LogIdSchema,
  epoch: PositionSchema.shape.epoch,
});

/**
 * Asks for the target's tree: every entry with its kind, hash and metadata, parents first, in pages.
 * Offset 0 walks the tree afresh; later offsets page through that same walk. With `digests`, a directory's
 * listing comes as one `digest` entry over the named attributes (see listingDigest) where it fits a page;
 * the source asks for a listing whose digest differs from its own with a `listing` request.
 */
export const ManifestRequestSchema = z.strictObject({
  type: z.literal("manifest"),
  offset: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  digests: z.strictObject({ attributes: z.array(z.enum(ATTRIBUTE_KEYS)).max(ATTRIBUTE_KEYS.length) }).optional(),
});

/** Asks for the listing of one directory of the target (its children's entries), one a digest stood for. */
export const ListingRequestSchema = z.strictObject({
  type: z.literal("listing"),
  dir: RelativePathSchema,
});

/** One logged operation as shipped: its position, the operation, and the bytes when it writes a file. */
export const ApplyEntrySchema = z.strictObject({
  seq: PositionSchema.shape.seq,
  operation: OperationSchema,
  content: ContentSchema.optional(),
});
/** A shipped operation. */
export type ApplyEntry = z.infer<typeof ApplyEntrySchema>;

/** A batch of consecutive operations of one epoch, applied in order. */
export const ApplyRequestSchema = z.strictObject({
  type: z.literal("apply"),
  logId: LogIdSchema,
  epoch: PositionSchema.shape.epoch,
  entries: z.array(ApplyEntrySchema).min(1),
  /** The small files of this request, one after another; `size` bytes once decoded. */
  pack: z.strictObject({ encoding: z.enum(["raw", "zstd"]), size: SizeSchema, data: BytesSchema }).optional(),
  /**
   * The source's log holds this epoch's operations durably only up to this position (it ships while its log
   * reaches the disk): the target makes no later position durable until a request says more, or a release
   * (sent once the log is durable) says all. Absent: every operation up to this request's are durable.
   */
  logDurableSeq: PositionSchema.shape.seq.optional(),
});

/**
 * Appends pieces to the file being assembled under `uploadId` for `path` (a large file streams as many
 * uploads, a bounded amount each). The first upload (offset 0) starts the file; copy pieces read the
 * basis, the file at `path`, which must hash to `baseHash`. Nothing is visible until an apply names it.
 */
export const UploadRequestSchema = z.strictObject({
  type: z.literal("upload"),
  uploadId: UploadContentSchema.shape.uploadId,
  path: EntryPathSchema,
  offset: SizeSchema,
  baseHash: ContentHashSchema.optional(),
  pieces: z.array(PieceSchema).min(1).max(1_000_000),
});
/** An upload request. */
export type UploadRequest = z.infer<typeof UploadRequestSchema>;

/** Asks for the chunk lists of files the target holds (to send only what changed in them). */
export const ChunksRequestSchema = z.strictObject({
  type: z.literal("chunks"),
  paths: z.array(EntryPathSchema).max(100_000),
});

/** Ends a burst of work: the target drops what it kept for reuse (removed files, unfinished uploads). */
export const ReleaseRequestSchema = z.strictObject({
  type: z.literal("release"),
  /** Make everything applied durable before answering (the end of a sync pass). */
  durable: z.boolean().optional(),
});

/** Every request a source sends. */
export const RequestSchema = z.discriminatedUnion("type", [
  HelloRequestSchema,
  ManifestRequestSchema,
  ListingRequestSchema,
  ApplyRequestSchema,
  UploadRequestSchema,
  ChunksRequestSchema,
  ReleaseRequestSchema,
]);
/** A request. */
export type Request = z.infer<typeof RequestSchema>;
/** The hello request. */
export type HelloRequest = z.infer<typeof HelloRequestSchema>;
/** The chunks request. */
export type ChunksRequest = z.infer<typeof ChunksRequestSchema>;
/** The manifest request. */
export type ManifestRequest = z.infer<typeof ManifestRequestSchema>;
/** The listing request. */
export type ListingRequest = z.infer<typeof ListingRequestSchema>;
/** The apply request. */
export type ApplyRequest = z.infer<typeof ApplyRequestSchema>;

/**
 * The target's answer to hello: its version, where it stands in the source's log, and whether it can set
 * owners and groups (it runs as root): the source states owners only to a target that can apply them.
 */
export const HelloResponseSchema = z.strictObject({
  type: z.literal("hello"),
  version: z.number().int(),
  applied: AppliedPositionSchema.nullable(),
  canSetOwner: z.boolean(),
});

/**
 * One entry of the target's tree with its metadata. Symlinks carry their target text; files their hash and,
 * for a hard-linked file that is not the first name of its group in walk order, `linkTo` (that first name).
 */
export const ManifestEntrySchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("dir"), path: RelativePathSchema, ...AttributesShape }),
  z.strictObject({
    kind: z.literal("file"),
    path: RelativePathSchema,
    hash: ContentHashSchema,
    size: SizeSchema,
    linkTo: EntryPathSchema.optional(),
    ...AttributesShape,
  }),
  z.strictObject({
    kind: z.literal("symlink"),
    path: RelativePathSchema,
    target: SymlinkTargetSchema,
    mtime: WriteSymlinkSchema.shape.mtime,
    uid: WriteSymlinkSchema.shape.uid,
    gid: WriteSymlinkSchema.shape.gid,
  }),
  // Something the target cannot describe (a FIFO, an unreadable file): the source replaces or removes it.
  z.strictObject({ kind: z.literal("unknown"), path: RelativePathSchema }),
]);
/** A manifest entry. */
export type ManifestEntry = z.infer<typeof ManifestEntrySchema>;

/**
 * Stands for the listing of directory `path` in a manifest asked for with `digests`: its `count` children,
 * summed up by listingDigest.
 */
export const DigestEntrySchema = z.strictObject({
  kind: z.literal("digest"),
  path: RelativePathSchema,
  count: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  digest: z.string().regex(/^[0-9a-f]{64}$/, "digest must be 64 hex digits"),
});
/** A digest entry. */
export type DigestEntry = z.infer<typeof DigestEntrySchema>;
/** An entry of a manifest page: an entry of the tree, or a digest standing for a directory's listing. */
export type ManifestPageEntry = ManifestEntry | DigestEntry;

/** One page of the target's tree, parents before children; `complete` on the last page. */
export const ManifestResponseSchema = z.strictObject({
  type: z.literal("manifest"),
  entries: z.array(z.discriminatedUnion("kind", [...ManifestEntrySchema.options, DigestEntrySchema])),
  complete: z.boolean(),
});

/** The listing of one directory: its children's entries by name (none when it is not a directory now). */
export const ListingResponseSchema = z.strictObject({
  type: z.literal("listing"),
  dir: RelativePathSchema,
  entries: z.array(ManifestEntrySchema),
});

/**
 * What applying one operation did: `applied` changed the target, `unchanged` found it already in the
 * after-state, `duplicate` skipped a position already applied, `failed` left the path as it was.
 */
export const ApplyOutcomeSchema = z.enum(["applied", "unchanged", "duplicate", "failed"]);
/** An apply outcome. */
export type ApplyOutcome = z.infer<typeof ApplyOutcomeSchema>;

/**
 * Why one operation failed, for the source to decide on (the reason text is for people):
 * - `missing-content`: the target lacks bytes the source assumed it held (send them whole and retry);
 * - `missing-basis`: a delta's or a hard link's basis is not what the source assumed (retry in full);
 * - `hash-mismatch`: the assembled bytes do not hash or size to what the operation states (retry in full);
 * - `permission`: EACCES/EPERM (an immutable file, a directory the target may not write);
 * - `read-only`: EROFS; `no-space`: ENOSPC/EDQUOT;
 * - `unsafe-path`: the path traverses a symlink or names something the target reserves;
 * - `not-found`: a parent is missing or not a directory;
 * - `metadata`: the content is in place but some metadata could not be set as stated;
 * - `limit`: the bytes would pass one of the target's limits (the reason names it); retrying cannot help;
 * - `io`: anything else.
 */
export const FailureCodeSchema = z.enum([
  "missing-content",
  "missing-basis",
  "hash-mismatch",
  "permission",
  "read-only",
  "no-space",
  "unsafe-path",
  "not-found",
  "metadata",
  "limit",
  "io",
]);
/** A failure code. */
export type FailureCode = z.infer<typeof FailureCodeSchema>;

/** The result of one shipped operation. `wroteFile` is true when file bytes were written. */
export const ApplyResultSchema = z.strictObject({
  seq: PositionSchema.shape.seq,
  outcome: ApplyOutcomeSchema,
  wroteFile: z.boolean(),
  bytesWritten: SizeSchema,
  /** Set when the outcome is `failed`. */
  code: FailureCodeSchema.optional(),
  reason: z.string().optional(),
});
/** One apply result. */
export type ApplyResult = z.infer<typeof ApplyResultSchema>;

/** Results of an apply batch, in order, and the position the target now stands at. */
export const ApplyResponseSchema = z.strictObject({
  type: z.literal("applied"),
  results: z.array(ApplyResultSchema),
  applied: AppliedPositionSchema,
});

/** Why a whole request was refused; nothing changed on the target. `limit`: the message names the limit passed. */
export const ErrorCodeSchema = z.enum([
  "invalid-request",
  "limit",
  "unsafe-path",
  "version-mismatch",
  "no-session",
  "stale-epoch",
  "position-gap",
  "internal",
]);

/** A refused request: nothing changed. `path` names the offending path when there is one. */
export const ErrorResponseSchema = z.strictObject({
  type: z.literal("error"),
  code: ErrorCodeSchema,
  message: z.string(),
  path: z.string().optional(),
  /** On a hello refused as stale: where the target stands, so the source starts its new epoch beyond it. */
  applied: AppliedPositionSchema.optional(),
});

/** The answer to an upload: how many bytes the file being assembled now holds, or why it failed. */
export const UploadResponseSchema = z.strictObject({
  type: z.literal("uploaded"),
  uploadId: UploadContentSchema.shape.uploadId,
  size: SizeSchema,
  code: FailureCodeSchema.optional(),
  reason: z.string().optional(),
});

/** A chunk of a file: its offset, length and content hash. */
export const ChunkSchema = z.strictObject({
  offset: SizeSchema,
  length: SizeSchema,
  id: ContentHashSchema,
});

/** Chunk lists by path, with each file's hash; a path the target cannot read is left out. */
export const ChunksResponseSchema = z.strictObject({
  type: z.literal("chunks"),
  files: z.array(z.strictObject({ path: EntryPathSchema, hash: ContentHashSchema, chunks: z.array(ChunkSchema) })),
});

/** The answer to release. */
export const ReleasedResponseSchema = z.strictObject({
  type: z.literal("released"),
  /** The target's durable position: what it resumes from after a crash (the source replays its log from there). */
  durable: AppliedPositionSchema.nullable(),
});

/** Every response a target sends. */
export const ResponseSchema = z.discriminatedUnion("type", [
  HelloResponseSchema,
  ManifestResponseSchema,
  ListingResponseSchema,
  ApplyResponseSchema,
  UploadResponseSchema,
  ChunksResponseSchema,
  ReleasedResponseSchema,
  ErrorResponseSchema,
]);
/** A response. */
export type Response = z.infer<typeof ResponseSchema>;
/** The hello response. */
export type HelloResponse = z.infer<typeof HelloResponseSchema>;
/** The manifest response. */
export type ManifestResponse = z.infer<typeof ManifestResponseSchema>;
/** The apply response. */
export type ApplyResponse = z.infer<typeof ApplyResponseSchema>;
/** The error response. */
export type ErrorResponse = z.infer<typeof ErrorResponseSchema>;
/** An error code. */
export type ErrorCode = z.infer<typeof ErrorCodeSchema>;
