// Progress on stderr for `sync` and the initial pass of `watch`, then a quiet status line for `watch`.
//
// The run walks the source directory by directory and ships as it goes, so what it will transfer is
// known only at the end. The totals shown are the source tree's (files and bytes), counted by a quick
// listing (`countTree`) that runs beside the sync: first `scanning: N entries` while that count runs,
// then a bar of files and bytes *done* (checked by the walk and, if they needed sending, answered by the
// target) out of those totals, like rsync's --info=progress2. Done never runs ahead of the target: what
// the walk planned but the target has not answered yet is subtracted. The percentage and the ETA count
// work as bytes plus a fixed cost per file (workOf), at the rate of the last few seconds.
import { createRequire } from "node:module";
import type cliProgress from "cli-progress";
import { childOf } from "../events/paths.js";
import { monotonicMs } from "../fs/clock.js";
import { pathUnder } from "../fs/fileSystem.js";
import { onTerminalRestore } from "./interrupt.js";
import { bytes, count, rate } from "./report.js";

/** What the run has planned or sent that the target has not applied yet (subtracted from "done"). */
export interface PendingWork {
  /** Operations planned or in flight, not yet answered (files, mostly). */
  operations: number;
  /** File bytes planned or in flight, not yet answered. */
  bytes: number;
}

/** Scan and transfer progress, then watch status. Every method is cheap; drawing runs on its own timer. */
export interface ProgressDisplay {
  /** A regular file the run's walk checked, with its size. */
  fileChecked(size: number): void;
  /** Tells the display how to learn what is still pending (polled while drawing). */
  trackPending(pending: () => PendingWork): void;
  /** The target's manifest is complete: what the walk reads from now on is planned at once. */
  targetListed(): void;
  /** The whole-tree pass is over: the bar ends with its last state on a line of its own. */
  passDone(): void;
  /** The target answered; `operationsApplied` so far. In watch (after the pass) this redraws the status line. */
  settled(operationsApplied: number): void;
  /** Output that passes the display: the bar or status line is cleared first and redrawn after. */
  guard<T extends { stdout: (text: string) => void; stderr: (text: string) => void }>(output: T): T;
  /** Ends everything and shows the cursor again (also on interruption). */
  stop(): void;
}

/** A display that shows nothing (not a TTY without --progress, --no-progress, or --json). */
export const silentProgress: ProgressDisplay = {
  fileChecked() {},
  trackPending() {},
  targetListed() {},
  passDone() {},
  settled() {},
  guard: (output) => output,
  stop() {},
};

/** Options of progressDisplay. */
export interface ProgressOptions {
  /** --progress (true), --no-progress (false), or neither (undefined: on when stderr is a terminal). */
  progress?: boolean;
  /** --json: stdout carries one JSON object and nothing is drawn. */
  json: boolean;
  /** The source root to count (with the run's exclusions). */
  root: string;
  isExcluded?: (path: string, isDir: boolean) => boolean;
  /** Where to draw (default process.stderr). */
  stream?: NodeJS.WriteStream;
}

/**
 * Loads what only a display or a count needs, when it is first needed. (require: the bundle runs as a
 * vm.Script, which has no dynamic import of node's modules.)
 */
const requireLater = createRequire(import.meta.url);

/**
 * cli-progress, loaded when a display is first drawn rather than at start-up: most runs (--json, not a
 * terminal) draw none and need not pay for loading it.
 */
function loadCliProgress(): typeof cliProgress {
  return requireLater("cli-progress") as typeof cliProgress;
}

/** Redraws per second on a terminal. */
const FPS = 8;
/** Lines per interval when --progress is asked for on something that is not a terminal. */
const PLAIN_LINE_EVERY_MS = 2_000;
/** The rates behind the ETA look back this far. */
const RATE_WINDOW_MS = 10_000;
/** No ETA before this much of the bar has run: a first second says little. */
const ETA_AFTER_MS = 1_500;
/** What a file costs beside its bytes, in bytes (see workOf). */
const FILE_COST_BYTES = 64 * 1024;
/** Erases the current line (and returns to its start). */
const CLEAR_LINE = "\r\x1b[K";

/** Whether a progress display is wanted: --progress / --no-progress, else only on a terminal; never with --json. */
export function progressWanted(
  options: { progress?: boolean; json: boolean },
  stream: NodeJS.WriteStream = process.stderr,
): boolean {
  if (options.json) return false;
  return options.progress ?? stream.isTTY === true;
}

/**
 * The display for a run: a counting pass over the source starts at once (its entries are the scanning
 * phase), then a bar of the source tree's files and bytes. Silent unless `progressWanted`.
 */
export function progressDisplay(options: ProgressOptions): ProgressDisplay {
  const stream = options.stream ?? process.stderr;
  if (!progressWanted(options, stream)) return silentProgress;
  return new TreeProgress(options, stream);
}

/** The source tree's totals, as `countTree` found them. */
export interface TreeCount {
  entries: number;
  files: number;
  bytes: number;
}

/**
 * Counts the tree at `root` the way a sync walks it: entries below the root, regular files and their
 * sizes; symlinks are not followed, excluded paths and their subtrees are left out. `onEntry` is told
 * the running count. Unreadable directories and entries that vanish are skipped (the sync reports them).
 */
export async function countTree(
  root: string,
  isExcluded: ((path: string, isDir: boolean) => boolean) | undefined,
  onEntry: (count: TreeCount) => void,
): Promise<TreeCount> {
  // Loaded here, not with the module: fs/promises costs every start ≈ 2 ms, and few runs count a tree.
  const { lstat, readdir } = requireLater("node:fs/promises") as typeof import("node:fs/promises");
  const count: TreeCount = { entries: 0, files: 0, bytes: 0 };
  const stack: string[] = [""];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    let names: { name: string; isDirectory(): boolean; isFile(): boolean }[];
    try {
      names = await readdir(pathUnder(root, dir), { withFileTypes: true });
    } catch {
      continue;
    }
    const files: string[] = [];
    for (const entry of names) {
      const path = childOf(dir, entry.name);
      const isDir = entry.isDirectory();
      if (isExcluded?.(path, isDir)) continue;
      count.entries++;
      if (isDir) stack.push(path);
      else if (entry.isFile()) files.push(path);
    }
    // Sizes in parallel (the thread pool does the lstat calls), a bounded number at a time.
    for (let at = 0; at < files.length; at += 64) {
      const sizes = await Promise.all(
        files.slice(at, at + 64).map((path) =>
          lstat(pathUnder(root, path)).then(
            (stat) => (stat.isFile() ? stat.size : -1),
            () => -1,
          ),
        ),
      );
      for (const size of sizes) {
        if (size < 0) continue;
        count.files++;
        count.bytes += size;
      }
    }
    onEntry(count);
  }
  return count;
}

/** One sample of done work, for the rates behind the ETA. */
interface Sample {
  at: number;
  /** Work done (see workOf) and bytes done at `at`. */
  work: number;
  bytes: number;
}

/** The display of a run: scanning, then a bar; then, in watch, a status line. */
class TreeProgress implements ProgressDisplay {
  private readonly tty: boolean;
  private readonly bar: cliProgress.SingleBar;
  private barRunning = false;
  private counted: TreeCount = { entries: 0, files: 0, bytes: 0 };
  private totals: TreeCount | undefined;
  private checkedFiles = 0;
  /** Whether the target has listed itself (its whole manifest is in): from then on the walk plans as it reads. */
  private listed = false;
  private doneFiles = 0;
  private doneBytes = 0;
  private checkedBytes = 0;
  private pending: () => PendingWork = () => ({ operations: 0, bytes: 0 });
  private samples: Sample[] = [];
  private barStarted = 0;
  private statusLine = "";
  private stopped = false;
  private passOver = false;
  /** Operations applied so far, and when the whole-tree pass ended (the watch's changes count from there). */
  private applied = 0;
  private appliedAtPassEnd = 0;
  private readonly unregister: () => void;

  constructor(
    options: ProgressOptions,
    private readonly stream: NodeJS.WriteStream,
  ) {
    this.tty = stream.isTTY === true;
    this.bar = new (loadCliProgress().SingleBar)({
      stream,
      format: () => this.line(),
      hideCursor: true,
      // Lines are made to fit the terminal (see width()); the terminal's own wrapping is left alone.
      linewrap: true,
      fps: FPS,
      // --progress on something that is not a terminal: a plain line now and then.
      noTTYOutput: !this.tty,
      notTTYSchedule: PLAIN_LINE_EVERY_MS,
      gracefulExit: false,
    });
    // cli-progress saves the cursor position at start and jumps back to it at stop: with lines printed
    // above the bar meanwhile (guard), that would draw over them. The bar is always redrawn at the start
    // of the current line instead.
    const terminal = (this.bar as unknown as { terminal: { cursorSave(): void; cursorRestore(): void } }).terminal;
    terminal.cursorSave = () => {};
    terminal.cursorRestore = () => {};
    this.unregister = onTerminalRestore(() => this.stop());
    this.bar.start(1, 0);
    this.barRunning = true;
    void countTree(options.root, options.isExcluded, (count) => {
      this.counted = count;
    }).then((count) => {
      this.counted = count;
      this.totals = count;
      this.barStarted = monotonicMs();
    });
  }

  fileChecked(size: number): void {
    this.checkedFiles++;
    this.checkedBytes += size;
  }

  trackPending(pending: () => PendingWork): void {
    this.pending = pending;
  }

  targetListed(): void {
    this.listed = true;
  }

  passDone(): void {
    if (this.passOver) return;
    this.passOver = true;
    this.appliedAtPassEnd = this.applied;
    this.stopBar();
  }

  settled(operationsApplied: number): void {
    this.applied = operationsApplied;
    if (!this.passOver || !this.tty || this.stopped) return;
    // Quiet: one line in place, saying how much was mirrored since the pass and when last.
    const since = operationsApplied - this.appliedAtPassEnd;
    if (since <= 0) return;
    const at = new Date().toTimeString().slice(0, 8);
    this.statusLine = fitLine(`watching: ${count(since)} operations applied, the last at ${at}`, width(this.stream));
    this.stream.write(`${CLEAR_LINE}${this.statusLine}`);
  }

  guard<T extends { stdout: (text: string) => void; stderr: (text: string) => void }>(output: T): T {
    const around =
      (write: (text: string) => void) =>
      (text: string): void => {
        if (this.stopped || !this.tty) {
          write(text);
          return;
        }
        // The line in place is erased, the text written whole, and the line drawn again below it.
        if (this.barRunning || this.statusLine !== "") this.stream.write(CLEAR_LINE);
        write(text);
        if (this.barRunning) this.bar.render();
        else if (this.statusLine !== "") this.stream.write(this.statusLine);
      };
    return { ...output, stdout: around(output.stdout), stderr: around(output.stderr) };
  }

  stop(): void {
    if (this.stopped) return;
    this.stopBar();
    if (this.statusLine !== "" && this.tty) this.stream.write(CLEAR_LINE);
    this.statusLine = "";
    this.stopped = true;
    this.unregister();
  }

  private stopBar(): void {
    if (!this.barRunning) return;
    this.barRunning = false;
    // cli-progress draws the last state, ends the line and shows the cursor again.
    this.bar.stop();
  }

  /** The line to draw now, fitted to the terminal. */
  private line(): string {
    const columns = width(this.stream);
    const totals = this.totals;
    if (totals === undefined) return fitLine(`scanning: ${count(this.counted.entries)} entries`, columns);
    // Until the target has listed itself, what the walk read is not planned yet: nothing is done.
    if (this.listed) {
      const pending = this.pending();
      // Never backwards: a file read a moment before it is planned would otherwise count, then not.
      this.doneFiles = Math.max(this.doneFiles, clamp(this.checkedFiles - pending.operations, totals.files));
      this.doneBytes = Math.max(this.doneBytes, clamp(this.checkedBytes - pending.bytes, totals.bytes));
    }
    const { doneFiles, doneBytes } = this;
    const now = monotonicMs();
    const work = workOf(doneFiles, doneBytes);
    this.samples.push({ at: now, work, bytes: doneBytes });
    while (this.samples.length > 2 && now - this.samples[0]!.at > RATE_WINDOW_MS) this.samples.shift();
    const totalWork = workOf(totals.files, totals.bytes);
    const fraction = totalWork > 0 ? work / totalWork : 1;
    const fields = [
      `${Math.floor(fraction * 100)}%`,
      `${count(doneFiles)}/${count(totals.files)} files`,
      `${bytes(doneBytes)}/${bytes(totals.bytes)}`,
      this.rateText(),
      `ETA ${this.eta(totalWork - work, now)}`,
    ];
    // Narrow terminals lose the rate, then the bytes, before the bar shrinks below its minimum.
    for (const drop of [undefined, 3, 2]) {
      if (drop !== undefined) fields.splice(drop, 1);
      const text = fields.join(" ");
      const barWidth = columns - 1 - text.length - 3;
      if (barWidth >= 10 || drop === 2) return fitLine(`[${barOf(fraction, Math.max(barWidth, 10))}] ${text}`, columns);
    }
    return "";
  }

  /** Bytes per second over the recent window. */
  private rateText(): string {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (first === undefined || last === undefined || last.at - first.at < 500) return "- B/s";
    return rate(((last.bytes - first.bytes) * 1000) / (last.at - first.at));
  }

  /** Time left for `remaining` work at the rate of the recent window, or "-" while that says nothing yet. */
  private eta(remaining: number, now: number): string {
    if (remaining <= 0) return "0:00";
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (first === undefined || last === undefined || now - this.barStarted < ETA_AFTER_MS || now - first.at < 500)
      return "-";
    const perSecond = ((last.work - first.work) * 1000) / (now - first.at);
    return perSecond > 0 ? clock(remaining / perSecond) : "-";
  }
}

/**
 * Work in one unit for the bar and the ETA: bytes, plus FILE_COST_BYTES per file (creating, checking and
 * renaming a file costs about as much as writing that many bytes), so a tree of many small files and one
 * of a few large ones both advance at the pace the time goes.
 */
function workOf(files: number, size: number): number {
  return size + files * FILE_COST_BYTES;
}

/** The terminal's width: its own, else $COLUMNS, else 80. */
function width(stream: NodeJS.WriteStream): number {
  return stream.columns || Number(process.env.COLUMNS) || 80;
}

/** `text` cut to fit `columns` without touching the last column (a terminal may wrap there). */
function fitLine(text: string, columns: number): string {
  return text.length < columns ? text : text.slice(0, Math.max(columns - 1, 0));
}

function barOf(fraction: number, size: number): string {
  const full = Math.min(size, Math.floor(fraction * size));
  return "#".repeat(full) + "-".repeat(size - full);
}

function clamp(value: number, max: number): number {
  return Math.min(Math.max(value, 0), max);
}

/** Seconds as m:ss or h:mm:ss. */
function clock(seconds: number): string {
  const s = Math.ceil(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}
