import { Buffer } from "node:buffer";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync as changeModeSync,
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  fstatSync,
  fsyncSync,
  futimesSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  renameSync,
  rmdirSync,
  type Stats,
  statSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeSync,
} from "node:fs";
import { posix } from "node:path";
import {
  DiskWatcher,
  defaultOverflowThreshold,
  type FileSystemProblem,
  kernelWatchFactory,
  type WatchFactory,
} from "./diskWatcher.js";
import {
  type DirEntryStat,
  type EntryKind,
  type EntryMetadata,
  type EntryStat,
  FileSystemError,
  isReservedName,
  isWithin,
  type MirrorFileSystem,
  normalizePath,
  RESERVED_PREFIX,
  type StagedFile,
  type StagedWriter,
  type WatchCallback,
} from "./fileSystem.js";

/**
 * "full": every change is durable when its call returns (fsync of files and parent directories).
 * "batched": file contents are durable before they become visible, but directory entries (mkdir, unlink,
 * rename, symlink) only at `flush()` or the next multi-file commit, one syncfs for many changes.
 * "none": no fsync at all (benchmarks and tests only).
 */
export type Durability = "full" | "batched" | "none";

/** From this many files on, a commit flushes the whole file system once instead of fsyncing each file. */
const SYNCFS_MIN_FILES = 8;

export type { FileSystemProblem, WatchFactory, WatchListener } from "./diskWatcher.js";

/** Settings of a `NodeFileSystem`; every field is optional. */
export interface NodeFileSystemOptions {
  /** When set, every path must lie within it and no component below it may be a symlink. */
  root?: string;
  /** Receives per-path problems (non-UTF-8 names, watch limit, overflow); defaults to a process warning. */
  onProblem?: (problem: FileSystemProblem) => void;
  /**
   * Remove temp files of other (crashed) writers when a listing meets them; this instance's own temps
   * are recognised by their per-instance prefix and left alone. For a target, never for a source.
   */
  removeStaleTemps?: boolean;
  /** Period of the rescan hints for directories that could not get a kernel watch (default 2000). */
  rescanIntervalMs?: number;
  /** Clock in milliseconds since the epoch; sets the access time that accompanies an explicit mtime. */
  now?: () => number;
  /** Creates one kernel watch (default `fs.watch`); tests inject failures such as ENOSPC. */
  watchFactory?: WatchFactory;
  /** Notifications per macrotask taken as an inotify queue overflow (default: max_queued_events or 16384). */
  overflowThreshold?: number;
  /** "full" (default) fsyncs files and directories; "none" skips every fsync (benchmarks and tests only). */
  durability?: Durability;
  /** Source of randomness for temp names (default `crypto.randomBytes`). */
  randomBytes?: (size: number) => Uint8Array;
}

const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
const TEMP_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const DIRECTORY_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const DEFAULT_FILE_MODE = 0o644;
/** Linux lets us list an open directory through its fd: no window for a symlink swap after the check. */
const LIST_THROUGH_PROC_FD = existsSync("/proc/self/fd");

/** The FileSystem port on a real disk: bytes, no symlink following, atomic writes, per-directory kernel watches. */
export class NodeFileSystem implements MirrorFileSystem {
  private readonly root: string | undefined;
  private readonly onProblem: (problem: FileSystemProblem) => void;
  private readonly now: () => number;
  private readonly durable: boolean;
  private readonly durability: Durability;
  /** Directory entries changed since the last flush (batched durability only). */
  private unflushed: string | undefined;
  private readonly randomBytes: (size: number) => Uint8Array;
  private tempPrefix: string | undefined;
  private readonly removeStaleTemps: boolean;
  private tempCounter = 0;
  private readonly watcher: DiskWatcher;

  constructor(options: NodeFileSystemOptions = {}) {
    this.root = options.root === undefined ? undefined : normalizePath(options.root);
    this.onProblem = options.onProblem ?? reportAsWarning;
    this.now = options.now ?? Date.now;
    this.durability = options.durability ?? "full";
    this.durable = this.durability !== "none";
    this.randomBytes = options.randomBytes ?? randomBytes;
    this.removeStaleTemps = options.removeStaleTemps ?? false;
    this.watcher = new DiskWatcher({
      onProblem: this.onProblem,
      rescanIntervalMs: options.rescanIntervalMs ?? 2000,
      overflowThreshold: options.overflowThreshold ?? defaultOverflowThreshold(),
      watchFactory: options.watchFactory ?? kernelWatchFactory,
      isReservedName,
    });
  }

  exists(path: string): boolean {
    const p = this.resolve(path);
    try {
      return lstatSync(p, { throwIfNoEntry: false }) !== undefined;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOTDIR") return false;
      throw toFileSystemError(error, p);
    }
  }

  isFile(path: string): boolean {
    return this.lstat(path).kind === "file";
  }

  isDir(path: string): boolean {
    return this.lstat(path).kind === "dir";
  }

  lstat(path: string): EntryStat {
    const p = this.resolve(path);
    return toEntryStat(this.lstatOrThrow(p));
  }

  lstatIfExists(path: string): EntryStat | undefined {
    const p = this.resolve(path);
    const stat = this.lstatIfPresent(p, p);
    return stat === undefined ? undefined : toEntryStat(stat);
  }

  readFile(path: string): Uint8Array {
    return this.withRegularFile(path, (fd, size) => readAll(fd, size));
  }

  /**
   * Opens a regular file without following a final symlink and without blocking on a FIFO
   * (O_NOFOLLOW | O_NONBLOCK), checks what it is through the open descriptor, and reads it with `read`.
   */
  private withRegularFile<T>(path: string, read: (fd: number, size: number) => T): T {
    const p = this.resolve(path);
    let fd: number;
    try {
      fd = openSync(p, READ_FLAGS);
    } catch (error) {
      throw toFileSystemError(error, p);
    }
    try {
      const stat = fstatSync(fd);
      if (stat.isDirectory()) throw new FileSystemError("EISDIR", p);
      if (!stat.isFile()) throw new FileSystemError("EINVAL", p, `not a regular file (${kindOfSpecial(stat)})`);
      return read(fd, stat.size);
    } catch (error) {
      throw toFileSystemError(error, p);
    } finally {
      closeSync(fd);
    }
  }

  writeFile(path: string, content: Uint8Array | string): void {
    const p = this.resolve(path);
    const bytes = typeof content === "string" ? Buffer.from(content, "utf8") : content;
    this.writeAtomically(p, bytes, {});
  }

  writeFileWith(path: string, content: Uint8Array, metadata: EntryMetadata): void {
    this.writeAtomically(this.resolve(path), content, metadata);
  }

  stageFile(path: string, content: Uint8Array, metadata: EntryMetadata): StagedFile {
    return this.stageResolved(this.resolve(path), content, metadata);
  }

  openStaged(path: string): StagedWriter {
    const p = this.resolve(path);
    if (this.lstatIfPresent(p, p)?.isDirectory()) throw new FileSystemError("EISDIR", p);
    const tempPath = joinChild(posix.dirname(p), RESERVED_PREFIX + this.nextTempSuffix());
    let fd: number | undefined;
    try {
      fd = openSync(tempPath, TEMP_FLAGS, 0o600);
    } catch (error) {
      throw toFileSystemError(error, p);
    }
    let size = 0;
    const fail = (error: unknown): never => {
      if (fd !== undefined) closeQuietly(fd);
      fd = undefined;
      unlinkQuietly(tempPath);
      throw toFileSystemError(error, p);
    };
    const open = (): number => {
      if (fd === undefined) throw new FileSystemError("EBADF", p, "staged file already closed");
      return fd;
    };
    return {
      path: p,
      get size() {
        return size;
      },
      write: (bytes) => {
        const handle = open();
        try {
          let offset = 0;
          while (offset < bytes.length) offset += writeSync(handle, bytes, offset, bytes.length - offset);
        } catch (error) {
          fail(error);
        }
        size += bytes.length;
      },
      finish: (metadata) => {
        const handle = open();
        try {
          const existing = this.lstatIfPresent(p, p);
          fchmodSync(handle, (metadata.mode ?? (existing?.isFile() ? existing.mode : DEFAULT_FILE_MODE)) & 0o777);
          if (metadata.mtimeMs !== undefined) futimesSync(handle, this.now() / 1000, metadata.mtimeMs / 1000);
          closeSync(handle);
          fd = undefined;
        } catch (error) {
          fail(error);
        }
        return { path: p, tempPath };
      },
      abort: () => {
        if (fd !== undefined) closeQuietly(fd);
        fd = undefined;
        unlinkQuietly(tempPath);
      },
    };
  }

  stageExisting(from: string, path: string, metadata: EntryMetadata): StagedFile {
    const source = this.resolve(from);
    const p = this.resolve(path);
    if (this.lstatIfPresent(p, p)?.isDirectory()) throw new FileSystemError("EISDIR", p);
    if (!this.lstatIfPresent(source, source)?.isFile())
      throw new FileSystemError("EINVAL", source, "not a regular file");
    const tempPath = joinChild(posix.dirname(p), RESERVED_PREFIX + this.nextTempSuffix());
    try {
      renameSync(source, tempPath);
    } catch (error) {
      throw toFileSystemError(error, source);
    }
    let fd: number | undefined;
    try {
      // Through an O_NOFOLLOW descriptor: metadata lands on our temp, never on what a racer swapped in.
      fd = openSync(tempPath, constants.O_RDONLY | constants.O_NOFOLLOW);
      if (metadata.mode !== undefined) fchmodSync(fd, metadata.mode & 0o777);
      if (metadata.mtimeMs !== undefined) futimesSync(fd, this.now() / 1000, metadata.mtimeMs / 1000);
    } catch (error) {
      unlinkQuietly(tempPath);
      throw toFileSystemError(error, p);
    } finally {
      if (fd !== undefined) closeQuietly(fd);
    }
    return { path: p, tempPath };
  }

  readFileRange(path: string, offset: number, length: number, into?: Uint8Array): Uint8Array {
    return this.withRegularFile(path, (fd, size) => {
      const want = Math.max(0, Math.min(length, size - offset));
      const buffer = into === undefined ? new Uint8Array(want) : into.subarray(0, want);
      let filled = 0;
      while (filled < buffer.length) {
        const n = readSync(fd, buffer, filled, buffer.length - filled, offset + filled);
        if (n === 0) break;
        filled += n;
      }
      return filled === buffer.length ? buffer : buffer.subarray(0, filled);
    });
  }

  commitStaged(files: readonly StagedFile[]): void {
    if (files.length > 0) this.commitResolved(files);
  }

  discardStaged(files: readonly StagedFile[]): void {
    for (const file of files) unlinkQuietly(file.tempPath);
  }

  removeFile(path: string): void {
    const p = this.resolve(path);
    try {
      // unlink(2) removes a symlink itself and refuses a directory with EISDIR.
      unlinkSync(p);
    } catch (error) {
      throw toFileSystemError(error, p);
    }
    this.syncDirectory(posix.dirname(p));
  }

  listDir(path: string): string[] {
    const p = this.resolve(path);
    return this.withDirectory(p, (dir) => this.childNames(p, readdirSync(dir, { encoding: "buffer" }))).sort();
  }

  listDirStats(path: string): DirEntryStat[] {
    const p = this.resolve(path);
    return this.withDirectory(p, (dir) => {
      const entries: DirEntryStat[] = [];
      for (const name of this.childNames(p, readdirSync(dir, { encoding: "buffer" }))) {
        // Resolved through the held directory: a parent swapped for a symlink meanwhile is not followed.
        const stat = lstatSync(`${dir}/${name}`, { bigint: false, throwIfNoEntry: false });
        if (stat !== undefined) entries.push({ name, stat: toEntryStat(stat) });
      }
      return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    });
  }

  /** Decoded names that are not ours; names that are not UTF-8 are reported and left out. */
  private childNames(dir: string, raws: readonly Buffer[]): string[] {
    const names: string[] = [];
    for (const raw of raws) {
      const name = raw.toString("utf8");
      if (!Buffer.from(name, "utf8").equals(raw)) {
        this.onProblem({
          path: joinChild(dir, escapeName(raw)),
          reason: "name is not valid UTF-8; skipped (it cannot be represented as a string path)",
        });
        continue;
      }
      if (!isReservedName(name)) names.push(name);
      else if (this.removeStaleTemps && !name.startsWith(RESERVED_PREFIX + this.tempPrefixOf())) {
        // A directory (the stash) is not a temp file: unlink refuses it, which is what we want.
        unlinkQuietly(joinChild(dir, name));
      }
    }
    return names;
  }

  private tempPrefixOf(): string {
    this.tempPrefix ??= Buffer.from(this.randomBytes(3)).toString("hex");
    return this.tempPrefix;
  }

  makeDir(path: string): void {
    const p = this.resolve(path);
    this.makeDirectory(p, p);
  }

  makeDirs(path: string): void {
    const p = this.resolve(path);
    // Never create anything above the root: its ancestors belong to someone else.
    const start = this.root !== undefined && p !== "/" ? this.root : "/";
    if (this.lstatIfPresent(start, p) === undefined) this.makeDirectory(start, p);
    const below = start === "/" ? p.slice(1) : p.slice(start.length + 1);
    let current = start;
    for (const part of below === "" ? [] : below.split("/")) {
      current = joinChild(current, part);
      const stat = this.lstatIfPresent(current, p);
      if (stat === undefined) {
        this.makeDirectory(current, p);
      } else if (stat.isSymbolicLink() && current !== p && this.root === undefined) {
        // Without a root the kernel follows intermediate symlinks anyway; accept one that leads to a directory.
        if (!this.statFollowing(current, p).isDirectory()) throw new FileSystemError("ENOTDIR", p);
      } else if (!stat.isDirectory()) {
        throw new FileSystemError(current === p ? "EEXIST" : "ENOTDIR", p);
      }
    }
  }

  removeDir(path: string): void {
    const p = this.resolve(path);
    const stat = this.lstatOrThrow(p);
    if (!stat.isDirectory()) throw new FileSystemError("ENOTDIR", p);
    try {
      removeTree(Buffer.from(p, "utf8"));
    } catch (error) {
      throw toFileSystemError(error, p);
    }
    this.syncDirectory(posix.dirname(p));
  }

  makeSymlink(path: string, target: string): void {
    const p = this.resolve(path);
    try {
      symlinkSync(target, p);
    } catch (error) {
      throw toFileSystemError(error, p);
    }
    this.syncDirectory(posix.dirname(p));
  }

  readLink(path: string): string {
    const p = this.resolve(path);
    try {
      return readlinkSync(p, { encoding: "utf8" });
    } catch (error) {
      throw toFileSystemError(error, p);
    }
  }

  setMetadata(path: string, metadata: EntryMetadata): void {
    const p = this.resolve(path);
    const stat = this.lstatOrThrow(p);
    // chmod/utimes follow symlinks; the lstat above makes sure there is none to follow.
    if (stat.isSymbolicLink()) throw new FileSystemError("ELOOP", p, "is a symlink; metadata is never set through it");
    try {
      if (metadata.mode !== undefined) changeModeSync(p, metadata.mode & 0o777);
      if (metadata.mtimeMs !== undefined) utimesSync(p, this.now() / 1000, metadata.mtimeMs / 1000);
    } catch (error) {
      throw toFileSystemError(error, p);
    }
  }

  rename(from: string, to: string): void {
    const source = this.resolve(from);
    const destination = this.resolve(to);
    try {
      renameSync(source, destination);
    } catch (error) {
      throw toFileSystemError(error, `${source} -> ${destination}`);
    }
    this.syncDirectory(posix.dirname(destination));
    if (posix.dirname(source) !== posix.dirname(destination)) this.syncDirectory(posix.dirname(source));
  }

  watchDir(path: string, callback: WatchCallback): void {
    const p = this.resolve(path);
    if (this.watcher.has(p)) throw new FileSystemError("EALREADYWATCHED", p);
    const stat = this.lstatOrThrow(p);
    if (!stat.isDirectory()) throw new FileSystemError("ENOTDIR", p);
    try {
      this.watcher.watch(p, stat.ino, callback);
    } catch (error) {
      throw toFileSystemError(error, p);
    }
  }

  unwatchDir(path: string): void {
    const p = normalizePath(path);
    if (!this.watcher.unwatch(p)) throw new FileSystemError("ENOTWATCHED", p);
  }

  /** How many directories are watched, by the kernel or by periodic rescans. */
  numWatchedDirs(): number {
    return this.watcher.size;
  }

  /** Releases every watch and timer. */
  close(): void {
    this.watcher.close();
  }

  debugString(path: string): string {
    const p = this.resolve(path);
    const stat = this.lstatOrThrow(p);
    if (!stat.isDirectory()) return this.renderEntry(p, path, stat).join("\n");
    return [path, ...this.renderChildren(p)].join("\n");
  }

  private renderChildren(dir: string): string[] {
    const names = this.listDir(dir);
    const lines: string[] = [];
    names.forEach((name, index) => {
      const last = index === names.length - 1;
      const child = joinChild(dir, name);
      this.renderEntry(child, name, this.lstatOrThrow(child)).forEach((line, lineIndex) => {
        const prefix = lineIndex === 0 ? (last ? "`-- " : "|-- ") : last ? "    " : "|   ";
        lines.push(prefix + line);
      });
    });
    return lines;
  }

  private renderEntry(path: string, label: string, stat: Stats): string[] {
    if (stat.isDirectory()) return [`/${label}`, ...this.renderChildren(path)];
    if (stat.isSymbolicLink()) return [`${label} -> ${this.readLink(path)}`];
    if (!stat.isFile()) return [`${label} (${kindOfSpecial(stat)})`];
    return `${label}: ${new TextDecoder().decode(this.readFile(path))}`.split("\n");
  }

  /**
   * Normalises `path` and enforces the root: it must lie within the root, and no existing component
   * strictly between the root and the final name may be a symlink (the final name is never followed by
   * any operation). Nothing is cached, so a symlink planted a moment ago is still seen.
   */
  private resolve(path: string): string {
    const p = normalizePath(path);
    const root = this.root;
    if (root === undefined) return p;
    if (!isWithin(root, p)) throw new FileSystemError("EACCES", p, "outside root");
    if (p === root) return p;
    const parts = p.slice(root === "/" ? 1 : root.length + 1).split("/");
    let current = root;
    for (let index = 0; index < parts.length - 1; index += 1) {
      current = joinChild(current, parts[index]!);
      const stat = this.lstatIfPresent(current, p);
      // A missing or non-directory component makes the operation itself fail with ENOENT/ENOTDIR.
      if (stat === undefined || (!stat.isDirectory() && !stat.isSymbolicLink())) return p;
      if (stat.isSymbolicLink()) throw new FileSystemError("ELOOP", p, `traverses symlink ${current}`);
    }
    return p;
  }

  /** lstat that maps a missing entry (or a file in the way) to undefined and other failures to typed errors. */
  private lstatIfPresent(path: string, reportedPath: string): Stats | undefined {
    try {
      return lstatSync(path, { bigint: false, throwIfNoEntry: false });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
      throw toFileSystemError(error, reportedPath);
    }
  }

  private lstatOrThrow(path: string): Stats {
    try {
      return lstatSync(path, { bigint: false });
    } catch (error) {
      throw toFileSystemError(error, path);
    }
  }

  private statFollowing(path: string, reportedPath: string): Stats {
    try {
      return statSync(path, { bigint: false });
    } catch (error) {
      throw toFileSystemError(error, reportedPath);
    }
  }

  /** mkdir that is a no-op for an existing directory (not a symlink to one); fsyncs the parent. */
  private makeDirectory(path: string, reportedPath: string): void {
    try {
      mkdirSync(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST" && this.lstatIfPresent(path, reportedPath)?.isDirectory())
        return;
      throw toFileSystemError(error, reportedPath);
    }
    if (path !== "/") this.syncDirectory(posix.dirname(path));
  }

  /**
   * Runs `read` on a name for the directory that resolves through a held, no-follow handle on it
   * (`/proc/self/fd/N`), so the directory cannot be swapped for a symlink between the check and the read.
   */
  private withDirectory<T>(path: string, read: (dir: string) => T): T {
    if (!LIST_THROUGH_PROC_FD) {
      const stat = this.lstatOrThrow(path);
      if (!stat.isDirectory()) throw new FileSystemError("ENOTDIR", path);
      try {
        return read(path);
      } catch (error) {
        throw toFileSystemError(error, path);
      }
    }
    let fd: number;
    try {
      fd = openSync(path, DIRECTORY_FLAGS);
    } catch (error) {
      // O_DIRECTORY|O_NOFOLLOW on a symlink fails with ELOOP on some kernels: to a lister it is "not a directory".
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ELOOP") throw new FileSystemError("ENOTDIR", path, "is a symlink", { cause: error });
      throw toFileSystemError(error, path);
    }
    try {
      return read(`/proc/self/fd/${fd}`);
    } catch (error) {
      throw toFileSystemError(error, path);
    } finally {
      closeSync(fd);
    }
  }

  /** temp (O_EXCL, 0600) → write → chmod/utimes → fsync → close → rename → fsync(dir). The final name is untouched on failure. */
  private writeAtomically(path: string, bytes: Uint8Array, metadata: EntryMetadata): void {
    this.commitResolved([this.stageResolved(path, bytes, metadata)]);
  }

  /** Writes the temp beside `path` (O_CREAT|O_EXCL|O_NOFOLLOW, 0600, metadata on the temp); no fsync yet. */
  private stageResolved(path: string, bytes: Uint8Array, metadata: EntryMetadata): StagedFile {
    const existing = this.lstatIfPresent(path, path);
    if (existing?.isDirectory()) throw new FileSystemError("EISDIR", path);
    const mode = (metadata.mode ?? (existing?.isFile() ? existing.mode : DEFAULT_FILE_MODE)) & 0o777;
    const tempPath = joinChild(posix.dirname(path), RESERVED_PREFIX + this.nextTempSuffix());
    let fd: number | undefined;
    let created = false;
    try {
      fd = openSync(tempPath, TEMP_FLAGS, 0o600);
      created = true;
      let offset = 0;
      while (offset < bytes.length) offset += writeSync(fd, bytes, offset, bytes.length - offset);
      fchmodSync(fd, mode);
      if (metadata.mtimeMs !== undefined) futimesSync(fd, this.now() / 1000, metadata.mtimeMs / 1000);
      closeSync(fd);
      fd = undefined;
      return { path, tempPath };
    } catch (error) {
      if (fd !== undefined) closeQuietly(fd);
      if (created) unlinkQuietly(tempPath);
      throw toFileSystemError(error, path);
    }
  }

  /**
   * Data durable → rename → renames durable. Few files: fsync each temp and each parent directory.
   * Many files: one syncfs(2) before and one after the renames, which costs one journal commit instead
   * of two per file. On any failure the temps not yet renamed are removed and the error is thrown.
   */
  private commitResolved(files: readonly StagedFile[]): void {
    const wholeFileSystem = this.durable && files.length >= SYNCFS_MIN_FILES && this.syncFileSystem(files[0]!.path);
    let renamed = 0;
    try {
      if (this.durable && !wholeFileSystem) for (const file of files) this.syncPath(file.tempPath, file.path);
      for (const file of files) {
        if (this.lstatIfPresent(file.path, file.path)?.isDirectory()) throw new FileSystemError("EISDIR", file.path);
        try {
          renameSync(file.tempPath, file.path);
        } catch (error) {
          throw toFileSystemError(error, file.path);
        }
        renamed++;
      }
    } catch (error) {
      for (const file of files.slice(renamed)) unlinkQuietly(file.tempPath);
      throw error;
    }
    if (!this.durable) return;
    if (wholeFileSystem) {
      if (!this.syncFileSystem(files[0]!.path)) throw new FileSystemError("EIO", files[0]!.path, "syncfs failed");
      this.unflushed = undefined;
      return;
    }
    for (const dir of new Set(files.map((f) => posix.dirname(f.path)))) this.syncDirectory(dir);
  }

  /** Makes every change so far durable (batched durability defers directory fsyncs to here). */
  flush(): void {
    const dir = this.unflushed;
    if (dir === undefined) return;
    if (!this.syncFileSystem(joinChild(dir, "x"))) throw new FileSystemError("EIO", dir, "syncfs failed");
    this.unflushed = undefined;
  }

  /** 12 hex digits: a random per-instance half and a counter (one random draw per instance, not per file). */
  private nextTempSuffix(): string {
    this.tempCounter = (this.tempCounter + 1) % 0x1000000;
    return this.tempPrefixOf() + this.tempCounter.toString(16).padStart(6, "0");
  }

  /** syncfs(2) on the file system holding `path`, through coreutils `sync -f`; false when unavailable. */
  private syncFileSystem(path: string): boolean {
    const result = spawnSync("sync", ["-f", posix.dirname(path)], { stdio: "ignore" });
    return result.status === 0;
  }

  private syncPath(path: string, reportedPath: string): void {
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (error) {
      throw toFileSystemError(error, reportedPath);
    }
    try {
      fsyncSync(fd);
    } catch (error) {
      throw toFileSystemError(error, reportedPath);
    } finally {
      closeSync(fd);
    }
  }

  private syncDirectory(dir: string): void {
    if (this.durability === "batched") this.unflushed ??= dir;
    else if (this.durable) this.syncPath(dir, dir);
  }
}

/** Reads exactly what the file holds, even if it grew or shrank since `fstat`. */
function readAll(fd: number, expectedSize: number): Uint8Array {
  let buffer = new Uint8Array(expectedSize);
  let length = 0;
  for (;;) {
    if (length === buffer.length) {
      // Probe for growth with a small read before committing to a bigger buffer.
      const probe = new Uint8Array(Math.max(4096, buffer.length));
      const got = readSync(fd, probe, 0, probe.length, null);
      if (got === 0) return buffer;
      const grown = new Uint8Array(buffer.length + probe.length);
      grown.set(buffer);
      grown.set(probe.subarray(0, got), length);
      buffer = grown;
      length += got;
      continue;
    }
    const got = readSync(fd, buffer, length, buffer.length - length, null);
    if (got === 0) return buffer.slice(0, length);
    length += got;
  }
}

/** Removes a directory tree by byte names (so non-UTF-8 names go too), unlinking symlinks without entering them. */
function removeTree(dir: Buffer): void {
  for (const name of readdirSync(dir, { encoding: "buffer" })) {
    const child = Buffer.concat([dir, Buffer.from("/"), name]);
    if (lstatSync(child).isDirectory()) removeTree(child);
    else unlinkSync(child);
  }
  rmdirSync(dir);
}

function toEntryStat(stat: Stats): EntryStat {
  return {
    kind: kindOf(stat),
    size: stat.size,
    mtimeMs: stat.mtimeMs,
    ctimeMs: stat.ctimeMs,
    mode: stat.mode & 0o7777,
    ino: stat.ino,
  };
}

function kindOf(stat: Stats): EntryKind {
  if (stat.isFile()) return "file";
  if (stat.isDirectory()) return "dir";
  if (stat.isSymbolicLink()) return "symlink";
  return "special";
}

function kindOfSpecial(stat: Stats): string {
  if (stat.isFIFO()) return "fifo";
  if (stat.isSocket()) return "socket";
  if (stat.isCharacterDevice()) return "character device";
  if (stat.isBlockDevice()) return "block device";
  return "special file";
}

/** Node's errno errors become FileSystemErrors with the same code, the given path and the original as cause. */
function toFileSystemError(error: unknown, path: string): FileSystemError {
  if (error instanceof FileSystemError) return error;
  const errno = error as NodeJS.ErrnoException;
  if (typeof errno?.code !== "string") {
    return new FileSystemError("EIO", path, `unexpected failure: ${String(error)}`, { cause: error });
  }
  // Node's message reads "CODE: description, syscall 'path'": keep the description, name the syscall.
  const description = /^[A-Z0-9_]+: ([^,]+)/.exec(errno.message)?.[1] ?? "file system error";
  const syscall = errno.syscall === undefined ? "" : ` (${errno.syscall})`;
  return new FileSystemError(errno.code, path, `${description}${syscall}`, { cause: error });
}

function joinChild(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

/** Printable form of a byte name: valid ASCII kept, every other byte as \xNN. */
function escapeName(raw: Buffer): string {
  let text = "";
  for (const byte of raw) text += byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : `\\x${byte.toString(16)}`;
  return text;
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // The write already failed; that failure is the one to report.
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Best effort: a leftover temp carries the reserved prefix, so scans ignore it.
  }
}

function reportAsWarning(problem: FileSystemProblem): void {
  process.emitWarning(`${problem.path}: ${problem.reason}`, "MirrorlogFileSystemWarning");
}
