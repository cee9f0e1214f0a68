import { type Chunk, chunkContent, DELTA_MIN_SIZE, HashingChunker, replicationChunking } from "../content/chunker.js";
import { contentIdOf } from "../content/contentId.js";
import type { Attributes } from "../events/operation.js";
import { childOf, listedChildProblem, parentOf, relativePathProblem } from "../events/paths.js";
import { type ContentIndex, type IndexedFile, type ListedFile, SignatureBuilder } from "../events/stateStore.js";
import { type DirNode, emptyDir, type TreeNode } from "../events/tree.js";
import {
  type DirEntryStat,
  type EntryStat,
  type FileSystem,
  FileSystemError,
  type MirrorFileSystem,
  pathUnder,
} from "../fs/fileSystem.js";
import { wholeContentHasher } from "./hashingThread.js";

/** A per-path problem: reported next to results, never stopping the rest. */
export interface Problem {
  path: string;
  reason: string;
}

/** How to scan a tree. */
export interface ScanOptions {
  fs: FileSystem;
  /** Absolute, normalised root of the tree. */
  root: string;
  /** When given, unchanged files (size, mtime, ctime, inode) are not read again. */
  index?: ContentIndex;
  /** True for paths neither sent nor deleted (the ignore rules); they are left out of the result. */
  isExcluded?: (path: string, isDir: boolean) => boolean;
  /** Called with each directory's relative path just before it is listed (to watch it first). */
  onDirectory?: (path: string, ino: number | undefined) => void;
  /** Called for every file scanned, with its size (progress display). */
  onFileScanned?: (size: number) => void;
  /** Files up to this size keep their bytes in `contents` for shipping without a second read. */
  keepContentUpTo?: number;
  /** Which numeric ids to observe (rsync -o/-g); none when not given. */
  owners?: { uid: boolean; gid: boolean };
  /**
   * Called for every regular file with more than one hard link, with its inode key ("dev:ino"); returns the
   * path of its group's leader when the file is to be stated as a link to it (`linkTo`), or undefined.
   */
  onLinkedFile?: (path: string, inode: string) => string | undefined;
  /** The listing of directory `path`, when it was read already (for its signature): not read again. */
  listing?: { path: string; entries: DirEntryStat[] };
  /** When given, each directory listed has its listing's signature under this key in `signatures`. */
  signListings?: string;
  /**
   * Regular files (one link) larger than this whose hash is not known are not read: they are left out of
   * the result's node and listed in `deferred`, for the caller to read (see completeDeferred). Their
   * directory's listing gets no signature (its digest cannot be known yet).
   */
  deferFilesOver?: number;
}

/** A file's bytes as a scan read them, with their hash (computed from these bytes). */
export interface KeptContent {
  bytes: Uint8Array;
  hash: string;
}

/** A file a scan left unread (see ScanOptions.deferFilesOver): its relative path and its stat as listed. */
export interface DeferredFile {
  path: string;
  stat: EntryStat;
}

/** The observed state of one path, the bytes read on the way, and the problems met. */
export interface ScanResult {
  /** Undefined when nothing replicable is at the path. */
  node: TreeNode | undefined;
  contents: Map<string, KeptContent>;
  /** Chunk lists of the files read that are large enough for deltas, by content hash. */
  chunks: Map<string, Chunk[]>;
  problems: Problem[];
  /** Regular files with more than one hard link: path, inode key ("dev:ino"), content hash and metadata. */
  linked: { path: string; inode: string; hash: string; attributes: Attributes }[];
  /** The directories a one-level scan found, with their stats as listed (a walk scans each next with it). */
  listedDirs: Map<string, EntryStat>;
  /** The signatures of the directories listed (see listingSignature), with `signListings`. */
  signatures: Map<string, string>;
  /** Files left unread, with `deferFilesOver`. */
  deferred: DeferredFile[];
}

/** How often a file that keeps changing while read is retried before it is reported. */
const TORN_READ_ATTEMPTS = 3;
const DEFAULT_KEEP_CONTENT = 1024 * 1024;
/** A path that exists but could not be read: the planner leaves the target's copy alone. */
const UNREADABLE: TreeNode = { kind: "unknown" };

/** True when `fs` offers mirrorlog's extensions (lstat, symlinks, metadata). */
export function isMirrorFileSystem(fs: FileSystem): fs is MirrorFileSystem {
  return typeof (fs as Partial<MirrorFileSystem>).lstat === "function";
}

/**
 * Reads the tree at relative `path` below the root without following symlinks: recursively, or with
 * `recursive: false` one directory level (child directories come back empty, their mode only). `listed`
 * is the entry's stat when its parent's listing gave it (it is not stated again).
 * Special files, unreadable entries and names that cannot travel are reported as problems and left out.
 */
export function scanPath(options: ScanOptions, path: string, recursive = true, listed?: EntryStat): ScanResult {
  const result: ScanResult = {
    node: undefined,
    contents: new Map(),
    chunks: new Map(),
    problems: [],
    linked: [],
    listedDirs: new Map(),
    signatures: new Map(),
    deferred: [],
  };
  result.node = scanEntry(options, path, result, recursive ? Number.POSITIVE_INFINITY : 1, listed);
  return result;
}

/**
 * Scans one entry; `listed` is its lstat when the directory listing already read it, and `listedHash` the
 * hash the index recorded for a file listed so (see ContentIndex.prefetch).
 */
function scanEntry(
  options: ScanOptions,
  path: string,
  out: ScanResult,
  depth: number,
  listed?: EntryStat,
  listedHash?: string,
): TreeNode | undefined {
  const { fs } = options;
  const absolute = pathUnder(options.root, path);
  try {
    if (isMirrorFileSystem(fs)) {
      const stat = listed ?? fs.lstat(absolute);
      if (path !== "" && options.isExcluded?.(path, stat.kind === "dir")) return undefined;
      switch (stat.kind) {
        case "dir":
          if (depth > 0) return scanDir(options, path, absolute, stat, out, depth);
          out.listedDirs.set(path, stat);
          return emptyDir(attributesOf(stat, options));
        case "symlink": {
          const { mode: _mode, ...attributes } = attributesOf(stat, options);
          return { kind: "symlink", target: fs.readLink(absolute), ...attributes };
        }
        case "file":
          options.onFileScanned?.(stat.size);
          return scanFile(options, fs, { path, absolute, stat, listedHash }, out, depth);
        case "special":
          out.problems.push({ path, reason: "skipped: FIFO, socket or device" });
          return UNREADABLE;
      }
    }
    if (!fs.exists(absolute)) return undefined;
    const isDir = fs.isDir(absolute);
    if (path !== "" && options.isExcluded?.(path, isDir)) return undefined;
    if (isDir) return depth === 0 ? emptyDir() : scanDir(options, path, absolute, undefined, out, depth);
    const bytes = fs.readFile(absolute);
    const hash = contentIdOf(bytes);
    keepContent(options, out, path, { bytes, hash });
    return { kind: "file", hash, size: bytes.length };
  } catch (error) {
    if (error instanceof FileSystemError && error.code === "ENOENT") return undefined; // vanished mid-scan
    out.problems.push({ path, reason: describeError(error) });
    return UNREADABLE;
  }
}

function scanDir(
  options: ScanOptions,
  path: string,
  absolute: string,
  stat: EntryStat | undefined,
  out: ScanResult,
  depth: number,
): DirNode {
  const dir = emptyDir(stat === undefined ? {} : attributesOf(stat, options));
  const { fs } = options;
  options.onDirectory?.(path, stat?.ino);
  const stats =
    options.listing?.path === path
      ? options.listing.entries
      : isMirrorFileSystem(fs)
        ? fs.listDirStats(absolute)
        : undefined;
  if (stats !== undefined && options.signListings !== undefined) {
    out.signatures.set(path, listingSignature(options.signListings, stats));
  }
  const listing: { name: string; stat?: EntryStat }[] =
    stats ??
    fs
      .listDir(absolute)
      .sort()
      .map((name) => ({ name }));
  const files = listing.filter((e): e is ListedFile & { stat: EntryStat } => e.stat?.kind === "file");
  const recorded = options.index?.prefetch?.(path, files);
  const hashes = recorded === undefined ? undefined : new Map(files.map((file, i) => [file.name, recorded[i]!]));
  // The directory's path is checked once here; then each listed name only for what a listing can hold.
  const pathProblem = relativePathProblem(path);
  for (const { name, stat } of listing) {
    const child = childOf(path, name);
    const problem = pathProblem === null ? listedChildProblem(path, name) : relativePathProblem(child);
    if (problem !== null) {
      out.problems.push({ path: child, reason: `skipped: name ${problem}` });
      continue;
    }
    const node = scanEntry(options, child, out, depth - 1, stat, hashes?.get(name));
    if (node !== undefined) dir.children.set(name, node);
  }
  if (recorded === undefined && options.index?.recordListing !== undefined) {
    // Each file's hash as found for its listed stat (or for the one it had when read: then a later listing
    // never matches what is recorded). Not when a file was left out (excluded, unreadable, replaced).
    const found = files.map(({ name }) => {
      const node = dir.children.get(name);
      return node?.kind === "file" ? node.hash : undefined;
    });
    if (found.every((hash) => hash !== undefined)) options.index.recordListing(path, files, found as string[]);
  }
  return dir;
}

function scanFile(
  options: ScanOptions,
  fs: MirrorFileSystem,
  file: { path: string; absolute: string; stat: EntryStat; listedHash?: string | undefined },
  out: ScanResult,
  depth: number,
): TreeNode | undefined {
  const { path, absolute } = file;
  let before = file.stat;
  const known = file.listedHash ?? indexedHash(options.index, path, before);
  if (known !== undefined) return fileNode(options, out, path, before, known);
  if (options.deferFilesOver !== undefined && before.size > options.deferFilesOver && before.nlink <= 1) {
    out.deferred.push({ path, stat: before });
    out.signatures.delete(parentOf(path));
    return undefined;
  }
  for (let attempt = 1; attempt <= TORN_READ_ATTEMPTS; attempt++) {
    const read = readContent(fs, absolute, before.size);
    const after = read.stat ?? fs.lstat(absolute);
    if (readSteadily(before, after, read)) return readFileNode(options, out, path, after, read);
    if (after.kind !== "file") return scanEntry(options, path, out, depth); // replaced by another kind
    before = after;
  }
  out.problems.push({ path, reason: `changed while being read (${TORN_READ_ATTEMPTS} attempts); will retry` });
  return UNREADABLE;
}

/** True when a file stated `before` and `after` reading it (`read`) did not change meanwhile. */
function readSteadily(before: EntryStat, after: EntryStat, read: ReadContent): boolean {
  return (
    after.kind === "file" &&
    after.size === read.size &&
    after.size === before.size &&
    after.mtimeMs === before.mtimeMs &&
    after.ino === before.ino
  );
}

/** The node of a file read steadily (stated `after`), with what its read gave kept in the index and `out`. */
function readFileNode(options: ScanOptions, out: ScanResult, path: string, after: EntryStat, read: ReadContent) {
  options.index?.set(path, indexEntry(after, read.hash));
  if (read.bytes !== undefined) keepContent(options, out, path, { bytes: read.bytes, hash: read.hash });
  if (read.chunks !== undefined) out.chunks.set(read.hash, read.chunks);
  return fileNode(options, out, path, after, read.hash);
}

/**
 * Puts a file a one-level scan deferred into its node: as `read` gave it (a read in pieces the caller made,
 * see readInPieces) when the file did not change meanwhile, else read again here as a scan reads (a
 * changed or vanished file, a failed read: `read` undefined). Returns the node added, if any.
 */
export function completeDeferred(
  options: ScanOptions,
  out: ScanResult,
  file: DeferredFile,
  read: ReadContent | undefined,
): TreeNode | undefined {
  const { fs } = options;
  const absolute = pathUnder(options.root, file.path);
  const after = read === undefined || !isMirrorFileSystem(fs) ? undefined : lstatIfThere(fs, absolute);
  const { deferFilesOver: _deferred, onFileScanned: _counted, ...again } = options;
  const node =
    after !== undefined && read !== undefined && readSteadily(file.stat, after, read)
      ? readFileNode(options, out, file.path, after, read)
      : scanEntry(again, file.path, out, 0);
  if (node !== undefined && out.node?.kind === "dir") {
    out.node.children.set(file.path.slice(file.path.lastIndexOf("/") + 1), node);
  }
  return node;
}

function lstatIfThere(fs: MirrorFileSystem, absolute: string): EntryStat | undefined {
  try {
    return fs.lstat(absolute);
  } catch {
    return undefined;
  }
}

/** The node of a regular file with `stat` whose bytes hash to `hash` (a link to its group's leader, if stated so). */
function fileNode(options: ScanOptions, out: ScanResult, path: string, stat: EntryStat, hash: string): TreeNode {
  let linkTo: string | undefined;
  const attributes = attributesOf(stat, options);
  if (stat.nlink > 1) {
    const inode = `${stat.dev}:${stat.ino}`;
    out.linked.push({ path, inode, hash, attributes });
    linkTo = options.onLinkedFile?.(path, inode);
  }
  return {
    kind: "file",
    hash,
    size: stat.size,
    ...(linkTo === undefined || linkTo === path ? {} : { linkTo }),
    ...attributes,
  };
}

/** The metadata a scan observes: mode and mtime always, owner and group as asked. */
export function attributesOf(stat: EntryStat, options: Pick<ScanOptions, "owners">): Attributes {
  return {
    mode: stat.mode,
    mtime: { sec: stat.mtime.sec, nsec: stat.mtime.nsec },
    ...(options.owners?.uid ? { uid: stat.uid } : {}),
    ...(options.owners?.gid ? { gid: stat.gid } : {}),
  };
}

/** Files larger than this are read in pieces of STREAM_PIECE bytes: memory stays bounded whatever their size. */
export const STREAM_THRESHOLD = 8 * 1024 * 1024;
/** Size of one read of a streamed file. */
export const STREAM_PIECE = 4 * 1024 * 1024;

/** What reading a file gave: its hash and size, its bytes when small, its chunks when large enough for deltas. */
export interface ReadContent {
  hash: string;
  size: number;
  bytes?: Uint8Array;
  chunks?: Chunk[];
  /** The file's stat through the descriptor it was read from, after the read (a read of a whole file). */
  stat?: EntryStat;
}

function readContent(fs: MirrorFileSystem, absolute: string, expectedSize: number): ReadContent {
  if (expectedSize < DELTA_MIN_SIZE) {
    const { bytes, stat } = fs.readFileStated(absolute);
    return { hash: contentIdOf(bytes), size: bytes.length, bytes, stat };
  }
  if (expectedSize <= STREAM_THRESHOLD) {
    const { bytes, stat } = fs.readFileStated(absolute);
    const chunked = chunkContent(bytes, replicationChunking(bytes.length));
    return { hash: chunked.contentId, size: bytes.length, bytes, chunks: chunked.chunks, stat };
  }
  const pieces = readInPieces(fs, absolute, expectedSize, STREAM_PIECE, [new Uint8Array(STREAM_PIECE)]);
  for (;;) {
    const step = pieces.next();
    if (step.done) return step.value;
  }
}

/**
 * Reads a large file in pieces of `pieceBytes`, each yielded as read, and cuts and hashes them as they pass:
 * returns its hash, size and chunk list. Given `scratch` buffers, the pieces are read into them in turn, so
 * a piece is valid until `scratch.length` more were read and memory stays flat whatever the size; without,
 * each is a new buffer. The whole-content hash runs on a helper thread beside the chunking
 * (hashingThread.ts), held until the generator ends.
 */
export function* readInPieces(
  fs: MirrorFileSystem,
  absolute: string,
  expectedSize: number,
  pieceBytes: number,
  scratch: readonly Uint8Array[] = [],
): Generator<Uint8Array, ReadContent> {
  const { hasher, release } = wholeContentHasher(expectedSize);
  try {
    const chunker = new HashingChunker(replicationChunking(expectedSize), hasher);
    const chunks: Chunk[] = [];
    for (let offset = 0, turn = 0; ; offset += pieceBytes, turn++) {
      const into = scratch.length === 0 ? undefined : scratch[turn % scratch.length];
      const piece = fs.readFileRange(absolute, offset, pieceBytes, into);
      if (piece.length > 0) {
        chunks.push(...chunker.push(piece));
        yield piece;
      }
      if (piece.length < pieceBytes) break;
    }
    chunks.push(...chunker.finish());
    return { hash: chunker.contentId, size: chunker.size, chunks };
  } finally {
    release();
  }
}

function keepContent(options: ScanOptions, out: ScanResult, path: string, kept: KeptContent): void {
  if (kept.bytes.length <= (options.keepContentUpTo ?? DEFAULT_KEEP_CONTENT)) out.contents.set(path, kept);
}

/** The hash the index holds for `path` if the file still looks as it did then (size, mtime, ctime, inode). */
export function indexedHash(index: ContentIndex | undefined, path: string, stat: EntryStat): string | undefined {
  const indexed = index?.get(path);
  if (indexed === undefined) return undefined;
  const unchanged =
    indexed.size === stat.size &&
    indexed.mtimeMs === stat.mtimeMs &&
    indexed.ctimeMs === stat.ctimeMs &&
    indexed.ino === stat.ino;
  return unchanged ? indexed.hash : undefined;
}

/**
 * The signature of a directory's listing under `key`: each child's name and what its lstat says that a
 * listing's digest depends on or the content index trusts (kind, size, mtime, ctime, inode, mode, owner,
 * group). A listing with the same signature has the same digest again (its files' hashes trusted as the
 * index trusts them); see DigestCache.
 */
export function listingSignature(key: string, listing: readonly DirEntryStat[]): string {
  const signature = new SignatureBuilder().text(key);
  for (const { name, stat } of listing) {
    signature.text(name).text(stat.kind).number(stat.size).number(stat.mtime.sec).number(stat.mtime.nsec);
    signature.number(stat.ctimeMs).number(stat.ino).number(stat.mode).number(stat.uid).number(stat.gid);
  }
  return signature.digest();
}

/** The index entry for a file with `stat` whose bytes hash to `hash`. */
export function indexEntry(stat: EntryStat, hash: string): IndexedFile {
  return { size: stat.size, mtimeMs: stat.mtimeMs, ctimeMs: stat.ctimeMs, ino: stat.ino, hash };
}

/** One line naming the error's code and message, for problem reports. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
