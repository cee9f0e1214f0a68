import { Buffer } from "node:buffer";
import { constants } from "node:fs";
import { createRequire } from "node:module";
import { getSystemErrorMap } from "node:util";
import type { EntryKind, EntryStat, Timestamp } from "./fileSystem.js";
import { packagedFile } from "./packagedFile.js";

/**
 * The libc calls Node 20 lacks and mirrorlog needs, through koffi (an FFI whose npm package ships
 * prebuilt binaries): `utimensat` and `futimens` set an mtime to the exact nanosecond (Node's `utimes`
 * family goes through a double and libuv keeps only microseconds), and `syncfs` flushes one file system
 * without spawning `sync -f`; `flock` locks a target root by what it is (its inode, not its path);
 * `statx`, `openat` and `renameat` work relative to a directory's handle (Node's calls take only a path);
 * `fcntl(F_SETPIPE_SZ)` enlarges serve's input pipe and `mallopt` keeps freed buffers for reuse.
 * Linux only; `loadNativeCalls()` is undefined wherever koffi or these symbols cannot be loaded, and
 * callers fall back to Node's calls (microsecond mtimes, `sync -f`, `lstat`, `open` and `rename` of
 * /proc/self/fd/N/NAME; no flock: serve refuses to run; the default pipe and allocator).
 */
export interface NativeCalls {
  /**
   * utimensat(dirFd, name, {atime, mtime}, AT_SYMLINK_NOFOLLOW): sets the times of the entry `name` in the
   * directory `dirFd` (AT_FDCWD for a path), never following a final symlink. Throws an errno error.
   */
  setTimesAt(dirFd: number, name: string | Buffer, atime: Timestamp, mtime: Timestamp): void;
  /** futimens(fd, {atime, mtime}): sets the times of an open file. Throws an errno error. */
  setTimesOf(fd: number, atime: Timestamp, mtime: Timestamp): void;
  /** syncfs(fd): makes everything written to the file system holding `fd` durable. Throws an errno error. */
  syncFileSystem(fd: number): void;
  /**
   * flock(fd, operation): takes or drops an advisory lock on the open file (LOCK_EX, LOCK_NB, LOCK_UN).
   * Throws an errno error (EAGAIN when LOCK_NB finds the lock held elsewhere).
   */
  flock(fd: number, operation: number): void;
  /**
   * statx(dirFd, name, AT_SYMLINK_NOFOLLOW): the entry `name` of the directory `dirFd`, never following a
   * final symlink, as an EntryStat decoded straight from the struct (no BigInt stats object, no /proc/self/fd
   * path as Node's lstat needs: a listing states each of its entries, so this halves that). Undefined when
   * there is no such entry (ENOENT: asked often, of files about to be created, so not thrown); any other
   * failure throws an errno error.
   */
  statAt(dirFd: number, name: string | Buffer): EntryStat | undefined;
  /** statx(fd, "", AT_EMPTY_PATH): the open file `fd`, as statAt states an entry. Throws an errno error. */
  statOf(fd: number): EntryStat;
  /**
   * openat(dirFd, name, flags | O_CLOEXEC, mode): opens the entry `name` of the directory `dirFd` without the
   * /proc/self/fd/N/NAME path Node's open needs (a procfs lookup per file: ≈ 4 µs of a small file's ≈ 10).
   * Returns the descriptor; throws an errno error.
   */
  openAt(dirFd: number, name: string | Buffer, flags: number, mode?: number): number;
  /**
   * The names in the directory `dirFd` (getdents64 from its start, without "." and ".."), in the order the
   * file system gives them: a string where the name is ASCII, else its bytes. Reads through the handle, not
   * through /proc/self/fd/N as Node's readdir must (a procfs lookup and an open and close per directory).
   * Throws an errno error. Absent where glibc has no getdents64 (before 2.30): Node's readdir then.
   */
  namesIn?(dirFd: number): (string | Buffer)[];
  /** renameat(fromDirFd, from, toDirFd, to): renames an entry between held directories. Throws an errno error. */
  renameAt(fromDirFd: number, from: string | Buffer, toDirFd: number, to: string | Buffer): void;
  /**
   * fcntl(fd, F_SETPIPE_SZ, bytes): makes the pipe `fd` hold at least `bytes` (what the kernel allows a
   * process: /proc/sys/fs/pipe-max-size, 1 MiB by default, unless privileged). Returns the size it now has;
   * throws an errno error (EBADF when `fd` is not a pipe, EPERM past the limit).
   */
  setPipeSize(fd: number, bytes: number): number;
  /**
   * mallopt(M_MMAP_THRESHOLD, mmapBytes) and mallopt(M_TRIM_THRESHOLD, trimBytes): glibc serves blocks below
   * `mmapBytes` from its heap, and returns free memory at the heap's top to the kernel only past `trimBytes`.
   * False when glibc refused either (it sets no errno).
   */
  setAllocatorThresholds(mmapBytes: number, trimBytes: number): boolean;
  /**
   * sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE): starts writing back the dirty pages of that
   * range of the open file, without waiting for them. Throws an errno error.
   */
  startWriteback(fd: number, offset: number, length: number): void;
}

/** flock operations: an exclusive lock, not waiting for it, and its release. */
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

/** utimensat's "relative to the current directory" descriptor. */
export const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_EMPTY_PATH = 0x1000;
/** O_CLOEXEC (Node's open adds it; openat through koffi must ask): its value on every arch Node runs on. */
const O_CLOEXEC = 0x80000;

/** The part of koffi's API used here. */
interface Koffi {
  load(path: string): { func(name: string, result: string, parameters: unknown[]): (...args: unknown[]) => number };
  struct(fields: Record<string, string>): unknown;
  pointer(type: unknown): unknown;
  errno(): number;
}

/**
 * koffi itself. Its entry finds its addon by reading node's ELF header (glibc or musl) and compiles two
 * scripts on the way, and resolving it goes through its package exports: ≈ 12 ms of every start against
 * ≈ 3 ms for the addon alone, which is all that is used here. These calls are glibc's (libc.so.6), so
 * the glibc build of koffi's platform package is loaded by name where npm put it beside koffi (as
 * sqliteBinding.ts names better-sqlite3's addon); any other layout is left to the entry.
 */
function loadKoffi(): Koffi {
  const require = createRequire(import.meta.url);
  const { platform, arch } = process;
  const addon = packagedFile(`@koromix/koffi-${platform}-${arch}`, `${platform}_${arch}`, "koffi.node");
  try {
    if (addon !== undefined) return require(addon) as Koffi;
  } catch {
    // Not loadable as it stands: koffi's entry knows where else to look.
  }
  return require("koffi") as Koffi;
}

type LibcFunction = (...args: unknown[]) => number;

let loaded: NativeCalls | null | undefined;

/** The native calls, loaded once per module instance; undefined when not available on this platform. */
export function loadNativeCalls(): NativeCalls | undefined {
  if (loaded === undefined) loaded = process.platform === "linux" ? tryLoad() : null;
  return loaded ?? undefined;
}

function tryLoad(): NativeCalls | null {
  let koffi: Koffi;
  let utimensat: LibcFunction;
  let futimens: LibcFunction;
  let syncfs: LibcFunction;
  let flock: LibcFunction;
  let statx: LibcFunction;
  let openat: LibcFunction;
  let renameat: LibcFunction;
  let fcntl: LibcFunction;
  let mallopt: LibcFunction;
  let getdents64: LibcFunction | undefined;
  let lseek: LibcFunction;
  let syncFileRange: LibcFunction;
  try {
    koffi = loadKoffi();
    const libc = koffi.load("libc.so.6");
    // Anonymous: a named koffi type is process-wide, and this module may be loaded more than once.
    const times = koffi.pointer(koffi.struct({ tv_sec: "int64", tv_nsec: "long" }));
    utimensat = libc.func("utimensat", "int", ["int", "const char *", times, "int"]);
    futimens = libc.func("futimens", "int", ["int", times]);
    syncfs = libc.func("syncfs", "int", ["int"]);
    flock = libc.func("flock", "int", ["int", "int"]);
    statx = libc.func("statx", "int", ["int", "const char *", "int", "uint", "void *"]);
    openat = libc.func("openat", "int", ["int", "const char *", "int", "..."]);
    renameat = libc.func("renameat", "int", ["int", "const char *", "int", "const char *"]);
    fcntl = libc.func("fcntl", "int", ["int", "int", "..."]);
    mallopt = libc.func("mallopt", "int", ["int", "int"]);
    lseek = libc.func("lseek", "long", ["int", "long", "int"]);
    syncFileRange = libc.func("sync_file_range", "int", ["int", "int64", "int64", "uint"]);
    try {
      getdents64 = libc.func("getdents64", "long", ["int", "void *", "size_t"]);
    } catch {
      // An older glibc: listings go through Node's readdir.
    }
  } catch (error) {
    // Not fatal: every caller has a Node fallback. Say once why exact times are unavailable.
    process.emitWarning(
      `koffi could not be loaded (${String(error)}); mtimes are set to the microsecond, syncfs runs as sync -f, and serve cannot lock its target`,
      "MirrorlogNativeCallsWarning",
    );
    return null;
  }
  /** libc's calls answer -1 (or any negative) for a failure, with errno set: thrown; else the answer. */
  const checked = (result: number, syscall: string): number => {
    if (result < 0) throw errnoError(koffi.errno(), syscall);
    return result;
  };
  return {
    setTimesAt: (dirFd, name, atime, mtime) =>
      void checked(
        utimensat(dirFd, cString(name), [timespec(atime), timespec(mtime)], AT_SYMLINK_NOFOLLOW),
        "utimensat",
      ),
    setTimesOf: (fd, atime, mtime) => void checked(futimens(fd, [timespec(atime), timespec(mtime)]), "futimens"),
    syncFileSystem: (fd) => void checked(syncfs(fd), "syncfs"),
    flock: (fd, operation) => void checked(flock(fd, operation), "flock"),
    statAt: (dirFd, name) => {
      if (statx(dirFd, cString(name), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, statxBuffer) === 0) {
        return entryStatOfStatx();
      }
      const errno = koffi.errno();
      if (errno === ENOENT) return undefined;
      throw errnoError(errno, "statx");
    },
    statOf: (fd) => {
      checked(statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, statxBuffer), "statx");
      return entryStatOfStatx();
    },
    openAt: (dirFd, name, flags, mode = 0) =>
      checked(openat(dirFd, cString(name), flags | O_CLOEXEC, "uint32", mode), "openat"),
    ...(getdents64 === undefined ? {} : { namesIn: namesInWith(getdents64, lseek, checked) }),
    renameAt: (fromDirFd, from, toDirFd, to) =>
      void checked(renameat(fromDirFd, cString(from), toDirFd, cString(to)), "renameat"),
    setPipeSize: (fd, bytes) => checked(fcntl(fd, F_SETPIPE_SZ, "int", bytes), "fcntl"),
    // mallopt says 1 for done and 0 for refused.
    setAllocatorThresholds: (mmapBytes, trimBytes) =>
      mallopt(M_MMAP_THRESHOLD, mmapBytes) === 1 && mallopt(M_TRIM_THRESHOLD, trimBytes) === 1,
    startWriteback: (fd, offset, length) =>
      void checked(syncFileRange(fd, offset, length, SYNC_FILE_RANGE_WRITE), "sync_file_range"),
  };
}

const ENOENT = 2;
/** sync_file_range's flag that starts writeback of the range's dirty pages and does not wait. */
const SYNC_FILE_RANGE_WRITE = 2;
/** fcntl's command that resizes a pipe (Linux). */
const F_SETPIPE_SZ = 1031;
/** mallopt's parameters (glibc's malloc.h). */
const M_TRIM_THRESHOLD = -1;
const M_MMAP_THRESHOLD = -3;

const SEEK_SET = 0;
/** struct linux_dirent64: d_ino (8 bytes), d_off (8), d_reclen (2), d_type (1), then the name and its NUL. */
const DIRENT_RECLEN = 16;
const DIRENT_NAME = 19;
/** getdents64's buffer, reused by every call (a thread has its own instance of this module). */
const direntBuffer = Buffer.alloc(32 * 1024);

/** NativeCalls.namesIn over glibc's getdents64 and lseek. */
function namesInWith(
  getdents64: LibcFunction,
  lseek: LibcFunction,
  checked: (result: number, syscall: string) => number,
): (dirFd: number) => (string | Buffer)[] {
  return (dirFd) => {
    // A held handle may have been read before: from its start again.
    checked(lseek(dirFd, 0, SEEK_SET), "lseek");
    const names: (string | Buffer)[] = [];
    for (;;) {
      const filled = checked(getdents64(dirFd, direntBuffer, direntBuffer.length), "getdents64");
      if (filled === 0) return names;
      for (let at = 0; at < filled; at += direntBuffer.readUInt16LE(at + DIRENT_RECLEN)) {
        const name = nameOfDirent(at);
        if (name !== "." && name !== "..") names.push(name);
      }
    }
  };
}

/** The name of the dirent at `at` in `direntBuffer`: a string when it is ASCII, else a copy of its bytes. */
function nameOfDirent(at: number): string | Buffer {
  const start = at + DIRENT_NAME;
  let end = start;
  let ascii = true;
  for (let byte = direntBuffer[end]!; byte !== 0; byte = direntBuffer[++end]!) if (byte >= 0x80) ascii = false;
  return ascii ? direntBuffer.toString("latin1", start, end) : Buffer.from(direntBuffer.subarray(start, end));
}

/** statx's mask for what stat(2) says (type, mode, nlink, uid, gid, times, ino, size, blocks). */
const STATX_BASIC_STATS = 0x7ff;
/** One struct statx (256 bytes), reused by every call (a thread has its own instance of this module). */
const statxBuffer = Buffer.alloc(256);
/** ...read as 32-bit words in the machine's byte order, which is the struct's. */
const statxWords = new Uint32Array(statxBuffer.buffer, statxBuffer.byteOffset, 64);

/**
 * The EntryStat of the struct statx in `statxBuffer` (its layout is the same on every Linux architecture),
 * built in one object: a listing states every entry, and an intermediate copy of each was a third of a
 * no-change walk's allocations.
 */
function entryStatOfStatx(): EntryStat {
  const w = statxWords;
  const mode = w[0x1c / 4]! & 0xffff;
  // struct statx_timestamp: a signed 64-bit tv_sec, then a 32-bit tv_nsec.
  const mtime = { sec: (w[0x74 / 4]! | 0) * 2 ** 32 + w[0x70 / 4]!, nsec: w[0x78 / 4]! };
  const ctimeSec = (w[0x64 / 4]! | 0) * 2 ** 32 + w[0x60 / 4]!;
  // stx_dev_major and stx_dev_minor, as glibc's makedev combines them (what st_dev holds, and Node reports).
  const major = w[0x88 / 4]!;
  const minor = w[0x8c / 4]!;
  return {
    kind: kindOfMode(mode),
    size: w[0x2c / 4]! * 2 ** 32 + w[0x28 / 4]!,
    mtimeMs: millisecondsOf(mtime.sec, mtime.nsec),
    ctimeMs: millisecondsOf(ctimeSec, w[0x68 / 4]!),
    mtime,
    mode: mode & 0o7777,
    ino: w[0x24 / 4]! * 2 ** 32 + w[0x20 / 4]!,
    dev:
      ((major & 0xfffff000) >>> 0) * 2 ** 32 +
      (major & 0xfff) * 2 ** 8 +
      ((minor & 0xffffff00) >>> 0) * 2 ** 12 +
      (minor & 0xff),
    nlink: w[0x10 / 4]!,
    uid: w[0x14 / 4]!,
    gid: w[0x18 / 4]!,
  };
}

const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK } = constants;

/** The kind of entry an st_mode's type bits say (shared with Node's lstat, so both state entries alike). */
export function kindOfMode(mode: number): EntryKind {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "file";
    case S_IFDIR:
      return "dir";
    case S_IFLNK:
      return "symlink";
    default:
      return "special";
  }
}

/** Milliseconds exactly as Node's number stats compute them, so both kinds of stat compare equal. */
export function millisecondsOf(sec: number, nsec: number): number {
  return sec * 1e3 + nsec / 1e6;
}

function timespec(time: Timestamp): { tv_sec: number; tv_nsec: number } {
  return { tv_sec: time.sec, tv_nsec: time.nsec };
}

/** koffi passes a string as UTF-8 with its NUL; a Buffer (a name with raw bytes) needs its own NUL. */
function cString(name: string | Buffer): string | Buffer {
  return typeof name === "string" ? name : Buffer.concat([name, Buffer.of(0)]);
}

let systemErrors: Map<number, [string, string]> | undefined;

/** An error shaped like Node's own errno errors ("CODE: description, syscall"), so callers map it alike. */
function errnoError(errno: number, syscall: string): NodeJS.ErrnoException {
  // Built once: getSystemErrorMap makes a new map of every errno at each call.
  systemErrors ??= getSystemErrorMap();
  const [code, description] = systemErrors.get(-errno) ?? [`E${errno}`, "unknown error"];
  return Object.assign(new Error(`${code}: ${description}, ${syscall}`), { code, errno: -errno, syscall });
}

/** Below this size glibc serves a block from its heap, where a freed one is reused, not unmapped. */
const ALLOCATOR_MMAP_BYTES = 16 * 1024 * 1024;
/** Free memory glibc may keep at the top of its heap for reuse before it returns it to the kernel. */
const ALLOCATOR_TRIM_BYTES = 64 * 1024 * 1024;

/**
 * Lets a process that moves content reuse the memory of the buffers it has freed. Each upload's frame,
 * its pieces and the buffers packing them are megabytes, freed in batches by garbage collection; by
 * default glibc maps the largest afresh each time and hands the top of its heap back past a few MiB, so
 * the next buffers fault every page in again (zeroed by the kernel): a 512 MiB copy took ≈ 100k page
 * faults, ≈ 58k with these thresholds, and 5–10 % less time. At most ALLOCATOR_TRIM_BYTES stay mapped
 * unused. Best effort: where glibc refuses or koffi is missing, the defaults stay.
 */
export function keepFreedBuffersForReuse(): void {
  loadNativeCalls()?.setAllocatorThresholds(ALLOCATOR_MMAP_BYTES, ALLOCATOR_TRIM_BYTES);
}
