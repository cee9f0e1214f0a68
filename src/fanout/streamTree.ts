import { DeliverPolicy } from "@nats-io/jetstream";
import { type Operation, OperationSchema } from "../events/operation.js";
import type { ManifestEntry } from "../events/protocol.js";
import { type DirNode, emptyDir } from "../events/tree.js";
import { foldExpectedTree, ManifestTreeBuilder, manifestFromTree } from "../projections/expectedTree.js";
import { type ChunkStore, withRetries } from "./chunkStore.js";
import {
  BucketKeys,
  decodeValue,
  encodeValue,
  type FanoutConnection,
  type OperationMessage,
  OperationMessageSchema,
  type RecipeRef,
  SNAPSHOT_PAGE_BYTES,
  type SnapshotHead,
  SnapshotHeadSchema,
  SnapshotPageSchema,
} from "./streamLayout.js";

/** The tree a fan-out describes at a stream position, with the chunk list of every file in it. */
export interface StreamTree {
  tree: DirNode;
  /** Recipe of each content hash the tree holds (or held: a superset is harmless). */
  recipes: Map<string, RecipeRef>;
  /** The stream sequence the tree is at (0: the empty tree before the first operation). */
  streamSeq: number;
  /** The last operation message read, with its publisher position and message id; null when none. */
  last: { message: OperationMessage; msgId: string | undefined } | null;
}

/** Messages read per fetch while folding the stream. */
const FETCH_BATCH = 1024;

/** The newest snapshot's head, or null when none was written. */
export async function readSnapshotHead(fanout: FanoutConnection): Promise<SnapshotHead | null> {
  const entry = await withRetries("reading the snapshot head", () => fanout.kv.get(BucketKeys.snapshotHead));
  if (entry === null || entry.value.length === 0) return null;
  return decodeValue(SnapshotHeadSchema, entry.value, "snapshot head");
}

/** Reads the pages of the snapshot `head` names, calling `onPage` with each (entries parents first). */
export async function readSnapshotPages(
  fanout: FanoutConnection,
  head: SnapshotHead,
  onPage: (page: [ManifestEntry, (RecipeRef | undefined)?][]) => void,
): Promise<void> {
  for (let page = 0; page < head.pages; page++) {
    const key = BucketKeys.snapshotPage(head.streamSeq, page);
    const entry = await withRetries(`reading ${key}`, () => fanout.kv.get(key));
    if (entry === null || entry.value.length === 0) throw new Error(`snapshot page ${key} is missing from the bucket`);
    onPage(decodeValue(SnapshotPageSchema, entry.value, `snapshot page ${key}`));
  }
}

/** The tree at the newest snapshot (the empty tree at 0 when there is none). */
export async function readSnapshot(fanout: FanoutConnection, store?: ChunkStore): Promise<StreamTree> {
  const head = await readSnapshotHead(fanout);
  const recipes = new Map<string, RecipeRef>();
  if (head === null) return { tree: emptyDir(), recipes, streamSeq: 0, last: null };
  const builder = new ManifestTreeBuilder();
  await readSnapshotPages(fanout, head, (page) => {
    builder.add(page.map(([entry]) => entry));
    for (const [entry, recipe] of page) {
      if (entry.kind !== "file" || recipe === undefined) continue;
      recipes.set(entry.hash, recipe);
      if ("chunks" in recipe) store?.noteKnown(recipe.chunks.map(([id]) => ({ id })));
    }
  });
  return { tree: builder.tree, recipes, streamSeq: head.streamSeq, last: null };
}

/** The stream's first and last sequence (first > last when it is empty). */
export async function streamBounds(fanout: FanoutConnection): Promise<{ first: number; last: number }> {
  const info = await withRetries("reading the stream's state", () => fanout.jsm.streams.info(fanout.names.stream));
  return { first: info.state.first_seq, last: info.state.last_seq };
}

/**
 * Reads the stream's messages after `from` up to `to` (inclusive) in order, through an ordered consumer,
 * calling `onMessage` with each decoded message; a message that cannot be decoded goes to `onBadMessage`.
 */
export async function readStream(
  fanout: FanoutConnection,
  range: { from: number; to: number },
  onMessage: (message: OperationMessage, streamSeq: number, msgId: string | undefined) => void,
  onBadMessage: (streamSeq: number, reason: string) => void = () => {},
): Promise<void> {
  if (range.to <= range.from) return;
  // The stream has one subject: no filter (`filter_subjects` on an ordered consumer needs server 2.10).
  const consumer = await fanout.js.consumers.get(fanout.names.stream, {
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: range.from + 1,
  });
  let at = range.from;
  while (at < range.to) {
    const batch = await consumer.fetch({ max_messages: Math.min(FETCH_BATCH, range.to - at), expires: 5_000 });
    let received = 0;
    for await (const message of batch) {
      received++;
      at = message.seq;
      try {
        onMessage(
          decodeValue(OperationMessageSchema, message.data, `stream message ${message.seq}`),
          message.seq,
          message.headers?.get("Nats-Msg-Id") || undefined,
        );
      } catch (error) {
        onBadMessage(message.seq, (error as Error).message);
      }
      if (at >= range.to) break;
    }
    if (received === 0) {
      // Messages below `to` that left the stream meanwhile (retention) end the read where it is.
      const bounds = await streamBounds(fanout);
      if (bounds.last <= at || bounds.first > range.to) break;
    }
  }
  await consumer.delete().catch(() => {});
}

/**
 * The tree the fan-out describes at its head: the newest snapshot plus the operations after it. Throws when
 * operations between the snapshot and the stream's first retained message are gone (the tree is unknowable).
 */
export async function readStreamTree(fanout: FanoutConnection, store?: ChunkStore): Promise<StreamTree> {
  const state = await readSnapshot(fanout, store);
  const bounds = await streamBounds(fanout);
  if (bounds.last > state.streamSeq && bounds.first > state.streamSeq + 1) {
    throw new Error(
      `the stream keeps operations from ${bounds.first} on, the newest snapshot is at ${state.streamSeq}: ` +
        "operations in between are lost (write snapshots more often than retention drops operations)",
    );
  }
  let pending: Operation[] = [];
  const fold = (): void => {
    state.tree = foldExpectedTree(state.tree, pending);
    pending = [];
  };
  await readStream(fanout, { from: state.streamSeq, to: bounds.last }, (message, streamSeq, msgId) => {
    state.streamSeq = streamSeq;
    state.last = { message, msgId };
    const parsed = OperationSchema.safeParse(message.operation);
    if (!parsed.success) return; // a hostile message changes no tree (subscribers refuse it too)
    if (parsed.data.type === "writeFile" && message.recipe !== undefined) {
      state.recipes.set(parsed.data.hash, message.recipe);
      if ("chunks" in message.recipe) store?.noteKnown(message.recipe.chunks.map(([id]) => ({ id })));
    }
    pending.push(parsed.data);
    if (pending.length >= FETCH_BATCH) fold();
  });
  fold();
  state.streamSeq = Math.max(state.streamSeq, bounds.last);
  // Nothing after the snapshot: the stream's last message still says where the publisher's log stands.
  if (state.last === null && bounds.last >= bounds.first && bounds.last > 0) {
    const last = await withRetries("reading the stream's last message", () =>
      fanout.jsm.streams.getMessage(fanout.names.stream, { last_by_subj: fanout.names.subject }),
    );
    try {
      if (last === null) throw new Error("no last message");
      const message = decodeValue(OperationMessageSchema, last.data, `stream message ${last.seq}`);
      state.last = { message, msgId: last.header?.get("Nats-Msg-Id") || undefined };
    } catch {
      // a last message that cannot be read: the publisher starts a new epoch of its log
    }
  }
  return state;
}

/**
 * Writes a snapshot of `tree` at `streamSeq` (pages first, then the head that names them) and removes the
 * pages of the snapshot it replaces. Returns the new head.
 */
export async function writeSnapshot(
  fanout: FanoutConnection,
  state: { tree: DirNode; recipes: Map<string, RecipeRef>; streamSeq: number },
  now: number,
): Promise<SnapshotHead> {
  const previous = await readSnapshotHead(fanout);
  const entries = manifestFromTree(state.tree);
  let page: [ManifestEntry, RecipeRef | undefined][] = [];
  let pageBytes = 0;
  let pages = 0;
  const flush = async (): Promise<void> => {
    const key = BucketKeys.snapshotPage(state.streamSeq, pages++);
    const value = encodeValue(page);
    await withRetries(`writing ${key}`, () => fanout.kv.put(key, value));
    page = [];
    pageBytes = 0;
  };
  for (const entry of entries) {
    const recipe = entry.kind === "file" && entry.linkTo === undefined ? state.recipes.get(entry.hash) : undefined;
    page.push(recipe === undefined ? [entry, undefined] : [entry, recipe]);
    pageBytes +=
      200 + entry.path.length * 3 + (recipe !== undefined && "chunks" in recipe ? recipe.chunks.length * 72 : 0);
    if (pageBytes >= SNAPSHOT_PAGE_BYTES) await flush();
  }
  if (page.length > 0) await flush();
  const head: SnapshotHead = { v: 1, streamSeq: state.streamSeq, pages, entries: entries.length, takenAt: now };
  await withRetries("writing the snapshot head", () => fanout.kv.put(BucketKeys.snapshotHead, encodeValue(head)));
  if (previous !== null && previous.streamSeq !== head.streamSeq) {
    for (let old = 0; old < previous.pages; old++) {
      await fanout.kv.purge(BucketKeys.snapshotPage(previous.streamSeq, old)).catch(() => {});
    }
  }
  return head;
}
