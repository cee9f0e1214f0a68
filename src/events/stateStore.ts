import { hash } from "node:crypto";
import Database from "better-sqlite3";
import type { Chunk } from "../content/chunker.js";
import { asStateFileError, boundPageCache, checkStateFile, closedAsRecorded } from "./operationLog.js";
import { parentOf } from "./paths.js";
import { type AppliedPosition, AppliedPositionSchema } from "./protocol.js";
import { sqliteNativeBinding } from "./sqliteBinding.js";

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
  /**
   * Says a directory's files are about to be looked up (`files`, as its listing states them, by name), so
   * their rows can be read at once; returns their hashes, in order, when `recordListing` recorded this
   * directory with every one of them stating as now (size, mtime, ctime, inode: the trust of `get`).
   */
  prefetch?(dir: string, files: readonly ListedFile[]): readonly string[] | undefined;
  /** Records the hashes of a directory's files (`files`, as its listing stated them), for `prefetch`. */
  recordListing?(dir: string, files: readonly ListedFile[], hashes: readonly string[]): void;
}

/**
 * A target's digests of its directory listings (see ManifestWalk), each kept with the signature of the
 * listing it was computed over: a directory whose listing has the same signature again has the same digest.
 */
export interface DigestCache {
  /** The digest and entry count recorded for `dir` under `signature`, if that is the one recorded. */
  recallDigest(dir: string, signature: string): { digest: string; count: number } | undefined;
  recordDigest(dir: string, signature: string, digest: string, count: number): void;
}

/** A regular file as a directory listing states it: its name and what the change check compares. */
export interface ListedFile {
  name: string;
  stat: Omit<IndexedFile, "hash">;
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

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS file_index (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ms REAL NOT NULL, ctime_ms REAL NOT NULL,
    ino INTEGER NOT NULL, hash TEXT NOT NULL) STRICT, WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS file_index_by_hash ON file_index (hash);
  CREATE TABLE IF NOT EXISTS listing_index (
    dir TEXT PRIMARY KEY, signature TEXT NOT NULL, hashes TEXT NOT NULL) STRICT, WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS digest_index (
    dir TEXT PRIMARY KEY, signature TEXT NOT NULL, digest TEXT NOT NULL, count INTEGER NOT NULL) STRICT;
  CREATE TABLE IF NOT EXISTS chunk_lists (hash TEXT PRIMARY KEY, chunks BLOB NOT NULL) STRICT, WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS applied_position (
    id INTEGER PRIMARY KEY CHECK (id = 1), log_id TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL) STRICT;
`;

/**
 * A source writes buffered index and chunk-list changes once this many wait, so its memory stays bounded
 * (see `writeAheadAfter`).
 */
export const SOURCE_WRITE_AHEAD = 8192;

/** Past this many directories written into, a store that started empty asks the file again (memory bound). */
const MAX_INDEXED_DIRS = 100_000;

/** A file_index row as SQLite returns it (STRICT columns: the types hold). */
interface IndexRow {
  size: number;
  mtime_ms: number;
  ctime_ms: number;
  ino: number;
  hash: string;
}

/**
 * A side's durable state beside the log: the persistent content index (so a restart scan does not
 * re-read unchanged files), recorded listings and digests (one row per directory, see `prefetch` and
 * DigestCache) and, on a target, the applied position. One SQLite file (WAL,
 * synchronous=FULL). The index is looked up in the file, a directory's rows at a time, never loaded
 * whole: memory does not grow with the tree. Changes are buffered and written in one transaction by
 * `flush`, and on a source also once `writeAheadAfter` wait.
 */
export class StateStore implements ContentIndex, DigestCache, PositionStore {
  private readonly db!: Database.Database;
  /** Index changes not yet written: an entry, or null for a removal. */
  private readonly dirty = new Map<string, IndexedFile | null>();
  /** Paths among `dirty` by their new hash. */
  private readonly dirtyByHash = new Map<string, Set<string>>();
  private readonly dirtyChunks = new Map<string, Chunk[]>();
  /** Listings recorded and not yet written, by directory. */
  private readonly dirtyListings = new Map<string, ListingRow>();
  /** Digests recorded and not yet written, by directory. */
  private readonly dirtyDigests = new Map<string, DigestRow>();
  /** The applied position the file holds, as `load` read it or `save` wrote it (see save). */
  private storedPosition: AppliedPosition | undefined;
  private readonly writeAheadAfter: number;
  private readonly statements!: {
    get: Database.Statement<[string], IndexRow>;
    byHash: Database.Statement<[string], string>;
    below: Database.Statement<[string, string, string], IndexRow & { path: string }>;
    /** Rows as arrays (no object per row): path, size, mtime_ms, ctime_ms, ino, hash. */
    many: Database.Statement<[string], [string, number, number, number, number, string]>;
  };
  /** Recorded listings and digests, read a window of directories at a time (see RowWindow). */
  private readonly listings: RowWindow<ListingRow>;
  private readonly digests: RowWindow<DigestRow>;
  /** The rows of the last `prefetch` (null: no row), until a change or the next prefetch. */
  private prefetched = new Map<string, IndexedFile | null>();
  /**
   * Where the file can hold index rows: undefined when it held some as it was opened (anywhere), else the
   * directories this store has written rows into since. A first run asks nothing of an empty index (one
   * statement per directory, ≈ 10 % of a source's walk); a row written by another process meanwhile is
   * only missed, and a missed row is a file read again.
   */
  private indexedDirs: Set<string> | undefined;

  /** The file (":memory:" in memory): every failure about it is a StateFileError naming it. */
  readonly path: string;

  /**
   * Opens (or creates) the state file; undefined keeps it in memory. `verify` runs SQLite's quick_check
   * first. A file that cannot be used (damaged, full, unreadable) throws a StateFileError naming it.
   */
  /**
   * `writeAheadAfter`: write buffered changes once this many wait, not only at `flush`. Only for a side
   * whose rows describe files it does not write (a source: SOURCE_WRITE_AHEAD). A target's rows vouch for
   * files whose bytes are durable only after its next file-system flush, so they must be committed with
   * it (`save`), never ahead: after a power loss a torn file would otherwise pass for the hashed one.
   */
  constructor(path?: string, options: { verify?: boolean; writeAheadAfter?: number } = {}) {
    this.path = path ?? ":memory:";
    this.writeAheadAfter = options.writeAheadAfter ?? Number.POSITIVE_INFINITY;
    // Asked before connecting: a connection's first statement opens the WAL beside the file.
    const verify = options.verify === true && path !== undefined && !closedAsRecorded(path);
    let db: Database.Database | undefined;
    try {
      db = new Database(this.path, { nativeBinding: sqliteNativeBinding() });
      this.db = db;
      boundPageCache(db);
      if (path !== undefined) {
        if (verify) checkStateFile(db, this.path);
        db.pragma("journal_mode = WAL");
        db.pragma("synchronous = FULL");
      }
      db.exec(SCHEMA);
      this.indexedDirs = db.prepare("SELECT 1 FROM file_index LIMIT 1").get() === undefined ? new Set() : undefined;
      this.statements = {
        get: db.prepare("SELECT size, mtime_ms, ctime_ms, ino, hash FROM file_index WHERE path = ?"),
        byHash: db.prepare<[string], string>("SELECT path FROM file_index WHERE hash = ?").pluck(),
        below: db.prepare(
          "SELECT path, size, mtime_ms, ctime_ms, ino, hash FROM file_index WHERE path = ? OR (path > ? AND path < ?)",
        ),
        many: db
          .prepare<[string], [string, number, number, number, number, string]>(
            "SELECT path, size, mtime_ms, ctime_ms, ino, hash FROM file_index WHERE path IN (SELECT value FROM json_each(?))",
          )
          .raw(),
      };
      const listings = db
        .prepare<[string, number], [string, string, string]>(
          "SELECT dir, signature, hashes FROM listing_index WHERE dir >= ? ORDER BY dir LIMIT ?",
        )
        .raw();
      this.listings = new RowWindow((from, limit) =>
        listings.all(from, limit).map(([dir, signature, hashes]) => [dir, { signature, hashes }]),
      );
      const digests = db
        .prepare<[string, number], [string, string, string, number]>(
          "SELECT dir, signature, digest, count FROM digest_index WHERE dir >= ? ORDER BY dir LIMIT ?",
        )
        .raw();
      this.digests = new RowWindow((from, limit) =>
        digests.all(from, limit).map(([dir, signature, digest, count]) => [dir, { signature, digest, count }]),
      );
    } catch (error) {
      db?.close();
      throw asStateFileError(error, this.path, true);
    }
  }

  get(path: string): IndexedFile | undefined {
    const pending = this.dirty.has(path) ? this.dirty.get(path) : this.prefetched.get(path);
    if (pending !== undefined) return pending ?? undefined;
    if (!this.mayHoldRowsIn(parentOf(path))) return undefined;
    const row = this.guarded(() => this.statements.get.get(path));
    return row === undefined ? undefined : entryOf(row);
  }

  /** Records the state of `path` (written at the next flush). */
  set(path: string, entry: IndexedFile): void {
    this.markDirty(path, entry);
  }

  /** Forgets `path` (at the next flush). */
  delete(path: string): void {
    this.markDirty(path, null);
  }

  pathsWithHash(hash: string): string[] {
    const stored = this.guarded(() => this.statements.byHash.all(hash)).filter((path) => !this.dirty.has(path));
    return [...stored, ...(this.dirtyByHash.get(hash) ?? [])];
  }

  entriesBelow(path: string): [string, IndexedFile][] {
    // "/" sorts just before "0": the paths below `path` are those strictly between "path/" and "path0".
    const rows = this.guarded(() => this.statements.below.all(path, `${path}/`, `${path}0`));
    const below: [string, IndexedFile][] = rows.filter((r) => !this.dirty.has(r.path)).map((r) => [r.path, entryOf(r)]);
    const prefix = `${path}/`;
    for (const [p, entry] of this.dirty) {
      if (entry !== null && (p === path || p.startsWith(prefix))) below.push([p, entry]);
    }
    return below;
  }

  /**
   * A directory whose files all state as when its listing was recorded takes their hashes from that one
   * row (20,000 files in 2,000 directories: 2,000 rows read instead of 20,000). Otherwise the files' rows
   * are read in one statement (one call per directory instead of one per file: a statement costs more than
   * the lookups it makes).
   */
  prefetch(dir: string, files: readonly ListedFile[]): readonly string[] | undefined {
    this.prefetched = new Map();
    if (files.length < 2) return undefined;
    const recorded = this.dirtyListings.get(dir) ?? this.guarded(() => this.listings.get(dir));
    if (recorded !== undefined && recorded.signature === listingSignature(files)) {
      const hashes = recorded.hashes.split(",");
      if (hashes.length === files.length) return hashes;
    }
    if (!this.mayHoldRowsIn(dir)) return undefined;
    const paths = files.map((file) => (dir === "" ? file.name : `${dir}/${file.name}`));
    for (const path of paths) this.prefetched.set(path, null);
    for (const [path, size, mtimeMs, ctimeMs, ino, hash] of this.guarded(() =>
      this.statements.many.all(JSON.stringify(paths)),
    )) {
      this.prefetched.set(path, { size, mtimeMs, ctimeMs, ino, hash });
    }
    return undefined;
  }

  private mayHoldRowsIn(dir: string): boolean {
    return this.indexedDirs === undefined || this.indexedDirs.has(dir);
  }

  recordListing(dir: string, files: readonly ListedFile[], hashes: readonly string[]): void {
    if (files.length < 2 || hashes.length !== files.length) return;
    this.dirtyListings.set(dir, { signature: listingSignature(files), hashes: hashes.join(",") });
    if (this.dirtyListings.size >= this.writeAheadAfter) this.flush();
  }

  recallDigest(dir: string, signature: string): { digest: string; count: number } | undefined {
    const row = this.dirtyDigests.get(dir) ?? this.guarded(() => this.digests.get(dir));
    return row?.signature === signature ? { digest: row.digest, count: row.count } : undefined;
  }

  recordDigest(dir: string, signature: string, digest: string, count: number): void {
    this.dirtyDigests.set(dir, { signature, digest, count });
    if (this.dirtyDigests.size >= this.writeAheadAfter) this.flush();
  }

  private markDirty(path: string, entry: IndexedFile | null): void {
    this.prefetched.delete(path);
    const old = this.dirty.get(path);
    if (old) {
      const paths = this.dirtyByHash.get(old.hash);
      paths?.delete(path);
      if (paths?.size === 0) this.dirtyByHash.delete(old.hash);
    }
    this.dirty.set(path, entry);
    if (entry !== null) {
      let paths = this.dirtyByHash.get(entry.hash);
      if (paths === undefined) {
        paths = new Set();
        this.dirtyByHash.set(entry.hash, paths);
      }
      paths.add(path);
    }
    if (this.dirty.size >= this.writeAheadAfter) this.flush();
  }

  /** Runs `work` against the file; SQLite's complaints about the file become StateFileErrors. */
  private guarded<T>(work: () => T): T {
    try {
      return work();
    } catch (error) {
      throw asStateFileError(error, this.path);
    }
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
      if (this.dirtyChunks.size >= this.writeAheadAfter) this.flush();
    },
  };

  /** Writes buffered index changes in one transaction. */
  flush(): void {
    if (this.buffered() === 0) return;
    this.guarded(() => this.db.transaction(() => this.writeBuffered())());
    this.forgetBuffered();
  }

  /**
   * Writes the buffered changes within the caller's transaction. Not a transaction of its own: one nested in
   * `save`'s was a savepoint, whose journal kept a copy of every page it changed (a 20,000-file initial
   * mirror's target wrote thousands of them to a temporary file).
   */
  private writeBuffered(): void {
    const [upsert, remove, putChunks, putListing, putDigest] = [
      this.db.prepare(
        "INSERT OR REPLACE INTO file_index (path, size, mtime_ms, ctime_ms, ino, hash) VALUES (?, ?, ?, ?, ?, ?)",
      ),
      this.db.prepare("DELETE FROM file_index WHERE path = ?"),
      this.db.prepare("INSERT OR REPLACE INTO chunk_lists (hash, chunks) VALUES (?, ?)"),
      this.db.prepare("INSERT OR REPLACE INTO listing_index (dir, signature, hashes) VALUES (?, ?, ?)"),
      this.db.prepare("INSERT OR REPLACE INTO digest_index (dir, signature, digest, count) VALUES (?, ?, ?, ?)"),
    ];
    for (const [path, entry] of this.dirty) {
      if (entry === null) remove.run(path);
      else {
        upsert.run(path, entry.size, entry.mtimeMs, entry.ctimeMs, entry.ino, entry.hash);
        this.indexedDirs?.add(parentOf(path));
      }
    }
    for (const [hash, chunks] of this.dirtyChunks) putChunks.run(hash, encodeChunks(chunks));
    for (const [dir, row] of this.dirtyListings) putListing.run(dir, row.signature, row.hashes);
    for (const [dir, row] of this.dirtyDigests) putDigest.run(dir, row.signature, row.digest, row.count);
  }

  /** Once the buffered changes are committed: nothing is buffered, and what was read before them is stale. */
  private forgetBuffered(): void {
    if (this.indexedDirs !== undefined && this.indexedDirs.size > MAX_INDEXED_DIRS) this.indexedDirs = undefined;
    this.dirtyListings.clear();
    this.dirtyDigests.clear();
    this.dirty.clear();
    this.dirtyByHash.clear();
    this.prefetched = new Map(); // read before these rows were written
    this.listings.reset();
    this.digests.reset();
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
      this.storedPosition = AppliedPositionSchema.parse({ logId: row.log_id, epoch: row.epoch, seq: row.seq });
    } catch (error) {
      throw asStateFileError(error, this.path, true);
    }
    return { ...this.storedPosition };
  }

  /**
   * Durably records the applied position, with any buffered index changes, in one transaction. The
   * position the file already holds, with nothing buffered, is not written again: a run that changes
   * nothing commits nothing (each commit is an fsync of the WAL, and the first one's directory).
   */
  save(position: AppliedPosition): void {
    const stored = this.storedPosition;
    if (
      this.buffered() === 0 &&
      stored?.logId === position.logId &&
      stored.epoch === position.epoch &&
      stored.seq === position.seq
    ) {
      return;
    }
    this.guarded(() =>
      this.db.transaction(() => {
        this.db
          .prepare("INSERT OR REPLACE INTO applied_position (id, log_id, epoch, seq) VALUES (1, ?, ?, ?)")
          .run(position.logId, position.epoch, position.seq);
        this.writeBuffered();
      })(),
    );
    this.forgetBuffered();
    this.storedPosition = { ...position };
  }

  /** Index changes held for the next flush. */
  private buffered(): number {
    return this.dirty.size + this.dirtyChunks.size + this.dirtyListings.size + this.dirtyDigests.size;
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

/** How many rows one read of listing_index or digest_index brings (see RowWindow). */
const ROW_WINDOW = 256;

/**
 * A table keyed by directory, read ROW_WINDOW rows at a time in key order, from the first key asked for
 * that the window does not cover: a walk asks in nearly that order, so one statement serves hundreds of
 * directories instead of one each (a statement costs ≈ 10 µs here, a row in it well under one). Memory
 * stays bounded by the window. A row read before a later write may be stale: a recorded signature and
 * what it vouches for are always a consistent pair, so a stale row only misses.
 */
class RowWindow<Row> {
  private rows = new Map<string, Row>();
  /** The keys covered (in SQLite's order of text): from `first` through `last`, or to the end without `last`. */
  private first: string | undefined;
  private last: string | undefined;

  constructor(private readonly read: (from: string, limit: number) => [string, Row][]) {}

  get(key: string): Row | undefined {
    if (!this.covers(key)) {
      const rows = this.read(key, ROW_WINDOW);
      this.rows = new Map(rows);
      this.first = key;
      this.last = rows.length < ROW_WINDOW ? undefined : rows.at(-1)![0];
    }
    return this.rows.get(key);
  }

  /** Forgets the window (rows were written). */
  reset(): void {
    this.rows = new Map();
    this.first = undefined;
  }

  private covers(key: string): boolean {
    if (this.first === undefined || compareAsUtf8(this.first, key) > 0) return false;
    return this.last === undefined || compareAsUtf8(key, this.last) <= 0;
  }
}

/**
 * Orders strings as SQLite orders text (memcmp of UTF-8, which is code point order). JavaScript's `<`
 * compares UTF-16 code units, which differs where a surrogate meets a unit from U+E000 up: shifting the
 * surrogates above those units (and those units down into the gap) restores code point order.
 */
export function compareAsUtf8(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

function codePointRank(unit: number): number {
  if (unit < 0xd800) return unit;
  return unit < 0xe000 ? unit + 0x2000 : unit - 0x800;
}

/** A listing_index row: the signature of a directory's files when recorded, and their hashes in order. */
interface ListingRow {
  signature: string;
  hashes: string;
}

/** A digest_index row (see DigestCache). */
interface DigestRow {
  signature: string;
  digest: string;
  count: number;
}

/** What a directory's files state, as a signature: equal only when every name and stat is. */
function listingSignature(files: readonly ListedFile[]): string {
  const signature = new SignatureBuilder();
  for (const { name, stat } of files)
    signature.text(name).number(stat.size).number(stat.mtimeMs).number(stat.ctimeMs).number(stat.ino);
  return signature.digest();
}

/** Scratch space of SignatureBuilder: one at a time is built (a thread has its own instance of this module). */
let signatureBytes = Buffer.allocUnsafe(64 * 1024);

/**
 * A signature of fields (names and stat numbers) as one sha256 over their bytes: each text with a NUL
 * after it (no name holds one), each number as 8 bytes (a float64). Writing them so instead of joining
 * their decimal text spares turning every time and inode into a string (a 20,000-file listing's
 * signatures took ≈ 37 ms joined, ≈ 21 ms so, in a fresh process). Callers state fields in a fixed pattern,
 * so equal signatures mean equal fields.
 */
export class SignatureBuilder {
  private at = 0;

  text(value: string): this {
    this.room(value.length * 3 + 1);
    this.at += signatureBytes.write(value, this.at, "utf8");
    signatureBytes[this.at++] = 0;
    return this;
  }

  number(value: number): this {
    this.room(8);
    this.at = signatureBytes.writeDoubleLE(value, this.at);
    return this;
  }

  /** The signature (base64 sha256) of what was written. */
  digest(): string {
    return hash("sha256", signatureBytes.subarray(0, this.at), "base64");
  }

  private room(bytes: number): void {
    if (this.at + bytes <= signatureBytes.length) return;
    const larger = Buffer.allocUnsafe(Math.max(signatureBytes.length * 2, this.at + bytes));
    signatureBytes.copy(larger, 0, 0, this.at);
    signatureBytes = larger;
  }
}

function entryOf(row: IndexRow): IndexedFile {
  return { size: row.size, mtimeMs: row.mtime_ms, ctimeMs: row.ctime_ms, ino: row.ino, hash: row.hash };
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
