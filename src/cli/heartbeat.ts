// A running `watch` says it is alive in its own source state file: a heartbeat record (pid, since, last
// beat) rewritten every few seconds, and the problems of the run as they stand. `status` reads both to
// tell a live pair from a stopped one and to count every kind of problem. Like a pid file, but one that
// cannot outlive its process unnoticed: a beat that stops coming or a pid that is gone means stopped.
import { hostname } from "node:os";
import * as z from "zod";
import { type OperationLog, StateFileError } from "../events/operationLog.js";
import type { Problem } from "../replicator/scan.js";

/** How often a watch rewrites its heartbeat. */
export const HEARTBEAT_INTERVAL_MS = 5_000;
/** A heartbeat older than this many intervals means the watch is gone (killed, frozen, machine down). */
export const STALE_AFTER_BEATS = 3;

const HEARTBEAT_KEY = "heartbeat";
const PROBLEMS_KEY = "problems";

const HeartbeatSchema = z.object({
  pid: z.number().int(),
  host: z.string(),
  /** When this watch started (ms since 1970). */
  since: z.number(),
  /** The latest beat. */
  beatAt: z.number(),
  intervalMs: z.number().positive(),
  /** Set when the watch ended by itself (a clean stop); null while it runs. */
  stoppedAt: z.number().nullable(),
});

/** What a watch last wrote about itself. */
export type Heartbeat = z.infer<typeof HeartbeatSchema>;

const RunProblemsSchema = z.object({
  /** When this list was recorded. */
  at: z.number(),
  mode: z.enum(["sync", "watch"]),
  problems: z.array(z.object({ path: z.string(), reason: z.string() })),
});

/** The problems a run reported (skipped paths, failures), as its last record of them. */
export type RunProblems = z.infer<typeof RunProblemsSchema>;

/** A record that no longer parses: the file's bytes were changed behind SQLite's back, like any bad row. */
function readRecord<T>(log: OperationLog, key: string, schema: z.ZodType<T>): T | undefined {
  const text = log.serviceRecord(key);
  if (text === undefined) return undefined;
  try {
    return schema.parse(JSON.parse(text));
  } catch (error) {
    const detail = error instanceof z.ZodError ? "fields do not match" : (error as Error).message;
    throw new StateFileError(log.path, "damaged", `the ${key} record cannot be read: ${detail}`, { cause: error });
  }
}

/** The heartbeat a watch of this log last wrote, or undefined when none ever ran. */
export function readHeartbeat(log: OperationLog): Heartbeat | undefined {
  return readRecord(log, HEARTBEAT_KEY, HeartbeatSchema);
}

/** The problems the last run recorded, or undefined when none recorded any. */
export function readRunProblems(log: OperationLog): RunProblems | undefined {
  return readRecord(log, PROBLEMS_KEY, RunProblemsSchema);
}

/** Records the problems a run reports now (replacing the previous run's). */
export function recordRunProblems(
  log: OperationLog,
  mode: "sync" | "watch",
  problems: readonly Problem[],
  now: number,
): void {
  const record: RunProblems = { at: now, mode, problems: problems.map(({ path, reason }) => ({ path, reason })) };
  log.putServiceRecord(PROBLEMS_KEY, JSON.stringify(record));
}

/** Whether a pair is being watched: live with its process, or stopped since it was last seen. */
export type Liveness =
  | { state: "live"; pid: number; since: number; lastBeat: number }
  | { state: "stopped"; pid: number | null; lastSeen: number | null };

/**
 * Reads a heartbeat at time `now`. Stopped: the watch said so, its last beat is older than
 * STALE_AFTER_BEATS intervals, or (same host only: pids mean nothing elsewhere) its pid is gone. Pure but
 * for `isAlive`, which is injected.
 */
export function livenessOf(
  beat: Heartbeat | undefined,
  now: number,
  isAlive: (pid: number) => boolean = processExists,
  thisHost: string = hostname(),
): Liveness {
  if (beat === undefined) return { state: "stopped", pid: null, lastSeen: null };
  if (beat.stoppedAt !== null) return { state: "stopped", pid: beat.pid, lastSeen: beat.stoppedAt };
  const stale = now - beat.beatAt > STALE_AFTER_BEATS * beat.intervalMs;
  const gone = beat.host === thisHost && !isAlive(beat.pid);
  if (stale || gone) return { state: "stopped", pid: beat.pid, lastSeen: beat.beatAt };
  return { state: "live", pid: beat.pid, since: beat.since, lastBeat: beat.beatAt };
}

/** True when a process with this pid exists (EPERM: it does, under another user). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** What a heartbeat writer needs: the log to write to, the clock, and where a failed write is said. */
export interface HeartbeatOptions {
  log: OperationLog;
  mode: "sync" | "watch";
  /** The run's problems as they stand (recorded with each beat when they changed). */
  problems: () => readonly Problem[];
  onError: (error: unknown) => void;
  now?: () => number;
  intervalMs?: number;
}

/**
 * Writes the heartbeat of a running watch (at once, then every interval) and the run's problems when
 * they change; `stop` writes the last beat marked stopped. The timer is unref'd: it never keeps the
 * process alive by itself.
 */
export class HeartbeatWriter {
  private timer: NodeJS.Timeout | undefined;
  private readonly since: number;
  private lastProblems = "";
  private readonly now: () => number;
  private readonly intervalMs: number;

  constructor(private readonly options: HeartbeatOptions) {
    this.now = options.now ?? Date.now;
    this.intervalMs = options.intervalMs ?? HEARTBEAT_INTERVAL_MS;
    this.since = this.now();
  }

  /** Writes the first beat and starts the timer. */
  start(): void {
    this.beat(null);
    this.timer = setInterval(() => this.beat(null), this.intervalMs);
    this.timer.unref();
  }

  /** Stops the timer and records a clean stop with the final problems. */
  stop(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.beat(this.now());
  }

  private beat(stoppedAt: number | null): void {
    const now = this.now();
    const { log } = this.options;
    try {
      const beat: Heartbeat = {
        pid: process.pid,
        host: hostname(),
        since: this.since,
        beatAt: now,
        intervalMs: this.intervalMs,
        stoppedAt,
      };
      log.putServiceRecord(HEARTBEAT_KEY, JSON.stringify(beat));
      const problems = this.options.problems();
      const key = JSON.stringify(problems);
      // Rewritten only when they change: a tree with thousands of unreadable files is not rewritten every beat.
      if (key !== this.lastProblems || stoppedAt !== null) {
        recordRunProblems(log, this.options.mode, problems, now);
        this.lastProblems = key;
      }
    } catch (error) {
      this.options.onError(error);
    }
  }
}
