import { type Chunk, DELTA_MIN_SIZE, replicationChunking } from "../content/chunker.js";
import { planDelta } from "../content/delta.js";
import { DEFAULT_LIMITS } from "../events/limits.js";
import type { WriteFile } from "../events/operation.js";
import type { Content, Piece, Request, Response, UploadRequest } from "../events/protocol.js";
import type { ContentIndex } from "../events/stateStore.js";
import { type MirrorFileSystem, pathUnder } from "../fs/fileSystem.js";
import { indexedHash } from "../replicator/scan.js";
import type { ChunkStore } from "./chunkStore.js";

/** Files up to this size travel inside the apply request; larger ones go ahead as uploads. */
export const INLINE_BYTES = DEFAULT_LIMITS.inlineFileBytes;
/** Literal bytes per upload request. */
const UPLOAD_BYTES = DEFAULT_LIMITS.uploadRequestBytes;
/** Bytes of chunks fetched ahead for one batch at most. */
const PREFETCH_BYTES = 32 * 1024 * 1024;
/** Chunk fetches in flight at once. */
const FETCH_WINDOW = 64;

/** What a subscriber's content builder works with. */
export interface SubscriberContentOptions {
  fs: MirrorFileSystem;
  root: string;
  index: ContentIndex;
  store: ChunkStore;
  /** Sends one request to the subscriber's target (chunk lists of a basis, uploads). */
  send: (request: Request) => Response;
}

/**
 * How a written file's bytes reach the subscriber's target, fetching only chunks it lacks: nothing when the
 * target already holds the content (at the path or, verified by its index, at another path or among what it
 * set aside this session); else a delta against the file at the path (its chunks that the new version
 * shares are copied, the others fetched); else every chunk. Large files stream ahead as uploads.
 */
export class SubscriberContent {
  private nextUpload = 0;
  /** Chunks fetched ahead for the batch being built (one round trip for many small files, not one each). */
  private readonly prefetched = new Map<string, Promise<Uint8Array>>();
  private prefetchedBytes = 0;

  constructor(private readonly options: SubscriberContentOptions) {}

  /**
   * Starts fetching the chunks of a small file that will travel whole (the target holds neither it nor a
   * basis for it), so a batch's fetches overlap; `contentFor` takes them from here.
   */
  prefetch(operation: WriteFile, chunks: readonly Chunk[]): void {
    if (operation.size > INLINE_BYTES || this.prefetchedBytes + operation.size > PREFETCH_BYTES) return;
    if (this.holds(operation.hash)) return;
    if (
      operation.size >= DELTA_MIN_SIZE &&
      this.options.fs.lstatIfExists(pathUnder(this.options.root, operation.path))?.kind === "file"
    )
      return;
    for (const chunk of chunks) {
      if (this.prefetched.has(chunk.id)) continue;
      const fetching = this.options.store.fetch(chunk.id, chunk.length);
      fetching.catch(() => {}); // awaited (and reported) by contentFor
      this.prefetched.set(chunk.id, fetching);
      this.prefetchedBytes += chunk.length;
    }
  }

  /** Forgets what was fetched ahead (the end of a batch). */
  clearPrefetched(): void {
    this.prefetched.clear();
    this.prefetchedBytes = 0;
  }

  /** True when the target holds `hash` somewhere its index can vouch for (the file unchanged since hashed). */
  holds(hash: string): boolean {
    const { fs, root, index } = this.options;
    for (const path of index.pathsWithHash(hash)) {
      const stat = fs.lstatIfExists(pathUnder(root, path));
      if (stat?.kind === "file" && indexedHash(index, path, stat) === hash) return true;
    }
    return false;
  }

  /**
   * The content of `operation` whose chunks are `chunks` (undefined: the target resolves it itself), after
   * sending the uploads it needs. `whole` skips the basis and every local shortcut (a retry after drift).
   */
  async contentFor(operation: WriteFile, chunks: readonly Chunk[], whole = false): Promise<Content | undefined> {
    if (!whole && this.holds(operation.hash)) return undefined;
    if (operation.size === 0) return { kind: "inline", encoding: "raw", data: new Uint8Array(0) };
    const basis = whole ? undefined : this.basisOf(operation);
    const plan = basis === undefined ? undefined : planDelta(basis.chunks, chunks);
    const ranges =
      plan === undefined || plan.copyBytes === 0
        ? [{ kind: "literal" as const, offset: 0, length: operation.size }]
        : plan.ranges.map((r) =>
            r.kind === "copy"
              ? { kind: "copy" as const, offset: r.basisOffset, length: r.length }
              : { kind: "literal" as const, offset: r.offset, length: r.length },
          );
    const baseHash = plan !== undefined && plan.copyBytes > 0 ? basis?.hash : undefined;
    const pieces = this.pieces(ranges, chunks);
    if (operation.size <= INLINE_BYTES) {
      const all: Piece[] = [];
      for await (const piece of pieces) all.push(piece);
      if (baseHash === undefined) {
        const data =
          all.length === 1
            ? (all[0] as { data: Uint8Array }).data
            : Buffer.concat(all.map((p) => (p as { data: Uint8Array }).data));
        return { kind: "inline", encoding: "raw", data };
      }
      return { kind: "delta", baseHash, pieces: all };
    }
    const uploadId = `f${(this.nextUpload++).toString(36)}`;
    let offset = 0;
    let batch: Piece[] = [];
    let batchBytes = 0;
    const send = (): void => {
      const request: UploadRequest = { type: "upload", uploadId, path: operation.path, offset, pieces: batch };
      if (baseHash !== undefined) request.baseHash = baseHash;
      const answer = this.options.send(request);
      if (answer.type === "error") throw new Error(`upload refused: ${answer.message}`);
      offset += batch.reduce((n, p) => n + (p.kind === "copy" ? p.length : p.size), 0);
      batch = [];
      batchBytes = 0;
    };
    for await (const piece of pieces) {
      batch.push(piece);
      batchBytes += piece.kind === "literal" ? piece.size : 0;
      if (batchBytes >= UPLOAD_BYTES) send();
    }
    if (batch.length > 0 || offset === 0) send();
    return { kind: "upload", uploadId };
  }

  /** The file at the operation's path as a delta basis (its chunk list from the target), when one can help. */
  private basisOf(operation: WriteFile): { hash: string; chunks: Chunk[] } | undefined {
    const { fs, root } = this.options;
    if (operation.size < DELTA_MIN_SIZE) return undefined;
    const stat = fs.lstatIfExists(pathUnder(root, operation.path));
    if (stat?.kind !== "file" || stat.size < DELTA_MIN_SIZE) return undefined;
    if (replicationChunking(stat.size).averageSize !== replicationChunking(operation.size).averageSize)
      return undefined;
    const answer = this.options.send({ type: "chunks", paths: [operation.path] });
    if (answer.type !== "chunks") return undefined;
    const file = answer.files.find((f) => f.path === operation.path);
    return file === undefined ? undefined : { hash: file.hash, chunks: file.chunks };
  }

  /** Copy pieces for copy ranges; literal pieces (raw, one per chunk) fetched for the rest, a window at a time. */
  private async *pieces(
    ranges: readonly { kind: "copy" | "literal"; offset: number; length: number }[],
    chunks: readonly Chunk[],
  ): AsyncGenerator<Piece> {
    const byOffset = new Map(chunks.map((c) => [c.offset, c]));
    for (const range of ranges) {
      if (range.kind === "copy") {
        yield { kind: "copy", offset: range.offset, length: range.length };
        continue;
      }
      const wanted: Chunk[] = [];
      for (let at = range.offset; at < range.offset + range.length; ) {
        const chunk = byOffset.get(at);
        if (chunk === undefined || chunk.length === 0) throw new Error(`recipe has no chunk at offset ${at}`);
        wanted.push(chunk);
        at += chunk.length;
      }
      for (let i = 0; i < wanted.length; i += FETCH_WINDOW) {
        const window = wanted.slice(i, i + FETCH_WINDOW);
        const fetched = await Promise.all(
          window.map((c) => this.prefetched.get(c.id) ?? this.options.store.fetch(c.id, c.length)),
        );
        for (const data of fetched) yield { kind: "literal", encoding: "raw", size: data.length, data };
      }
    }
  }
}
