import Database from "better-sqlite3";
import { z } from "zod";
import { type AppliedPosition, AppliedPositionSchema } from "./protocol.js";

/** What the cheap change check remembers of a file: if size, mtime, ctime and inode match, the hash holds. */
export interface IndexedFile {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  hash: string;
}

/** Relative path → what the file looked like when last hashed. A Map satisfies it. */
export interface ContentIndex {
  get(path: string): IndexedFile | undefined;
  set(path: string, entry: IndexedFile): void;
  delete(path: string): void;
}

/** Where a target keeps its applied position so it survives a restart. */
export interface PositionStore {
  load(): AppliedPosition | null;
  save(position: AppliedPosition): void;
}

const IndexRowSchema = z.object({
  path: z.string(),
  size: z.number(),
  mtime_ms: z.number(),
  ctime_ms: z.number(),
  ino: z.number(),
  hash: z.string(),
});

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS file_index (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ms REAL NOT NULL, ctime_ms REAL NOT NULL,
    ino INTEGER NOT NULL, hash TEXT NOT NULL) STRICT, WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS applied_position (
    id INTEGER PRIMARY KEY CHECK (id = 1), log_id TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL) STRICT;
`;

/**
 * A side's durable state beside the log: the persistent content index (so a restart scan does not
 * re-read unchanged files) and, on a target, the applied position. One SQLite file (WAL,
 * synchronous=FULL); index changes are buffered and written in one transaction by `flush`.
 */
export class StateStore implements ContentIndex, PositionStore {
  private readonly db: Database.Database;
  private readonly index = new Map<string, IndexedFile>();
  private readonly dirty = new Map<string, IndexedFile | null>();

  /** Opens (or creates) the state file; undefined keeps it in memory. */
  constructor(path?: string) {
    this.db = new Database(path ?? ":memory:");
    if (path !== undefined) {
      this.db.pragma("journal_mode = WAL");
      this.db.pragma("synchronous = FULL");
    }
    this.db.exec(SCHEMA);
    for (const row of this.db.prepare("SELECT path, size, mtime_ms, ctime_ms, ino, hash FROM file_index").all()) {
      const r = IndexRowSchema.parse(row);
      this.index.set(r.path, { size: r.size, mtimeMs: r.mtime_ms, ctimeMs: r.ctime_ms, ino: r.ino, hash: r.hash });
    }
  }

  /** The indexed state of `path`. */
  get(path: string): IndexedFile | undefined {
    return this.index.get(path);
  }

  /** Records the state of `path` (written at the next flush). */
  set(path: string, entry: IndexedFile): void {
    this.index.set(path, entry);
    this.dirty.set(path, entry);
  }

  /** Forgets `path` (at the next flush). */
  delete(path: string): void {
    if (this.index.delete(path)) this.dirty.set(path, null);
  }

  /** Writes buffered index changes in one transaction. */
  flush(): void {
    if (this.dirty.size === 0) return;
    const upsert = this.db.prepare(
      "INSERT OR REPLACE INTO file_index (path, size, mtime_ms, ctime_ms, ino, hash) VALUES (?, ?, ?, ?, ?, ?)",
    );
    const remove = this.db.prepare("DELETE FROM file_index WHERE path = ?");
    this.db.transaction(() => {
      for (const [path, entry] of this.dirty) {
        if (entry === null) remove.run(path);
        else upsert.run(path, entry.size, entry.mtimeMs, entry.ctimeMs, entry.ino, entry.hash);
      }
    })();
    this.dirty.clear();
  }

  /** The applied position recorded by `save`, or null. */
  load(): AppliedPosition | null {
    const row = this.db.prepare("SELECT log_id, epoch, seq FROM applied_position WHERE id = 1").get() as
      | { log_id: string; epoch: number; seq: number }
      | undefined;
    return row === undefined
      ? null
      : AppliedPositionSchema.parse({ logId: row.log_id, epoch: row.epoch, seq: row.seq });
  }

  /** Durably records the applied position, with any buffered index changes, in one transaction. */
  save(position: AppliedPosition): void {
    this.db.transaction(() => {
      this.db
        .prepare("INSERT OR REPLACE INTO applied_position (id, log_id, epoch, seq) VALUES (1, ?, ?, ?)")
        .run(position.logId, position.epoch, position.seq);
      this.flush();
    })();
  }

  /** Flushes and closes the file. */
  close(): void {
    this.flush();
    this.db.close();
  }
}
