import * as z from "zod";
import { type Chunk, HashingChunker, replicationChunking } from "../content/chunker.js";
import { decodeLiteral, encodeLiteral } from "../content/compression.js";
import {
  BucketKeys,
  chunksOfRecipe,
  decodeValue,
  encodeValue,
  type FanoutConnection,
  NoFanoutError,
  RECIPE_PAGE_CHUNKS,
  RecipeChunkSchema,
  type RecipeRef,
} from "./streamLayout.js";

/** First byte of a stored chunk: how the rest is encoded. */
const RAW = 0;
const ZSTD = 1;
/** Chunk puts in flight at once (each a small message; pipelined, they cost no round trip each). */
const MAX_PUTS_IN_FLIGHT = 256;
/** Attempts of one put or get before the failure stops the run (a cluster electing a leader answers late). */
const ATTEMPTS = 8;

/** Counts of what travelled to and from the bucket. */
export interface ChunkTraffic {
  chunksPut: number;
  /** Encoded bytes put (what the source uploads for content). */
  bytesPut: number;
  /** Content bytes those chunks hold. */
  contentBytesPut: number;
  chunksFetched: number;
  bytesFetched: number;
}

/** A chunk stored as one byte of encoding and its bytes: zstd when that shrinks it, raw otherwise. */
export function encodeChunk(bytes: Uint8Array): Uint8Array {
  const literal = encodeLiteral(bytes, { level: 3 });
  const out = new Uint8Array(1 + literal.data.length);
  out[0] = literal.encoding === "zstd" ? ZSTD : RAW;
  out.set(literal.data, 1);
  return out;
}

/** The bytes of a stored chunk of `length` bytes; throws when it does not decode to that length. */
export function decodeChunk(stored: Uint8Array, length: number): Uint8Array {
  const tag = stored[0];
  const data = stored.subarray(1);
  if (tag === RAW) {
    if (data.length !== length) throw new Error(`stored chunk holds ${data.length} bytes, the recipe says ${length}`);
    return data;
  }
  if (tag !== ZSTD) throw new Error(`stored chunk has unknown encoding ${String(tag)}`);
  return decodeLiteral({ encoding: "zstd", data, size: length }, length);
}

/** Runs `work` again after a short wait when it fails, up to ATTEMPTS times (a leader election, a reconnect). */
export async function withRetries<T>(what: string, work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (error instanceof NoFanoutError) throw error;
      if (attempt >= ATTEMPTS) throw new Error(`${what} failed ${attempt} times: ${(error as Error).message}`);
      await new Promise((resolve) => setTimeout(resolve, Math.min(2_000, 100 * 2 ** attempt)));
    }
  }
}

/**
 * The bucket's content side: puts chunks it has not put before (known from the stream's recipes and its
 * own puts), pipelined with a bounded window, and fetches chunks and chunk lists for subscribers.
 */
export class ChunkStore {
  readonly traffic: ChunkTraffic = { chunksPut: 0, bytesPut: 0, contentBytesPut: 0, chunksFetched: 0, bytesFetched: 0 };
  /** Chunk ids the bucket holds, as far as this process knows. */
  private readonly known = new Set<string>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private failure: Error | undefined;

  constructor(private readonly fanout: FanoutConnection) {}

  /** Notes chunks the bucket already holds (from a snapshot or an operation of the stream). */
  noteKnown(chunks: readonly { id: string }[]): void {
    for (const chunk of chunks) this.known.add(chunk.id);
  }

  /** Puts the chunk `id` with `bytes` unless the bucket holds it; resolves once it is queued (see `settle`). */
  async put(id: string, bytes: Uint8Array): Promise<void> {
    if (this.known.has(id)) return;
    this.known.add(id);
    const stored = encodeChunk(bytes);
    this.traffic.chunksPut += 1;
    this.traffic.bytesPut += stored.length;
    this.traffic.contentBytesPut += bytes.length;
    const put = withRetries(`putting chunk ${id}`, () => this.fanout.kv.put(BucketKeys.chunk(id), stored))
      .catch((error: Error) => {
        this.known.delete(id);
        this.failure ??= error;
      })
      .finally(() => this.inFlight.delete(put));
    this.inFlight.add(put);
    while (this.inFlight.size >= MAX_PUTS_IN_FLIGHT) await Promise.race(this.inFlight);
  }

  /** Chunks `bytes` (a whole file) as replication does, putting each new chunk; returns its chunk list and hash. */
  async putContent(bytes: Uint8Array): Promise<{ hash: string; chunks: Chunk[] }> {
    const chunker = new HashingChunker(replicationChunking(bytes.length));
    const chunks = [...chunker.push(bytes), ...chunker.finish()];
    for (const chunk of chunks) await this.put(chunk.id, bytes.subarray(chunk.offset, chunk.offset + chunk.length));
    return { hash: chunker.contentId, chunks };
  }

  /** Waits for every put in flight; throws the first that failed for good. */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    if (this.failure !== undefined) throw this.failure;
  }

  /** The recipe reference of a chunk list: inline when short, else written as pages of the bucket. */
  async recipeRef(hash: string, chunks: readonly Chunk[]): Promise<RecipeRef> {
    const pairs = chunks.map((chunk): [string, number] => [chunk.id, chunk.length]);
    if (pairs.length <= RECIPE_PAGE_CHUNKS / 2) return { chunks: pairs };
    let pages = 0;
    for (let at = 0; at < pairs.length; at += RECIPE_PAGE_CHUNKS) {
      const page = pairs.slice(at, at + RECIPE_PAGE_CHUNKS);
      const key = BucketKeys.recipePage(hash, pages++);
      await withRetries(`putting recipe page ${key}`, () => this.fanout.kv.put(key, encodeValue(page)));
    }
    return { pages };
  }

  /** The chunk list a recipe reference names (reading its pages from the bucket when it has them). */
  async chunksOf(hash: string, ref: RecipeRef): Promise<Chunk[]> {
    if ("chunks" in ref) return chunksOfRecipe(ref.chunks);
    const pairs: [string, number][] = [];
    for (let page = 0; page < ref.pages; page++) {
      const key = BucketKeys.recipePage(hash, page);
      const entry = await withRetries(`reading ${key}`, () => this.fanout.kv.get(key));
      if (entry === null || entry.value.length === 0) throw new Error(`recipe page ${key} is missing from the bucket`);
      pairs.push(...decodeValue(z.array(RecipeChunkSchema), entry.value, `recipe page ${key}`));
    }
    return chunksOfRecipe(pairs);
  }

  /** The bytes of chunk `id` of `length` bytes; throws when the bucket lacks it or it does not decode. */
  async fetch(id: string, length: number): Promise<Uint8Array> {
    const entry = await withRetries(`fetching chunk ${id}`, () => this.fanout.kv.get(BucketKeys.chunk(id)));
    if (entry === null || entry.value.length === 0) throw new Error(`chunk ${id} is missing from the bucket`);
    this.traffic.chunksFetched += 1;
    this.traffic.bytesFetched += entry.value.length;
    return decodeChunk(entry.value, length);
  }
}
