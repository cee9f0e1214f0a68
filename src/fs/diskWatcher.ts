import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { type FSWatcher, lstatSync, readdirSync, readFileSync, type Stats, watch } from "node:fs";
import { posix } from "node:path";
import { bytesOfName, hasByteEscapes, nameOfBytes } from "./byteNames.js";
import { monotonicMs } from "./clock.js";
import { type FileSystemEvent, FileSystemEventType, type WatchCallback } from "./fileSystem.js";

/** A per-path condition worth telling the operator about; it never stops the rest of the work. */
export interface FileSystemProblem {
  path: string;
  reason: string;
}

/** Listener shape of `fs.watch`: the kernel's event type and the child's name (or null). */
export type WatchListener = (eventType: string, filename: string | Buffer | null) => void;

/**
 * Creates one non-recursive kernel watch on a directory; injectable so tests can raise ENOSPC. `limit`, when
 * set, is the number of watches the factory allows (a test cap), reported instead of the kernel's setting.
 */
export type WatchFactory = ((path: string, listener: WatchListener) => FSWatcher) & { readonly limit?: number };

/** `fs.watch` on one directory, names as bytes (mapped to strings by `nameOfBytes`, like listings). */
export const kernelWatchFactory: WatchFactory = (path, listener) =>
  watch(syscallPath(path), { persistent: true, recursive: false, encoding: "buffer" }, listener);

/**
 * Environment variable that caps this process's kernel watches (tests and benchmarks only). The real limit,
 * `fs.inotify.max_user_watches`, is one number for every process of the user: lowering it to exercise
 * running out would break every other watcher on the machine (editors, parallel test files) until it is
 * restored, and a crash would never restore it. The cap raises the kernel's own error (ENOSPC) past N
 * live watches, so everything above the factory runs exactly as on a machine whose limit is reached.
 */
export const MAX_KERNEL_WATCHES_ENV = "MIRRORLOG_MAX_KERNEL_WATCHES";

/** `factory` limited to `limit` live watches: the next one fails with ENOSPC, like inotify at its limit. */
export function cappedWatchFactory(factory: WatchFactory, limit: number): WatchFactory {
  let live = 0;
  const capped = (path: string, listener: WatchListener): FSWatcher => {
    if (live >= limit) {
      throw Object.assign(new Error(`ENOSPC: System limit for number of file watchers reached, watch '${path}'`), {
        code: "ENOSPC",
        errno: -28,
        syscall: "watch",
        path,
      });
    }
    const watcher = factory(path, listener);
    live += 1;
    watcher.once("close", () => {
      live -= 1;
    });
    return watcher;
  };
  return Object.assign(capped, { limit });
}

/** The kernel's factory, capped when MIRRORLOG_MAX_KERNEL_WATCHES holds a non-negative integer. */
export function defaultWatchFactory(env: NodeJS.ProcessEnv = process.env): WatchFactory {
  const cap = env[MAX_KERNEL_WATCHES_ENV];
  if (cap === undefined || cap === "") return kernelWatchFactory;
  const limit = Number(cap);
  if (!Number.isSafeInteger(limit) || limit < 0) {
    throw new Error(`${MAX_KERNEL_WATCHES_ENV} must be a non-negative integer, not ${JSON.stringify(cap)}`);
  }
  return cappedWatchFactory(kernelWatchFactory, limit);
}

/** The kernel's limit on inotify watches per user (`fs.inotify.max_user_watches`), or undefined off Linux. */
export function kernelWatchLimit(): number | undefined {
  try {
    const value = Number.parseInt(readFileSync("/proc/sys/fs/inotify/max_user_watches", "utf8").trim(), 10);
    return Number.isSafeInteger(value) && value > 0 ? value : undefined;
  } catch {
    // Not Linux or /proc not mounted: the message then names the setting without its value.
    return undefined;
  }
}

/** What the one watch-limit line reports. */
export interface WatchLimitReport {
  /** Directories watched in all (kernel and polled): the watches this tree needs. */
  watched: number;
  /** Of those, directories without a kernel watch, polled instead. */
  polled: number;
  /** The limit in force (the test cap, else `fs.inotify.max_user_watches`), when known. */
  limit: number | undefined;
  /** Seconds one polling round over every polled directory takes at most, at the current budget. */
  roundSeconds: number;
}

/**
 * The one line that tells the operator the watches ran out: how many directories need a watch, how many
 * have none, the limit, and the sysctl that fixes it. The suggestion adds what is missing to the limit
 * (other processes of the user hold part of it, so "the tree's size" alone could still fall short).
 */
export function watchLimitMessage(report: WatchLimitReport): string {
  const { watched, polled, limit } = report;
  const setting = limit === undefined ? "fs.inotify.max_user_watches" : `fs.inotify.max_user_watches (${limit})`;
  const suggestion = Math.max(watched, (limit ?? 0) + polled);
  return (
    `inotify watch limit reached: this tree needs ${watched} watches (one per directory), ${setting} left ` +
    `${polled} directories unwatched; they are polled instead (each about every ${Math.max(1, Math.ceil(report.roundSeconds))} s). ` +
    `Raise the limit, e.g. sysctl fs.inotify.max_user_watches=${suggestion}`
  );
}

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
  /** Operator notices that are not about one path (the watch-limit line), said once, when they happen. */
  onNotice: (message: string) => void;
  /** Period of the retries of a watch that failed or lost its directory, and of the polling rounds. */
  rescanIntervalMs: number;
  /** Milliseconds of polling per round at most (at least one directory is polled per round). */
  pollBudgetMs: number;
  overflowThreshold: number;
  watchFactory: WatchFactory;
  /** Names the watcher must never report: the temps and stash of the file system instance it serves. */
  isInternalName: (name: string) => boolean;
  /** Monotonic milliseconds, for the polling budget (default `monotonicMs`). */
  clock?: () => number;
}

interface WatchEntry {
  readonly dir: string;
  readonly callback: WatchCallback;
  /** Inode of the directory the kernel watch is attached to; a different inode at `dir` means it was replaced. */
  ino: number;
  watcher: FSWatcher | undefined;
  /** Retry timer of a watch that failed or lost its directory (not used for directories polled after ENOSPC). */
  pollTimer: NodeJS.Timeout | undefined;
  /** True when polling only until the directory can be watched by the kernel again (not after ENOSPC). */
  retryKernelWatch: boolean;
  /**
   * Polled for want of a kernel watch (ENOSPC): the digest of the directory's listing and its entries'
   * lstat when last looked at, or undefined when it could not be read then (the next look hints a rescan).
   */
  polled?: { fingerprint: string | undefined };
}

/**
 * Kernel watches, one per directory, turned into the seed's events. Events are hints naming a path to
 * re-read: whenever a watch cannot be trusted (watcher error, the directory itself vanished, an inotify
 * queue overflow) the watcher emits FILE_OR_SUBDIR_ADDED naming a directory to rescan instead.
 *
 * When the kernel has no watch left (ENOSPC), the directory is polled instead, at a bounded cost: one
 * timer for all of them, a round every `rescanIntervalMs` that looks at the least recently polled
 * directories for at most `pollBudgetMs`, and a rescan hint only for a directory whose listing or
 * entries' lstat changed. (Hinting every polled directory every round made the consumer re-read each
 * one, and re-reads grow with the tree: 5,201 polled directories of 20,201 kept a core busy for good.)
 * The shortage is told once, in one line with the counts, not once per directory.
 */
export class DiskWatcher {
  private readonly entries = new Map<string, WatchEntry>();
  /** Directories polled for want of kernel watches, least recently polled first. */
  private readonly pollQueue = new Set<WatchEntry>();
  private pollRound: NodeJS.Timeout | undefined;
  /** Polled count when the watch-limit line was last said (0: not said yet), and at the previous round. */
  private reportedPolled = 0;
  private polledAtLastRound = 0;
  /** Kernel watches this watcher let go of since the last round: a polled directory may get one back. */
  private releasedKernelWatches = 0;
  private readonly clock: () => number;
  private burstCount = 0;
  private burstOverflowed = false;
  private burstEndScheduled = false;
  private closed = false;

  constructor(private readonly options: DiskWatcherOptions) {
    this.clock = options.clock ?? monotonicMs;
  }

  /** Number of watched directories, including those only polled. */
  get size(): number {
    return this.entries.size;
  }

  /** Number of watched directories that have no kernel watch for want of one (ENOSPC) and are polled. */
  get polledCount(): number {
    return this.pollQueue.size;
  }

  /** True when `dir` has a watch (kernel or polling). */
  has(dir: string): boolean {
    return this.entries.has(dir);
  }

  /** Starts watching `dir` (already validated as an unwatched directory with inode `ino`). */
  watch(dir: string, ino: number, callback: WatchCallback): void {
    const entry: WatchEntry = { dir, callback, ino, watcher: undefined, pollTimer: undefined, retryKernelWatch: false };
    this.closed = false;
    if (!this.startKernelWatch(entry)) this.startPollingForLimit(entry);
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

  /** Returns false when the kernel has no watch left (ENOSPC); other failures throw. */
  private startKernelWatch(entry: WatchEntry): boolean {
    let watcher: FSWatcher;
    try {
      watcher = this.options.watchFactory(entry.dir, (eventType, filename) =>
        this.onNotification(entry, watcher, eventType, filename),
      );
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
      return false;
    }
    watcher.on("error", (error: Error) => this.onWatcherError(entry, watcher, error));
    entry.watcher = watcher;
    return true;
  }

  /**
   * Polls `entry` for want of a kernel watch. Its first fingerprint is taken now, before the caller lists
   * the directory (as a kernel watch would be in place before the listing), so no change after it is missed.
   */
  private startPollingForLimit(entry: WatchEntry): void {
    entry.polled = { fingerprint: fingerprintOf(entry.dir, this.options.isInternalName) };
    this.pollQueue.add(entry);
    if (this.pollRound === undefined) {
      this.pollRound = setInterval(() => this.onPollRound(), this.options.rescanIntervalMs);
      // Polling must never keep the process alive by itself.
      this.pollRound.unref();
    }
  }

  private startPolling(entry: WatchEntry, retryKernelWatch: boolean): void {
    entry.retryKernelWatch = retryKernelWatch;
    if (entry.pollTimer !== undefined) return;
    entry.pollTimer = setInterval(() => this.onPollTick(entry), this.options.rescanIntervalMs);
    // Polling must never keep the process alive by itself.
    entry.pollTimer.unref();
  }

  private release(entry: WatchEntry): void {
    if (entry.watcher !== undefined) this.releasedKernelWatches += 1;
    entry.watcher?.close();
    entry.watcher = undefined;
    if (entry.pollTimer !== undefined) clearInterval(entry.pollTimer);
    entry.pollTimer = undefined;
    this.stopPollingForLimit(entry);
  }

  private stopPollingForLimit(entry: WatchEntry): void {
    if (!this.pollQueue.delete(entry)) return;
    entry.polled = undefined;
    if (this.pollQueue.size === 0 && this.pollRound !== undefined) {
      clearInterval(this.pollRound);
      this.pollRound = undefined;
      this.reportedPolled = 0;
      this.polledAtLastRound = 0;
    }
  }

  /**
   * One polling round: kernel watches freed meanwhile go to polled directories first, then the least
   * recently polled directories are looked at until the budget is spent (at least one, so every
   * directory's turn comes), each moved to the back of the queue. Once the number of polled directories
   * stopped growing (the walk that watches them is over), the shortage is told in one line.
   */
  private onPollRound(): void {
    this.regainKernelWatches();
    const deadline = this.clock() + this.options.pollBudgetMs;
    const rounds = this.pollQueue.size;
    for (let looked = 0; looked < rounds; looked++) {
      const entry = this.pollQueue.values().next().value as WatchEntry;
      this.pollQueue.delete(entry);
      this.pollQueue.add(entry);
      this.pollOnce(entry);
      if (this.clock() >= deadline) break;
    }
    this.reportShortage();
  }

  /** Hints a rescan of `entry.dir` when its listing or an entry's lstat changed since the last look. */
  private pollOnce(entry: WatchEntry): void {
    const polled = entry.polled;
    if (polled === undefined) return;
    const fingerprint = fingerprintOf(entry.dir, this.options.isInternalName);
    const changed = fingerprint === undefined || fingerprint !== polled.fingerprint;
    polled.fingerprint = fingerprint;
    if (changed) this.emit(entry, { path: entry.dir, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
  }

  /**
   * Tries kernel watches for polled directories while they succeed: once per round at least (another
   * process may have freed some), and as often as this watcher released kernel watches since.
   */
  private regainKernelWatches(): void {
    let attempts = Math.max(1, this.releasedKernelWatches);
    this.releasedKernelWatches = 0;
    while (attempts-- > 0 && this.pollQueue.size > 0) {
      const entry = this.pollQueue.values().next().value as WatchEntry;
      let watched: boolean;
      try {
        watched = this.startKernelWatch(entry);
      } catch (error) {
        // The directory went or changed: its next look (a changed fingerprint) hints the rescan.
        this.pollQueue.delete(entry);
        this.pollQueue.add(entry);
        this.options.onProblem({ path: entry.dir, reason: `watch failed (${describeCode(error)}); still polled` });
        continue;
      }
      if (!watched) return;
      // Watched from now on: one last look covers what changed between the previous look and the watch.
      this.pollOnce(entry);
      this.stopPollingForLimit(entry);
    }
  }

  /** Says the shortage once the polled count has settled, and again only if it doubles later. */
  private reportShortage(): void {
    const polled = this.pollQueue.size;
    const settled = polled === this.polledAtLastRound;
    this.polledAtLastRound = polled;
    if (!settled || polled === 0 || polled < 2 * this.reportedPolled) return;
    this.reportedPolled = polled;
    const root = this.rootMostEntries()[0];
    // Directories polled per round at this budget, measured as the rounds go: at least one.
    const message = watchLimitMessage({
      watched: this.entries.size,
      polled,
      limit: this.options.watchFactory.limit ?? kernelWatchLimit(),
      roundSeconds: (this.options.rescanIntervalMs / 1000) * Math.max(1, Math.ceil(polled / this.polledPerRound())),
    });
    this.options.onNotice(message);
    if (root !== undefined) this.options.onProblem({ path: root.dir, reason: message });
  }

  /** Directories one round polls within its budget, estimated from a timed look at a few of them. */
  private polledPerRound(): number {
    const sample = Math.min(16, this.pollQueue.size);
    const started = this.clock();
    let looked = 0;
    for (const entry of this.pollQueue) {
      if (looked++ >= sample) break;
      fingerprintOf(entry.dir, this.options.isInternalName);
    }
    const each = (this.clock() - started) / Math.max(1, sample);
    return each <= 0 ? this.pollQueue.size : Math.max(1, Math.floor(this.options.pollBudgetMs / each));
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
          } else {
            // Out of watches: polled with the others from now on, at their bounded cost.
            if (entry.pollTimer !== undefined) clearInterval(entry.pollTimer);
            entry.pollTimer = undefined;
            this.startPollingForLimit(entry);
          }
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

/** The error's code (ENOENT, ...) or its message. */
function describeCode(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? String(error);
}

/**
 * A digest of what a poll can see change in `dir`: its own lstat (an entry added, removed or renamed
 * changes its mtime) and every entry's name and lstat (a write changes the file's size, mtime or ctime;
 * chmod and chown its ctime). Undefined when the directory cannot be read (gone, replaced): worth a rescan.
 */
function fingerprintOf(dir: string, isInternalName: (name: string) => boolean): string | undefined {
  try {
    const digest = createHash("sha1");
    const own = lstatSync(syscallPath(dir));
    if (!own.isDirectory()) return undefined;
    digest.update(statLine(own));
    const prefix = dir === "/" ? "/" : `${dir}/`;
    for (const raw of readdirSync(syscallPath(dir), { encoding: "buffer" }).sort(Buffer.compare)) {
      const name = nameOfBytes(raw);
      if (isInternalName(name)) continue;
      const stat = lstatSync(syscallPath(prefix + name), { throwIfNoEntry: false });
      digest.update(raw).update(stat === undefined ? "\0gone\n" : `\0${statLine(stat)}`);
    }
    return digest.digest("base64");
  } catch {
    // Unreadable now (removed, replaced by a file, no permission): the consumer's rescan finds out what.
    return undefined;
  }
}

function statLine(stat: Stats): string {
  return `${stat.ino}:${stat.mode}:${stat.size}:${stat.mtimeMs}:${stat.ctimeMs}:${stat.uid}:${stat.gid}\n`;
}
