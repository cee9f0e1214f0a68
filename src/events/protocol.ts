import { z } from "zod";
import { ContentHashSchema, OperationSchema, PositionSchema, RelativePathSchema } from "./operation.js";

/** Bumped whenever a request or response changes shape; both sides must agree exactly. */
export const PROTOCOL_VERSION = 1;

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

/** How a written file's bytes reach the target. */
export const ContentSchema = z.discriminatedUnion("kind", [InlineContentSchema]);
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
 * Offset 0 walks the tree afresh; later offsets page through that same walk.
 */
export const ManifestRequestSchema = z.strictObject({
  type: z.literal("manifest"),
  offset: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
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
});

/** Every request a source sends. */
export const RequestSchema = z.discriminatedUnion("type", [
  HelloRequestSchema,
  ManifestRequestSchema,
  ApplyRequestSchema,
]);
/** A request. */
export type Request = z.infer<typeof RequestSchema>;
/** The hello request. */
export type HelloRequest = z.infer<typeof HelloRequestSchema>;
/** The manifest request. */
export type ManifestRequest = z.infer<typeof ManifestRequestSchema>;
/** The apply request. */
export type ApplyRequest = z.infer<typeof ApplyRequestSchema>;

/** The target's answer to hello: its version and where it stands in the source's log. */
export const HelloResponseSchema = z.strictObject({
  type: z.literal("hello"),
  version: z.number().int(),
  applied: AppliedPositionSchema.nullable(),
});

/** One entry of the target's tree. Symlinks carry their target text; files their hash and metadata. */
export const ManifestEntrySchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("dir"), path: RelativePathSchema, mode: z.number().int().optional() }),
  z.strictObject({
    kind: z.literal("file"),
    path: RelativePathSchema,
    hash: ContentHashSchema,
    size: SizeSchema,
    mode: z.number().int().optional(),
    mtimeMs: z.number().optional(),
  }),
  z.strictObject({ kind: z.literal("symlink"), path: RelativePathSchema, target: z.string() }),
  // Something the target cannot describe (a FIFO, an unreadable file): the source replaces or removes it.
  z.strictObject({ kind: z.literal("unknown"), path: RelativePathSchema }),
]);
/** A manifest entry. */
export type ManifestEntry = z.infer<typeof ManifestEntrySchema>;

/** One page of the target's tree, parents before children; `complete` on the last page. */
export const ManifestResponseSchema = z.strictObject({
  type: z.literal("manifest"),
  entries: z.array(ManifestEntrySchema),
  complete: z.boolean(),
});

/**
 * What applying one operation did: `applied` changed the target, `unchanged` found it already in the
 * after-state, `duplicate` skipped a position already applied, `failed` left the path as it was.
 */
export const ApplyOutcomeSchema = z.enum(["applied", "unchanged", "duplicate", "failed"]);
/** An apply outcome. */
export type ApplyOutcome = z.infer<typeof ApplyOutcomeSchema>;

/** The result of one shipped operation. `wroteFile` is true when file bytes were written. */
export const ApplyResultSchema = z.strictObject({
  seq: PositionSchema.shape.seq,
  outcome: ApplyOutcomeSchema,
  wroteFile: z.boolean(),
  bytesWritten: SizeSchema,
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

/** Why a whole request was refused; nothing changed on the target. */
export const ErrorCodeSchema = z.enum([
  "invalid-request",
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
});

/** Every response a target sends. */
export const ResponseSchema = z.discriminatedUnion("type", [
  HelloResponseSchema,
  ManifestResponseSchema,
  ApplyResponseSchema,
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
