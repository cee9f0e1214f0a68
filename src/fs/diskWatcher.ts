import type { Buffer } from "node:buffer";
import { type FSWatcher, lstatSync, readFileSync, type Stats, watch } from "node:fs";
import { posix } from "node:path";
import { bytesOfName, hasByteEscapes, nameOfBytes } from "./byteNames.js";
import { type FileSystemEvent, FileSystemEventType, type WatchCallback } from "./fileSystem.js";

/** A per-path condition worth telling the operator about; it never stops the rest of the work. */
export interface FileSystemProblem {
  path: string;
  reason: string;
}

/** Listener shape of `fs.watch`: the kernel's event type and the child's name (or null). */
export type WatchListener = (eventType: string, filename: string | Buffer | null) => void;

/** Creates one non-recursive kernel watch on a directory; injectable so tests can raise ENOSPC. */
export type WatchFactory = (path: string, listener: WatchListener) => FSWatcher;

/** `fs.watch` on one directory, names as bytes (mapped to strings by `nameOfBytes`, like listings). */
export const kernelWatchFactory: WatchFactory = (path, listener) =>
  watch(syscallPath(path), { persistent: true, recursive: false, encoding: "buffer" }, listener);

/** The operator hint given when inotify runs out of watches. */
export const WATCH_LIMIT_REASON =
  "inotify watch limit reached (raise fs.inotify.max_user_watches, e.g. sysctl fs.inotify.max_user_watches=524288); falling back to periodic rescans";

/** Default size of one inotify queue: a burst this large means the kernel may have dropped events. */
export function defaultOverflowThreshold(): number {
  try {
    const value = Number.parseInt(readFileSync("/proc/sys/fs/inotify/max_queued_events", "utf8").trim(), 10);
    if (Number.isSafeInteger(value) && value > 0) return value;
  } catch {
    // Not Linux or /proc not mounted: fall back to the kernel's default queue size.
  }
  return 16384;
}

/** Settings of a `DiskWatcher`. */
export interface DiskWatcherOptions {
  onProblem: (problem: FileSystemProblem) => void;
  rescanIntervalMs: number;
  overflowThreshold: number;
  watchFactory: WatchFactory;
  /** Names the watcher must never report: the temps and stash of the file system instance it serves. */
  isInternalName: (name: string) => boolean;
}

interface WatchEntry {
  readonly dir: string;
  readonly callback: WatchCallback;
  /** Inode of the directory the kernel watch is attached to; a different inode at `dir` means it was replaced. */
  ino: number;
  watcher: FSWatcher | undefined;
  pollTimer: NodeJS.Timeout | undefined;
  /** True when polling only until the directory can be watched by the kernel again (not after ENOSPC). */
  retryKernelWatch: boolean;
}

/**
 * Kernel watches, one per directory, turned into the seed's events. Events are hints naming a path to
 * re-read: whenever a watch cannot be trusted (watch limit, watcher error, the directory itself vanished,
 * an inotify queue overflow) the watcher emits FILE_OR_SUBDIR_ADDED naming a directory to rescan instead.
 */
export class DiskWatcher {
  private readonly entries = new Map<string, WatchEntry>();
  private burstCount = 0;
  private burstOverflowed = false;
  private burstEndScheduled = false;
  private closed = false;

  constructor(private readonly options: DiskWatcherOptions) {}

  /** Number of watched directories, including those only polled. */
  get size(): number {
    return this.entries.size;
  }

  /** True when `dir` has a watch (kernel or polling). */
  has(dir: string): boolean {
    return this.entries.has(dir);
  }

  /** Starts watching `dir` (already validated as an unwatched directory with inode `ino`). */
  watch(dir: string, ino: number, callback: WatchCallback): void {
    const entry: WatchEntry = { dir, callback, ino, watcher: undefined, pollTimer: undefined, retryKernelWatch: false };
    this.closed = false;
    if (!this.startKernelWatch(entry)) this.startPolling(entry, false);
    this.entries.set(dir, entry);
  }

  /** Releases the watch of `dir`; returns false when it had none. */
  unwatch(dir: string): boolean {
    const entry = this.entries.get(dir);
    if (entry === undefined) return false;
    this.release(entry);
    this.entries.delete(dir);
    return true;
  }

  /** Releases every watcher and timer. */
  close(): void {
    for (const entry of this.entries.values()) this.release(entry);
    this.entries.clear();
    this.closed = true;
  }

  /** Returns false (after reporting) when the kernel has no watch left; other failures throw. */
  private startKernelWatch(entry: WatchEntry): boolean {
    let watcher: FSWatcher;
    try {
      watcher = this.options.watchFactory(entry.dir, (eventType, filename) =>
        this.onNotification(entry, watcher, eventType, filename),
      );
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
      this.options.onProblem({ path: entry.dir, reason: WATCH_LIMIT_REASON });
      return false;
    }
    watcher.on("error", (error: Error) => this.onWatcherError(entry, watcher, error));
    entry.watcher = watcher;
    return true;
  }

  private startPolling(entry: WatchEntry, retryKernelWatch: boolean): void {
    entry.retryKernelWatch = retryKernelWatch;
    if (entry.pollTimer !== undefined) return;
    entry.pollTimer = setInterval(() => this.onPollTick(entry), this.options.rescanIntervalMs);
    // Polling must never keep the process alive by itself.
    entry.pollTimer.unref();
  }

  private release(entry: WatchEntry): void {
    entry.watcher?.close();
    entry.watcher = undefined;
    if (entry.pollTimer !== undefined) clearInterval(entry.pollTimer);
    entry.pollTimer = undefined;
  }

  private isCurrent(entry: WatchEntry, watcher?: FSWatcher): boolean {
    return this.entries.get(entry.dir) === entry && (watcher === undefined || entry.watcher === watcher);
  }

  private onPollTick(entry: WatchEntry): void {
    if (!this.isCurrent(entry)) return;
    if (entry.retryKernelWatch) {
      const stat = lstatQuietly(entry.dir);
      if (stat?.isDirectory()) {
        entry.ino = stat.ino;
        try {
          if (this.startKernelWatch(entry)) {
            if (entry.pollTimer !== undefined) clearInterval(entry.pollTimer);
            entry.pollTimer = undefined;
          }
          // Either watched again, or out of watches (reported): polling is then the watch for good.
          entry.retryKernelWatch = false;
        } catch {
          // The directory changed between lstat and watch: try again on the next tick.
        }
      }
    }
    this.emit(entry, { path: entry.dir, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
  }

  private onWatcherError(entry: WatchEntry, watcher: FSWatcher, error: Error): void {
    if (!this.isCurrent(entry, watcher)) return;
    const code = (error as NodeJS.ErrnoException).code ?? error.message;
    this.options.onProblem({ path: entry.dir, reason: `watch failed (${code}); falling back to periodic rescans` });
    this.dropKernelWatch(entry);
  }

  /** The kernel watch no longer describes `entry.dir`: rescan it now and poll until it can be watched again. */
  private dropKernelWatch(entry: WatchEntry): void {
    entry.watcher?.close();
    entry.watcher = undefined;
    this.startPolling(entry, true);
    this.emit(entry, { path: entry.dir, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
  }

  private onNotification(
    entry: WatchEntry,
    watcher: FSWatcher,
    eventType: string,
    filename: string | Buffer | null,
  ): void {
    if (!this.isCurrent(entry, watcher)) return;
    this.countBurst();
    // During a flood the kernel may have dropped events: the whole-tree rescan hint at its end covers these.
    if (this.burstOverflowed) return;
    const name = decodeName(filename);
    if (name === undefined) {
      this.emit(entry, { path: entry.dir, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
      return;
    }
    if (this.options.isInternalName(name)) return;
    // libuv reports events on the watched directory itself (deleted, moved away) under its own basename.
    if (name === posix.basename(entry.dir) && !this.stillWatchesSameDirectory(entry)) {
      this.dropKernelWatch(entry);
      return;
    }
    const path = entry.dir === "/" ? `/${name}` : `${entry.dir}/${name}`;
    if (eventType === "change") {
      this.emit(entry, { path, eventType: FileSystemEventType.FILE_MODIFIED });
      return;
    }
    const present = lstatQuietly(path) !== undefined;
    this.emit(entry, {
      path,
      eventType: present ? FileSystemEventType.FILE_OR_SUBDIR_ADDED : FileSystemEventType.FILE_OR_SUBDIR_REMOVED,
    });
  }

  private stillWatchesSameDirectory(entry: WatchEntry): boolean {
    const stat = lstatQuietly(entry.dir);
    return stat?.isDirectory() === true && stat.ino === entry.ino;
  }

  /** Counts notifications delivered in one macrotask (libuv drains the inotify queue in one go). */
  private countBurst(): void {
    this.burstCount += 1;
    if (this.burstCount >= this.options.overflowThreshold) this.burstOverflowed = true;
    if (this.burstEndScheduled) return;
    this.burstEndScheduled = true;
    setImmediate(() => this.endBurst());
  }

  private endBurst(): void {
    const overflowed = this.burstOverflowed;
    this.burstCount = 0;
    this.burstOverflowed = false;
    this.burstEndScheduled = false;
    if (!overflowed || this.closed) return;
    for (const entry of this.rootMostEntries()) {
      this.options.onProblem({
        path: entry.dir,
        reason: `burst of at least ${this.options.overflowThreshold} watch notifications (inotify queue may have overflowed); rescanning`,
      });
      this.emit(entry, { path: entry.dir, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
    }
  }

  /** Watched directories with no watched ancestor: rescanning them covers every watched directory. */
  private rootMostEntries(): WatchEntry[] {
    const roots: WatchEntry[] = [];
    for (const entry of this.entries.values()) {
      let ancestor = entry.dir;
      let covered = false;
      while (ancestor !== "/") {
        ancestor = posix.dirname(ancestor);
        if (this.entries.has(ancestor)) {
          covered = true;
          break;
        }
      }
      if (!covered) roots.push(entry);
    }
    return roots;
  }

  /** Delivers one hint; a throwing consumer is reported, never allowed to crash the event loop. */
  private emit(entry: WatchEntry, event: FileSystemEvent): void {
    try {
      entry.callback(event);
    } catch (error) {
      this.options.onProblem({ path: event.path, reason: `watch callback threw: ${String(error)}` });
    }
  }
}

/** The name as the string listings use for its bytes, or undefined when there is none (rescan the directory). */
function decodeName(filename: string | Buffer | null): string | undefined {
  if (filename === null || filename.length === 0) return undefined;
  return typeof filename === "string" ? filename : nameOfBytes(filename);
}

/** A path as syscalls take it: its bytes when it holds names that are not UTF-8. */
function syscallPath(path: string): string | Buffer {
  return hasByteEscapes(path) ? bytesOfName(path) : path;
}

/**
 * lstat for hint decisions inside event-loop callbacks, where a throw would crash the process: any failure
 * (gone, a file in the path, no permission) counts as "not there", and the consumer's re-read finds out more.
 */
function lstatQuietly(path: string): Stats | undefined {
  try {
    return lstatSync(syscallPath(path), { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}
