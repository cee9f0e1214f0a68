import { randomUUID } from "node:crypto";
import {
  closeSync,
  existsSync,
  fdatasync,
  fdatasyncSync,
  openSync,
  readFileSync,
  statfsSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import * as z from "zod";
import {
  checkOperation,
  type DetectedBy,
  DetectedBySchema,
  type Operation,
  OperationSchema,
  type Position,
  PositionSchema,
} from "./operation.js";
import { type ApplyOutcome, ApplyOutcomeSchema } from "./protocol.js";
import { sqliteNativeBinding } from "./sqliteBinding.js";

/** Why a state file cannot be used: damaged bytes, a full file system, no access, I/O errors, another holder. */
export type StateFileProblem = "damaged" | "full" | "unreadable" | "io" | "busy";

const PROBLEM_TEXT: Record<StateFileProblem, string> = {
  damaged: "is damaged",
  full: "cannot be written: its file system is full",
  unreadable: "cannot be opened",
  io: "cannot be read or written",
  busy: "is in use by another process",
};

/**
 * A state file (a log, or a side's state store) that cannot be used. It stops the engine: nothing that
 * depends on the file can be trusted or recorded. The message names the file; `cause` is SQLite's error.
 */
export class StateFileError extends Error {
  override readonly name = "StateFileError";
  constructor(
    readonly path: string,
    readonly problem: StateFileProblem,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(`state file ${path} ${PROBLEM_TEXT[problem]} (${detail})`, options);
  }
}

/** The problem an SQLite error code stands for, or undefined for errors that are not about the file. */
function problemOfCode(code: string): StateFileProblem | undefined {
  if (code.startsWith("SQLITE_CORRUPT") || code === "SQLITE_NOTADB") return "damaged";
  if (code === "SQLITE_FULL") return "full";
  if (code.startsWith("SQLITE_CANTOPEN") || code === "SQLITE_PERM" || code.startsWith("SQLITE_READONLY"))
    return "unreadable";
  if (code.startsWith("SQLITE_IOERR")) return "io";
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) return "busy";
  return undefined;
}

/**
 * `error` as a StateFileError naming `path` when it is about the file (an SQLite error of the file, or
 * a row that no longer parses when `rowsRead`); anything else is returned as it is.
 */
export function asStateFileError(error: unknown, path: string, rowsRead = false): unknown {
  if (error instanceof StateFileError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  if (error instanceof Database.SqliteError && typeof code === "string") {
    let problem = problemOfCode(code);
    // SQLite reports some writes on a full file system (growing the WAL or its index) as I/O errors.
    if (problem === "io" && isNearlyFull(path)) problem = "full";
    return problem === undefined ? error : new StateFileError(path, problem, error.message, { cause: error });
  }
  // A row that SQLite returns but that no longer parses: its bytes were changed behind SQLite's back.
  if (rowsRead && (error instanceof z.ZodError || error instanceof SyntaxError)) {
    return new StateFileError(path, "damaged", `a row cannot be read: ${error.message.split("\n")[0]}`, {
      cause: error,
    });
  }
  return error;
}

/** Below this many free bytes, an I/O error of a state file is taken for a full file system. */
const NEARLY_FULL_BYTES = 256 * 1024;

/** True when the file system holding `path` has (almost) no space left for us. */
function isNearlyFull(path: string): boolean {
  try {
    const stats = statfsSync(dirname(path));
    return stats.bavail * stats.bsize < NEARLY_FULL_BYTES;
  } catch {
    return false;
  }
}

/**
 * SQLite's page cache per connection, in KiB. better-sqlite3's default (16 MiB) fills as a large tree's
 * index and log are read and stays: 2 MiB keeps a state file's memory flat whatever the tree's size; the
 * lookups of a whole-tree pass go in path order, so a small cache serves them as well.
 */
const PAGE_CACHE_KIB = 2048;

/** Bounds the page cache of a state file's connection (see PAGE_CACHE_KIB). */
export function boundPageCache(db: Database.Database): void {
  db.pragma(`cache_size = -${PAGE_CACHE_KIB}`);
}

/**
 * Fails with a StateFileError ("damaged") unless SQLite's quick_check finds `db` consistent. Run on
 * opening for writing: damage found only later, in the middle of a run, would stop it half-way. Not needed
 * again for a file closed by mirrorlog and untouched since (closedAsRecorded, asked before connecting):
 * quick_check reads the whole file, 35–45 ms of every run for a 20,000-file pair's (8 and 17 MB).
 */
export function checkStateFile(db: Database.Database, path: string): void {
  const result = String(db.pragma("quick_check(1)", { simple: true }));
  if (result === "ok") return;
  // quick_check heads its findings with "*** in database main ***" and may span lines: keep one line.
  const findings = result
    .split("\n")
    .filter((line) => line.trim() !== "" && !line.startsWith("***"))
    .join("; ");
  throw new StateFileError(path, "damaged", `quick_check: ${findings || result}`);
}

/** Beside a state file: how it looked just after mirrorlog last closed it (see recordClosedStateFile). */
export function closedRecordPath(path: string): string {
  return `${path}.closed`;
}

/** The stat of a state file as its closed record states it: size, times and identity, to the nanosecond. */
function closedStat(path: string): string {
  const { size, mtimeNs, ctimeNs, ino, dev } = statSync(path, { bigint: true });
  return JSON.stringify([String(size), String(mtimeNs), String(ctimeNs), String(ino), String(dev)]);
}

/**
 * Records how the state file at `path` looks once every connection to it is closed cleanly (its WAL then
 * folded in and removed), so the next open need not check it whole (checkStateFile). Any write to the file
 * since, a damaged byte or another program, moves its mtime and ctime; a crash leaves its WAL. Best effort:
 * without the record the next open checks the file, as before.
 */
export function recordClosedStateFile(path: string): void {
  try {
    if (existsSync(`${path}-wal`)) return;
    writeFileSync(closedRecordPath(path), closedStat(path));
  } catch {
    // The next open checks the file.
  }
}

/**
 * True when the state file at `path` has no WAL and stats exactly as recorded at its last clean close: it
 * need not be checked whole again (see checkStateFile).
 */
export function closedAsRecorded(path: string): boolean {
  try {
    return !existsSync(`${path}-wal`) && readFileSync(closedRecordPath(path), "utf8") === closedStat(path);
  } catch {
    return false;
  }
}

/** One operation as the log holds it. */
export interface LogEntry {
  position: Position;
  /** Milliseconds since the epoch when the operation was appended. */
  loggedAt: number;
  operation: Operation;
  detectedBy: DetectedBy;
}

/** What happened when a logged operation reached the target. */
export interface LoggedResult {
  position: Position;
  outcome: ApplyOutcome;
  reason?: string;
  /** Encoded bytes of the operation and its content on the wire. */
  wireBytes: number;
  /** Bytes written to the target file. */
  bytesWritten: number;
  appliedAt: number;
  /** How a written file's bytes travelled (see ContentBytes); absent for operations without content. */
  content?: ContentSplit;
}

/** A written file's bytes by how they travelled: literal, compressed (wire size), matched by a delta, reused. */
export interface ContentSplit {
  literal: number;
  compressed: number;
  matched: number;
  reused: number;
}

const ContentSplitSchema = z.object({
  literal: z.number(),
  compressed: z.number(),
  matched: z.number(),
  reused: z.number(),
});

/** An operation to append, with how its change was detected. */
export interface NewEntry {
  operation: Operation;
  detectedBy: DetectedBy;
}

/** The source root and target a log replicates between (the target as the user named it). */
export interface ReplicationPair {
  sourceRoot: string;
  target: string;
}

/** How one epoch stands: its last logged and last answered seq, and how many operations await an answer. */
export interface EpochProgress {
  epoch: number;
  lastSeq: number;
  /** The highest seq with a recorded result, 0 when none has one. */
  lastAnsweredSeq: number;
  /** Operations of the epoch without a recorded result. */
  unanswered: number;
}

/** Results recorded since a moment: how many, and their bytes. */
export interface ResultTotals {
  operations: number;
  bytesWritten: number;
  wireBytes: number;
}

/** A failed apply that no later answered operation on the same path has superseded. */
export interface OpenFailure {
  position: Position;
  path: string;
  reason: string | null;
  appliedAt: number;
}

/** One epoch of the log and why it began. */
export interface Epoch {
  epoch: number;
  startedAt: number;
  reason: string;
}

const EntryRowSchema = z.object({
  epoch: z.number(),
  seq: z.number(),
  logged_at: z.number(),
  operation: z.string(),
  detected_by: DetectedBySchema,
});

const ResultRowSchema = z.object({
  epoch: z.number(),
  seq: z.number(),
  outcome: ApplyOutcomeSchema,
  reason: z.string().nullable(),
  wire_bytes: z.number(),
  bytes_written: z.number(),
  applied_at: z.number(),
  content: z.string().nullable().optional(),
});

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
  CREATE TABLE IF NOT EXISTS epochs (epoch INTEGER PRIMARY KEY, started_at INTEGER NOT NULL, reason TEXT NOT NULL) STRICT;
  CREATE TABLE IF NOT EXISTS operations (
    epoch INTEGER NOT NULL, seq INTEGER NOT NULL, logged_at INTEGER NOT NULL,
    path TEXT NOT NULL, operation TEXT NOT NULL, detected_by TEXT NOT NULL,
    PRIMARY KEY (epoch, seq)) STRICT, WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS operations_by_path ON operations (path);
  CREATE TABLE IF NOT EXISTS results (
    epoch INTEGER NOT NULL, seq INTEGER NOT NULL, outcome TEXT NOT NULL, reason TEXT,
    wire_bytes INTEGER NOT NULL, bytes_written INTEGER NOT NULL, applied_at INTEGER NOT NULL,
    content TEXT,
    PRIMARY KEY (epoch, seq)) STRICT, WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS service (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
`;

/**
 * The append-only operation log on SQLite. Positions are `(epoch, seq)`; nothing is ever rewritten or
 * renumbered. Each `append` is one transaction. In memory by default; a file path makes it durable
 * (WAL, synchronous=FULL, so an acknowledged append survives power loss).
 */
export class OperationLog {
  /** Identifies this log to targets; a target following another log id re-establishes from scratch. */
  logId!: string;
  /** The file (":memory:" in memory): every failure about it is a StateFileError naming it. */
  readonly path: string;
  private db!: Database.Database;
  private insertEntry!: Database.Statement;
  private insertResult!: Database.Statement;
  private head!: Position;
  /** With `deferDurability`: appends are made durable in the background (see WalSync); else at their commit. */
  private walSync: WalSync | undefined;

  /** Runs `read` against the file; SQLite's complaints about the file (and rows that no longer parse) become StateFileErrors. */
  private guarded<T>(read: () => T): T {
    try {
      return read();
    } catch (error) {
      throw asStateFileError(error, this.path, true);
    }
  }

  /**
   * Opens (or creates) a log; `path` undefined or ":memory:" keeps it in memory. `readOnly` opens an
   * existing file for audit without creating or changing anything (appends then throw). `verify` runs
   * SQLite's quick_check first. `deferDurability` (a file): an append commits without waiting for the disk,
   * and its WAL is flushed on a thread of the pool meanwhile; `durablePosition` says how far that got (a
   * source then tells the target, which never makes more durable: see ApplyRequest's `logDurableSeq`).
   * A file that cannot be used throws a StateFileError naming it.
   */
  constructor(path?: string, options: { readOnly?: boolean; verify?: boolean; deferDurability?: boolean } = {}) {
    this.path = path ?? ":memory:";
    const readOnly = options.readOnly === true && path !== undefined && path !== ":memory:";
    // Asked before connecting: a connection's first statement opens the WAL beside the file.
    const verify = options.verify === true && !closedAsRecorded(this.path);
    let db: Database.Database | undefined;
    try {
      db = readOnly ? openForReading(this.path) : new Database(this.path, { nativeBinding: sqliteNativeBinding() });
      this.db = db;
      this.prepareFile(readOnly, verify);
      if (options.deferDurability === true && !readOnly && this.path !== ":memory:") {
        this.walSync = WalSync.open(`${this.path}-wal`, this.head);
      }
    } catch (error) {
      db?.close();
      throw asStateFileError(error, this.path, true);
    }
  }

  /** Creates or upgrades the schema (unless read-only), checks the file when asked, reads the head. */
  private prepareFile(readOnly: boolean, verify: boolean): void {
    const path = this.path;
    boundPageCache(this.db);
    if (readOnly) {
      if (verify) checkStateFile(this.db, path);
      // Fails at once on a file that is not a log, instead of on the first query.
      this.db.prepare("SELECT 1 FROM operations JOIN results USING (epoch, seq) JOIN epochs USING (epoch) LIMIT 0");
    } else {
      if (path !== ":memory:") {
        if (verify) checkStateFile(this.db, path);
        this.db.pragma("journal_mode = WAL");
        this.db.pragma("synchronous = FULL");
      }
      this.db.exec(SCHEMA);
      // Logs written before results carried the content split gain the column (NULL for old rows).
      const columns = this.db.prepare("SELECT name FROM pragma_table_info('results')").pluck().all();
      if (!columns.includes("content")) this.db.exec("ALTER TABLE results ADD COLUMN content TEXT");
    }
    const storedId = this.db.prepare("SELECT value FROM meta WHERE key = 'log_id'").pluck().get();
    this.logId = typeof storedId === "string" ? storedId : randomUUID();
    if (storedId === undefined && !readOnly) {
      this.db.prepare("INSERT INTO meta (key, value) VALUES ('log_id', ?)").run(this.logId);
    }
    this.insertEntry = this.db.prepare(
      "INSERT INTO operations (epoch, seq, logged_at, path, operation, detected_by) VALUES (?, ?, ?, ?, ?, ?)",
    );
    this.insertResult = this.db.prepare(
      "INSERT OR REPLACE INTO results (epoch, seq, outcome, reason, wire_bytes, bytes_written, applied_at, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    );
    this.head = this.readHead();
  }

  private readHead(): Position {
    const epoch = this.db.prepare("SELECT MAX(epoch) FROM epochs").pluck().get();
    if (typeof epoch !== "number") return { epoch: 0, seq: 0 };
    const seq = this.db.prepare("SELECT MAX(seq) FROM operations WHERE epoch = ?").pluck().get(epoch);
    return { epoch, seq: typeof seq === "number" ? seq : 0 };
  }

  /** The last position appended (`seq` 0 when the current epoch is empty; `epoch` 0 before any epoch). */
  lastPosition(): Position {
    return { ...this.head };
  }

  /**
   * The last position known durable on disk: the head, unless appends made with `deferDurability` are still
   * being flushed (then an earlier one; see whenDurable).
   */
  durablePosition(): Position {
    return this.walSync === undefined ? { ...this.head } : { ...this.walSync.durable };
  }

  /** Resolves once everything appended so far is durable; rejects when the flush of the WAL failed. */
  whenDurable(): Promise<void> {
    return this.walSync?.through(() => this.head) ?? Promise.resolve();
  }

  /**
   * Starts a new epoch with the reason continuity could not be proven, and returns its number: the next
   * one, or `atLeast` when that is higher (a target already on a later epoch must see a newer one).
   */
  startEpoch(reason: string, now: number, atLeast = 0): number {
    return this.guarded(() => {
      const epoch = Math.max(this.head.epoch + 1, atLeast);
      this.db.prepare("INSERT INTO epochs (epoch, started_at, reason) VALUES (?, ?, ?)").run(epoch, now, reason);
      this.head = { epoch, seq: 0 };
      // Committed with synchronous=FULL, which flushed the WAL: everything before it is durable too.
      this.walSync?.madeDurable(this.head);
      return epoch;
    });
  }

  /** All epochs, oldest first. */
  epochs(): Epoch[] {
    return this.guarded(() => {
      const rows = this.db.prepare("SELECT epoch, started_at, reason FROM epochs ORDER BY epoch").all() as {
        epoch: number;
        started_at: number;
        reason: string;
      }[];
      return rows.map((r) => ({ epoch: r.epoch, startedAt: r.started_at, reason: r.reason }));
    });
  }

  /** Appends a batch of operations to the current epoch in one transaction and returns the logged entries. */
  append(batch: readonly NewEntry[], now: number): LogEntry[] {
    if (this.head.epoch === 0) throw new Error("OperationLog.append: no epoch started");
    const epoch = this.head.epoch;
    let seq = this.head.seq;
    const entries: LogEntry[] = batch.map(({ operation, detectedBy }) => {
      const checked = checkOperation(operation);
      if (!checked.success) throw checked.error;
      return { position: { epoch, seq: ++seq }, loggedAt: now, operation: checked.data, detectedBy };
    });
    const insert = this.db.transaction(() => {
      for (const e of entries) {
        this.insertEntry.run(epoch, e.position.seq, now, e.operation.path, JSON.stringify(e.operation), e.detectedBy);
      }
    });
    if (this.walSync === undefined) this.guarded(() => insert());
    else this.withoutCommitSync(() => insert());
    this.head = { epoch, seq };
    this.walSync
      ?.through(() => this.head)
      .catch(() => {
        // Reported by whenDurable, which the source awaits before a pass or a burst ends.
      });
    return entries;
  }

  /** Entries of `epoch` with `seq > afterSeq`, in order, at most `limit`. */
  readAfter(epoch: number, afterSeq: number, limit = 10_000): LogEntry[] {
    return this.guarded(() => {
      const rows = this.db
        .prepare(
          "SELECT epoch, seq, logged_at, operation, detected_by FROM operations WHERE epoch = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .all(epoch, afterSeq, limit);
      return rows.map(parseEntryRow);
    });
  }

  /**
   * Records what the target did with logged operations (one transaction), committed without an fsync
   * of its own: a result is what the target answered, not something a resume relies on (the target's
   * applied position is), so it becomes durable with the next append's commit, or the checkpoint at
   * close. A crash of the process loses none (committed to the WAL); a power cut may lose the last
   * answers, which then read as not yet answered, as they would be had the cut come a moment earlier.
   */
  recordResults(results: readonly LoggedResult[]): void {
    this.withoutCommitSync(() => {
      this.db.transaction(() => {
        for (const r of results) {
          this.insertResult.run(
            r.position.epoch,
            r.position.seq,
            r.outcome,
            r.reason ?? null,
            r.wireBytes,
            r.bytesWritten,
            r.appliedAt,
            r.content === undefined ? null : JSON.stringify(r.content),
          );
        }
      })();
    });
  }

  /** Runs `write` with its commit not fsynced (in WAL mode, synchronous=NORMAL), then back to FULL. */
  private withoutCommitSync(write: () => void): void {
    this.guarded(() => {
      this.db.pragma("synchronous = NORMAL");
      try {
        write();
      } finally {
        this.db.pragma("synchronous = FULL");
      }
    });
  }

  /** Entries touching `path` or anything below it, oldest first, each with its result when known. */
  history(path: string): { entry: LogEntry; result?: LoggedResult }[] {
    return this.guarded(() => {
      const escaped = path.replaceAll("\\", "\\\\").replaceAll("%", "\\%").replaceAll("_", "\\_");
      const rows = this.db
        .prepare(
          `SELECT o.epoch, o.seq, o.logged_at, o.operation, o.detected_by,
                  r.outcome, r.reason, r.wire_bytes, r.bytes_written, r.applied_at, r.content
             FROM operations o LEFT JOIN results r ON r.epoch = o.epoch AND r.seq = o.seq
            WHERE ? = '' OR o.path = ? OR o.path LIKE ? ESCAPE '\\'
            ORDER BY o.epoch, o.seq`,
        )
        .all(path, path, `${escaped}/%`) as Record<string, unknown>[];
      return rows.map((row) => {
        const entry = parseEntryRow(row);
        if (row.outcome === null || row.outcome === undefined) return { entry };
        const r = ResultRowSchema.parse(row);
        return {
          entry,
          result: {
            position: entry.position,
            outcome: r.outcome,
            ...(r.reason === null ? {} : { reason: r.reason }),
            wireBytes: r.wire_bytes,
            bytesWritten: r.bytes_written,
            appliedAt: r.applied_at,
            ...(r.content === null || r.content === undefined
              ? {}
              : { content: ContentSplitSchema.parse(JSON.parse(r.content)) }),
          },
        };
      });
    });
  }

  /** Records which source root and target this log replicates between (audit commands find logs by it). */
  describePair(sourceRoot: string, target: string): void {
    // Recorded once per pair, not at every run: an unchanged pair costs no commit.
    const recorded = this.pair();
    if (recorded?.sourceRoot === sourceRoot && recorded.target === target) return;
    this.guarded(() => {
      const put = this.db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)");
      this.db.transaction(() => {
        put.run("source_root", sourceRoot);
        put.run("target", target);
      })();
    });
  }

  /** The pair recorded by `describePair`, or null for a log that never recorded one. */
  pair(): ReplicationPair | null {
    return this.guarded(() => {
      const rows = this.db.prepare("SELECT key, value FROM meta WHERE key IN ('source_root', 'target')").all() as {
        key: string;
        value: string;
      }[];
      const sourceRoot = rows.find((r) => r.key === "source_root")?.value;
      const target = rows.find((r) => r.key === "target")?.value;
      return sourceRoot === undefined || target === undefined ? null : { sourceRoot, target };
    });
  }

  /**
   * Records that the target's whole manifest was judged and held nothing the source lacks (cli/deletionSafety.ts):
   * a first sync into a target that was already a copy logs no operation, and is replicated to all the same.
   */
  recordTargetAccepted(): void {
    this.guarded(() =>
      this.db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('target_accepted', '1')").run(),
    );
  }

  /** True once any epoch has logged an operation (the log keeps every one it logged) or the target was accepted. */
  hasReplicated(): boolean {
    return this.guarded(
      () =>
        this.db
          .prepare(
            "SELECT EXISTS (SELECT 1 FROM operations) OR EXISTS (SELECT 1 FROM meta WHERE key = 'target_accepted')",
          )
          .pluck()
          .get() === 1,
    );
  }

  /** Where `epoch` stands: last logged seq, last answered seq, operations still without a result. */
  epochProgress(epoch: number): EpochProgress {
    return this.guarded(() => {
      const row = this.db
        .prepare(
          `SELECT COALESCE(MAX(o.seq), 0) AS last_seq, COALESCE(MAX(r.seq), 0) AS last_answered,
                  COUNT(*) - COUNT(r.seq) AS unanswered
             FROM operations o LEFT JOIN results r ON r.epoch = o.epoch AND r.seq = o.seq
            WHERE o.epoch = ?`,
        )
        .get(epoch) as { last_seq: number; last_answered: number; unanswered: number };
      return { epoch, lastSeq: row.last_seq, lastAnsweredSeq: row.last_answered, unanswered: row.unanswered };
    });
  }

  /** Totals of the results recorded at or after `since` (milliseconds since the epoch). */
  resultTotalsSince(since: number): ResultTotals {
    return this.guarded(() => {
      const row = this.db
        .prepare(
          `SELECT COUNT(*) AS operations, COALESCE(SUM(bytes_written), 0) AS bytes_written,
                  COALESCE(SUM(wire_bytes), 0) AS wire_bytes
             FROM results WHERE applied_at >= ?`,
        )
        .get(since) as { operations: number; bytes_written: number; wire_bytes: number };
      return { operations: row.operations, bytesWritten: row.bytes_written, wireBytes: row.wire_bytes };
    });
  }

  /** Per path, the last failure in `epoch` when no later operation on that path has been answered since. */
  openFailures(epoch: number): OpenFailure[] {
    return this.guarded(() => {
      const rows = this.db
        .prepare(
          `SELECT o.seq, o.path, r.reason, r.applied_at
             FROM operations o JOIN results r ON r.epoch = o.epoch AND r.seq = o.seq
            WHERE o.epoch = ? AND r.outcome = 'failed'
              AND NOT EXISTS (
                SELECT 1 FROM operations later JOIN results lr ON lr.epoch = later.epoch AND lr.seq = later.seq
                 WHERE later.path = o.path AND later.epoch = o.epoch AND later.seq > o.seq)
            ORDER BY o.seq`,
        )
        .all(epoch) as { seq: number; path: string; reason: string | null; applied_at: number }[];
      return rows.map((r) => ({
        position: { epoch, seq: r.seq },
        path: r.path,
        reason: r.reason,
        appliedAt: r.applied_at,
      }));
    });
  }

  /**
   * Replaces the service record `key` (a watch's heartbeat, the last run's problems): small JSON the
   * CLI validates, kept outside the append-only tables because only the latest value matters.
   */
  putServiceRecord(key: string, value: string): void {
    this.guarded(() => {
      this.db.prepare("INSERT OR REPLACE INTO service (key, value) VALUES (?, ?)").run(key, value);
    });
  }

  /** The service record `key`, or undefined (also in a log written before service records existed). */
  serviceRecord(key: string): string | undefined {
    return this.guarded(() => {
      // A read-only audit of an older log: the table is only created by a writer.
      const exists = this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'service'").get();
      if (exists === undefined) return undefined;
      const value = this.db.prepare("SELECT value FROM service WHERE key = ?").pluck().get(key);
      return typeof value === "string" ? value : undefined;
    });
  }

  /** Runs SQLite's quick_check; "ok" when the file is consistent. */
  quickCheck(): string {
    return this.guarded(() => {
      return String(this.db.pragma("quick_check", { simple: true }));
    });
  }

  /** Closes the database. */
  close(): void {
    try {
      // Not left to SQLite's close: it checkpoints (and flushes) only as the file's last connection.
      this.walSync?.close(this.head);
    } finally {
      this.db.close();
    }
  }
}

/**
 * Makes a log's appends durable off the event loop: an append commits without an fsync (synchronous=NORMAL
 * in WAL mode: a crash of the process loses nothing, the kernel holds the WAL), and fdatasync of the WAL
 * runs on a thread of libuv's pool, one at a time; `durable` is the head as it was when the last one that
 * finished began. A source then ships an operation while its log reaches the disk, instead of after: the
 * target learns how far the log is durable (ApplyRequest's `logDurableSeq`) and never makes a later
 * position durable, so after a power cut its position never names an operation the log lost.
 */
class WalSync {
  private running: Promise<void> | undefined;
  private failure: Error | undefined;
  private closed = false;

  private constructor(
    private readonly fd: number,
    public durable: Position,
  ) {}

  /**
   * Opens the WAL `path` and flushes it once: what a process that crashed before it had committed (and not
   * flushed) becomes durable before anything is shipped from it again. Undefined when it cannot be opened
   * (appends then commit with an fsync each, as without deferral).
   */
  static open(path: string, head: Position): WalSync | undefined {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch {
      return undefined;
    }
    try {
      fdatasyncSync(fd);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
    return new WalSync(fd, { ...head });
  }

  /** Records that everything up to `position` is durable (a commit that was fsynced). */
  madeDurable(position: Position): void {
    if (comparePositions(position, this.durable) > 0) this.durable = { ...position };
  }

  /** Flushes until the head (`head()` read as each flush begins) is durable; rejects with a flush's failure. */
  async through(head: () => Position): Promise<void> {
    while (comparePositions(head(), this.durable) > 0) {
      if (this.failure !== undefined) throw this.failure;
      if (this.closed) throw new Error("the operation log is closed");
      this.running ??= this.flush(head());
      await this.running;
    }
    if (this.failure !== undefined) throw this.failure;
  }

  private flush(upTo: Position): Promise<void> {
    return new Promise<void>((resolve) => {
      fdatasync(this.fd, (error) => {
        this.running = undefined;
        if (error === null) this.madeDurable(upTo);
        else this.failure ??= new Error(`could not make the operation log durable: ${error.message}`);
        if (this.closed) closeSync(this.fd);
        resolve();
      });
    });
  }

  /** Flushes what is appended (`head`) here and now, and lets go of the WAL. */
  close(head: Position): void {
    if (this.closed) return;
    this.closed = true;
    try {
      fdatasyncSync(this.fd);
      this.madeDurable(head);
    } finally {
      // A flush still running closes the descriptor when it ends (closing it now could hand its number on).
      if (this.running === undefined) closeSync(this.fd);
    }
  }
}

function comparePositions(a: Position, b: Position): number {
  return a.epoch - b.epoch || a.seq - b.seq;
}

/**
 * Opens an existing log so that no statement can change it. A writable connection with query_only is
 * preferred over SQLite's read-only mode: closing it removes the WAL and shared-memory files as a
 * writer's close does, where a read-only connection would leave them behind. Without write permission,
 * read-only it is.
 */
function openForReading(path: string): Database.Database {
  let db: Database.Database;
  try {
    db = new Database(path, { fileMustExist: true, nativeBinding: sqliteNativeBinding() });
  } catch (error) {
    if ((error as { code?: string }).code !== "SQLITE_CANTOPEN") throw error;
    return new Database(path, { readonly: true, fileMustExist: true, nativeBinding: sqliteNativeBinding() });
  }
  db.pragma("query_only = ON");
  return db;
}

function parseEntryRow(row: unknown): LogEntry {
  const r = EntryRowSchema.parse(row);
  return {
    position: PositionSchema.parse({ epoch: r.epoch, seq: r.seq }),
    loggedAt: r.logged_at,
    operation: OperationSchema.parse(JSON.parse(r.operation)),
    detectedBy: r.detected_by,
  };
}
