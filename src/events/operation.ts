import { z } from "zod";
import { relativePathProblem } from "./paths.js";

/** A canonical relative path (see paths.ts); the empty string is the root. */
export const RelativePathSchema = z.string().superRefine((path, ctx) => {
  const problem = relativePathProblem(path);
  if (problem !== null) ctx.addIssue({ code: "custom", message: `unsafe path ${JSON.stringify(path)}: ${problem}` });
});

/** A relative path naming an entry below the root (never the root itself). */
export const EntryPathSchema = RelativePathSchema.refine((path) => path !== "", "the root cannot be named here");

/** sha256 of the content, lowercase hex. */
export const ContentHashSchema = z.string().regex(/^[0-9a-f]{64}$/, "content hash must be 64 lowercase hex digits");

const SizeSchema = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
/** Permission bits; setuid, setgid and sticky are never replicated. */
const ModeSchema = z.number().int().min(0).max(0o777);
/** Milliseconds since the epoch; bounded so a hostile value cannot overflow a timespec. */
const MtimeSchema = z.number().finite().min(-1e13).max(1e14);

/** After-state: a directory exists at `path` (whatever stood there before is replaced). */
export const EnsureDirSchema = z.strictObject({
  type: z.literal("ensureDir"),
  path: RelativePathSchema,
  mode: ModeSchema.optional(),
});

/** After-state: a regular file at `path` holds the content `hash` of `size` bytes, with mode and mtime. */
export const WriteFileSchema = z.strictObject({
  type: z.literal("writeFile"),
  path: EntryPathSchema,
  hash: ContentHashSchema,
  size: SizeSchema,
  mode: ModeSchema.optional(),
  mtimeMs: MtimeSchema.optional(),
});

/** After-state: a symlink at `path` whose stored target text is `target` (never followed). */
export const WriteSymlinkSchema = z.strictObject({
  type: z.literal("writeSymlink"),
  path: EntryPathSchema,
  target: z
    .string()
    .min(1)
    .max(4095)
    .refine((t) => !t.includes("\0"), "symlink target contains a NUL byte")
    .refine((t) => t.isWellFormed(), "symlink target is not well-formed Unicode"),
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
