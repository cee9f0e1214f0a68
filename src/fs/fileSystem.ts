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

/** `lstat` of one entry: what the scanner's cheap change check (size, mtime, inode, ctime) needs. */
export interface EntryStat {
  kind: EntryKind;
  size: number;
  /** Modification time in milliseconds since the epoch. */
  mtimeMs: number;
  /** Status-change time in milliseconds since the epoch. */
  ctimeMs: number;
  /** Permission bits only (`mode & 0o7777`). */
  mode: number;
  ino: number;
}

/** Metadata mirrorlog carries alongside content. */
export interface EntryMetadata {
  /** Permission bits; setuid/setgid/sticky are masked off by writers. */
  mode?: number;
  mtimeMs?: number;
}

/**
 * The port mirrorlog's engine uses: the seed's operations plus metadata, symlinks and rename.
 * No method follows a symlink; a symlink is an entry of its own.
 */
export interface MirrorFileSystem extends FileSystem {
  /** Like lstat(2): never follows a symlink. Throws ENOENT when missing. */
  lstat(path: string): EntryStat;
  /** The target text of a symlink, as stored. */
  readLink(path: string): string;
  /** Creates a symlink; `path` must not exist. */
  makeSymlink(path: string, target: string): void;
  /** Atomically replaces `path` with `content`, applying `metadata` before the new bytes become visible. */
  writeFileWith(path: string, content: Uint8Array, metadata: EntryMetadata): void;
  /** Sets mode and/or mtime of a file or directory (never through a symlink). */
  setMetadata(path: string, metadata: EntryMetadata): void;
  /** rename(2) within the same file system. */
  rename(from: string, to: string): void;
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
  const normalized = posix.normalize(path);
  return normalized.length > 1 && normalized.endsWith("/") ? normalized.slice(0, -1) : normalized;
}

/** True when `path` is `root` or lies below it (both normalised). */
export function isWithin(root: string, path: string): boolean {
  return path === root || path.startsWith(root === "/" ? "/" : `${root}/`);
}
