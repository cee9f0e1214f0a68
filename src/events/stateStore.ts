import Database from "better-sqlite3";
import { z } from "zod";
import type { Chunk } from "../content/chunker.js";
import { asStateFileError, checkStateFile } from "./operationLog.js";
import { type AppliedPosition, AppliedPositionSchema } from "./protocol.js";

/** What the cheap change check remembers of a file: if size, mtime, ctime and inode match, the hash holds. */
export interface IndexedFile {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  hash: string;
}

/** Relative path → what the file looked like when last hashed, and the reverse: paths by hash. */
export interface ContentIndex {
  get(path: string): IndexedFile | undefined;
  set(path: string, entry: IndexedFile): void;
  delete(path: string): void;
  /** Paths last seen holding `hash` (verify each before trusting it). */
  pathsWithHash(hash: string): string[];
  /** Entries at or below `path`. */
  entriesBelow(path: string): [string, IndexedFile][];
}

/** A ContentIndex in memory. */
export class ContentIndexMap implements ContentIndex {
  private readonly byPath = new Map<string, IndexedFile>();
  private readonly byHash = new Map<string, Set<string>>();

  get(path: string): IndexedFile | undefined {
    return this.byPath.get(path);
  }

  set(path: string, entry: IndexedFile): void {
    this.delete(path);
    this.byPath.set(path, entry);
    let paths = this.byHash.get(entry.hash);
    if (paths === undefined) {
      paths = new Set();
      this.byHash.set(entry.hash, paths);
    }
    paths.add(path);
  }

  delete(path: string): void {
    const old = this.byPath.get(path);
    if (old === undefined) return;
    this.byPath.delete(path);
    const paths = this.byHash.get(old.hash);
    paths?.delete(path);
    if (paths?.size === 0) this.byHash.delete(old.hash);
  }

  pathsWithHash(hash: string): string[] {
    return [...(this.byHash.get(hash) ?? [])];
  }

  entriesBelow(path: string): [string, IndexedFile][] {
    const prefix = `${path}/`;
    return [...this.byPath].filter(([p]) => p === path || p.startsWith(prefix));
  }
}

/** One chunk of a content version as stored: its length and its hash (offsets follow from the lengths). */
const CHUNK_RECORD_BYTES = 4 + 32;

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
  CREATE TABLE IF NOT EXISTS chunk_lists (hash TEXT PRIMARY KEY, chunks BLOB NOT NULL) STRICT, WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS applied_position (
    id INTEGER PRIMARY KEY CHECK (id = 1), log_id TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL) STRICT;
`;

/**
 * A side's durable state beside the log: the persistent content index (so a restart scan does not
 * re-read unchanged files) and, on a target, the applied position. One SQLite file (WAL,
 * synchronous=FULL); index changes are buffered and written in one transaction by `flush`.
 */
export class StateStore extends ContentIndexMap implements PositionStore {
  private readonly db!: Database.Database;
  private readonly dirty = new Map<string, IndexedFile | null>();
  private readonly dirtyChunks = new Map<string, Chunk[]>();

  /** The file (":memory:" in memory): every failure about it is a StateFileError naming it. */
  readonly path: string;

  /**
   * Opens (or creates) the state file; undefined keeps it in memory. `verify` runs SQLite's quick_check
   * first. A file that cannot be used (damaged, full, unreadable) throws a StateFileError naming it.
   */
  constructor(path?: string, options: { verify?: boolean } = {}) {
    super();
    this.path = path ?? ":memory:";
    let db: Database.Database | undefined;
    try {
      db = new Database(this.path);
      this.db = db;
      if (path !== undefined) {
        if (options.verify === true) checkStateFile(db, this.path);
        db.pragma("journal_mode = WAL");
        db.pragma("synchronous = FULL");
      }
      db.exec(SCHEMA);
      for (const row of db.prepare("SELECT path, size, mtime_ms, ctime_ms, ino, hash FROM file_index").all()) {
        const r = IndexRowSchema.parse(row);
        super.set(r.path, { size: r.size, mtimeMs: r.mtime_ms, ctimeMs: r.ctime_ms, ino: r.ino, hash: r.hash });
      }
    } catch (error) {
      db?.close();
      throw asStateFileError(error, this.path, true);
    }
  }

  /** Runs `work` against the file; SQLite's complaints about the file become StateFileErrors. */
  private guarded<T>(work: () => T): T {
    try {
      return work();
    } catch (error) {
      throw asStateFileError(error, this.path);
    }
  }

  /** Records the state of `path` (written at the next flush). */
  override set(path: string, entry: IndexedFile): void {
    super.set(path, entry);
    this.dirty.set(path, entry);
  }

  /** Forgets `path` (at the next flush). */
  override delete(path: string): void {
    if (this.get(path) === undefined) return;
    super.delete(path);
    this.dirty.set(path, null);
  }

  /** The chunk list of a content version, as a delta's basis (a ChunkLists for the source). */
  readonly chunkLists = {
    get: (hash: string): Chunk[] | undefined => {
      const pending = this.dirtyChunks.get(hash);
      if (pending !== undefined) return pending;
      const blob = this.guarded(() =>
        this.db.prepare("SELECT chunks FROM chunk_lists WHERE hash = ?").pluck().get(hash),
      );
      return blob instanceof Uint8Array ? decodeChunks(blob) : undefined;
    },
    set: (hash: string, chunks: Chunk[]): void => {
      this.dirtyChunks.set(hash, chunks);
    },
  };

  /** Writes buffered index changes in one transaction. */
  flush(): void {
    if (this.dirty.size === 0 && this.dirtyChunks.size === 0) return;
    const [upsert, remove, putChunks] = this.guarded(() => [
      this.db.prepare(
        "INSERT OR REPLACE INTO file_index (path, size, mtime_ms, ctime_ms, ino, hash) VALUES (?, ?, ?, ?, ?, ?)",
      ),
      this.db.prepare("DELETE FROM file_index WHERE path = ?"),
      this.db.prepare("INSERT OR REPLACE INTO chunk_lists (hash, chunks) VALUES (?, ?)"),
    ]);
    this.guarded(() =>
      this.db.transaction(() => {
        for (const [path, entry] of this.dirty) {
          if (entry === null) remove.run(path);
          else upsert.run(path, entry.size, entry.mtimeMs, entry.ctimeMs, entry.ino, entry.hash);
        }
        for (const [hash, chunks] of this.dirtyChunks) putChunks.run(hash, encodeChunks(chunks));
      })(),
    );
    this.dirty.clear();
    this.dirtyChunks.clear();
  }

  /** The applied position recorded by `save`, or null. */
  load(): AppliedPosition | null {
    const row = this.guarded(
      () =>
        this.db.prepare("SELECT log_id, epoch, seq FROM applied_position WHERE id = 1").get() as
          | { log_id: string; epoch: number; seq: number }
          | undefined,
    );
    if (row === undefined) return null;
    try {
      return AppliedPositionSchema.parse({ logId: row.log_id, epoch: row.epoch, seq: row.seq });
    } catch (error) {
      throw asStateFileError(error, this.path, true);
    }
  }

  /** Durably records the applied position, with any buffered index changes, in one transaction. */
  save(position: AppliedPosition): void {
    this.guarded(() =>
      this.db.transaction(() => {
        this.db
          .prepare("INSERT OR REPLACE INTO applied_position (id, log_id, epoch, seq) VALUES (1, ?, ?, ?)")
          .run(position.logId, position.epoch, position.seq);
        this.flush();
      })(),
    );
  }

  /** Flushes and closes the file; the file is closed even when the flush fails (which is then thrown). */
  close(): void {
    try {
      this.flush();
    } finally {
      this.db.close();
    }
  }
}

/** Packs a chunk list: per chunk its length (u32) and hash (32 bytes); offsets are the running sum. */
function encodeChunks(chunks: readonly Chunk[]): Buffer {
  const blob = Buffer.allocUnsafe(chunks.length * CHUNK_RECORD_BYTES);
  chunks.forEach((chunk, i) => {
    blob.writeUInt32BE(chunk.length, i * CHUNK_RECORD_BYTES);
    blob.write(chunk.id, i * CHUNK_RECORD_BYTES + 4, 32, "hex");
  });
  return blob;
}

function decodeChunks(blob: Uint8Array): Chunk[] {
  const buffer = Buffer.from(blob.buffer, blob.byteOffset, blob.length);
  const chunks: Chunk[] = [];
  let offset = 0;
  for (let at = 0; at + CHUNK_RECORD_BYTES <= buffer.length; at += CHUNK_RECORD_BYTES) {
    const length = buffer.readUInt32BE(at);
    chunks.push({ offset, length, id: buffer.toString("hex", at + 4, at + CHUNK_RECORD_BYTES) });
    offset += length;
  }
  return chunks;
}
