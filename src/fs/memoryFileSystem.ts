import { posix } from "node:path";
import { byteLengthOfName } from "./byteNames.js";
import {
  type CommitFailure,
  type DirEntryStat,
  type EntryMetadata,
  type EntryStat,
  FileSystemError,
  type FileSystemEvent,
  type MirrorFileSystem,
  normalizePath,
  RESERVED_PREFIX,
  type StagedFile,
  type StagedWriter,
  type Timestamp,
  type WatchCallback,
} from "./fileSystem.js";

/** Construction options of `MemoryFileSystem`. */
export interface MemoryFileSystemOptions {
  /** Clock for mtime/ctime, in ms; defaults to a counter that starts at 1 and increases by 1 per reading. */
  now?: () => number;
  /** Owner of new entries (the root directory included); defaults to 0, as for a process running as root. */
  uid?: number;
  /** Group of new entries; defaults to 0. */
  gid?: number;
}

/** What Linux keeps in an inode; a hard-linked file is one object under several names. */
interface Inode {
  ino: number;
  /** The 12 permission bits. */
  mode: number;
  mtime: Timestamp;
  ctimeMs: number;
  uid: number;
  gid: number;
  /** Set by `setImmutable` (instrumentation standing in for `chattr +i`). */
  immutable: boolean;
}

interface MemoryFile extends Inode {
  kind: "file";
  bytes: Uint8Array;
  /** Names referencing this object; a file leaves the tree when it reaches 0 (nothing else holds it). */
  nlink: number;
}

interface MemoryDir extends Inode {
  kind: "dir";
  children: Map<string, MemoryEntry>;
}

interface MemorySymlink extends Inode {
  kind: "symlink";
  target: string;
}

type MemoryEntry = MemoryFile | MemoryDir | MemorySymlink;

const DEFAULT_FILE_MODE = 0o644;
const DEFAULT_DIR_MODE = 0o755;
const SYMLINK_MODE = 0o777;
/** Mode of a temp while it is being written piece by piece, as the disk's `openStaged` creates it when not told the final mode. */
const STAGING_MODE = 0o600;
/** chmod(2) keeps exactly these: rwx for three classes plus setuid, setgid and sticky. */
const MODE_BITS = 0o7777;
const SETUID = 0o4000;
const SETGID = 0o2000;
const GROUP_EXECUTE = 0o010;
/** chown(2) and utimensat(2) limits: ids are unsigned 32-bit (all ones means "unchanged"), nsec below 1e9. */
const MAX_ID = 0xfffffffe;
const NSEC_PER_SEC = 1_000_000_000;
/** Separates labelled internal names (`internalName`) from temp names, which are digits after the instance part. */
const LABEL_MARK = "@";
/** Every entry of one instance lives on one (pretend) device, so `(dev, ino)` identifies an inode. */
const MEMORY_DEVICE = 1;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8");

/** Numbers instances, so that each has its own internal names (a deterministic stand-in for the disk's random part). */
let instancesCreated = 0;

/**
 * The seed's mock file system: an in-memory tree rooted at "/", plus test instrumentation
 * (operation counters, the watch map, `handleEvent`, `setImmutable`).
 *
 * It raises the error codes Linux raises, with these choices where Linux would follow a symlink:
 * no operation follows one. A symlink as an intermediate path component fails with ENOTDIR;
 * `readFile` on a symlink fails with ELOOP, as an `O_NOFOLLOW` open does; `listDir`, `removeDir`
 * and `watchDir` on a symlink fail with ENOTDIR; `writeFile` and `writeFileWith` replace the link
 * itself (as the real disk's temp-file-and-rename does); `setMetadata` sets the link's own owner and
 * mtime and ignores a mode, as lchown/utimensat(AT_SYMLINK_NOFOLLOW) do.
 *
 * It acts as root: chown to any owner is allowed and permission bits never refuse an operation.
 * Times come from the injected clock; like Linux, creating, removing or renaming an entry updates
 * its directory's mtime and ctime, and a metadata or link-count change updates the entry's ctime.
 * `writeFile` over an existing file writes in place (same inode, as write(2) does, so another hard
 * link sees the new bytes); `writeFileWith` and commits replace the name (a new inode, as rename does).
 *
 * Staged files are real entries under hidden internal names beside their final paths, exactly as on
 * disk: they count toward their directory (mtime, link counts) and vanish with it.
 *
 * Watches are keyed by path and outlive the directory: removing a watched directory does not
 * release its watch, so a caller must remember its watches and unwatch them (the seed's rule).
 * The mock never emits events; a test mutates the tree, then calls `handleEvent`.
 */
export class MemoryFileSystem implements MirrorFileSystem {
  private readonly now: () => number;
  private readonly uid: number;
  private readonly gid: number;
  /** RESERVED_PREFIX plus this instance's part; a temp's name is this plus a decimal counter. */
  private readonly internalPrefix: string;
  private nextIno = 1;
  private nextTemp = 1;
  private readonly root: MemoryDir;
  private readonly watches = new Map<string, WatchCallback>();
  private readonly operationCounts = new Map<string, number>();

  constructor(options: MemoryFileSystemOptions = {}) {
    let tick = 0;
    this.now = options.now ?? (() => ++tick);
    this.uid = options.uid ?? 0;
    this.gid = options.gid ?? 0;
    instancesCreated += 1;
    this.internalPrefix = `${RESERVED_PREFIX}m${instancesCreated}-`;
    this.root = this.newDir(this.clock());
  }

  // ---- instrumentation -------------------------------------------------------------------

  /** How many times the operation `name` (e.g. "writeFile") was called, internal calls and failures included. */
  getNumOperations(name: string): number {
    return this.operationCounts.get(name) ?? 0;
  }

  /** How many paths currently hold a watch callback (removed directories included until unwatched). */
  numWatchedDirs(): number {
    return this.watches.size;
  }

  /** Delivers `event` to the callback watching `dirname(event.path)`, if any; otherwise does nothing. */
  handleEvent(event: FileSystemEvent): void {
    const path = normalizePath(event.path);
    if (path === "/") return;
    this.watches.get(posix.dirname(path))?.(event);
  }

  /**
   * Instrumentation standing in for `chattr +i` / `chattr -i` (not counted as an operation): while set,
   * the entry cannot be written, removed, renamed, replaced, hard-linked or have its metadata changed
   * (EPERM), and an immutable directory's children cannot be added, removed or renamed (EPERM).
   */
  setImmutable(path: string, immutable: boolean): void {
    this.get(normalizePath(path)).immutable = immutable;
  }

  // ---- the seed's operations ---------------------------------------------------------------

  exists(path: string): boolean {
    this.count("exists");
    const normalized = normalizePath(path);
    try {
      return this.find(normalized) !== undefined;
    } catch (error) {
      // A file or symlink in the middle of the path means nothing exists there.
      if (error instanceof FileSystemError) return false;
      throw error;
    }
  }

  isFile(path: string): boolean {
    this.count("isFile");
    return this.get(normalizePath(path)).kind === "file";
  }

  isDir(path: string): boolean {
    this.count("isDir");
    return this.get(normalizePath(path)).kind === "dir";
  }

  readFile(path: string): Uint8Array {
    this.count("readFile");
    const normalized = normalizePath(path);
    const entry = this.get(normalized);
    if (entry.kind === "dir") throw new FileSystemError("EISDIR", normalized);
    if (entry.kind === "symlink") throw new FileSystemError("ELOOP", normalized, "is a symlink (not followed)");
    return entry.bytes.slice();
  }

  writeFile(path: string, content: Uint8Array | string): void {
    this.count("writeFile");
    const { normalized, parent, name, existing } = this.fileSlot(path);
    const bytes = toOwnedBytes(content);
    if (existing?.kind === "file") {
      // An in-place overwrite keeps the inode, as write(2) does: every hard link sees the new bytes.
      assertMutable(existing, normalized);
      existing.bytes = bytes;
      const now = this.clock();
      existing.mtime = timestampOfMs(now);
      existing.ctimeMs = now;
      return;
    }
    this.assertCanReplace(parent, existing, normalized);
    const now = this.clock();
    this.attach(parent, name, this.newFile(bytes, DEFAULT_FILE_MODE, now), now);
  }

  removeFile(path: string): void {
    this.count("removeFile");
    const normalized = normalizePath(path);
    if (normalized === "/") throw new FileSystemError("EISDIR", normalized);
    const { parent, name } = this.parentOf(normalized);
    const entry = parent.children.get(name);
    if (entry === undefined) throw new FileSystemError("ENOENT", normalized);
    if (entry.kind === "dir") throw new FileSystemError("EISDIR", normalized);
    this.assertCanReplace(parent, entry, normalized);
    this.detach(parent, name, this.clock());
  }

  listDir(path: string): string[] {
    this.count("listDir");
    const normalized = normalizePath(path);
    const entry = this.get(normalized);
    if (entry.kind !== "dir") throw new FileSystemError("ENOTDIR", normalized);
    return this.visibleNames(entry);
  }

  makeDir(path: string): void {
    this.count("makeDir");
    const normalized = normalizePath(path);
    if (normalized === "/") return;
    const { parent, name } = this.parentOf(normalized);
    const existing = parent.children.get(name);
    if (existing?.kind === "dir") return;
    if (existing !== undefined) throw new FileSystemError("EEXIST", normalized);
    this.assertCanReplace(parent, undefined, normalized);
    const now = this.clock();
    this.attach(parent, name, this.newDir(now), now);
  }

  makeDirs(path: string): void {
    this.count("makeDirs");
    const normalized = normalizePath(path);
    const names = components(normalized);
    let dir = this.root;
    let prefix = "";
    for (const [index, name] of names.entries()) {
      prefix = `${prefix}/${name}`;
      let child = dir.children.get(name);
      if (child === undefined) {
        // Through the public method, so the counters see one makeDir per missing level.
        this.makeDir(prefix);
        child = dir.children.get(name)!;
      }
      if (child.kind !== "dir") {
        throw new FileSystemError(index === names.length - 1 ? "EEXIST" : "ENOTDIR", normalized);
      }
      dir = child;
    }
  }

  removeDir(path: string): void {
    this.count("removeDir");
    const normalized = normalizePath(path);
    if (normalized === "/") throw new FileSystemError("EINVAL", normalized, "cannot remove the root");
    const { parent, name } = this.parentOf(normalized);
    const entry = parent.children.get(name);
    if (entry === undefined) throw new FileSystemError("ENOENT", normalized);
    if (entry.kind !== "dir") throw new FileSystemError("ENOTDIR", normalized);
    this.assertCanReplace(parent, entry, normalized);
    // Children go through the public methods so the counters see them; a symlink is unlinked, never entered.
    for (const childName of this.visibleNames(entry)) {
      const childPath = posix.join(normalized, childName);
      if (entry.children.get(childName)?.kind === "dir") this.removeDir(childPath);
      else this.removeFile(childPath);
    }
    // What is left is this instance's internal entries (temps, a stash): uncounted, but unlinked one by one
    // so that the link counts of files with names elsewhere stay right.
    const now = this.clock();
    this.detachTree(parent, name, now);
  }

  watchDir(path: string, callback: WatchCallback): void {
    this.count("watchDir");
    const normalized = normalizePath(path);
    const entry = this.get(normalized);
    if (entry.kind !== "dir") throw new FileSystemError("ENOTDIR", normalized);
    if (this.watches.has(normalized)) throw new FileSystemError("EALREADYWATCHED", normalized);
    this.watches.set(normalized, callback);
  }

  unwatchDir(path: string): void {
    this.count("unwatchDir");
    const normalized = normalizePath(path);
    // Deliberately no existence check: a removed directory's watch must still be releasable.
    if (!this.watches.delete(normalized)) throw new FileSystemError("ENOTWATCHED", normalized);
  }

  debugString(path: string): string {
    this.count("debugString");
    const normalized = normalizePath(path);
    const entry = this.get(normalized);
    if (entry.kind !== "dir") throw new FileSystemError("ENOTDIR", normalized);
    return [path, ...this.renderChildren(entry)].join("\n");
  }

  // ---- MirrorFileSystem extras -----------------------------------------------------------

  lstat(path: string): EntryStat {
    this.count("lstat");
    const entry = this.get(normalizePath(path));
    return {
      kind: entry.kind,
      size: sizeOf(entry),
      mtimeMs: msOfTimestamp(entry.mtime),
      ctimeMs: entry.ctimeMs,
      mtime: { sec: entry.mtime.sec, nsec: entry.mtime.nsec },
      mode: entry.mode,
      ino: entry.ino,
      dev: MEMORY_DEVICE,
      nlink: linkCountOf(entry),
      uid: entry.uid,
      gid: entry.gid,
    };
  }

  readLink(path: string): string {
    this.count("readLink");
    const normalized = normalizePath(path);
    const entry = this.get(normalized);
    if (entry.kind !== "symlink") throw new FileSystemError("EINVAL", normalized, "not a symlink");
    return entry.target;
  }

  makeSymlink(path: string, target: string): void {
    this.count("makeSymlink");
    const normalized = normalizePath(path);
    if (normalized === "/") throw new FileSystemError("EEXIST", normalized);
    const { parent, name } = this.parentOf(normalized);
    if (parent.children.has(name)) throw new FileSystemError("EEXIST", normalized);
    // symlink(2) refuses an empty target with ENOENT; a NUL cannot be stored in one.
    if (target === "") throw new FileSystemError("ENOENT", normalized, "empty symlink target");
    if (target.includes("\0")) throw new FileSystemError("EINVAL", normalized, "symlink target contains NUL");
    this.assertCanReplace(parent, undefined, normalized);
    const now = this.clock();
    this.attach(parent, name, { kind: "symlink", target, ...this.newInode(SYMLINK_MODE, now) }, now);
  }

  /** Counted as a "writeFile" (it is a write of a file), not under its own name. */
  writeFileWith(path: string, content: Uint8Array, metadata: EntryMetadata): void {
    this.count("writeFile");
    const { normalized, parent, name, existing } = this.fileSlot(path);
    validateMetadata(metadata, normalized);
    this.assertCanReplace(parent, existing, normalized);
    const now = this.clock();
    this.attach(parent, name, this.replacementFile(existing, content, metadata, now), now);
  }

  isInternalName(name: string): boolean {
    if (!name.startsWith(this.internalPrefix)) return false;
    const rest = name.slice(this.internalPrefix.length);
    return /^[0-9]+$/.test(rest) || (rest.startsWith(LABEL_MARK) && rest.length > LABEL_MARK.length);
  }

  /** `RESERVED_PREFIX`, this instance's part, then "@label": never equal to a temp's name (digits there). */
  internalName(label: string): string {
    if (label === "" || label.includes("/") || label.includes("\0")) {
      throw new FileSystemError("EINVAL", label, "an internal name's label must be a non-empty name component");
    }
    return `${this.internalPrefix}${LABEL_MARK}${label}`;
  }

  /** Counted as "stageFile"; the commit counts as the "writeFile" (the seed's minimal-writes rule counts those). */
  stageFile(path: string, content: Uint8Array, metadata: EntryMetadata): StagedFile {
    this.count("stageFile");
    const { normalized, parent, existing } = this.stageSlot(path);
    validateMetadata(metadata, normalized);
    const now = this.clock();
    return this.attachTemp(parent, normalized, this.replacementFile(existing, content, metadata, now), now);
  }

  /**
   * A fresh entry (new inode) for `content` replacing `existing`, as the real disk's temp-file-and-rename
   * gives: the old file's mode survives unless `metadata` states one.
   */
  private replacementFile(
    existing: MemoryEntry | undefined,
    content: Uint8Array,
    metadata: EntryMetadata,
    now: number,
  ): MemoryFile {
    const file = this.newFile(
      toOwnedBytes(content),
      existing?.kind === "file" ? existing.mode : DEFAULT_FILE_MODE,
      now,
    );
    applyMetadata(file, metadata, now);
    return file;
  }

  openStaged(path: string): StagedWriter {
    this.count("openStaged");
    const { normalized, parent } = this.stageSlot(path);
    const now = this.clock();
    // The temp exists from the start, as on disk; its bytes are joined once, at finish.
    const file = this.newFile(new Uint8Array(0), STAGING_MODE, now);
    const staged = this.attachTemp(parent, normalized, file, now);
    const pieces: Uint8Array[] = [];
    let size = 0;
    let open = true;
    const assertOpen = () => {
      if (!open) throw new FileSystemError("EBADF", normalized, "staged file already closed");
    };
    return {
      path: normalized,
      get size() {
        return size;
      },
      write: (bytes) => {
        assertOpen();
        pieces.push(toOwnedBytes(bytes));
        size += bytes.length;
      },
      finish: (metadata) => {
        assertOpen();
        validateMetadata(metadata, normalized);
        open = false;
        const finishedAt = this.clock();
        file.bytes = concatenated(pieces, size);
        file.mtime = timestampOfMs(finishedAt);
        // As the disk's writer: the mode of the file it replaces unless given (looked up now, at finish).
        const current = this.findQuietly(normalized);
        file.mode = current?.kind === "file" ? current.mode : DEFAULT_FILE_MODE;
        applyMetadata(file, metadata, finishedAt);
        return staged;
      },
      abort: () => {
        open = false;
        this.discardQuietly(staged);
      },
    };
  }

  /** A real move (same inode, its other hard links kept), counted as "stageExisting". */
  stageExisting(from: string, path: string, metadata: EntryMetadata): StagedFile {
    this.count("stageExisting");
    const source = normalizePath(from);
    if (source === "/") throw new FileSystemError("EINVAL", source, "not a regular file");
    const { parent: sourceParent, name: sourceName } = this.parentOf(source);
    const entry = sourceParent.children.get(sourceName);
    if (entry === undefined) throw new FileSystemError("ENOENT", source);
    if (entry.kind !== "file") throw new FileSystemError("EINVAL", source, "not a regular file");
    const { normalized, parent } = this.stageSlot(path);
    validateMetadata(metadata, normalized);
    this.assertCanReplace(sourceParent, entry, source);
    const now = this.clock();
    this.detach(sourceParent, sourceName, now);
    applyMetadata(entry, metadata, now);
    return this.attachTemp(parent, normalized, entry, now);
  }

  /** A second name for the same file object (same inode, link count up), counted as "stageLink". */
  stageLink(existing: string, path: string): StagedFile {
    this.count("stageLink");
    const source = normalizePath(existing);
    const entry = this.get(source);
    if (entry.kind !== "file") throw new FileSystemError("EINVAL", source, "not a regular file");
    // link(2) refuses an immutable file with EPERM.
    assertMutable(entry, source);
    const { normalized, parent } = this.stageSlot(path);
    return this.attachTemp(parent, normalized, entry, this.clock());
  }

  /**
   * Renames each staged temp onto its final path; a file that cannot be (its temp gone, a directory or an
   * immutable entry in the way) fails alone with the code rename(2) gives. Each commit counts as one
   * "writeFile"; a failed one is not a write and does not count.
   */
  commitStaged(files: readonly StagedFile[]): CommitFailure[] {
    this.count("commitStaged");
    const failures: CommitFailure[] = [];
    for (const file of files) {
      const foreign = this.foreignStagedError(file);
      if (foreign !== undefined) {
        // Not ours to discard: whatever that temp path names is left alone.
        failures.push({ file, error: foreign });
        continue;
      }
      try {
        this.commitOne(file);
        this.count("writeFile");
      } catch (error) {
        if (!(error instanceof FileSystemError)) throw error;
        this.discardQuietly(file);
        failures.push({ file, error });
      }
    }
    return failures;
  }

  discardStaged(files: readonly StagedFile[]): void {
    this.count("discardStaged");
    for (const file of files) this.discardQuietly(file);
  }

  lstatIfExists(path: string): EntryStat | undefined {
    const normalized = normalizePath(path);
    try {
      return this.lstat(normalized);
    } catch (error) {
      if (error instanceof FileSystemError && (error.code === "ENOENT" || error.code === "ENOTDIR")) return undefined;
      throw error;
    }
  }

  listDirStats(path: string): DirEntryStat[] {
    const normalized = normalizePath(path);
    return this.listDir(normalized)
      .sort()
      .map((name) => ({ name, stat: this.lstat(posix.join(normalized, name)) }));
  }

  readFileRange(path: string, offset: number, length: number, into?: Uint8Array): Uint8Array {
    const bytes = this.readFile(path).subarray(offset, offset + length);
    if (into === undefined) return bytes;
    into.set(bytes);
    return into.subarray(0, bytes.length);
  }

  readFileStated(path: string): { bytes: Uint8Array; stat: EntryStat } {
    const bytes = this.readFile(path);
    return { bytes, stat: this.lstat(path) };
  }

  /** Memory has nothing to make durable. */
  flush(): void {}

  /** Memory caches no directory handles. */
  releaseHandles(): void {}

  forgetHandlesAt(_path: string): void {}

  holdHandles(): () => void {
    return () => {};
  }

  setMetadata(path: string, metadata: EntryMetadata): void {
    this.count("setMetadata");
    const normalized = normalizePath(path);
    const entry = this.get(normalized);
    validateMetadata(metadata, normalized);
    if (metadata.uid === undefined && metadata.gid === undefined && metadata.mtime === undefined) {
      // A mode alone on a symlink is ignored entirely: nothing changes, not even ctime.
      if (metadata.mode === undefined || entry.kind === "symlink") return;
    }
    assertMutable(entry, normalized);
    applyMetadata(entry, metadata, this.clock());
  }

  rename(from: string, to: string): void {
    this.count("rename");
    const source = normalizePath(from);
    const destination = normalizePath(to);
    if (source === "/") throw new FileSystemError("EINVAL", source, "cannot move the root");
    if (destination === "/") throw new FileSystemError("EINVAL", destination, "cannot replace the root");
    const { parent: sourceParent, name: sourceName } = this.parentOf(source);
    const entry = sourceParent.children.get(sourceName);
    if (entry === undefined) throw new FileSystemError("ENOENT", source);
    const { parent: destinationParent, name: destinationName } = this.parentOf(destination);
    if (source === destination) return;
    if (entry.kind === "dir" && destination.startsWith(`${source}/`)) {
      throw new FileSystemError("EINVAL", destination, `cannot move ${source} into itself`);
    }
    const existing = destinationParent.children.get(destinationName);
    // rename(2): two names of one inode is a successful no-op that leaves both names in place.
    if (existing === entry) return;
    if (existing !== undefined) {
      if (entry.kind === "dir" && existing.kind !== "dir") throw new FileSystemError("ENOTDIR", destination);
      if (entry.kind !== "dir" && existing.kind === "dir") throw new FileSystemError("EISDIR", destination);
      if (existing.kind === "dir" && existing.children.size > 0) throw new FileSystemError("ENOTEMPTY", destination);
    }
    this.assertCanReplace(sourceParent, entry, source);
    this.assertCanReplace(destinationParent, existing, destination);
    // Watches stay keyed by their old paths: rename(2) does not move inotify bookkeeping either.
    const now = this.clock();
    this.detach(sourceParent, sourceName, now);
    this.attach(destinationParent, destinationName, entry, now);
    entry.ctimeMs = now;
  }

  // ---- internals -------------------------------------------------------------------------

  /** A clock reading rounded to what a Timestamp holds, so `mtimeMs`/`ctimeMs` always agree with `mtime`. */
  private clock(): number {
    return msOfTimestamp(timestampOfMs(this.now()));
  }

  private count(operation: string): void {
    this.operationCounts.set(operation, (this.operationCounts.get(operation) ?? 0) + 1);
  }

  /** Where a file write lands: its parent and current entry; "/" or a directory there is EISDIR. */
  private fileSlot(path: string): {
    normalized: string;
    parent: MemoryDir;
    name: string;
    existing: MemoryEntry | undefined;
  } {
    const normalized = normalizePath(path);
    if (normalized === "/") throw new FileSystemError("EISDIR", normalized);
    const { parent, name } = this.parentOf(normalized);
    const existing = parent.children.get(name);
    if (existing?.kind === "dir") throw new FileSystemError("EISDIR", normalized);
    return { normalized, parent, name, existing };
  }

  /** Like `fileSlot`, for a temp beside the path: the directory must accept a new entry. */
  private stageSlot(path: string): ReturnType<MemoryFileSystem["fileSlot"]> {
    const slot = this.fileSlot(path);
    this.assertCanReplace(slot.parent, undefined, slot.normalized);
    return slot;
  }

  /** True for the name of a temp this instance staged (not a labelled internal name such as the stash). */
  private isTempName(name: string): boolean {
    return name.startsWith(this.internalPrefix) && /^[0-9]+$/.test(name.slice(this.internalPrefix.length));
  }

  /** Hangs `entry` under a fresh internal name beside `path`. */
  private attachTemp(parent: MemoryDir, path: string, entry: MemoryEntry, now: number): StagedFile {
    const tempName = `${this.internalPrefix}${this.nextTemp++}`;
    this.attach(parent, tempName, entry, now);
    return { path, tempPath: posix.join(posix.dirname(path), tempName) };
  }

  /** EINVAL unless `file` has the shape of this instance's staging: a temp name of ours beside the final path. */
  private foreignStagedError(file: StagedFile): FileSystemError | undefined {
    try {
      const path = normalizePath(file.path);
      const tempPath = normalizePath(file.tempPath);
      if (posix.dirname(tempPath) === posix.dirname(path) && this.isTempName(posix.basename(tempPath)))
        return undefined;
      return new FileSystemError("EINVAL", path, `not a file staged by this file system: ${tempPath}`);
    } catch (error) {
      if (error instanceof FileSystemError) return error;
      throw error;
    }
  }

  /** rename(temp, path) of one staged file, or the FileSystemError rename(2) would give, naming `path`. */
  private commitOne(file: StagedFile): void {
    const path = normalizePath(file.path);
    const tempName = posix.basename(file.tempPath);
    let parent: MemoryDir;
    try {
      parent = this.parentOf(path).parent;
    } catch (error) {
      // The temp lived in that directory: it went with it.
      if (error instanceof FileSystemError) throw new FileSystemError(error.code, path, undefined, { cause: error });
      throw error;
    }
    const temp = parent.children.get(tempName);
    if (temp === undefined) throw new FileSystemError("ENOENT", path, "staged temp is gone");
    const name = posix.basename(path);
    const existing = parent.children.get(name);
    if (existing?.kind === "dir") throw new FileSystemError("EISDIR", path);
    this.assertCanReplace(parent, existing, path);
    const now = this.clock();
    this.detach(parent, tempName, now);
    if (existing !== temp) this.attach(parent, name, temp, now);
    temp.ctimeMs = now;
  }

  /** Removes a staged temp if it is still there; a temp that cannot be removed is left (as unlink failing would). */
  private discardQuietly(file: StagedFile): void {
    const tempPath = normalizePath(file.tempPath);
    if (!this.isTempName(posix.basename(tempPath))) return;
    try {
      const { parent, name } = this.parentOf(tempPath);
      const temp = parent.children.get(name);
      if (temp === undefined || parent.immutable) return;
      this.detach(parent, name, this.clock());
    } catch (error) {
      if (!(error instanceof FileSystemError)) throw error;
    }
  }

  /** EPERM when `parent` is immutable or the entry to be removed or replaced (if any) is. */
  private assertCanReplace(parent: MemoryDir, entry: MemoryEntry | undefined, path: string): void {
    assertMutable(parent, posix.dirname(path));
    if (entry !== undefined) assertMutable(entry, path);
  }

  /** Puts `entry` under `name`, unlinking what stood there (the caller checked kinds and permissions). */
  private attach(parent: MemoryDir, name: string, entry: MemoryEntry, now: number): void {
    const replaced = parent.children.get(name);
    if (replaced !== undefined && replaced !== entry) this.detach(parent, name, now);
    parent.children.set(name, entry);
    if (entry.kind === "file") {
      entry.nlink += 1;
      entry.ctimeMs = now;
    }
    touch(parent, now);
  }

  /** Removes `name` from `parent` with everything below it, innermost first. */
  private detachTree(parent: MemoryDir, name: string, now: number): void {
    const entry = parent.children.get(name);
    if (entry?.kind === "dir")
      for (const childName of [...entry.children.keys()]) this.detachTree(entry, childName, now);
    this.detach(parent, name, now);
  }

  /** Removes the name `name` from `parent`; a file loses one link (the caller checked permissions). */
  private detach(parent: MemoryDir, name: string, now: number): void {
    const entry = parent.children.get(name);
    if (entry === undefined) return;
    parent.children.delete(name);
    if (entry.kind === "file") {
      entry.nlink -= 1;
      entry.ctimeMs = now;
    }
    touch(parent, now);
  }

  private parentOf(path: string): { parent: MemoryDir; name: string } {
    const names = components(path);
    let dir = this.root;
    for (const name of names.slice(0, -1)) {
      const child = dir.children.get(name);
      if (child === undefined) throw new FileSystemError("ENOENT", path);
      // A symlink in the middle is not followed: to this file system it is not a directory.
      if (child.kind !== "dir") throw new FileSystemError("ENOTDIR", path);
      dir = child;
    }
    return { parent: dir, name: names[names.length - 1]! };
  }

  private find(path: string): MemoryEntry | undefined {
    if (path === "/") return this.root;
    const { parent, name } = this.parentOf(path);
    return parent.children.get(name);
  }

  /** `find`, with a bad prefix meaning "nothing there". */
  private findQuietly(path: string): MemoryEntry | undefined {
    try {
      return this.find(path);
    } catch (error) {
      if (error instanceof FileSystemError) return undefined;
      throw error;
    }
  }

  private get(path: string): MemoryEntry {
    const entry = this.find(path);
    if (entry === undefined) throw new FileSystemError("ENOENT", path);
    return entry;
  }

  /** Children by name; this instance's own temps are hidden, as the disk's listing hides them. */
  private visibleNames(dir: MemoryDir): string[] {
    return [...dir.children.keys()].filter((name) => !this.isInternalName(name)).sort();
  }

  private renderChildren(dir: MemoryDir): string[] {
    const names = this.visibleNames(dir);
    return names.flatMap((name, index) => {
      const last = index === names.length - 1;
      const [first = "", ...rest] = this.renderEntry(name, dir.children.get(name)!);
      return [(last ? "`-- " : "|-- ") + first, ...rest.map((line) => (last ? "    " : "|   ") + line)];
    });
  }

  private renderEntry(name: string, entry: MemoryEntry): string[] {
    switch (entry.kind) {
      case "dir":
        return [`/${name}`, ...this.renderChildren(entry)];
      case "file":
        // A multi-line file continues on further lines, indented under its first.
        return `${name}: ${utf8Decoder.decode(entry.bytes)}`.split("\n");
      case "symlink":
        return [`${name} -> ${entry.target}`];
    }
  }

  private newInode(mode: number, now: number): Inode {
    return {
      ino: this.nextIno++,
      mode,
      mtime: timestampOfMs(now),
      ctimeMs: now,
      uid: this.uid,
      gid: this.gid,
      immutable: false,
    };
  }

  private newDir(now: number): MemoryDir {
    return { kind: "dir", children: new Map(), ...this.newInode(DEFAULT_DIR_MODE, now) };
  }

  /** A file no name references yet (`attach` gives it its first link). */
  private newFile(bytes: Uint8Array, mode: number, now: number): MemoryFile {
    return { kind: "file", bytes, nlink: 0, ...this.newInode(mode, now) };
  }
}

/** The clock's milliseconds as Linux keeps time: floor seconds (so before 1970 the nsec part stays positive). */
function timestampOfMs(ms: number): Timestamp {
  const sec = Math.floor(ms / 1000);
  const nsec = Math.round((ms - sec * 1000) * 1e6);
  // A fractional clock reading can round up to a whole second.
  return nsec >= NSEC_PER_SEC ? { sec: sec + 1, nsec: nsec - NSEC_PER_SEC } : { sec, nsec };
}

/** Milliseconds of a timestamp, computed as Node computes `Stats.mtimeMs`. */
function msOfTimestamp(time: Timestamp): number {
  return time.sec * 1000 + time.nsec / 1e6;
}

/** A directory's entries changed at `now` (a clock reading). */
function touch(dir: MemoryDir, now: number): void {
  dir.mtime = timestampOfMs(now);
  dir.ctimeMs = now;
}

/** EPERM for an entry marked immutable, as the kernel refuses any change to a `chattr +i` inode. */
function assertMutable(entry: MemoryEntry, path: string): void {
  if (entry.immutable) throw new FileSystemError("EPERM", path, "operation not permitted (immutable)");
}

/** EINVAL for what chown(2), chmod(2) or utimensat(2) would refuse, checked before anything changes. */
function validateMetadata(metadata: EntryMetadata, path: string): void {
  const { mode, mtime, uid, gid } = metadata;
  if (mode !== undefined && !(Number.isInteger(mode) && mode >= 0)) {
    throw new FileSystemError("EINVAL", path, `invalid mode ${mode}`);
  }
  for (const id of [uid, gid]) {
    if (id !== undefined && !(Number.isInteger(id) && id >= 0 && id <= MAX_ID)) {
      throw new FileSystemError("EINVAL", path, `invalid owner id ${id}`);
    }
  }
  if (
    mtime !== undefined &&
    !(Number.isSafeInteger(mtime.sec) && Number.isInteger(mtime.nsec) && mtime.nsec >= 0 && mtime.nsec < NSEC_PER_SEC)
  ) {
    throw new FileSystemError("EINVAL", path, `invalid mtime ${JSON.stringify(mtime)}`);
  }
}

/**
 * EntryMetadata's order: chown (only the ids given), then the 12 mode bits (never on a symlink), then
 * mtime; ctime becomes `now`. Like Linux, a chown of a non-directory clears setuid, and setgid when
 * group-execute is set, even as root; a mode given afterwards sets them again.
 */
function applyMetadata(entry: MemoryEntry, metadata: EntryMetadata, now: number): void {
  if (metadata.uid !== undefined || metadata.gid !== undefined) {
    if (metadata.uid !== undefined) entry.uid = metadata.uid;
    if (metadata.gid !== undefined) entry.gid = metadata.gid;
    if (entry.kind === "file") {
      entry.mode &= ~SETUID;
      if (entry.mode & GROUP_EXECUTE) entry.mode &= ~SETGID;
    }
  }
  if (metadata.mode !== undefined && entry.kind !== "symlink") entry.mode = metadata.mode & MODE_BITS;
  if (metadata.mtime !== undefined) entry.mtime = { sec: metadata.mtime.sec, nsec: metadata.mtime.nsec };
  entry.ctimeMs = now;
}

/** The pieces joined into one plain Uint8Array (never a Buffer: reads hand out the store's own type). */
function concatenated(pieces: readonly Uint8Array[], size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const piece of pieces) {
    bytes.set(piece, offset);
    offset += piece.length;
  }
  return bytes;
}

/** A private copy, so later changes to the caller's array do not reach the store. */
function toOwnedBytes(content: Uint8Array | string): Uint8Array {
  return typeof content === "string" ? utf8Encoder.encode(content) : new Uint8Array(content);
}

function components(path: string): string[] {
  return path === "/" ? [] : path.slice(1).split("/");
}

/** Like Linux: a file's names, 1 for a symlink, and for a directory 2 plus one per subdirectory (their ".."). */
function linkCountOf(entry: MemoryEntry): number {
  switch (entry.kind) {
    case "file":
      return entry.nlink;
    case "symlink":
      return 1;
    case "dir": {
      let subdirs = 0;
      for (const child of entry.children.values()) if (child.kind === "dir") subdirs += 1;
      return 2 + subdirs;
    }
  }
}

function sizeOf(entry: MemoryEntry): number {
  switch (entry.kind) {
    case "file":
      return entry.bytes.length;
    case "symlink":
      // lstat(2) reports a symlink's size as the byte length of its target (escapes are one byte each).
      return byteLengthOfName(entry.target);
    case "dir":
      return 0;
  }
}
