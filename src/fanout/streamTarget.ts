import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { headers } from "@nats-io/transport-node";
import { type Chunk, HashingChunker, replicationChunking } from "../content/chunker.js";
import { decodeLiteral } from "../content/compression.js";
import { DEFAULT_LIMITS } from "../events/limits.js";
import type { Operation, WriteFile } from "../events/operation.js";
import {
  type AppliedPosition,
  type ApplyRequest,
  type ApplyResult,
  type ManifestEntry,
  PROTOCOL_VERSION,
  type Request,
  type Response,
} from "../events/protocol.js";
import { type DirNode, nodeAt } from "../events/tree.js";
import { monotonicMs } from "../fs/clock.js";
import { pathUnder } from "../fs/fileSystem.js";
import { foldExpectedTree, listingEntries, manifestFromTree } from "../projections/expectedTree.js";
import type { TargetConnection } from "../replicator/streamingSource.js";
import type { ChunkStore } from "./chunkStore.js";
import { encodeValue, type FanoutConnection, type OperationMessage, type RecipeRef } from "./streamLayout.js";
import type { StreamTree } from "./streamTree.js";

/** Pieces read from a source file that streams into chunks (bounded memory whatever its size). */
const READ_PIECE = 1024 * 1024;
/** Manifest entries per page answered to the session. */
const MANIFEST_PAGE = DEFAULT_LIMITS.manifestPageEntries;
/** How long one batch's publishes may keep failing (a cluster electing a new leader) before the run fails. */
const PUBLISH_DEADLINE_MS = 45_000;

/** Counts of what a StreamTarget published. */
export interface PublishTotals {
  operationsPublished: number;
  /** Bytes of operation messages published (payload and headers). */
  operationBytes: number;
  /** Content bytes of the files written by published operations (what the uploads are compared against). */
  contentBytes: number;
}

/**
 * The publishing source's target: a fan-out stream seen through the protocol `serve` speaks, so the CLI's
 * own source (SourceSession driven by StreamingSource: scan, plan, log, watch) publishes without a second
 * planner. Its manifest is the tree the stream describes (newest snapshot plus the operations after it);
 * an apply puts the chunks of each written file the bucket lacks, then appends the operations to the
 * stream, in order (each message expects the previous one's id, so a lost publish cannot be overtaken);
 * only then is the request answered. A file whose bytes do not hash as its operation states fails with
 * `hash-mismatch`, so the session reads and plans it again, as it does against `serve`.
 */
export class StreamTarget implements TargetConnection {
  readonly totals: PublishTotals = { operationsPublished: 0, operationBytes: 0, contentBytes: 0 };
  /** The tree the stream describes once everything published so far is applied. */
  private tree: DirNode;
  private readonly recipes: Map<string, RecipeRef>;
  private streamSeq: number;
  /** The message id of the stream's last operation (each publish expects it). */
  private lastMsgId: string | undefined;
  private lastPosition: AppliedPosition | null;
  private manifest: ManifestEntry[] | undefined;
  /** Sizes of the uploads under way (their bytes are read from the source when the apply names them). */
  private readonly uploads = new Map<string, number>();
  /** The request being handled: the next waits for it. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly fanout: FanoutConnection,
    private readonly store: ChunkStore,
    private readonly sourceRoot: string,
    start: StreamTree,
    private readonly now: () => number = Date.now,
  ) {
    this.tree = start.tree;
    this.recipes = start.recipes;
    this.streamSeq = start.streamSeq;
    this.lastMsgId = start.last?.msgId;
    const last = start.last?.message;
    this.lastPosition = last === undefined ? null : { logId: last.logId, epoch: last.epoch, seq: last.seq };
  }

  /** The stream sequence of the last operation published (what a snapshot is taken at). */
  get position(): number {
    return this.streamSeq;
  }

  /** The tree and recipes at `position`, for a snapshot. */
  snapshotState(): { tree: DirNode; recipes: Map<string, RecipeRef>; streamSeq: number } {
    return { tree: this.tree, recipes: this.recipes, streamSeq: this.streamSeq };
  }

  /**
   * Answers one request of the session. The session pipelines its requests; they are handled one after
   * the other, in the order they came, so the stream receives operations in the log's order.
   */
  request(request: Request): Promise<Response> {
    const answer = this.queue.then(() => this.handle(request));
    this.queue = answer.catch(() => {});
    return answer;
  }

  private async handle(request: Request): Promise<Response> {
    switch (request.type) {
      case "hello":
        return { type: "hello", version: PROTOCOL_VERSION, applied: this.helloPosition(request), canSetOwner: true };
      case "manifest": {
        if (request.offset === 0 || this.manifest === undefined) this.manifest = manifestFromTree(this.tree);
        const entries = this.manifest.slice(request.offset, request.offset + MANIFEST_PAGE);
        const complete = request.offset + entries.length >= this.manifest.length;
        if (complete) this.manifest = undefined;
        return { type: "manifest", entries, complete };
      }
      case "listing": {
        const node = nodeAt(this.tree, request.dir);
        return {
          type: "listing",
          dir: request.dir,
          entries: node?.kind === "dir" ? listingEntries(request.dir, node.children) : [],
        };
      }
      case "chunks":
        // Never asked: the session is given no chunk lists, so it builds no deltas (the bucket dedupes chunks).
        return { type: "chunks", files: [] };
      case "upload": {
        const size = request.pieces.reduce((n, p) => n + (p.kind === "literal" ? p.size : p.length), 0);
        const at = request.offset === 0 ? 0 : (this.uploads.get(request.uploadId) ?? 0);
        this.uploads.set(request.uploadId, at + size);
        return { type: "uploaded", uploadId: request.uploadId, size: at + size };
      }
      case "apply":
        return this.apply(request);
      case "release":
        this.uploads.clear();
        return { type: "released", durable: this.lastPosition };
    }
  }

  /** Where the stream stands in the publisher's log: the hello answer the session judges continuity by. */
  private helloPosition(request: Extract<Request, { type: "hello" }>): AppliedPosition | null {
    const before = this.lastPosition;
    if (before === null || before.logId !== request.logId || before.epoch !== request.epoch) {
      this.lastPosition = { logId: request.logId, epoch: request.epoch, seq: 0 };
    }
    return before;
  }

  private async apply(request: ApplyRequest): Promise<Response> {
    const pack =
      request.pack === undefined
        ? undefined
        : decodeLiteral(
            { encoding: request.pack.encoding, data: request.pack.data, size: request.pack.size },
            DEFAULT_LIMITS.maxDecodedRequestBytes,
          );
    const results: ApplyResult[] = [];
    const messages: { seq: number; message: OperationMessage }[] = [];
    for (const entry of request.entries) {
      const { operation } = entry;
      const message: OperationMessage = {
        v: 1,
        logId: request.logId,
        epoch: request.epoch,
        seq: entry.seq,
        loggedAt: this.now(),
        operation,
      };
      if (operation.type === "writeFile" && operation.linkTo === undefined) {
        const recipe = await this.contentOf(operation, entry.content, pack);
        if (typeof recipe === "string") {
          results.push({
            seq: entry.seq,
            outcome: "failed",
            wroteFile: false,
            bytesWritten: 0,
            code: "hash-mismatch",
            reason: recipe,
          });
          continue;
        }
        message.recipe = recipe;
      }
      messages.push({ seq: entry.seq, message });
      const wrote = operation.type === "writeFile" && entry.content !== undefined && entry.content.kind !== "local";
      results.push({ seq: entry.seq, outcome: "applied", wroteFile: wrote, bytesWritten: wrote ? operation.size : 0 });
    }
    // Every chunk an operation names is in the bucket before the operation is in the stream.
    await this.store.settle();
    await this.publish(messages);
    const published = messages.map((m) => m.message.operation as Operation);
    this.tree = foldExpectedTree(this.tree, published);
    for (const { message } of messages) {
      const operation = message.operation as Operation;
      if (operation.type === "writeFile" && message.recipe !== undefined)
        this.recipes.set(operation.hash, message.recipe);
    }
    const last = request.entries.at(-1)!.seq;
    this.lastPosition = { logId: request.logId, epoch: request.epoch, seq: last };
    return { type: "applied", results, applied: this.lastPosition };
  }

  /**
   * The recipe of a written file, its new chunks put: from the bytes the request carries (inline, packed),
   * read from the source for an upload, or the stream's own for content it already holds. A string says
   * why the bytes could not be had as stated (the session reads the file again).
   */
  private async contentOf(
    operation: WriteFile,
    content: ApplyRequest["entries"][number]["content"],
    pack: Uint8Array | undefined,
  ): Promise<RecipeRef | string> {
    const known = this.recipes.get(operation.hash);
    if (content === undefined || content.kind === "local") {
      return known ?? `content ${operation.hash} is not in the bucket`;
    }
    let chunks: Chunk[];
    let hash: string;
    if (content.kind === "inline" || content.kind === "packed") {
      const bytes =
        content.kind === "inline"
          ? decodeLiteral({ encoding: content.encoding, data: content.data, size: operation.size }, operation.size)
          : pack?.subarray(content.offset, content.offset + content.length);
      if (bytes === undefined || bytes.length !== operation.size)
        return `${operation.path}: bytes missing from the request`;
      ({ hash, chunks } = await this.store.putContent(bytes));
    } else if (content.kind === "upload") {
      this.uploads.delete(content.uploadId);
      const read = await this.readSource(operation);
      if (typeof read === "string") return read;
      ({ hash, chunks } = read);
    } else {
      return `${operation.path}: a delta cannot be published (no basis in the stream)`;
    }
    if (hash !== operation.hash)
      return `${operation.path}: changed while read (hash ${hash}, expected ${operation.hash})`;
    this.totals.contentBytes += operation.size;
    return known ?? (await this.store.recipeRef(hash, chunks));
  }

  /** Reads a large file from the source in pieces, chunking and putting as it goes (memory: a chunk plus a piece). */
  private async readSource(operation: WriteFile): Promise<{ hash: string; chunks: Chunk[] } | string> {
    const absolute = pathUnder(this.sourceRoot, operation.path);
    let fd: number;
    try {
      // O_NOFOLLOW: the session stated a regular file here; a symlink swapped in meanwhile is not followed.
      fd = openSync(absolute, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (error) {
      return `${operation.path}: cannot be read: ${(error as Error).message}`;
    }
    try {
      if (!fstatSync(fd).isFile()) return `${operation.path}: no longer a regular file`;
      const chunker = new HashingChunker(replicationChunking(operation.size));
      const chunks: Chunk[] = [];
      // The bytes from the start of the chunk in progress (absolute offset `pendingAt`) to what was read.
      let pending: Uint8Array = new Uint8Array(0);
      let pendingAt = 0;
      let offset = 0;
      const take = async (done: Chunk[]): Promise<void> => {
        for (const chunk of done) {
          await this.store.put(
            chunk.id,
            pending.subarray(chunk.offset - pendingAt, chunk.offset - pendingAt + chunk.length),
          );
          chunks.push(chunk);
        }
        const end = done.at(-1);
        if (end === undefined) return;
        pending = pending.slice(end.offset + end.length - pendingAt);
        pendingAt = end.offset + end.length;
      };
      for (;;) {
        const piece = Buffer.allocUnsafe(READ_PIECE);
        const read = readSync(fd, piece, 0, READ_PIECE, offset);
        if (read === 0) break;
        const bytes = piece.subarray(0, read);
        pending = pending.length === 0 ? bytes : Buffer.concat([pending, bytes]);
        offset += read;
        await take(chunker.push(bytes));
        if (offset > operation.size) break;
      }
      await take(chunker.finish());
      if (offset !== operation.size)
        return `${operation.path}: changed while read (${offset} bytes, expected ${operation.size})`;
      return { hash: chunker.contentId, chunks };
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Appends the messages in order. Pipelined; each expects the previous message's id, so if one is lost
   * (a node dies, a leader changes) the ones after it are refused rather than stored ahead of it, and the
   * rest is sent again one by one from the first refused (ids deduplicate what did get stored).
   */
  private async publish(messages: readonly { seq: number; message: OperationMessage }[]): Promise<void> {
    if (messages.length === 0) return;
    const ids = messages.map(({ message }) => `${message.logId}:${message.epoch}:${message.seq}`);
    const payloads = messages.map(({ message }) => encodeValue(message));
    const send = (i: number) => {
      const previous = i === 0 ? this.lastMsgId : ids[i - 1];
      const h = headers();
      return this.fanout.js.publish(this.fanout.names.subject, payloads[i], {
        msgID: ids[i]!,
        headers: h,
        ...(previous === undefined ? {} : { expect: { lastMsgID: previous } }),
      });
    };
    const first = await Promise.allSettled(payloads.map((_, i) => send(i)));
    let next = first.findIndex((r) => r.status === "rejected");
    for (const [i, result] of first.entries()) {
      if (next !== -1 && i >= next) break;
      if (result.status === "fulfilled") this.streamSeq = Math.max(this.streamSeq, result.value.seq);
    }
    if (next === -1) next = payloads.length;
    const deadline = monotonicMs() + PUBLISH_DEADLINE_MS;
    for (let i = next; i < payloads.length; ) {
      try {
        const ack = await send(i);
        this.streamSeq = Math.max(this.streamSeq, ack.seq);
        i++;
      } catch (error) {
        if (monotonicMs() > deadline) {
          throw new Error(
            `publishing operation ${ids[i]} to ${this.fanout.names.stream} failed: ${(error as Error).message}`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
    for (const payload of payloads) this.totals.operationBytes += payload.length + 120;
    this.totals.operationsPublished += payloads.length;
    this.lastMsgId = ids.at(-1);
  }
}
