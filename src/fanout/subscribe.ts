import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdirSync } from "node:fs";
import { hostname } from "node:os";
import { posix } from "node:path";
import { AckPolicy, type Consumer, DeliverPolicy, type JsMsg } from "@nats-io/jetstream";
import { CliError } from "../cli/cliError.js";
import { makeStateDirectory, STATE_UNUSABLE_EXIT, stateFileAdvice } from "../cli/stateFiles.js";
import { defaultTargetStatePath } from "../cli/statePaths.js";
import { lockTarget } from "../cli/targetLock.js";
import { quoteText } from "../cli/terminalText.js";
import { type AttributeKey, type Operation, OperationSchema } from "../events/operation.js";
import { StateFileError } from "../events/operationLog.js";
import { isAtOrBelow } from "../events/paths.js";
import { planChanges } from "../events/plan.js";
import {
  type ApplyEntry,
  type ApplyResult,
  PROTOCOL_VERSION,
  type Request,
  type Response,
} from "../events/protocol.js";
import { StateStore } from "../events/stateStore.js";
import type { TreeNode } from "../events/tree.js";
import { monotonicMs } from "../fs/clock.js";
import { NodeFileSystem } from "../fs/nodeFileSystem.js";
import { ManifestTreeBuilder } from "../projections/expectedTree.js";
import { ReplicatorTarget } from "../replicator/target.js";
import { ChunkStore, withRetries } from "./chunkStore.js";
import { parseAddress } from "./publish.js";
import {
  BucketKeys,
  closeFanout,
  decodeValue,
  describeAddress,
  encodeValue,
  type FanoutConnection,
  FanoutMetaSchema,
  type NatsSecurityOptions,
  NoFanoutError,
  type OperationMessage,
  OperationMessageSchema,
  openFanout,
  type RecipeRef,
  type SubscriberReport,
} from "./streamLayout.js";
import { readSnapshot, streamBounds } from "./streamTree.js";
import { INLINE_BYTES, SubscriberContent } from "./subscriberContent.js";

/** Options of `mirrorlog subscribe`. */
export interface SubscribeOptions extends NatsSecurityOptions {
  watch: boolean;
  /** The durable consumer's name (default: host, target directory and a hash of its path). */
  name?: string;
  state?: string;
  json: boolean;
}

/** What a subscribe run did; the field names are the stable `--json` interface. */
export interface SubscribeSummary {
  fanout: string;
  consumer: string;
  /** The stream sequence acknowledged last: the consumer's cursor. */
  streamSeq: number;
  /** Whether this run started from a snapshot (a new subscriber, or one whose cursor left the stream). */
  bootstrappedFrom: number | null;
  operationsApplied: number;
  chunksFetched: number;
  chunkBytesFetched: number;
  durationMs: number;
  problems: { path: string; reason: string }[];
}

/** Messages fetched and applied per batch (one apply request, one flush on the target)... */
const BATCH_MESSAGES = 512;
/** ...and at most this many inline content bytes in one apply request (the target's limit is 64 MiB). */
const BATCH_CONTENT_BYTES = 32 * 1024 * 1024;
/** How long a fetch of messages known to be pending may take (ms). */
const ONE_SHOT_EXPIRES_MS = 2_000;
const WATCH_EXPIRES_MS = 5_000;
/** A subscriber whose disk is full retries after this long while watching (ms). */
const NO_SPACE_RETRY_MS = 5_000;
/** Failed reads of the stream in a row (a node lost, a leader moving) before a subscriber gives up. */
const READ_RETRIES = 8;
/** A temp a killed target run left (the file system's reserved prefix and its per-run random part). */
const LEFTOVER_TEMP = /^\.mirrorlog-tmp-[0-9a-f]{12}/;
/** Failure codes meaning the target lacked what the content assumed: retried once with every chunk. */
const DRIFT = new Set(["missing-content", "missing-basis", "hash-mismatch"]);

/** The default consumer name of a target directory: host, directory name and a hash of its path. */
export function defaultConsumerName(root: string): string {
  const clean = (text: string) => text.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 40);
  const id = createHash("sha256").update(root).digest("hex").slice(0, 8);
  return `${clean(hostname())}-${clean(posix.basename(root) || "root")}-${id}`;
}

/** One stream message on its way to the target. */
interface Incoming {
  /** Undefined for an operation planned from a snapshot (nothing to acknowledge). */
  msg: JsMsg | undefined;
  message: OperationMessage | undefined;
}

/**
 * `mirrorlog subscribe nats://HOST:PORT/NAME DST`: keeps DST an exact mirror of what the fan-out NAME
 * describes, through the same ReplicatorTarget `serve` runs (validation, confinement, atomic writes,
 * its lock on DST and its state file). A durable consumer named after the target is the cursor: each
 * message is acknowledged once its operation is applied and durable. A new subscriber, or one whose
 * cursor left the retained stream, starts from the newest snapshot. Returns the exit code.
 */
export async function runSubscribe(url: string, dst: string, options: SubscribeOptions): Promise<number> {
  const started = monotonicMs();
  const address = parseAddress(url);
  const root = posix.resolve(dst);
  if (existsSync(root) && !lstatSync(root).isDirectory())
    throw new CliError(`target ${quoteText(root)} is not a directory`);
  mkdirSync(root, { recursive: true });
  const lock = lockTarget(root);
  const statePath = options.state ? posix.resolve(options.state) : defaultTargetStatePath(root);
  let state: StateStore;
  try {
    makeStateDirectory(statePath);
    state = new StateStore(statePath, { verify: true });
  } catch (error) {
    lock.release();
    if (error instanceof StateFileError) throw new CliError(`target ${stateFileAdvice(error)}`, STATE_UNUSABLE_EXIT);
    throw error;
  }
  const problems: { path: string; reason: string }[] = [];
  const problem = (path: string, reason: string): void => {
    problems.push({ path, reason });
    process.stderr.write(`mirrorlog subscribe: ${quoteText(path)}: ${quoteText(reason)}\n`);
  };
  const fs = new NodeFileSystem({ root, onProblem: (p) => problem(p.path, p.reason), durability: "batched" });
  // No flush interval: every apply request is durable before it is answered, and so before its messages are acked.
  const target = new ReplicatorTarget(fs, root, { positionStore: state, index: state });
  let fanout: FanoutConnection | undefined;
  try {
    // Retried: a cluster that just lost a node answers once it has elected new leaders.
    fanout = await withRetries("connecting", () => openFanout(address, options)).catch((error: Error) => {
      throw new CliError(`cannot open fan-out ${describeAddress(address)}: ${error.message}`);
    });
    const name = options.name ?? defaultConsumerName(root);
    const subscriber = new Subscriber({ fanout, target, fs, state, root, name, problem });
    await subscriber.open();
    const stop = stopSignal(options.watch);
    await subscriber.follow(options.watch, stop.stopped);
    stop.dispose();
    const summary: SubscribeSummary = {
      fanout: describeAddress(address),
      consumer: subscriber.name,
      streamSeq: subscriber.streamSeq,
      bootstrappedFrom: subscriber.bootstrappedFrom,
      operationsApplied: subscriber.operationsApplied,
      chunksFetched: subscriber.store.traffic.chunksFetched,
      chunkBytesFetched: subscriber.store.traffic.bytesFetched,
      durationMs: Math.round(monotonicMs() - started),
      problems,
    };
    if (options.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else
      process.stdout.write(
        `${quoteText(root)} follows ${summary.fanout} as ${summary.consumer}: at ${summary.streamSeq}, ` +
          `${summary.operationsApplied} operations applied, ${summary.chunksFetched} chunks (${summary.chunkBytesFetched} bytes) fetched` +
          `${summary.bootstrappedFrom === null ? "" : `, started from the snapshot at ${summary.bootstrappedFrom}`}\n`,
      );
    return problems.length > 0 ? 1 : 0;
  } catch (error) {
    if (error instanceof CliError) throw error;
    if (error instanceof StateFileError) throw new CliError(`target ${stateFileAdvice(error)}`, STATE_UNUSABLE_EXIT);
    throw new CliError(
      `subscribing ${quoteText(root)} to ${describeAddress(address)} failed: ${(error as Error).message}`,
      1,
    );
  } finally {
    try {
      target.close();
    } catch (error) {
      process.stderr.write(`mirrorlog subscribe: could not end the session cleanly: ${(error as Error).message}\n`);
    }
    if (fanout !== undefined) await closeFanout(fanout);
    for (const closable of [state, fs]) {
      try {
        closable.close();
      } catch {
        // best effort once the run has its answer
      }
    }
    lock.release();
  }
}

/** Settles on SIGINT/SIGTERM while watching (a one-shot run ends by itself). */
function stopSignal(watch: boolean): { stopped: Promise<void>; dispose: () => void } {
  if (!watch) return { stopped: new Promise(() => {}), dispose: () => {} };
  let stop = (): void => {};
  const stopped = new Promise<void>((resolve) => {
    stop = () => resolve();
  });
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  return {
    stopped,
    dispose: () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
    },
  };
}

/** What a Subscriber works with. */
interface SubscriberOptions {
  fanout: FanoutConnection;
  /** The target `serve` would run on DST, over its file system and state. */
  target: ReplicatorTarget;
  fs: NodeFileSystem;
  state: StateStore;
  root: string;
  /** The durable consumer's name. */
  name: string;
  /** Reports a per-path problem (one line on stderr, and the summary). */
  problem: (path: string, reason: string) => void;
}

/** One subscriber: its target session, its consumer, and the batches it applies. */
class Subscriber {
  readonly store: ChunkStore;
  streamSeq = 0;
  bootstrappedFrom: number | null = null;
  operationsApplied = 0;
  private readonly content: SubscriberContent;
  private logId = "";
  private nextSeq = 1;
  private attributes: AttributeKey[] = ["mode", "mtime"];
  private consumer: Consumer | undefined;
  /** Messages of the current batch already acknowledged (the rest are handed back if it stops short). */
  private readonly acked = new WeakSet<JsMsg>();

  private readonly fanout: FanoutConnection;
  private readonly target: ReplicatorTarget;
  private readonly root: string;
  readonly name: string;
  private readonly problem: (path: string, reason: string) => void;

  constructor(options: SubscriberOptions) {
    ({ fanout: this.fanout, target: this.target, root: this.root, name: this.name, problem: this.problem } = options);
    this.store = new ChunkStore(this.fanout);
    this.content = new SubscriberContent({
      fs: options.fs,
      root: this.root,
      index: options.state,
      store: this.store,
      send: (request) => this.send(request),
    });
  }

  private send(request: Request): Response {
    return this.target.handleRequest(request);
  }

  /** Opens the target session and the consumer, starting from a snapshot when the cursor cannot continue. */
  async open(): Promise<void> {
    const meta = await withRetries("reading the fan-out's identity", () => this.fanout.kv.get(BucketKeys.meta));
    if (meta === null || meta.value.length === 0)
      throw new Error("the fan-out has no identity yet (nothing published)");
    this.logId = decodeValue(FanoutMetaSchema, meta.value, "fan-out identity").id;
    const hello = this.send({ type: "hello", version: PROTOCOL_VERSION, logId: this.logId, epoch: 1 });
    if (hello.type !== "hello")
      throw new Error(`the target refused the session: ${"message" in hello ? hello.message : hello.type}`);
    const applied = this.target.appliedPosition();
    this.nextSeq = (applied?.seq ?? 0) + 1;
    if (hello.canSetOwner) this.attributes = ["uid", "gid", "mode", "mtime"];

    const { stream } = this.fanout.names;
    const info = await withRetries("reading the consumer", () =>
      this.fanout.jsm.consumers.info(stream, this.name).catch((error: Error) => {
        if (/consumer not found/i.test(error.message)) return null;
        throw error;
      }),
    );
    const bounds = await streamBounds(this.fanout);
    const cursor = info?.ack_floor.stream_seq ?? 0;
    const fellOut = info !== null && bounds.last >= bounds.first && cursor + 1 < bounds.first;
    this.streamSeq = cursor;
    if (info !== null && !fellOut) {
      this.sweepTemps();
      // Messages a killed run was given but never acknowledged would come back after newer ones: start over
      // at the cursor instead, so operations always apply in the stream's order.
      if (info.num_ack_pending > 0 || info.num_redelivered > 0) await this.startConsumerAt(cursor);
      else
        this.consumer = await withRetries("opening the consumer", () =>
          this.fanout.js.consumers.get(stream, this.name),
        );
      return;
    }
    const from = await this.bootstrap(bounds);
    await this.startConsumerAt(from);
    await this.reportPosition();
  }

  /** (Re)creates the durable consumer so that it delivers from the message after `cursor`, in order. */
  private async startConsumerAt(cursor: number): Promise<void> {
    const { stream } = this.fanout.names;
    await withRetries("removing the consumer", () =>
      this.fanout.jsm.consumers.delete(stream, this.name).catch((error: Error) => {
        if (!/consumer not found/i.test(error.message)) throw error;
        return true;
      }),
    );
    const config = {
      durable_name: this.name,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: cursor + 1,
      filter_subject: this.fanout.names.subject,
      max_ack_pending: 10_000,
      // Never redelivered within a run (that could reorder operations): a new run starts over at the cursor.
      ack_wait: 3_600_000_000_000,
    };
    await withRetries("creating the consumer", () => this.fanout.jsm.consumers.add(stream, config));
    this.streamSeq = cursor;
    this.consumer = await withRetries("opening the consumer", () => this.fanout.js.consumers.get(stream, this.name));
  }

  /** The target's tree as its manifest lists it (temps of a crashed run included). */
  private listTarget(): ManifestTreeBuilder {
    const builder = new ManifestTreeBuilder();
    for (let complete = false; !complete; ) {
      const page = this.send({ type: "manifest", offset: builder.received });
      if (page.type !== "manifest")
        throw new Error(`the target could not list itself: ${"message" in page ? page.message : page.type}`);
      builder.add(page.entries);
      complete = page.complete;
    }
    return builder;
  }

  /**
   * Removes what a killed run left staged (temps beside their final names, its stash): `sync` does it from
   * the manifest it reads anyway; a subscriber resuming from its cursor reads the manifest for this alone.
   */
  private sweepTemps(): void {
    const leftovers: string[] = [];
    const visit = (node: TreeNode, path: string): void => {
      if (node.kind !== "dir") return;
      for (const [name, child] of node.children) {
        const at = path === "" ? name : `${path}/${name}`;
        if (LEFTOVER_TEMP.test(name)) leftovers.push(at);
        else visit(child, at);
      }
    };
    visit(this.listTarget().tree, "");
    if (leftovers.length === 0) return;
    const results = this.applyEntries(leftovers.map((path) => ({ seq: 0, operation: { type: "remove", path } })));
    results?.forEach((result, i) => {
      if (result.outcome === "failed") this.problem(leftovers[i]!, `leftover temp not removed: ${result.reason ?? ""}`);
    });
  }

  /**
   * Makes the target equal to the newest snapshot's tree (or to the empty tree before the first operation)
   * and returns the stream sequence the snapshot is at: the consumer starts after it.
   */
  private async bootstrap(bounds: { first: number; last: number }): Promise<number> {
    const snapshot = await readSnapshot(this.fanout);
    if (bounds.last >= bounds.first && bounds.first > snapshot.streamSeq + 1) {
      throw new Error(
        `the stream keeps operations from ${bounds.first} on and the newest snapshot is at ${snapshot.streamSeq}: ` +
          "the operations in between are lost (the publisher writes snapshots with --snapshot-every)",
      );
    }
    this.bootstrappedFrom = snapshot.streamSeq > 0 ? snapshot.streamSeq : null;
    const builder = this.listTarget();
    const operations = planChanges(builder.tree, snapshot.tree, "", { attributes: this.attributes });
    const planned: Incoming[] = operations.map((operation) => ({
      msg: undefined,
      message: {
        v: 1,
        logId: this.logId,
        epoch: 1,
        seq: 1,
        loggedAt: Date.now(),
        operation,
        ...recipeFor(operation, snapshot.recipes),
      },
    }));
    for (let at = 0; at < planned.length; at += BATCH_MESSAGES) {
      const stopped = await this.applyBatch(planned.slice(at, at + BATCH_MESSAGES), false);
      if (stopped !== undefined) throw new Error(`bootstrap stopped: ${stopped}`);
    }
    return snapshot.streamSeq;
  }

  /** Applies the stream after the cursor until caught up (one-shot) or until `stopped` (watch). */
  async follow(watch: boolean, stopped: Promise<void>): Promise<void> {
    let stop = false;
    void stopped.then(() => {
      stop = true;
    });
    let readFailures = 0;
    while (!stop) {
      const incoming: Incoming[] = [];
      try {
        const info = await withRetries("reading the consumer", () => this.consumer!.info());
        if (info.num_pending === 0) {
          if (!watch) return;
          // Idle: wait for the next message, then take what arrived with it.
          const msg = await this.consumer!.next({ expires: WATCH_EXPIRES_MS });
          if (msg === null) continue;
          incoming.push({ msg, message: this.decode(msg) });
        }
        const wanted = Math.min(
          BATCH_MESSAGES - incoming.length,
          Math.max(info.num_pending, incoming.at(-1)?.msg?.info.pending ?? 0),
        );
        if (wanted > 0) {
          // Sized by what is pending, so the fetch returns as soon as those arrived (it does not wait to expire).
          const batch = await this.consumer!.fetch({ max_messages: wanted, expires: ONE_SHOT_EXPIRES_MS });
          for await (const msg of batch) incoming.push({ msg, message: this.decode(msg) });
        }
        readFailures = 0;
      } catch (error) {
        // A node lost or a leader moving ("heartbeats missed", timeouts): nothing of this read was applied,
        // so the consumer is opened again at the cursor and delivers it again, in order.
        if (error instanceof NoFanoutError || ++readFailures > READ_RETRIES) throw error;
        process.stderr.write(
          `mirrorlog subscribe: reading the stream failed (${(error as Error).message}); resuming at ${this.streamSeq}\n`,
        );
        await Promise.race([
          stopped,
          new Promise((resolve) => setTimeout(resolve, Math.min(5_000, 250 * 2 ** readFailures))),
        ]);
        if (stop) break;
        await this.startConsumerAt(this.streamSeq);
        continue;
      }
      if (incoming.length > 0) {
        const halted = await this.applyBatch(incoming, true);
        if (halted !== undefined) {
          if (!watch) return;
          await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, NO_SPACE_RETRY_MS))]);
          // What was handed back comes again first: the consumer starts over at the cursor.
          await this.startConsumerAt(this.streamSeq);
          continue;
        }
        // Caught up: what the target set aside for reuse (removed files a later write might take back) goes.
        if (incoming.at(-1)?.msg?.info.pending === 0) this.send({ type: "release" });
        await this.reportPosition();
      }
    }
  }

  private decode(msg: JsMsg): OperationMessage | undefined {
    try {
      return decodeValue(OperationMessageSchema, msg.data, `stream message ${msg.seq}`);
    } catch (error) {
      this.problem(`stream message ${msg.seq}`, (error as Error).message);
      return undefined;
    }
  }

  /**
   * Applies a batch in order as apply requests and acknowledges its messages (`ack`) once applied and
   * durable. Returns why it stopped short (a full disk: the rest is left unacknowledged for a later try).
   */
  private async applyBatch(batch: readonly Incoming[], ack: boolean): Promise<string | undefined> {
    let group: { incoming: Incoming; entry: ApplyEntry }[] = [];
    let groupBytes = 0;
    let paths = new Set<string>();
    const flush = async (): Promise<string | undefined> => {
      if (group.length === 0) return undefined;
      const done = group;
      group = [];
      groupBytes = 0;
      paths = new Set();
      return this.applyGroup(done, ack);
    };
    // Start fetching the batch's small files together.
    const recipes = new Map<Incoming, { operation: Operation; chunks: Awaited<ReturnType<ChunkStore["chunksOf"]>> }>();
    for (const incoming of batch) {
      const parsed = OperationSchema.safeParse(incoming.message?.operation);
      if (!parsed.success || parsed.data.type !== "writeFile" || parsed.data.linkTo !== undefined) continue;
      const recipe = incoming.message?.recipe;
      if (recipe === undefined) continue;
      try {
        const chunks = await this.store.chunksOf(parsed.data.hash, recipe);
        recipes.set(incoming, { operation: parsed.data, chunks });
        this.content.prefetch(parsed.data, chunks);
      } catch (error) {
        this.problem(parsed.data.path, `chunk list unavailable: ${(error as Error).message}`);
      }
    }
    for (const incoming of batch) {
      if (incoming.message === undefined) {
        // Undecodable: reported when it arrived; acknowledged so it does not come back forever.
        const stopped = await flush();
        if (stopped !== undefined) return this.halt(stopped, batch);
        if (ack) await this.acknowledge([incoming]);
        continue;
      }
      const raw = incoming.message.operation as { path?: unknown } | null;
      const path = typeof raw?.path === "string" ? raw.path : "";
      // One entry per path per request: a file's basis is what the target held before the request.
      if (paths.has(path) || groupBytes >= BATCH_CONTENT_BYTES) {
        const stopped = await flush();
        if (stopped !== undefined) return this.halt(stopped, batch);
      }
      paths.add(path);
      const entry: ApplyEntry = { seq: 0, operation: incoming.message.operation as Operation };
      const known = recipes.get(incoming);
      if (known !== undefined && known.operation.type === "writeFile") {
        // A large file's uploads are staged beside its final name: what the group before it creates comes first.
        if (known.operation.size > INLINE_BYTES) {
          const stopped = await flush();
          if (stopped !== undefined) return this.halt(stopped, batch);
          paths.add(path);
        }
        try {
          const content = await this.content.contentFor(known.operation, known.chunks);
          if (content !== undefined) entry.content = content;
          groupBytes += known.operation.size <= INLINE_BYTES ? known.operation.size : 0;
        } catch (error) {
          // The target then answers "missing content" for it, as serve would, and the path is reported.
          this.problem(known.operation.path, `content unavailable: ${(error as Error).message}`);
        }
      }
      group.push({ incoming, entry });
    }
    const stopped = await flush();
    this.content.clearPrefetched();
    return stopped === undefined ? undefined : this.halt(stopped, batch);
  }

  /** Stops a batch short: its messages not yet acknowledged are handed back, to be delivered again soon. */
  private halt(reason: string, batch: readonly Incoming[]): string {
    this.content.clearPrefetched();
    for (const incoming of batch) {
      if (incoming.msg !== undefined && !this.acked.has(incoming.msg)) incoming.msg.nak(NO_SPACE_RETRY_MS);
    }
    return reason;
  }

  /** Sends one group as an apply request (entry by entry if the target refuses it whole), then acks it. */
  private async applyGroup(
    group: { incoming: Incoming; entry: ApplyEntry }[],
    ack: boolean,
  ): Promise<string | undefined> {
    let results: (ApplyResult | undefined)[] | undefined = this.applyEntries(group.map((g) => g.entry));
    if (results === undefined) {
      // Refused whole (a message fails validation or confinement): each alone, so only the bad one is refused.
      results = [];
      for (const one of group) {
        results.push(this.applyEntries([one.entry])?.[0]);
      }
    }
    const retry: { incoming: Incoming; entry: ApplyEntry }[] = [];
    let noSpaceAt = -1;
    results.forEach((result, i) => {
      const { incoming, entry } = group[i]!;
      const where = pathOf(entry);
      if (result === undefined) return; // reported by applyEntries
      if (result.outcome !== "failed") {
        this.operationsApplied += result.outcome === "applied" ? 1 : 0;
        return;
      }
      if (result.code === "no-space" && noSpaceAt === -1) noSpaceAt = i;
      if (DRIFT.has(result.code ?? "") && entry.operation.type === "writeFile" && result.code !== "hash-mismatch") {
        retry.push({ incoming, entry });
        // Later entries of the group at, above or below the path are stated again after the retry.
        for (const later of group.slice(i + 1)) {
          const p = pathOf(later.entry);
          if (isAtOrBelow(where, p) || isAtOrBelow(p, where)) retry.push(later);
        }
        return;
      }
      this.problem(where, `${result.code ?? "failed"}: ${result.reason ?? "apply failed"}`);
    });
    if (retry.length > 0) await this.retryWhole(retry);
    if (noSpaceAt !== -1) {
      const { entry } = group[noSpaceAt]!;
      // Acknowledge what came before; what failed and what follows comes again once space is freed.
      if (ack) await this.acknowledge(group.slice(0, noSpaceAt).map((g) => g.incoming));
      const reason = `no space left on the target at ${quoteText(pathOf(entry))}: run again once space is freed`;
      process.stderr.write(`mirrorlog subscribe: ${reason}\n`);
      return reason;
    }
    if (ack) await this.acknowledge(group.map((g) => g.incoming));
    return undefined;
  }

  /** The target lacked what the content assumed: the write again with every chunk, then the later entries it affects. */
  private async retryWhole(retry: { incoming: Incoming; entry: ApplyEntry }[]): Promise<void> {
    const seen = new Set<ApplyEntry>();
    const entries: ApplyEntry[] = [];
    for (const { incoming, entry } of retry) {
      if (seen.has(entry)) continue;
      seen.add(entry);
      const operation = entry.operation;
      const again: ApplyEntry = { seq: 0, operation };
      const recipe = incoming.message?.recipe;
      if (operation.type === "writeFile" && operation.linkTo === undefined && recipe !== undefined) {
        try {
          const content = await this.content.contentFor(
            operation,
            await this.store.chunksOf(operation.hash, recipe),
            true,
          );
          if (content !== undefined) again.content = content;
        } catch (error) {
          this.problem(operation.path, `content unavailable: ${(error as Error).message}`);
        }
      } else if (entry.content !== undefined) again.content = entry.content;
      entries.push(again);
    }
    const results = this.applyEntries(entries) ?? [];
    results.forEach((result, i) => {
      if (result.outcome === "failed")
        this.problem(pathOf(entries[i]!), `${result.code ?? "failed"}: ${result.reason ?? ""}`);
    });
  }

  /** One apply request with local positions; undefined when the target refused it whole (reported for a single entry). */
  private applyEntries(entries: ApplyEntry[]): ApplyResult[] | undefined {
    const numbered = entries.map((entry, i) => ({ ...entry, seq: this.nextSeq + i }));
    const response = this.send({ type: "apply", logId: this.logId, epoch: 1, entries: numbered });
    if (response.type === "error") {
      if (entries.length === 1) this.problem(pathOf(entries[0]!), `refused: ${response.code}: ${response.message}`);
      return undefined;
    }
    if (response.type !== "applied") throw new Error(`unexpected answer to apply: ${response.type}`);
    this.nextSeq = response.applied.seq + 1;
    return response.results;
  }

  private async acknowledge(done: readonly Incoming[]): Promise<void> {
    const msgs = done.map((d) => d.msg).filter((msg): msg is JsMsg => msg !== undefined);
    const last = msgs.at(-1);
    if (last === undefined) return;
    for (const msg of msgs) this.acked.add(msg);
    for (const msg of msgs.slice(0, -1)) msg.ack();
    // The last one is confirmed by the server: the cursor is recorded before the run reports it.
    await withRetries("acknowledging", () =>
      last.ackAck().then((ok) => {
        if (!ok) throw new Error("not acknowledged");
      }),
    );
    this.streamSeq = Math.max(this.streamSeq, last.seq);
  }

  /** Tells `status` where this subscriber stands (its consumer shows the rest). */
  private async reportPosition(): Promise<void> {
    const report: SubscriberReport = {
      v: 1,
      target: this.root,
      host: hostname(),
      streamSeq: this.streamSeq,
      seenAt: Date.now(),
      operationsApplied: this.operationsApplied,
      chunkBytesFetched: this.store.traffic.bytesFetched,
      problems: 0,
    };
    await this.fanout.kv.put(BucketKeys.subscriber(this.name), encodeValue(report)).catch(() => {});
  }
}

/** The path an entry names ("" when its operation has none: a malformed message). */
function pathOf(entry: ApplyEntry): string {
  const path = (entry.operation as { path?: unknown }).path;
  return typeof path === "string" ? path : "";
}

/** The recipe field of a bootstrap operation (a written file's chunks as the snapshot lists them). */
function recipeFor(operation: Operation, recipes: Map<string, RecipeRef>): { recipe?: RecipeRef } {
  if (operation.type !== "writeFile" || operation.linkTo !== undefined) return {};
  const recipe = recipes.get(operation.hash);
  return recipe === undefined ? {} : { recipe };
}
