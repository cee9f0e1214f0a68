import * as z from "zod";
import type { Timestamp } from "../fs/fileSystem.js";
import { relativePathProblem, symlinkTargetProblem } from "./paths.js";

/**
 * A canonical relative path (see paths.ts); the empty string is the root. A refinement whose message is only
 * worked out for a path that fails: every operation is checked, and superRefine's context costs twice the time.
 */
export const RelativePathSchema = z.string().refine((path) => relativePathProblem(path) === null, {
  error: (issue) => `unsafe path ${JSON.stringify(issue.input)}: ${relativePathProblem(issue.input as string)}`,
});

/** A relative path naming an entry below the root (never the root itself). */
export const EntryPathSchema = RelativePathSchema.refine((path) => path !== "", "the root cannot be named here");

/** sha256 of the content, lowercase hex. */
export const ContentHashSchema = z.string().regex(/^[0-9a-f]{64}$/, "content hash must be 64 lowercase hex digits");

const SizeSchema = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
/** The 12 permission bits: rwx for user, group and other, plus setuid, setgid and sticky. */
export const ModeSchema = z.number().int().min(0).max(0o7777);
/** A modification time, exact to the nanosecond; bounded so a hostile value cannot overflow a timespec. */
export const TimestampSchema = z.strictObject({
  sec: z.number().int().min(-1e12).max(1e12),
  nsec: z.number().int().min(0).max(999_999_999),
});
/** A numeric user or group id (rsync --numeric-ids); 2^32-1 is "no change" to chown(2) and never valid. */
const IdSchema = z
  .number()
  .int()
  .min(0)
  .max(2 ** 32 - 2);

/**
 * The metadata an after-state may state: a field left out is not replicated (the target keeps what it has).
 * Owner and group travel only when the source preserves them and the target can set them (root).
 */
export const AttributesShape = {
  mode: ModeSchema.optional(),
  mtime: TimestampSchema.optional(),
  uid: IdSchema.optional(),
  gid: IdSchema.optional(),
};
/** Metadata of an entry as operations, manifests and tree nodes carry it. */
export type Attributes = {
  mode?: number;
  mtime?: Timestamp;
  uid?: number;
  gid?: number;
};

/** The attribute fields, in the order writers apply them (owner before mode: chown clears setuid). */
export const ATTRIBUTE_KEYS = ["uid", "gid", "mode", "mtime"] as const;
/** The name of one attribute field. */
export type AttributeKey = (typeof ATTRIBUTE_KEYS)[number];

/**
 * A symlink target as stored: any bytes but NUL (byte escapes, see fs/byteNames.ts), at most 4095 bytes,
 * in the one canonical spelling.
 */
export const SymlinkTargetSchema = z.string().refine((target) => symlinkTargetProblem(target) === null, {
  error: (issue) => `symlink target ${symlinkTargetProblem(issue.input as string)}`,
});

/**
 * After-state: a directory exists at `path` (whatever stood there before is replaced) with the given
 * metadata. Its mode and mtime are final once its entries are: the target sets them after the writes into it.
 */
export const EnsureDirSchema = z.strictObject({
  type: z.literal("ensureDir"),
  path: RelativePathSchema,
  ...AttributesShape,
});

/**
 * After-state: a regular file at `path` holds the content `hash` of `size` bytes, with the given metadata.
 * With `linkTo`, it is the same inode as the file at `linkTo` (a hard link; that file holds `hash`, and the
 * metadata is the inode's).
 */
export const WriteFileSchema = z.strictObject({
  type: z.literal("writeFile"),
  path: EntryPathSchema,
  hash: ContentHashSchema,
  size: SizeSchema,
  linkTo: EntryPathSchema.optional(),
  ...AttributesShape,
});

/** After-state: a symlink at `path` whose stored target text is `target` (never followed); mode does not apply. */
export const WriteSymlinkSchema = z.strictObject({
  type: z.literal("writeSymlink"),
  path: EntryPathSchema,
  target: SymlinkTargetSchema,
  mtime: TimestampSchema.optional(),
  uid: IdSchema.optional(),
  gid: IdSchema.optional(),
});

/** After-state: nothing exists at `path` (a directory goes with everything below it). */
export const RemoveSchema = z.strictObject({
  type: z.literal("remove"),
  path: EntryPathSchema,
});

/** One operation of the log: the after-state of one path. Applying it twice changes nothing. */
export const OperationSchema = z.discriminatedUnion("type", [
  EnsureDirSchema,
  WriteFileSchema,
  WriteSymlinkSchema,
  RemoveSchema,
]);

/** An operation of the log. */
export type Operation = z.infer<typeof OperationSchema>;

/** Operation objects OperationSchema has passed: an operation is never changed once made. */
const passedOperations = new WeakSet<Operation>();

/**
 * OperationSchema.safeParse of an operation this process made, checked once: the source checks each one it
 * plans, then its log each one it appends, the same objects (22,000 of them in a 20,000-file mirror).
 */
export function checkOperation(operation: Operation): z.ZodSafeParseResult<Operation> {
  if (!passedOperations.has(operation)) {
    const parsed = OperationSchema.safeParse(operation);
    if (!parsed.success) return parsed;
    passedOperations.add(operation);
  }
  // The operation itself: the schema has no transforms or defaults, so what passed is what it returns.
  return { success: true, data: operation };
}

/** A directory-ensured operation. */
export type EnsureDir = z.infer<typeof EnsureDirSchema>;
/** A file-written operation. */
export type WriteFile = z.infer<typeof WriteFileSchema>;
/** A symlink-written operation. */
export type WriteSymlink = z.infer<typeof WriteSymlinkSchema>;
/** A path-removed operation. */
export type Remove = z.infer<typeof RemoveSchema>;
/** The discriminant of an operation. */
export type OperationType = Operation["type"];

/** How the source learned that a path changed; kept with each logged operation for audit. */
export const DetectedBySchema = z.enum(["initial", "watch", "rescan", "restart", "overflow", "retry"]);
/** How a change was detected. */
export type DetectedBy = z.infer<typeof DetectedBySchema>;

/** A position in the log: epochs start when continuity cannot be proven; seq counts within one. */
export const PositionSchema = z.strictObject({
  epoch: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});
/** A log position `(epoch, seq)`. */
export type Position = z.infer<typeof PositionSchema>;
