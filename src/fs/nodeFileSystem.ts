import { Buffer } from "node:buffer";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  type BigIntStats,
  chmodSync,
  chownSync,
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  fchownSync,
  fstatSync,
  fsyncSync,
  futimesSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
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
  writeSync,
} from "node:fs";
import { posix } from "node:path";
import { bytesOfName, hasByteEscapes, nameOfBytes } from "./byteNames.js";
import {
  DiskWatcher,
  defaultOverflowThreshold,
  defaultWatchFactory,
  type FileSystemProblem,
  type WatchFactory,
} from "./diskWatcher.js";
import {
  type CommitFailure,
  type DirEntryStat,
  type EntryMetadata,
  type EntryStat,
  FileSystemError,
  isWithin,
  type MirrorFileSystem,
  normalizePath,
  RESERVED_PREFIX,
  type StagedFile,
  type StagedWriter,
  type Timestamp,
  type WatchCallback,
} from "./fileSystem.js";
import { AT_FDCWD, kindOfMode, loadNativeCalls, millisecondsOf, type NativeCalls } from "./nativeCalls.js";

/**
 * "full": every change is durable when its call returns (fsync of files and parent directories).
 * "batched": nothing is made durable until `flush()`, which makes every change since the last one durable
 * with one syncfs. Files are still written to a temp and renamed into place once complete, so a process
 * that dies (kill -9) never leaves a partial file under a final name: the kernel keeps what was written.
 * After a power loss, a file renamed since the last flush may be torn; the caller must be able to redo
 * everything since its last flush (the target's durable position: the source replays from it).
 * "none": no fsync at all (benchmarks and tests only).
 */
export type Durability = "full" | "batched" | "none";

/** A staged file's bytes are handed to the disk's writeback in steps of this size while it is written. */
const WRITEBACK_BYTES = 8 * 1024 * 1024;
/** From this many files on, a commit flushes the whole file system once instead of fsyncing each file. */
const SYNCFS_MIN_FILES = 8;

/**
 * Most directory handles kept between `releaseHandles()` calls. When an operation starts with this many
 * cached, all are closed first: the cache never holds more than this plus one path's depth, far below
 * the usual 1024-descriptor limit, so caching can never cause EMFILE.
 */
const MAX_CACHED_HANDLES = 256;

export type { FileSystemProblem, WatchFactory, WatchListener } from "./diskWatcher.js";

/** Settings of a `NodeFileSystem`; every field is optional. */
export interface NodeFileSystemOptions {
  /**
   * When set, every path must lie within it and is resolved from a handle on it, one directory handle
   * per component opened with O_NOFOLLOW: no symlink below the root is ever traversed, even one planted
   * while an operation runs. The root's own path may go through symlinks; its final name may not.
   */
  root?: string;
  /** Receives per-path problems (watch limit, overflow); defaults to a process warning. */
  onProblem?: (problem: FileSystemProblem) => void;
  /**
   * Operator notices that concern no single path, said once when they happen (the one line saying the
   * inotify watches ran out); defaults to a line on stderr, which a long-running watch shows at once.
   */
  onNotice?: (message: string) => void;
  /**
   * Period of the polling rounds over directories that could not get a kernel watch, and of the retries
   * of a watch that failed (default 2000).
   */
  rescanIntervalMs?: number;
  /** Milliseconds one polling round may spend looking at polled directories (default 40: 2 % of a core). */
  pollBudgetMs?: number;
  /** Clock in milliseconds since the epoch; sets the access time that accompanies an explicit mtime. */
  now?: () => number;
  /** Creates one kernel watch (default `fs.watch`); tests inject failures such as ENOSPC. */
  watchFactory?: WatchFactory;
  /** Notifications per macrotask taken as an inotify queue overflow (default: max_queued_events or 16384). */
  overflowThreshold?: number;
  /** "full" (default) fsyncs files and directories; "none" skips every fsync (benchmarks and tests only). */
  durability?: Durability;
  /** Source of randomness for this instance's temp names (default `crypto.randomBytes`). */
  randomBytes?: (size: number) => Uint8Array;
}

/** What a syscall is given: a string, or the bytes of a path holding names that are not UTF-8. */
type SyscallPath = string | Buffer;

/**
 * Where one entry is, resolved for the syscalls that act on it. When confined, `address` is
 * `/proc/self/fd/<parentFd>/<name>`: Linux resolves it from the held parent directory, so nothing
 * swapped into the path above `name` after that directory was opened can redirect the call.
 */
interface Location {
  /** Normalised absolute path, for messages and the handle cache. */
  readonly path: string;
  /** What the syscalls are given. */
  readonly address: SyscallPath;
  /** Held handle of the parent directory (confined paths below the root only). */
  readonly parentFd: number | undefined;
  /** The entry's name in its parent. */
  readonly name: string;
}

const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
const TEMP_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const DIRECTORY_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
/**
 * Linux's O_PATH (not in Node's constants; this value on x86, ARM, RISC-V, PowerPC, s390): a handle on the
 * entry itself that opens nothing (no read permission needed, no device or FIFO opened); with O_NOFOLLOW
 * it holds a symlink itself.
 */
const O_PATH = 0o10000000;
const DEFAULT_FILE_MODE = 0o644;
/** Attempts at a fresh temp name before giving up (a name can only be taken by a leftover or a racer). */
const TEMP_NAME_ATTEMPTS = 8;
/** Times an entry of a tree being removed is retried when something swaps it mid-removal. */
const REMOVE_ATTEMPTS = 8;
/**
 * Linux addresses the children of an open directory as /proc/self/fd/N/NAME. Confinement, listings and
 * metadata go through it; elsewhere paths are checked component by component (a check-then-use race).
 */
const PROC_FD = existsSync("/proc/self/fd");

/**
 * The FileSystem port on a real disk: names as bytes, no symlink following, atomic writes, per-directory
 * kernel watches, and (with a root) race-free confinement through cached directory handles.
 *
 * Directory handles opened while resolving confined paths are kept until `releaseHandles()`, `close()`,
 * or the end of the current macrotask, whichever comes first, so a request pays one open per directory
 * instead of an lstat per component per operation. A kept handle follows its directory if someone else
 * renames it, which is what makes a symlink swapped in meanwhile harmless; keeping them only for one
 * request (or one macrotask) bounds how long such a renamed directory is still written through.
 * Operations of this instance that remove or rename a directory close the handles at and below it.
 */
export class NodeFileSystem implements MirrorFileSystem {
  private readonly root: string | undefined;
  private readonly onProblem: (problem: FileSystemProblem) => void;
  private readonly now: () => number;
  private readonly durable: boolean;
  private readonly durability: Durability;
  /** A directory changed since the last flush (batched durability only): its file system needs a syncfs. */
  private unflushed: string | undefined;
  /** RESERVED_PREFIX plus 48 random bits: every temp and stash name of this instance starts with it. */
  private readonly internalPrefix: string;
  private tempCounter = 0;
  private readonly watcher: DiskWatcher;
  private readonly native: NativeCalls | undefined;
  /** Directory path → handle opened O_DIRECTORY|O_NOFOLLOW from the root down (confined instances only). */
  private readonly handles = new Map<string, number>();
  /** Where the root's held handle resolved to (/proc/self/fd/N), while it is held. */
  private rootResolved: string | undefined;
  private releaseScheduled = false;
  /** Callers holding the handles past their macrotask (see holdHandles). */
  private handleHolds = 0;

  constructor(options: NodeFileSystemOptions = {}) {
    this.root = options.root === undefined ? undefined : normalizePath(options.root);
    this.onProblem = options.onProblem ?? reportAsWarning;
    this.now = options.now ?? Date.now;
    this.durability = options.durability ?? "full";
    this.durable = this.durability !== "none";
    const random = options.randomBytes ?? randomBytes;
    this.internalPrefix = RESERVED_PREFIX + Buffer.from(random(6)).toString("hex");
    this.native = loadNativeCalls();
    this.watcher = new DiskWatcher({
      onProblem: this.onProblem,
      onNotice: options.onNotice ?? noticeOnStderr,
      rescanIntervalMs: options.rescanIntervalMs ?? 2000,
      pollBudgetMs: options.pollBudgetMs ?? 40,
      overflowThreshold: options.overflowThreshold ?? defaultOverflowThreshold(),
      watchFactory: options.watchFactory ?? defaultWatchFactory(),
      isInternalName: (name) => this.isInternalName(name),
    });
  }

  isInternalName(name: string): boolean {
    return name.startsWith(this.internalPrefix);
  }

  internalName(label: string): string {
    // Temps are the prefix and hex digits: the dash keeps labelled names apart from every temp.
    return `${this.internalPrefix}-${label}`;
  }

  exists(path: string): boolean {
    return this.lstatIfExists(path) !== undefined;
  }

  isFile(path: string): boolean {
    return this.lstat(path).kind === "file";
  }

  isDir(path: string): boolean {
    return this.lstat(path).kind === "dir";
  }

  lstat(path: string): EntryStat {
    const at = this.locate(path);
    let stat: EntryStat | undefined;
    try {
      stat = this.entryStat(at.parentFd, at.name, () => at.address);
    } catch (error) {
      throw toFileSystemError(error, at.path);
    }
    if (stat === undefined) throw new FileSystemError("ENOENT", at.path);
    return stat;
  }

  lstatIfExists(path: string): EntryStat | undefined {
    let at: Location;
    try {
      at = this.locate(path);
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw toFileSystemError(error, path);
    }
    return this.entryStatIfExists(at);
  }

  /** lstat of a located entry, undefined when it (or a component above it) is not there. */
  private entryStatIfExists(at: Location): EntryStat | undefined {
    try {
      return this.entryStat(at.parentFd, at.name, () => at.address);
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw toFileSystemError(error, at.path);
    }
  }

  /**
   * lstat of the entry `name`, undefined when it is not there: statx through its parent's held handle where
   * there is one and koffi, else Node's lstat of its address (`addressOf(name)`, only then made: a listing states every entry).
   */
  private entryStat(
    parentFd: number | undefined,
    name: string,
    addressOf: (name: string) => SyscallPath,
  ): EntryStat | undefined {
    if (parentFd !== undefined && this.native !== undefined) return this.native.statAt(parentFd, plainAddress(name));
    const stat = lstatSync(addressOf(name), { bigint: true, throwIfNoEntry: false });
    return stat === undefined ? undefined : toEntryStat(stat);
  }

  /**
   * Whether a directory stands at `at` (which a file cannot be staged over), asked through the parent's
   * handle: a file about to be created is not there, and statx says so without Node's thrown ENOENT.
   */
  private isDirectoryAt(at: Location): boolean {
    return this.entryStatIfExists(at)?.kind === "dir";
  }

  readFile(path: string): Uint8Array {
    return this.withRegularFile(path, (fd, size) => readAll(fd, size));
  }

  readFileRange(path: string, offset: number, length: number, into?: Uint8Array): Uint8Array {
    return this.withRegularFile(path, (fd, size) => {
      const want = Math.max(0, Math.min(length, size - offset));
      return readInto(fd, into === undefined ? new Uint8Array(want) : into.subarray(0, want), offset);
    });
  }

  readFileStated(path: string): { bytes: Uint8Array; stat: EntryStat } {
    return this.withRegularFile(path, (fd, size) => {
      const bytes = readUpTo(fd, size);
      return { bytes, stat: this.statOfOpen(fd) };
    });
  }

  /**
   * Opens a regular file without following a final symlink and without blocking on a FIFO
   * (O_NOFOLLOW | O_NONBLOCK), checks what it is through the open descriptor, and reads it with `read`.
   */
  private withRegularFile<T>(path: string, read: (fd: number, size: number) => T): T {
    const at = this.locate(path);
    let fd: number;
    try {
      fd = this.openEntry(at, READ_FLAGS);
    } catch (error) {
      throw toFileSystemError(error, at.path);
    }
    try {
      const { kind, size } = this.statOfOpen(fd);
      if (kind === "dir") throw new FileSystemError("EISDIR", at.path);
      if (kind !== "file") {
        throw new FileSystemError("EINVAL", at.path, `not a regular file (${kindOfSpecial(fstatSync(fd).mode)})`);
      }
      return read(fd, size);
    } catch (error) {
      throw toFileSystemError(error, at.path);
    } finally {
      closeSync(fd);
    }
  }

  writeFile(path: string, content: Uint8Array | string): void {
    const bytes = typeof content === "string" ? Buffer.from(content, "utf8") : content;
    this.writeFileWith(path, bytes, {});
  }

  writeFileWith(path: string, content: Uint8Array, metadata: EntryMetadata): void {
    const [failure] = this.commitStaged([this.stageFile(path, content, metadata)]);
    if (failure !== undefined) throw failure.error;
  }

  /** temp (O_CREAT|O_EXCL|O_NOFOLLOW, see createTemp) beside the final name → write → owner, mode, mtime → close; no fsync yet. */
  stageFile(path: string, content: Uint8Array, metadata: EntryMetadata): StagedFile {
    const at = this.locate(path);
    // The mode of the file being replaced is kept; a new file gets 0644 whatever the umask.
    const mode = metadata.mode ?? this.modeToKeep(at);
    const { fd, temp } = this.createTemp(at, mode);
    try {
      let offset = 0;
      while (offset < content.length) offset += writeSync(fd, content, offset, content.length - offset);
      this.applyMetadataToOpenFile(fd, { ...metadata, mode });
    } catch (error) {
      closeQuietly(fd);
      unlinkQuietly(temp.address);
      throw toFileSystemError(error, at.path);
    }
    try {
      closeSync(fd);
    } catch (error) {
      unlinkQuietly(temp.address);
      throw toFileSystemError(error, at.path);
    }
    return { path: at.path, tempPath: temp.path };
  }

  openStaged(path: string, mode?: number, noDirectoryThere = false): StagedWriter {
    const at = this.locate(path);
    if (!noDirectoryThere && this.isDirectoryAt(at)) throw new FileSystemError("EISDIR", at.path);
    const created = this.createTemp(at, mode);
    let fd: number | undefined = created.fd;
    const tempPath = created.temp.path;
    let size = 0;
    let writtenBack = 0;
    const native = this.durable ? this.native : undefined;
    // The temp is addressed by path again only to remove it: by then the parent handle may be released.
    const removeTemp = () => this.discardStaged([{ path: at.path, tempPath }]);
    const fail = (error: unknown): never => {
      if (fd !== undefined) closeQuietly(fd);
      fd = undefined;
      removeTemp();
      throw toFileSystemError(error, at.path);
    };
    const open = (): number => {
      if (fd === undefined) throw new FileSystemError("EBADF", at.path, "staged file already closed");
      return fd;
    };
    return {
      path: at.path,
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
        if (native !== undefined && size - writtenBack >= WRITEBACK_BYTES) {
          // The disk starts on what is written while the rest arrives: the flush that makes the file
          // durable then waits for the last few MiB, not for the whole file (best effort: that flush
          // reports any failure to write).
          try {
            native.startWriteback(handle, writtenBack, size - writtenBack);
          } catch {}
          writtenBack = size;
        }
      },
      finish: (metadata) => {
        const handle = open();
        try {
          const mode = metadata.mode ?? this.modeToKeep(this.locate(at.path));
          this.applyMetadataToOpenFile(handle, { ...metadata, mode });
          closeSync(handle);
          fd = undefined;
        } catch (error) {
          fail(error);
        }
        return { path: at.path, tempPath };
      },
      abort: () => {
        if (fd !== undefined) closeQuietly(fd);
        fd = undefined;
        removeTemp();
      },
    };
  }

  stageExisting(from: string, path: string, metadata: EntryMetadata): StagedFile {
    const source = this.locate(from);
    const at = this.locate(path, true);
    if (this.isDirectoryAt(at)) throw new FileSystemError("EISDIR", at.path);
    if (!lstatIfPresent(source)?.isFile()) throw new FileSystemError("EINVAL", source.path, "not a regular file");
    const temp = this.tempBeside(at, this.nextTempName());
    try {
      renameSync(source.address, temp.address);
    } catch (error) {
      throw toFileSystemError(error, source.path);
    }
    try {
      // Checked again on the temp itself: whatever a racer swapped in at `from` is refused, not staged.
      this.applyMetadataAt(temp, metadata, true);
    } catch (error) {
      unlinkQuietly(temp.address);
      throw toFileSystemError(error, at.path);
    }
    return { path: at.path, tempPath: temp.path };
  }

  stageLink(existing: string, path: string): StagedFile {
    const source = this.locate(existing);
    const at = this.locate(path, true);
    if (this.isDirectoryAt(at)) throw new FileSystemError("EISDIR", at.path);
    const before = lstatIfPresent(source);
    if (before === undefined) throw new FileSystemError("ENOENT", source.path);
    if (!before.isFile()) throw new FileSystemError("EINVAL", source.path, "not a regular file");
    const temp = this.tempBeside(at, this.nextTempName());
    try {
      // link(2) never follows a symlink at its source: a swap after the check links the swapped-in entry
      // itself, which the check below refuses.
      linkSync(source.address, temp.address);
    } catch (error) {
      throw toFileSystemError(error, source.path);
    }
    const linked = lstatIfPresent(temp);
    if (linked === undefined || !linked.isFile() || linked.ino !== before.ino || linked.dev !== before.dev) {
      unlinkQuietly(temp.address);
      throw new FileSystemError("EINVAL", source.path, "not a regular file (replaced while being linked)");
    }
    return { path: at.path, tempPath: temp.path };
  }

  /**
   * Full durability: data durable → rename → renames durable. Few files: fsync each temp, then each parent
   * directory. Many files: one syncfs(2) before and one after the renames, which costs one journal commit
   * instead of two per file. Batched: rename only; the next `flush()` makes data and renames durable at once.
   * A rename that fails costs only its own file (its temp is removed); a durability failure throws for all.
   */
  commitStaged(files: readonly StagedFile[]): CommitFailure[] {
    if (files.length === 0) return [];
    const firstDir = posix.dirname(files[0]!.path);
    const full = this.durability === "full";
    const wholeFileSystem = full && files.length >= SYNCFS_MIN_FILES && this.syncFileSystem(firstDir);
    // Indexes of the files that failed alone, with their errors (their temps are removed at once).
    const failed = new Map<number, FileSystemError>();
    const fail = (index: number, error: unknown): void => {
      this.discardStaged([files[index]!]);
      failed.set(index, toFileSystemError(error, files[index]!.path));
    };
    // Each file is located again in each phase: a Location is used at once, never kept across another
    // `locate`, which may close the cached handles (and let their numbers be reused).
    if (full && !wholeFileSystem) {
      files.forEach((file, index) => {
        let fd: number;
        try {
          fd = openSync(this.locate(file.tempPath).address, constants.O_RDONLY | constants.O_NOFOLLOW);
        } catch (error) {
          // The temp is gone or unreachable: that file fails alone, as a failed rename would.
          fail(index, error);
          return;
        }
        try {
          fsyncSync(fd);
        } catch (error) {
          // Fatal for the call (RELIABILITY rule 4): the kernel may have dropped the data it failed to write.
          this.discardStaged(files);
          throw toFileSystemError(error, file.path);
        } finally {
          closeSync(fd);
        }
      });
    }
    const changedDirs = new Set<string>();
    files.forEach((file, index) => {
      if (failed.has(index)) return;
      try {
        const at = this.locate(file.path);
        const temp = this.tempBeside(at, posix.basename(file.tempPath));
        if (at.parentFd !== undefined && this.native !== undefined) {
          this.native.renameAt(at.parentFd, plainAddress(temp.name), at.parentFd, plainAddress(at.name));
        } else renameSync(temp.address, at.address);
        changedDirs.add(posix.dirname(at.path));
      } catch (error) {
        fail(index, error);
      }
    });
    const failures = [...failed].sort(([a], [b]) => a - b).map(([index, error]) => ({ file: files[index]!, error }));
    if (!this.durable || changedDirs.size === 0) return failures;
    if (wholeFileSystem) {
      if (!this.syncFileSystem(firstDir)) throw new FileSystemError("EIO", firstDir, "syncfs failed");
      this.unflushed = undefined;
      return failures;
    }
    for (const dir of changedDirs) this.syncDirectory(dir);
    return failures;
  }

  discardStaged(files: readonly StagedFile[]): void {
    for (const file of files) {
      try {
        unlinkQuietly(this.locate(file.tempPath, true).address);
      } catch {
        // Its directory is gone or no longer reachable without following a symlink: nothing to remove
        // that this instance could reach; a leftover temp is listed (and removed) by the next run.
      }
    }
  }

  /** Makes every change so far durable (batched durability defers directory fsyncs to here). */
  flush(): void {
    const dir = this.unflushed;
    if (dir === undefined) return;
    if (!this.syncFileSystem(dir)) throw new FileSystemError("EIO", dir, "syncfs failed");
    this.unflushed = undefined;
  }

  removeFile(path: string): void {
    const at = this.locate(path);
    try {
      // unlink(2) removes a symlink itself and refuses a directory with EISDIR.
      unlinkSync(at.address);
    } catch (error) {
      throw toFileSystemError(error, at.path);
    }
    this.syncParent(at);
  }

  listDir(path: string): string[] {
    const p = normalizePath(path);
    return this.withDirectory(p, (dir, fd) => this.childNames(dir, fd)).sort(compareNames);
  }

  listDirStats(path: string): DirEntryStat[] {
    const p = normalizePath(path);
    return this.withDirectory(p, (dir, fd) => {
      const entries: DirEntryStat[] = [];
      // One for the listing, not a closure for each entry.
      const addressOf = (name: string) =>
        fd === undefined ? plainAddress(joinChild(p, name)) : childAddress(fd, name);
      for (const name of this.childNames(dir, fd)) {
        // Resolved through the held directory: a parent swapped for a symlink meanwhile is not followed.
        const stat = this.entryStat(fd, name, addressOf);
        // Undefined: removed since it was listed.
        if (stat !== undefined) entries.push({ name, stat });
      }
      return entries.sort((a, b) => compareNames(a.name, b.name));
    });
  }

  /**
   * Names of a directory's children, as strings that stand for their bytes, without this instance's temps.
   * Through the held handle `fd` where koffi offers getdents64 (NativeCalls.namesIn: ASCII names as strings,
   * others as bytes mapped by nameOfBytes). Otherwise Node's readdir of `dir`: the usual case reads the names
   * as UTF-8 (no Buffer per name); a name that did not decode cleanly, or that holds a code point the byte
   * mapping escapes, makes the listing be read again as bytes.
   */
  private childNames(dir: SyscallPath, fd: number | undefined): string[] {
    if (fd !== undefined && this.native?.namesIn !== undefined) {
      // Read through the held handle; a name that is not ASCII comes as bytes.
      const names: string[] = [];
      for (const name of this.native.namesIn(fd)) {
        const text = typeof name === "string" ? name : nameOfBytes(name);
        if (!this.isInternalName(text)) names.push(text);
      }
      return names;
    }
    let names = readdirSync(dir, { encoding: "utf8" });
    if (!names.every(isPlainName)) names = readdirSync(dir, { encoding: "buffer" }).map(nameOfBytes);
    return names.filter((name) => !this.isInternalName(name));
  }

  makeDir(path: string): void {
    this.makeDirectory(this.locate(path));
  }

  makeDirs(path: string): void {
    const p = normalizePath(path);
    if (this.root === undefined) {
      this.makeDirsUnconfined(p);
      return;
    }
    if (!isWithin(this.root, p)) throw new FileSystemError("EACCES", p, "outside root");
    // Never create anything above the root: its ancestors belong to someone else.
    if (lstatIfPresent(this.locate(this.root)) === undefined) this.makeDirectory(this.locate(this.root));
    const below = p === this.root ? [] : p.slice(this.root === "/" ? 1 : this.root.length + 1).split("/");
    let current = this.root;
    for (const part of below) {
      current = joinChild(current, part);
      try {
        // Opening each level (cached for the writes that usually follow) proves it is a real directory.
        this.directoryHandle(current, p);
      } catch (error) {
        const code = (error as FileSystemError).code;
        if (code === "ENOENT") this.makeDirectory(this.locate(current, true));
        else if (code === "ENOTDIR" && current === p) throw new FileSystemError("EEXIST", p, "not a directory");
        else throw error;
      }
    }
  }

  /** Without a root the kernel follows intermediate symlinks anyway; one that leads to a directory is fine. */
  private makeDirsUnconfined(p: string): void {
    let current = "/";
    for (const part of p === "/" ? [] : p.slice(1).split("/")) {
      current = joinChild(current, part);
      const at = this.locate(current);
      const stat = lstatIfPresent(at);
      if (stat === undefined) {
        this.makeDirectory(at);
      } else if (stat.isSymbolicLink() && current !== p) {
        if (!statFollowing(at).isDirectory()) throw new FileSystemError("ENOTDIR", p);
      } else if (!stat.isDirectory()) {
        throw new FileSystemError(current === p ? "EEXIST" : "ENOTDIR", p);
      }
    }
  }

  removeDir(path: string): void {
    const at = this.locate(path);
    // The root is the mirror's anchor: removing it is never what a replication step means (catalogue A9).
    if (this.root !== undefined && at.path === this.root) {
      throw new FileSystemError("EACCES", at.path, "the root itself cannot be removed");
    }
    let fd: number;
    try {
      fd = openSync(at.address, DIRECTORY_FLAGS);
    } catch (error) {
      throw asNotADirectory(error, at.path);
    }
    this.forgetHandlesAt(at.path);
    try {
      emptyDirectory(fd);
    } catch (error) {
      throw toFileSystemError(error, at.path);
    } finally {
      closeSync(fd);
    }
    try {
      rmdirSync(at.address);
    } catch (error) {
      throw toFileSystemError(error, at.path);
    }
    this.syncParent(at);
  }

  makeSymlink(path: string, target: string): void {
    const at = this.locate(path);
    try {
      symlinkSync(plainAddress(target), at.address);
    } catch (error) {
      throw toFileSystemError(error, at.path);
    }
    this.syncParent(at);
  }

  readLink(path: string): string {
    const at = this.locate(path);
    try {
      return nameOfBytes(readlinkSync(at.address, { encoding: "buffer" }));
    } catch (error) {
      throw toFileSystemError(error, at.path);
    }
  }

  setMetadata(path: string, metadata: EntryMetadata): void {
    const at = this.locate(path);
    try {
      this.applyMetadataAt(at, metadata, false);
    } catch (error) {
      throw toFileSystemError(error, at.path);
    }
  }

  rename(from: string, to: string): void {
    const source = this.locate(from);
    const destination = this.locate(to, true);
    try {
      renameSync(source.address, destination.address);
    } catch (error) {
      throw toFileSystemError(error, `${source.path} -> ${destination.path}`);
    }
    // Handles of a moved directory would follow it; of a replaced one, point at a deleted directory.
    this.forgetHandlesAt(source.path);
    this.forgetHandlesAt(destination.path);
    this.syncParent(destination);
    if (posix.dirname(source.path) !== posix.dirname(destination.path)) this.syncParent(source);
  }

  releaseHandles(): void {
    for (const fd of this.handles.values()) closeSync(fd);
    this.handles.clear();
    this.rootResolved = undefined;
  }

  holdHandles(): () => void {
    this.handleHolds += 1;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.handleHolds -= 1;
      if (this.handleHolds === 0) this.releaseHandles();
    };
  }

  watchDir(path: string, callback: WatchCallback): void {
    const p = normalizePath(path);
    if (this.watcher.has(p)) throw new FileSystemError("EALREADYWATCHED", p);
    const stat = this.lstat(p);
    if (stat.kind !== "dir") throw new FileSystemError("ENOTDIR", p);
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

  /** How many watched directories are polled because the kernel had no watch left for them. */
  numPolledDirs(): number {
    return this.watcher.polledCount;
  }

  /** Releases every watch, timer and directory handle. */
  close(): void {
    this.watcher.close();
    this.releaseHandles();
  }

  debugString(path: string): string {
    const p = normalizePath(path);
    const stat = this.lstat(p);
    if (stat.kind !== "dir") return this.renderEntry(p, path, stat).join("\n");
    return [path, ...this.renderChildren(p)].join("\n");
  }

  private renderChildren(dir: string): string[] {
    const names = this.listDir(dir);
    const lines: string[] = [];
    names.forEach((name, index) => {
      const last = index === names.length - 1;
      const child = joinChild(dir, name);
      this.renderEntry(child, name, this.lstat(child)).forEach((line, lineIndex) => {
        const prefix = lineIndex === 0 ? (last ? "`-- " : "|-- ") : last ? "    " : "|   ";
        lines.push(prefix + line);
      });
    });
    return lines;
  }

  private renderEntry(path: string, label: string, stat: EntryStat): string[] {
    if (stat.kind === "dir") return [`/${label}`, ...this.renderChildren(path)];
    if (stat.kind === "symlink") return [`${label} -> ${this.readLink(path)}`];
    if (stat.kind !== "file") return [`${label} (${this.specialKindOf(path)})`];
    return `${label}: ${new TextDecoder().decode(this.readFile(path))}`.split("\n");
  }

  private specialKindOf(path: string): string {
    const at = this.locate(path);
    try {
      return kindOfSpecial(lstatSync(at.address).mode);
    } catch (error) {
      throw toFileSystemError(error, at.path);
    }
  }

  // ---- confinement -----------------------------------------------------------------------------

  /**
   * Normalises `path`, enforces the root and resolves the entry's parent directory through handles
   * opened from the root down with O_NOFOLLOW (ELOOP "traverses symlink" for a symlink among them).
   * The final name is never followed by any operation. `continuing` marks the second path of a
   * two-path operation: the cache is not trimmed then, so the first path's parent handle stays open.
   */
  private locate(path: string, continuing = false): Location {
    const p = normalizePath(path);
    if (!continuing) this.trimHandles();
    const root = this.root;
    const name = p === "/" ? "/" : posix.basename(p);
    if (root === undefined) return { path: p, address: plainAddress(p), parentFd: undefined, name };
    if (!isWithin(root, p)) throw new FileSystemError("EACCES", p, "outside root");
    // The root itself is addressed by the path the user gave (which may go through symlinks of their own).
    if (p === root) return { path: p, address: plainAddress(p), parentFd: undefined, name };
    if (!PROC_FD) return this.locateByChecks(p, root, name);
    const parentFd = this.directoryHandle(posix.dirname(p), p);
    return { path: p, address: childAddress(parentFd, name), parentFd, name };
  }

  /**
   * The handle of directory `dir` (within the root), from the cache or opened component by component
   * below the nearest cached ancestor, each relative to its parent's handle with O_NOFOLLOW.
   */
  private directoryHandle(dir: string, reportedPath: string): number {
    const cached = this.handles.get(dir);
    if (cached !== undefined) return cached;
    const root = this.root!;
    const missing: string[] = [];
    let current = dir;
    let fd: number | undefined;
    while (fd === undefined) {
      fd = this.handles.get(current);
      if (fd !== undefined) break;
      if (current === root) {
        fd = this.openDirectory(plainAddress(root), root, reportedPath);
        this.keepHandle(root, fd);
        this.rootResolved = resolvedPathOf(fd);
        break;
      }
      missing.push(current);
      current = posix.dirname(current);
    }
    if (missing.length > 1) {
      const direct = this.openResolvedDirectory(dir);
      if (direct !== undefined) {
        this.keepHandle(dir, direct);
        return direct;
      }
    }
    for (let index = missing.length - 1; index >= 0; index -= 1) {
      const child = missing[index]!;
      fd = this.openDirectory(childAddress(fd, posix.basename(child)), child, reportedPath, fd);
      this.keepHandle(child, fd);
    }
    return fd;
  }

  /**
   * `dir` (several levels below its nearest held ancestor) opened in one call by its path below where the
   * root's handle resolved to, kept only if the kernel says the handle is that very path (/proc/self/fd/N
   * names what was opened): then no component on the way was a symlink, and the one open replaces a chain
   * of them (a walk pays this once per directory, its handles being let go of between turns). Undefined
   * (nothing held) when it is not: the caller opens component by component and reports what is in the way.
   */
  private openResolvedDirectory(dir: string): number | undefined {
    const root = this.root!;
    const resolvedRoot = this.handles.has(root) ? this.rootResolved : undefined;
    if (resolvedRoot === undefined || hasByteEscapes(dir)) return undefined;
    const below = root === "/" ? dir : dir.slice(root.length);
    const path = resolvedRoot === "/" ? below : resolvedRoot + below;
    let fd: number;
    try {
      fd = openSync(path, DIRECTORY_FLAGS);
    } catch {
      return undefined;
    }
    if (resolvedPathOf(fd) === path) return fd;
    closeSync(fd);
    return undefined;
  }

  /** open(O_DIRECTORY|O_NOFOLLOW) of `dir`, with the error a caller of an operation on `reportedPath` expects. */
  private openDirectory(address: SyscallPath, dir: string, reportedPath: string, parentFd?: number): number {
    try {
      // Through the parent's handle where koffi is loaded: no procfs lookup of /proc/self/fd/N/NAME.
      if (parentFd !== undefined && this.native !== undefined) {
        return this.native.openAt(parentFd, plainAddress(posix.basename(dir)), DIRECTORY_FLAGS);
      }
      return openSync(address, DIRECTORY_FLAGS);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "ENOTDIR" && code !== "ELOOP") throw toFileSystemError(error, reportedPath);
      // Linux says ENOTDIR for a symlink opened O_DIRECTORY|O_NOFOLLOW: look at what is in the way.
      const isLink =
        parentFd === undefined
          ? lstatSync(address, { throwIfNoEntry: false })?.isSymbolicLink()
          : lstatSync(childAddress(parentFd, posix.basename(dir)), { throwIfNoEntry: false })?.isSymbolicLink();
      if (dir === reportedPath) {
        throw new FileSystemError("ENOTDIR", reportedPath, isLink ? "is a symlink" : "not a directory", {
          cause: error,
        });
      }
      if (isLink) throw new FileSystemError("ELOOP", reportedPath, `traverses symlink ${dir}`, { cause: error });
      throw new FileSystemError("ENOTDIR", reportedPath, `not a directory: ${dir}`, { cause: error });
    }
  }

  /**
   * Closes every cached handle once the cache is full. Called only where no Location is held, so that no
   * handle in use is closed (and its number reused) under an operation; one operation then adds at most
   * two paths' depth.
   */
  private trimHandles(): void {
    if (this.handles.size >= MAX_CACHED_HANDLES) this.releaseHandles();
  }

  private keepHandle(dir: string, fd: number): void {
    this.handles.set(dir, fd);
    if (this.releaseScheduled) return;
    // The safety net for callers that never call releaseHandles (a source, a CLI command): handles live
    // at most until the current macrotask ends, so none outlives the synchronous work that opened it
    // (unless held: a reading walk keeps them from one directory to the next).
    this.releaseScheduled = true;
    setImmediate(() => {
      this.releaseScheduled = false;
      if (this.handleHolds === 0) this.releaseHandles();
    }).unref();
  }

  forgetHandlesAt(path: string): void {
    const p = normalizePath(path);
    for (const [dir, fd] of this.handles) {
      if (!isWithin(p, dir)) continue;
      this.handles.delete(dir);
      closeSync(fd);
    }
  }

  /**
   * Without /proc (not Linux): every existing component between the root and the final name is checked
   * with lstat and the plain path is used afterwards. This leaves a check-then-use window that only the
   * handle walk closes.
   */
  private locateByChecks(p: string, root: string, name: string): Location {
    const parts = p.slice(root === "/" ? 1 : root.length + 1).split("/");
    let current = root;
    for (let index = 0; index < parts.length - 1; index += 1) {
      current = joinChild(current, parts[index]!);
      const stat = lstatSync(plainAddress(current), { throwIfNoEntry: false });
      // A missing or non-directory component makes the operation itself fail with ENOENT/ENOTDIR.
      if (stat === undefined || (!stat.isDirectory() && !stat.isSymbolicLink())) break;
      if (stat.isSymbolicLink()) throw new FileSystemError("ELOOP", p, `traverses symlink ${current}`);
    }
    return { path: p, address: plainAddress(p), parentFd: undefined, name };
  }

  /**
   * Runs `read` on an address of directory `p` that cannot be swapped for a symlink between the check
   * and the read: /proc/self/fd/N of a held handle (`fd`), or the plain path where there is no /proc.
   */
  private withDirectory<T>(p: string, read: (dir: SyscallPath, fd: number | undefined) => T): T {
    let fd: number;
    let owned = false;
    if (this.root !== undefined && PROC_FD) {
      if (!isWithin(this.root, p)) throw new FileSystemError("EACCES", p, "outside root");
      this.trimHandles();
      fd = this.directoryHandle(p, p);
    } else {
      const at = this.locate(p);
      if (!PROC_FD) {
        const stat = lstatIfPresent(at);
        if (stat === undefined) throw new FileSystemError("ENOENT", p);
        if (!stat.isDirectory()) throw new FileSystemError("ENOTDIR", p);
        try {
          return read(at.address, undefined);
        } catch (error) {
          throw toFileSystemError(error, p);
        }
      }
      try {
        fd = openSync(at.address, DIRECTORY_FLAGS);
      } catch (error) {
        throw asNotADirectory(error, p);
      }
      owned = true;
    }
    try {
      return read(`/proc/self/fd/${fd}`, fd);
    } catch (error) {
      throw toFileSystemError(error, p);
    } finally {
      if (owned) closeSync(fd);
    }
  }

  // ---- temps, metadata, durability -------------------------------------------------------------

  /** This instance's next temp name: its internal prefix and a counter (one random draw per instance). */
  private nextTempName(): string {
    this.tempCounter += 1;
    return this.internalPrefix + this.tempCounter.toString(16);
  }

  /** The location of `name` in the directory of `at` (same parent handle). */
  private tempBeside(at: Location, name: string): Location {
    // A temp "beside" the root would land in its parent, outside: the root is a directory to write into.
    if (at.path === this.root) throw new FileSystemError("EISDIR", at.path);
    const path = joinChild(posix.dirname(at.path), name);
    const address = at.parentFd === undefined ? plainAddress(path) : childAddress(at.parentFd, name);
    return { path, address, parentFd: at.parentFd, name };
  }

  /** open(2) of `at`: through its parent's held handle where there is one and koffi, else its address. */
  private openEntry(at: Location, flags: number, mode?: number): number {
    if (at.parentFd !== undefined && this.native !== undefined) {
      return this.native.openAt(at.parentFd, plainAddress(at.name), flags, mode);
    }
    return openSync(at.address, flags, mode);
  }

  /** fstat of the open file `fd`: statx through koffi (no Node `Stats` built) where it is loaded. */
  private statOfOpen(fd: number): EntryStat {
    return this.native?.statOf(fd) ?? toEntryStat(fstatSync(fd, { bigint: true }));
  }

  /**
   * Creates a fresh temp beside `at` with O_CREAT|O_EXCL|O_NOFOLLOW: never opens what is there. With the
   * `mode` the file will get, the temp is created with as much of it as shows no one more than the final
   * file shows everyone (see creationMode), so finishing it usually changes no mode; else 0600.
   */
  private createTemp(at: Location, mode?: number): { fd: number; temp: Location } {
    const initial = mode === undefined ? 0o600 : creationMode(mode);
    for (let attempt = 1; ; attempt += 1) {
      const temp = this.tempBeside(at, this.nextTempName());
      try {
        return { fd: this.openEntry(temp, TEMP_FLAGS, initial), temp };
      } catch (error) {
        // Taken by a leftover of an earlier instance with the same random part, or planted: take the next.
        if ((error as NodeJS.ErrnoException).code === "EEXIST" && attempt < TEMP_NAME_ATTEMPTS) continue;
        throw toFileSystemError(error, at.path);
      }
    }
  }

  /** The permission bits a rewrite of `at` keeps: the replaced file's, or 0644 for a new file. */
  private modeToKeep(at: Location): number {
    const existing = lstatIfPresent(at);
    if (existing?.isDirectory()) throw new FileSystemError("EISDIR", at.path);
    return existing?.isFile() ? Number(existing.mode) & 0o7777 : DEFAULT_FILE_MODE;
  }

  /**
   * Owner (only the ids given), then all 12 mode bits (chown clears setuid/setgid), then mtime, on a temp
   * this instance just created. Owner and mode are changed only where the temp's own differ: one stat of
   * it costs less than an fchown or fchmod that changes nothing (each still dirties the inode).
   */
  private applyMetadataToOpenFile(fd: number, metadata: EntryMetadata): void {
    const created = this.statOfOpen(fd);
    const ownerChanges =
      (metadata.uid !== undefined && metadata.uid !== created.uid) ||
      (metadata.gid !== undefined && metadata.gid !== created.gid);
    if (ownerChanges) fchownSync(fd, metadata.uid ?? -1, metadata.gid ?? -1);
    if (metadata.mode !== undefined && (ownerChanges || created.mode !== (metadata.mode & 0o7777))) {
      fchmodSync(fd, metadata.mode & 0o7777);
    }
    if (metadata.mtime !== undefined) this.setMtimeOfOpenFile(fd, metadata.mtime);
  }

  /**
   * Metadata of the entry at `at` itself, in EntryMetadata's order, without following a final symlink:
   * owner through lchown, mode through an O_PATH|O_NOFOLLOW handle (chmod has no no-follow form; the
   * handle's /proc/self/fd path reaches exactly the inode it holds), mtime through utimensat with
   * AT_SYMLINK_NOFOLLOW. A symlink keeps its mode (Linux has none to set). With `requireFile`, anything
   * but a regular file is refused with EINVAL before it is changed.
   */
  private applyMetadataAt(at: Location, metadata: EntryMetadata, requireFile: boolean): void {
    const needsHandle = requireFile || metadata.mode !== undefined;
    if (!needsHandle) {
      // Still fail with ENOENT for a missing entry, even when nothing is to be set.
      if (metadata.uid === undefined && metadata.gid === undefined && metadata.mtime === undefined) {
        lstatSync(at.address);
        return;
      }
      this.changeOwnerAt(at, metadata);
      if (metadata.mtime !== undefined) this.setMtimeAt(at, metadata.mtime);
      return;
    }
    if (!PROC_FD) {
      this.applyMetadataWithoutProc(at, metadata, requireFile);
      return;
    }
    const fd = openSync(at.address, O_PATH | constants.O_NOFOLLOW);
    try {
      const stat = fstatSync(fd);
      if (requireFile && !stat.isFile()) throw new FileSystemError("EINVAL", at.path, "not a regular file");
      const self = `/proc/self/fd/${fd}`;
      if (metadata.uid !== undefined || metadata.gid !== undefined) {
        // chown follows the magic link to the inode held; a symlink's own owner is set by lchown on its name.
        if (stat.isSymbolicLink()) lchownSync(at.address, metadata.uid ?? -1, metadata.gid ?? -1);
        else chownSync(self, metadata.uid ?? -1, metadata.gid ?? -1);
      }
      if (metadata.mode !== undefined && !stat.isSymbolicLink()) chmodSync(self, metadata.mode & 0o7777);
    } finally {
      closeSync(fd);
    }
    if (metadata.mtime !== undefined) this.setMtimeAt(at, metadata.mtime);
  }

  /** Where /proc is missing: mode through an O_RDONLY|O_NOFOLLOW descriptor (ELOOP for a symlink: it has no mode). */
  private applyMetadataWithoutProc(at: Location, metadata: EntryMetadata, requireFile: boolean): void {
    let fd: number | undefined;
    try {
      fd = openSync(at.address, READ_FLAGS);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ELOOP" || requireFile) throw error;
    }
    if (fd === undefined) {
      this.changeOwnerAt(at, metadata);
    } else {
      try {
        if (requireFile && !fstatSync(fd).isFile()) throw new FileSystemError("EINVAL", at.path, "not a regular file");
        if (metadata.uid !== undefined || metadata.gid !== undefined) {
          fchownSync(fd, metadata.uid ?? -1, metadata.gid ?? -1);
        }
        if (metadata.mode !== undefined) fchmodSync(fd, metadata.mode & 0o7777);
      } finally {
        closeSync(fd);
      }
    }
    if (metadata.mtime !== undefined) this.setMtimeAt(at, metadata.mtime);
  }

  private changeOwnerAt(at: Location, metadata: EntryMetadata): void {
    if (metadata.uid !== undefined || metadata.gid !== undefined) {
      lchownSync(at.address, metadata.uid ?? -1, metadata.gid ?? -1);
    }
  }

  /**
   * Exact nanoseconds through utimensat(2) when koffi loaded; otherwise Node's lutimes, which goes through
   * a double and libuv, and keeps microseconds only (and less far from 1970: a double has 53 bits).
   */
  private setMtimeAt(at: Location, mtime: Timestamp): void {
    checkTimestamp(mtime, at.path);
    const atime = this.accessTime();
    if (this.native !== undefined) {
      if (at.parentFd === undefined) this.native.setTimesAt(AT_FDCWD, at.address, atime, mtime);
      else this.native.setTimesAt(at.parentFd, plainAddress(at.name), atime, mtime);
      return;
    }
    lutimesSync(at.address, secondsOf(atime), secondsOf(mtime));
  }

  /** futimens(2) with exact nanoseconds when koffi loaded; otherwise Node's futimes (microseconds). */
  private setMtimeOfOpenFile(fd: number, mtime: Timestamp): void {
    checkTimestamp(mtime, `fd ${fd}`);
    const atime = this.accessTime();
    if (this.native !== undefined) this.native.setTimesOf(fd, atime, mtime);
    else futimesSync(fd, secondsOf(atime), secondsOf(mtime));
  }

  /** The access time written with an explicit mtime: now, by the injected clock. */
  private accessTime(): Timestamp {
    const ms = this.now();
    const sec = Math.floor(ms / 1000);
    return { sec, nsec: Math.round((ms - sec * 1000) * 1e6) % 1e9 };
  }

  /** mkdir that is a no-op for an existing directory (not a symlink to one); makes the new entry durable. */
  private makeDirectory(at: Location): void {
    try {
      mkdirSync(at.address);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST" && isDirectory(lstatIfPresent(at))) return;
      throw toFileSystemError(error, at.path);
    }
    if (at.path !== "/") this.syncParent(at);
  }

  /** Makes the entry `at` durable in its directory now (full) or at the next flush (batched). */
  private syncParent(at: Location): void {
    if (this.durability !== "full" || at.parentFd === undefined) {
      this.syncDirectory(posix.dirname(at.path));
      return;
    }
    try {
      fsyncSync(at.parentFd);
    } catch (error) {
      throw toFileSystemError(error, posix.dirname(at.path));
    }
  }

  /** Makes the entries of `dir` durable now (full) or at the next flush (batched). */
  private syncDirectory(dir: string): void {
    if (this.durability === "batched") this.unflushed ??= dir;
    if (this.durability !== "full") return;
    const confined = this.root !== undefined && PROC_FD && isWithin(this.root, dir);
    if (confined) this.trimHandles();
    let fd: number;
    try {
      fd = confined
        ? this.directoryHandle(dir, dir)
        : openSync(plainAddress(dir), constants.O_RDONLY | constants.O_DIRECTORY);
    } catch (error) {
      throw toFileSystemError(error, dir);
    }
    try {
      fsyncSync(fd);
    } catch (error) {
      throw toFileSystemError(error, dir);
    } finally {
      if (!confined) closeSync(fd);
    }
  }

  /**
   * syncfs(2) on the file system holding `path`'s directory: directly through koffi (an error is thrown),
   * or through coreutils `sync -f` (false when that fails or is unavailable, so callers fsync instead).
   */
  private syncFileSystem(dir: string): boolean {
    if (this.native === undefined) return spawnSync("sync", ["-f", dir], { stdio: "ignore" }).status === 0;
    // Confined: through the root's handle, which no symlink swapped in below the root can redirect (a file
    // system mounted inside the root is not covered: mirrorlog's root is one file system).
    const confined = this.root !== undefined && PROC_FD;
    let fd: number;
    try {
      fd = confined
        ? this.directoryHandle(this.root!, dir)
        : openSync(plainAddress(dir), constants.O_RDONLY | constants.O_DIRECTORY);
    } catch (error) {
      throw toFileSystemError(error, dir);
    }
    try {
      this.native.syncFileSystem(fd);
    } catch (error) {
      throw toFileSystemError(error, dir);
    } finally {
      if (!confined) closeSync(fd);
    }
    return true;
  }
}

/** Empties the directory held by `fd`, entry by entry through the handle: symlinks are unlinked, never entered. */
function emptyDirectory(fd: number): void {
  // A directory without owner write and search (0555) cannot be emptied by a non-root owner: it is being
  // removed anyway, so open it for its owner first (rsync does the same).
  const mode = fstatSync(fd).mode & 0o7777;
  if ((mode & 0o700) !== 0o700) fchmodSync(fd, mode | 0o700);
  const base = Buffer.from(`/proc/self/fd/${fd}/`);
  for (const raw of readdirSync(base, { encoding: "buffer" })) removeEntry(Buffer.concat([base, raw]));
}

/**
 * Removes one entry of a tree being removed: unlink first (files and symlinks, the common case), and only
 * for a directory open it O_NOFOLLOW, empty it through its handle and rmdir it. An entry swapped by a
 * racer meanwhile (a directory for a symlink or back) is looked at again, a bounded number of times.
 */
function removeEntry(address: Buffer): void {
  for (let attempt = 1; ; attempt += 1) {
    try {
      unlinkSync(address);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return;
      if (code !== "EISDIR" || attempt >= REMOVE_ATTEMPTS) throw error;
    }
    let fd: number;
    try {
      fd = openSync(address, DIRECTORY_FLAGS);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return;
      if ((code === "ENOTDIR" || code === "ELOOP") && attempt < REMOVE_ATTEMPTS) continue;
      throw error;
    }
    try {
      emptyDirectory(fd);
    } finally {
      closeSync(fd);
    }
    try {
      rmdirSync(address);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return;
      if ((code === "ENOTDIR" || code === "ENOTEMPTY") && attempt < REMOVE_ATTEMPTS) continue;
      throw error;
    }
  }
}

/** Where `readAll` looks for bytes past the size it was told (shared: one thread reads). */
const growthProbe = new Uint8Array(64 * 1024);

/** Reads exactly what the file holds, even if it grew or shrank since `fstat`. */
function readAll(fd: number, expectedSize: number): Uint8Array {
  let buffer = new Uint8Array(expectedSize);
  let length = 0;
  for (;;) {
    if (length === buffer.length) {
      // Probe for growth into the shared buffer: the usual answer, end of file, allocates nothing.
      const got = readSync(fd, growthProbe, 0, growthProbe.length, null);
      if (got === 0) return buffer;
      const grown = new Uint8Array(Math.max(buffer.length * 2, length + got));
      grown.set(buffer.subarray(0, length));
      grown.set(growthProbe.subarray(0, got), length);
      buffer = grown;
      length += got;
      continue;
    }
    const got = readSync(fd, buffer, length, buffer.length - length, null);
    if (got === 0) return buffer.slice(0, length);
    length += got;
  }
}

/**
 * Reads `size` bytes from the start of `fd`, or fewer where the file ends first: no probe past `size` (the
 * caller's stat after the read shows a file that grew), except for a size of 0, which procfs states for
 * files that hold bytes: those are read whole (their stat then disagrees with what was read).
 */
function readUpTo(fd: number, size: number): Uint8Array {
  return size === 0 ? readAll(fd, 0) : readInto(fd, new Uint8Array(size), 0);
}

/** Fills `buffer` from byte `offset` of `fd`, or less where the file ends first: what was read (a view of it). */
function readInto(fd: number, buffer: Uint8Array, offset: number): Uint8Array {
  let filled = 0;
  while (filled < buffer.length) {
    const n = readSync(fd, buffer, filled, buffer.length - filled, offset + filled);
    if (n === 0) break;
    filled += n;
  }
  return filled === buffer.length ? buffer : buffer.subarray(0, filled);
}

/** The syscall form of a path or name: the string itself unless it stands for bytes that are not UTF-8. */
function plainAddress(path: string): SyscallPath {
  return hasByteEscapes(path) ? bytesOfName(path) : path;
}

/** The path the kernel holds for open file `fd` (undefined without /proc, or when it cannot be read). */
function resolvedPathOf(fd: number): string | undefined {
  if (!PROC_FD) return undefined;
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return undefined;
  }
}

/** `/proc/self/fd/<fd>/<name>`: `name` looked up in the directory held by `fd`, whatever its path is now. */
function childAddress(fd: number, name: string): SyscallPath {
  if (!hasByteEscapes(name)) return `/proc/self/fd/${fd}/${name}`;
  return Buffer.concat([Buffer.from(`/proc/self/fd/${fd}/`), bytesOfName(name)]);
}

/** True for a name read as UTF-8 that needs no second look as bytes. */
function isPlainName(name: string): boolean {
  return !name.includes("\uFFFD") && !hasByteEscapes(name);
}

/** Names sort by code unit, as the contract and the memory file system do. */
function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** lstat of a located entry; undefined when it (or a directory above it) is missing. */
function lstatIfPresent(at: Location): BigIntStats | undefined {
  try {
    return lstatSync(at.address, { bigint: true, throwIfNoEntry: false });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
    throw toFileSystemError(error, at.path);
  }
}

function isDirectory(stat: BigIntStats | undefined): boolean {
  return stat?.isDirectory() === true;
}

function statFollowing(at: Location): Stats {
  try {
    return statSync(at.address);
  } catch (error) {
    throw toFileSystemError(error, at.path);
  }
}

/** True for the errors that mean "nothing there": a missing entry or a file where a directory should be. */
function isMissing(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return code === "ENOENT" || code === "ENOTDIR";
}

/** An O_DIRECTORY|O_NOFOLLOW open failure, where a symlink (ELOOP on some kernels) is "not a directory". */
function asNotADirectory(error: unknown, path: string): FileSystemError {
  if ((error as NodeJS.ErrnoException).code === "ELOOP") {
    return new FileSystemError("ENOTDIR", path, "is a symlink", { cause: error });
  }
  return toFileSystemError(error, path);
}

const NS_PER_SECOND = 1_000_000_000n;

/** A nanosecond count as whole seconds (floored, so negative before 1970) and 0 ≤ nsec < 1e9. */
function timestampOf(ns: bigint): Timestamp {
  let sec = ns / NS_PER_SECOND;
  let nsec = ns - sec * NS_PER_SECOND;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += NS_PER_SECOND;
  }
  return { sec: Number(sec), nsec: Number(nsec) };
}

/** Seconds as a double, for Node's utimes family (the fallback without koffi: microseconds survive). */
function secondsOf(time: Timestamp): number {
  return time.sec + time.nsec / 1e9;
}

function checkTimestamp(time: Timestamp, path: string): void {
  if (!Number.isSafeInteger(time.sec) || !Number.isInteger(time.nsec) || time.nsec < 0 || time.nsec >= 1e9) {
    throw new FileSystemError("EINVAL", path, `invalid time ${JSON.stringify(time)}`);
  }
}

/** The EntryStat of what Node's lstat said, as NativeCalls.statAt states it (a listing and a single lstat agree). */
function toEntryStat(stat: BigIntStats): EntryStat {
  const mode = Number(stat.mode);
  const mtime = timestampOf(stat.mtimeNs);
  const ctime = timestampOf(stat.ctimeNs);
  return {
    kind: kindOfMode(mode),
    size: Number(stat.size),
    mtimeMs: millisecondsOf(mtime.sec, mtime.nsec),
    ctimeMs: millisecondsOf(ctime.sec, ctime.nsec),
    mtime,
    mode: mode & 0o7777,
    ino: Number(stat.ino),
    dev: Number(stat.dev),
    nlink: Number(stat.nlink),
    uid: Number(stat.uid),
    gid: Number(stat.gid),
  };
}

/**
 * The permission bits a temp is created with for a file that will get `mode`: the owner's and others' bits,
 * and of the group's only those others have too (until its owner is set, the temp's group may not be the
 * final one, so a member of it may see no more than anyone may). The owner is this process. Special bits
 * wait for the fchmod that follows an fchown (which would clear them).
 */
function creationMode(mode: number): number {
  const others = mode & 0o007;
  return (mode & 0o700) | (mode & (others << 3)) | others;
}

/** What a problem report calls the special file of `mode` (kindOfMode's "special"). */
function kindOfSpecial(mode: number): string {
  switch (mode & constants.S_IFMT) {
    case constants.S_IFIFO:
      return "fifo";
    case constants.S_IFSOCK:
      return "socket";
    case constants.S_IFCHR:
      return "character device";
    case constants.S_IFBLK:
      return "block device";
    default:
      return "special file";
  }
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

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // The write already failed; that failure is the one to report.
  }
}

function unlinkQuietly(address: SyscallPath): void {
  try {
    unlinkSync(address);
  } catch {
    // Best effort after another failure, which is the one reported. A temp left behind is hidden from this
    // instance's listings and listed as an ordinary entry by the next instance, whose plan removes it.
  }
}

/** The default notice: one line on stderr, prefixed like every other line mirrorlog says there. */
function noticeOnStderr(message: string): void {
  process.stderr.write(`mirrorlog: ${message}\n`);
}

function reportAsWarning(problem: FileSystemProblem): void {
  process.emitWarning(`${problem.path}: ${problem.reason}`, "MirrorlogFileSystemWarning");
}
