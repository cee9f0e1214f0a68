import { posix } from "node:path";

/** The three kinds of watch notification the seed defines; each is a hint naming one path. */
export enum FileSystemEventType {
  FILE_OR_SUBDIR_ADDED = "FILE_OR_SUBDIR_ADDED",
  FILE_OR_SUBDIR_REMOVED = "FILE_OR_SUBDIR_REMOVED",
  FILE_MODIFIED = "FILE_MODIFIED",
}

/** A watch notification: `path` is an absolute path whose parent directory is watched. */
export interface FileSystemEvent {
  path: string;
  eventType: FileSystemEventType;
}

/**
 * Prefix of mirrorlog's own temp files and stash. Names that merely start with it are user data and
 * replicate like any other; only the names a file system instance made itself (`isInternalName`, a
 * per-instance random part after this prefix) are hidden from its listings and refused as targets.
 */
export const RESERVED_PREFIX = ".mirrorlog-tmp-";

/** Callback given to `watchDir`. */
export type WatchCallback = (event: FileSystemEvent) => void;

/** The seed's file-system port (shared/SEED_API.md), in TypeScript naming. Paths are absolute POSIX. */
export interface FileSystem {
  exists(path: string): boolean;
  /** Throws ENOENT when missing. */
  isFile(path: string): boolean;
  /** Throws ENOENT when missing. */
  isDir(path: string): boolean;
  readFile(path: string): Uint8Array;
  /** Create or overwrite; strings are UTF-8. */
  writeFile(path: string, content: Uint8Array | string): void;
  removeFile(path: string): void;
  /** Base names of the immediate children. */
  listDir(path: string): string[];
  /** No-op if the directory exists; the parent must exist. */
  makeDir(path: string): void;
  /** Creates missing parents. */
  makeDirs(path: string): void;
  /** Recursive. */
  removeDir(path: string): void;
  watchDir(path: string, callback: WatchCallback): void;
  /** Throws ENOTWATCHED if the directory has no watch. */
  unwatchDir(path: string): void;
  debugString(path: string): string;
}

/** What an entry is, as seen without following symlinks. `special` covers FIFOs, sockets and devices. */
export type EntryKind = "file" | "dir" | "symlink" | "special";

/** A point in time exactly as Linux keeps it: whole seconds since the epoch (negative before 1970) and nanoseconds. */
export interface Timestamp {
  sec: number;
  /** 0 ≤ nsec < 1e9. */
  nsec: number;
}

/** `lstat` of one entry: the cheap change check (size, mtime, inode, ctime) plus the metadata mirrorlog replicates. */
export interface EntryStat {
  kind: EntryKind;
  size: number;
  /** Modification time in milliseconds since the epoch (for change checks; `mtime` is exact). */
  mtimeMs: number;
  /** Status-change time in milliseconds since the epoch. */
  ctimeMs: number;
  /** Modification time, exact to the nanosecond. */
  mtime: Timestamp;
  /** The 12 permission bits (`mode & 0o7777`): rwx for user, group, other, plus setuid, setgid, sticky. */
  mode: number;
  ino: number;
  /** Device of the file system holding the entry (with `ino`, identifies a hard-link group). */
  dev: number;
  /** Number of hard links (names) of the inode. */
  nlink: number;
  uid: number;
  gid: number;
}

/**
 * Metadata mirrorlog carries alongside content. Writers apply, in this order: owner and group (only the
 * fields given; as root), then the 12 mode bits (after chown, which clears setuid/setgid), then mtime.
 * A symlink has no mode of its own: `mode` is ignored for one, owner and mtime are set on the link itself.
 */
export interface EntryMetadata {
  mode?: number;
  mtime?: Timestamp;
  uid?: number;
  gid?: number;
}

/** A child of a directory with its lstat. */
export interface DirEntryStat {
  name: string;
  stat: EntryStat;
}

/** A file written to a hidden temp beside its final path, not yet visible under that path. */
export interface StagedFile {
  readonly path: string;
  readonly tempPath: string;
}

/** Bytes being written, in order, to a hidden temp beside their final path (a file too large for memory). */
export interface StagedWriter {
  readonly path: string;
  /** Bytes written so far. */
  readonly size: number;
  write(bytes: Uint8Array): void;
  /** Applies `metadata` to the temp and closes it; the result commits like any staged file. */
  finish(metadata: EntryMetadata): StagedFile;
  /** Closes and removes the temp. */
  abort(): void;
}

/**
 * The port mirrorlog's engine uses: the seed's operations plus metadata, symlinks and rename.
 * No method follows a symlink; a symlink is an entry of its own.
 */
export interface MirrorFileSystem extends FileSystem {
  /** Like lstat(2): never follows a symlink. Throws ENOENT when missing. */
  lstat(path: string): EntryStat;
  /** Like `lstat`, but undefined when nothing is there (or a parent is not a directory). */
  lstatIfExists(path: string): EntryStat | undefined;
  /**
   * The immediate children of a directory with their lstat, sorted by name, read through one handle on
   * the directory (no path walk per child). Entries that vanish while being read are left out.
   */
  listDirStats(path: string): DirEntryStat[];
  /** The target text of a symlink, as stored. */
  readLink(path: string): string;
  /** Creates a symlink; `path` must not exist. */
  makeSymlink(path: string, target: string): void;
  /** Atomically replaces `path` with `content`, applying `metadata` before the new bytes become visible. */
  writeFileWith(path: string, content: Uint8Array, metadata: EntryMetadata): void;
  /**
   * Up to `length` bytes of a regular file from `offset` (fewer at its end); never through a symlink.
   * With `into`, the bytes are read into it (length at most its size) and a view of it is returned.
   */
  readFileRange(path: string, offset: number, length: number, into?: Uint8Array): Uint8Array;
  /**
   * A regular file's bytes as it stood while open (never through a symlink): up to the size its descriptor
   * stated when opened, and its stat through that descriptor after the read. A file that changed meanwhile
   * shows it there (another size or mtime than the bytes read or than a listing said), so the caller can
   * check the read without looking up the path again.
   */
  readFileStated(path: string): { bytes: Uint8Array; stat: EntryStat };
  /**
   * True for a name this instance made itself (its temps and stash): listings leave it out and no
   * operation may name it. Other names, even ones starting with RESERVED_PREFIX, are ordinary names.
   */
  isInternalName(name: string): boolean;
  /** A name in this instance's own namespace (`isInternalName` is true for it), e.g. for the target's stash. */
  internalName(label: string): string;
  /** Writes `content` to a hidden temp beside `path` with `metadata`; nothing visible changes until commit. */
  stageFile(path: string, content: Uint8Array, metadata: EntryMetadata): StagedFile;
  /**
   * Opens a hidden temp beside `path` to be written piece by piece, then finished and committed. `mode`:
   * the permission bits `finish` will set, when known already (the temp may be created with them).
   * Refuses at once (EISDIR) when a directory stands at `path`, unless `noDirectoryThere`: the caller has
   * just looked (a directory that appears meanwhile fails the commit's rename instead).
   */
  openStaged(path: string, mode?: number, noDirectoryThere?: boolean): StagedWriter;
  /** Moves the regular file at `from` (same file system) to a hidden temp beside `path`, with `metadata`. */
  stageExisting(from: string, path: string, metadata: EntryMetadata): StagedFile;
  /**
   * Stages a new name for the regular file at `existing` (a hard link to it, at a hidden temp beside `path`),
   * committed like a staged file: the link replaces whatever stands at `path` atomically.
   */
  stageLink(existing: string, path: string): StagedFile;
  /**
   * Makes staged files durable, renames each onto its final path (replacing a file or symlink, never a
   * directory: EISDIR), then makes the renames durable. Many files share one flush where the platform allows.
   * One file that cannot be renamed (EPERM of an immutable file, EISDIR, ...) fails alone: its temp is
   * removed and it is returned with its error; the others commit. Throws only when durability itself failed
   * (fsync/syncfs), which is fatal for every file of the call.
   */
  commitStaged(files: readonly StagedFile[]): CommitFailure[];
  /** Removes the temps of staged files that will not be committed. */
  discardStaged(files: readonly StagedFile[]): void;
  /** Makes every change made so far durable (a no-op where each change already is). */
  flush(): void;
  /**
   * Sets the given metadata of the entry at `path` itself (a file, a directory, or a symlink: never through
   * one; a symlink's mode is left alone), in EntryMetadata's order.
   */
  setMetadata(path: string, metadata: EntryMetadata): void;
  /**
   * Releases directory handles cached since the last call (confinement resolves paths through handles
   * opened from the root down and may keep them for a batch of operations). A no-op where nothing is cached.
   */
  releaseHandles(): void;
  /**
   * Keeps cached directory handles past the end of each macrotask until the returned function is called:
   * for a walk that only reads, turn after turn (each directory is then opened through its parent's handle
   * instead of from the root). The cache stays bounded; `releaseHandles` still empties it.
   */
  holdHandles(): () => void;
  /**
   * Closes the cached handles of directory `path` and of those below it: what is at those paths now may not
   * be the directory a handle was opened on (another process replaced or moved it while handles were held).
   */
  forgetHandlesAt(path: string): void;
  /** rename(2) within the same file system. */
  rename(from: string, to: string): void;
}

/** A staged file that could not be committed, and why (its temp is gone, its final name untouched). */
export interface CommitFailure {
  file: StagedFile;
  error: FileSystemError;
}

/** Error codes the file systems raise; the first five are the real POSIX codes. */
export type FileSystemErrorCode =
  | "ENOENT"
  | "EEXIST"
  | "EISDIR"
  | "ENOTDIR"
  | "EINVAL"
  | "ENOTWATCHED"
  | "EALREADYWATCHED";

/** A typed file-system failure naming the path. */
export class FileSystemError extends Error {
  override readonly name = "FileSystemError";
  constructor(
    readonly code: FileSystemErrorCode | string,
    readonly path: string,
    message?: string,
    options?: { cause?: unknown },
  ) {
    super(`${code}: ${message ?? describeCode(code)}: ${path}`, options);
  }
}

function describeCode(code: string): string {
  switch (code) {
    case "ENOENT":
      return "no such file or directory";
    case "EEXIST":
      return "already exists";
    case "EISDIR":
      return "is a directory";
    case "ENOTDIR":
      return "not a directory";
    case "EINVAL":
      return "invalid argument";
    case "ENOTWATCHED":
      return "directory is not watched";
    case "EALREADYWATCHED":
      return "directory is already watched";
    default:
      return "file system error";
  }
}

/** Normalises an absolute POSIX path: resolves `.`/`..` lexically and drops a trailing slash. */
export function normalizePath(path: string): string {
  if (!path.startsWith("/")) throw new FileSystemError("EINVAL", path, "path must be absolute");
  if (path.includes("\0")) throw new FileSystemError("EINVAL", path.replaceAll("\0", "\\0"), "path contains NUL");
  // Most paths are normal already; posix.normalize would build a copy segment by segment (kilobytes per call).
  if (isNormal(path)) return path;
  const normalized = posix.normalize(path);
  return normalized.length > 1 && normalized.endsWith("/") ? normalized.slice(0, -1) : normalized;
}

/** True when the absolute `path` has no empty, "." or ".." segment and no trailing slash ("/" itself is normal). */
function isNormal(path: string): boolean {
  let start = 1;
  for (let i = 1; i <= path.length; i++) {
    if (i < path.length && path.charCodeAt(i) !== 0x2f) continue;
    const length = i - start;
    if (length === 0) return path.length === 1;
    if (isDotSegment(path, start, length)) return false;
    start = i + 1;
  }
  return true;
}

/** True when the `length` characters of `path` from `start` (one segment) are "." or "..". */
export function isDotSegment(path: string, start: number, length: number): boolean {
  return path.charCodeAt(start) === 0x2e && (length === 1 || (length === 2 && path.charCodeAt(start + 1) === 0x2e));
}

/**
 * `posix.join(root, path)` for an absolute `root` and a relative `path` that is normal already (no
 * empty, "." or ".." segment, as every operation's path: events/paths.ts's relativePathProblem), without
 * normalising again. A path that is not would still be confined: the file systems normalise what they are given.
 */
export function pathUnder(root: string, path: string): string {
  if (path === "") return root;
  return root.endsWith("/") ? `${root}${path}` : `${root}/${path}`;
}

/** True when `path` is `root` or lies below it (both normalised). */
export function isWithin(root: string, path: string): boolean {
  return path === root || path.startsWith(root === "/" ? "/" : `${root}/`);
}
