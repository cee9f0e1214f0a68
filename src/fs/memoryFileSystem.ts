import { posix } from "node:path";
import {
  type DirEntryStat,
  type EntryKind,
  type EntryMetadata,
  type EntryStat,
  FileSystemError,
  type FileSystemEvent,
  isReservedName,
  type MirrorFileSystem,
  normalizePath,
  RESERVED_PREFIX,
  type StagedFile,
  type StagedWriter,
  type WatchCallback,
} from "./fileSystem.js";

/** Construction options of `MemoryFileSystem`. */
export interface MemoryFileSystemOptions {
  /** Clock for mtime/ctime, in ms; defaults to a counter that starts at 1 and increases by 1 per reading. */
  now?: () => number;
}

interface EntryAttributes {
  ino: number;
  mode: number;
  mtimeMs: number;
  ctimeMs: number;
}

interface MemoryFile extends EntryAttributes {
  kind: "file";
  bytes: Uint8Array;
}

interface MemoryDir extends EntryAttributes {
  kind: "dir";
  children: Map<string, MemoryEntry>;
}

interface MemorySymlink extends EntryAttributes {
  kind: "symlink";
  target: string;
}

type MemoryEntry = MemoryFile | MemoryDir | MemorySymlink;

const DEFAULT_FILE_MODE = 0o644;
const DEFAULT_DIR_MODE = 0o755;
const SYMLINK_MODE = 0o777;
/** Writers drop setuid/setgid/sticky (EntryMetadata's contract). */
const PERMISSION_BITS = 0o777;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8");

/**
 * The seed's mock file system: an in-memory tree rooted at "/", plus test instrumentation
 * (operation counters, the watch map, `handleEvent`).
 *
 * It raises the error codes Linux raises, with these choices where Linux would follow a symlink:
 * no operation follows one. A symlink as an intermediate path component fails with ENOTDIR;
 * `readFile` and `setMetadata` on a symlink fail with ELOOP, as an `O_NOFOLLOW` open does;
 * `listDir`, `removeDir` and `watchDir` on a symlink fail with ENOTDIR; `writeFile` and
 * `writeFileWith` replace the link itself (as the real disk's temp-file-and-rename does).
 *
 * Watches are keyed by path and outlive the directory: removing a watched directory does not
 * release its watch, so a caller must remember its watches and unwatch them (the seed's rule).
 * The mock never emits events; a test mutates the tree, then calls `handleEvent`.
 */
export class MemoryFileSystem implements MirrorFileSystem {
  private readonly now: () => number;
  private nextIno = 1;
  private readonly root: MemoryDir;
  private readonly watches = new Map<string, WatchCallback>();
  private readonly operationCounts = new Map<string, number>();
  private readonly staged = new Map<string, { bytes: Uint8Array; metadata: EntryMetadata }>();
  private nextStage = 1;

  constructor(options: MemoryFileSystemOptions = {}) {
    let tick = 0;
    this.now = options.now ?? (() => ++tick);
    this.root = this.newDir();
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
    const { parent, name, existing } = this.fileSlot(path);
    const bytes = toOwnedBytes(content);
    if (existing?.kind === "file") {
      // An in-place overwrite keeps the inode, as write(2) does.
      existing.bytes = bytes;
      existing.mtimeMs = existing.ctimeMs = this.now();
      return;
    }
    parent.children.set(name, this.newFile(bytes, DEFAULT_FILE_MODE, undefined));
    this.touch(parent);
  }

  removeFile(path: string): void {
    this.count("removeFile");
    const normalized = normalizePath(path);
    if (normalized === "/") throw new FileSystemError("EISDIR", normalized);
    const { parent, name } = this.parentOf(normalized);
    const entry = parent.children.get(name);
    if (entry === undefined) throw new FileSystemError("ENOENT", normalized);
    if (entry.kind === "dir") throw new FileSystemError("EISDIR", normalized);
    parent.children.delete(name);
    this.touch(parent);
  }

  listDir(path: string): string[] {
    this.count("listDir");
    const normalized = normalizePath(path);
    const entry = this.get(normalized);
    if (entry.kind !== "dir") throw new FileSystemError("ENOTDIR", normalized);
    return sortedNames(entry);
  }

  makeDir(path: string): void {
    this.count("makeDir");
    const normalized = normalizePath(path);
    if (normalized === "/") return;
    const { parent, name } = this.parentOf(normalized);
    const existing = parent.children.get(name);
    if (existing?.kind === "dir") return;
    if (existing !== undefined) throw new FileSystemError("EEXIST", normalized);
    parent.children.set(name, this.newDir());
    this.touch(parent);
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
    // Children go through the public methods so the counters see them; a symlink is unlinked, never entered.
    for (const childName of sortedNames(entry)) {
      const childPath = posix.join(normalized, childName);
      if (entry.children.get(childName)?.kind === "dir") this.removeDir(childPath);
      else this.removeFile(childPath);
    }
    parent.children.delete(name);
    this.touch(parent);
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
    return [path, ...renderChildren(entry)].join("\n");
  }

  // ---- MirrorFileSystem extras -----------------------------------------------------------

  lstat(path: string): EntryStat {
    this.count("lstat");
    const entry = this.get(normalizePath(path));
    return {
      kind: entry.kind satisfies EntryKind,
      size: sizeOf(entry),
      mtimeMs: entry.mtimeMs,
      ctimeMs: entry.ctimeMs,
      mode: entry.mode,
      ino: entry.ino,
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
    const now = this.now();
    parent.children.set(name, {
      kind: "symlink",
      target,
      ino: this.nextIno++,
      mode: SYMLINK_MODE,
      mtimeMs: now,
      ctimeMs: now,
    });
    this.touch(parent);
  }

  /** Counted as a "writeFile" (it is a write of a file), not under its own name. */
  writeFileWith(path: string, content: Uint8Array, metadata: EntryMetadata): void {
    this.count("writeFile");
    const { parent, name, existing } = this.fileSlot(path);
    const bytes = toOwnedBytes(content);
    const mode =
      metadata.mode !== undefined
        ? metadata.mode & PERMISSION_BITS
        : existing?.kind === "file"
          ? existing.mode
          : DEFAULT_FILE_MODE;
    // A fresh entry (new inode), as the real disk's temp-file-and-rename gives.
    parent.children.set(name, this.newFile(bytes, mode, metadata.mtimeMs));
    this.touch(parent);
  }

  /** Staged bytes are held aside (like the disk's hidden temps); counted as "writeFile" only when committed. */
  stageFile(path: string, content: Uint8Array, metadata: EntryMetadata): StagedFile {
    this.count("stageFile");
    const normalized = normalizePath(path);
    const { parent, name } = this.parentOf(normalized);
    if (parent.children.get(name)?.kind === "dir") throw new FileSystemError("EISDIR", normalized);
    const tempPath = posix.join(posix.dirname(normalized), `${RESERVED_PREFIX}${this.nextStage++}`);
    this.staged.set(tempPath, { bytes: toOwnedBytes(content), metadata });
    return { path: normalized, tempPath };
  }

  commitStaged(files: readonly StagedFile[]): void {
    for (const file of files) {
      const staged = this.staged.get(file.tempPath);
      if (staged === undefined) throw new FileSystemError("ENOENT", file.tempPath, "no such staged file");
      this.staged.delete(file.tempPath);
      this.writeFileWith(file.path, staged.bytes, staged.metadata);
    }
  }

  discardStaged(files: readonly StagedFile[]): void {
    for (const file of files) this.staged.delete(file.tempPath);
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

  openStaged(path: string): StagedWriter {
    this.count("openStaged");
    const normalized = normalizePath(path);
    const { parent, name } = this.parentOf(normalized);
    if (parent.children.get(name)?.kind === "dir") throw new FileSystemError("EISDIR", normalized);
    const pieces: Uint8Array[] = [];
    let size = 0;
    let open = true;
    return {
      path: normalized,
      get size() {
        return size;
      },
      write: (bytes) => {
        if (!open) throw new FileSystemError("EBADF", normalized, "staged file already closed");
        pieces.push(toOwnedBytes(bytes));
        size += bytes.length;
      },
      finish: (metadata) => {
        if (!open) throw new FileSystemError("EBADF", normalized, "staged file already closed");
        open = false;
        return this.stageFile(normalized, Buffer.concat(pieces), metadata);
      },
      abort: () => {
        open = false;
      },
    };
  }

  stageExisting(from: string, path: string, metadata: EntryMetadata): StagedFile {
    const source = normalizePath(from);
    const bytes = this.readFile(source);
    const mode = metadata.mode ?? this.lstat(source).mode;
    const staged = this.stageFile(path, bytes, { ...metadata, mode });
    this.removeFile(source);
    return staged;
  }

  /** Memory has nothing to make durable. */
  flush(): void {}

  setMetadata(path: string, metadata: EntryMetadata): void {
    this.count("setMetadata");
    const normalized = normalizePath(path);
    const entry = this.get(normalized);
    if (entry.kind === "symlink") throw new FileSystemError("ELOOP", normalized, "is a symlink (not followed)");
    if (metadata.mode !== undefined) entry.mode = metadata.mode & PERMISSION_BITS;
    if (metadata.mtimeMs !== undefined) entry.mtimeMs = metadata.mtimeMs;
    entry.ctimeMs = this.now();
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
    if (existing !== undefined) {
      if (entry.kind === "dir" && existing.kind !== "dir") throw new FileSystemError("ENOTDIR", destination);
      if (entry.kind !== "dir" && existing.kind === "dir") throw new FileSystemError("EISDIR", destination);
      if (existing.kind === "dir" && existing.children.size > 0) throw new FileSystemError("ENOTEMPTY", destination);
    }
    // Watches stay keyed by their old paths: rename(2) does not move inotify bookkeeping either.
    sourceParent.children.delete(sourceName);
    destinationParent.children.set(destinationName, entry);
    entry.ctimeMs = this.now();
    this.touch(sourceParent);
    if (destinationParent !== sourceParent) this.touch(destinationParent);
  }

  // ---- internals -------------------------------------------------------------------------

  private count(operation: string): void {
    this.operationCounts.set(operation, (this.operationCounts.get(operation) ?? 0) + 1);
  }

  /** The directory that holds `path` (not "/") and the last name; ENOENT/ENOTDIR for a bad prefix. */
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

  private get(path: string): MemoryEntry {
    const entry = this.find(path);
    if (entry === undefined) throw new FileSystemError("ENOENT", path);
    return entry;
  }

  private touch(dir: MemoryDir): void {
    dir.mtimeMs = dir.ctimeMs = this.now();
  }

  private newDir(): MemoryDir {
    const now = this.now();
    return {
      kind: "dir",
      children: new Map(),
      ino: this.nextIno++,
      mode: DEFAULT_DIR_MODE,
      mtimeMs: now,
      ctimeMs: now,
    };
  }

  private newFile(bytes: Uint8Array, mode: number, mtimeMs: number | undefined): MemoryFile {
    const now = this.now();
    return { kind: "file", bytes, ino: this.nextIno++, mode, mtimeMs: mtimeMs ?? now, ctimeMs: now };
  }
}

/** A private copy, so later changes to the caller's array do not reach the store. */
function toOwnedBytes(content: Uint8Array | string): Uint8Array {
  return typeof content === "string" ? utf8Encoder.encode(content) : new Uint8Array(content);
}

function components(path: string): string[] {
  return path === "/" ? [] : path.slice(1).split("/");
}

/** Children by name; mirrorlog's own temp and stash entries are hidden, as the disk's listing hides them. */
function sortedNames(dir: MemoryDir): string[] {
  return [...dir.children.keys()].filter((name) => !isReservedName(name)).sort();
}

function sizeOf(entry: MemoryEntry): number {
  switch (entry.kind) {
    case "file":
      return entry.bytes.length;
    case "symlink":
      // lstat(2) reports a symlink's size as the byte length of its target.
      return utf8Encoder.encode(entry.target).length;
    case "dir":
      return 0;
  }
}

function renderChildren(dir: MemoryDir): string[] {
  const names = sortedNames(dir);
  return names.flatMap((name, index) => {
    const last = index === names.length - 1;
    const [first = "", ...rest] = renderEntry(name, dir.children.get(name)!);
    return [(last ? "`-- " : "|-- ") + first, ...rest.map((line) => (last ? "    " : "|   ") + line)];
  });
}

function renderEntry(name: string, entry: MemoryEntry): string[] {
  switch (entry.kind) {
    case "dir":
      return [`/${name}`, ...renderChildren(entry)];
    case "file":
      // A multi-line file continues on further lines, indented under its first.
      return `${name}: ${utf8Decoder.decode(entry.bytes)}`.split("\n");
    case "symlink":
      return [`${name} -> ${entry.target}`];
  }
}
