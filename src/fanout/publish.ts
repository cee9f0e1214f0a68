import { createHash, randomBytes } from "node:crypto";
import { lstatSync, realpathSync } from "node:fs";
import { posix } from "node:path";
import { CliError } from "../cli/cliError.js";
import { exclusionRules } from "../cli/ignoreRules.js";
import { makeStateDirectory, STATE_UNUSABLE_EXIT, stateFileAdvice } from "../cli/stateFiles.js";
import { stateDirectory, statePathProblem } from "../cli/statePaths.js";
import { quoteText } from "../cli/terminalText.js";
import { OperationLog, StateFileError } from "../events/operationLog.js";
import { SOURCE_WRITE_AHEAD, StateStore } from "../events/stateStore.js";
import { monotonicMs } from "../fs/clock.js";
import { NodeFileSystem } from "../fs/nodeFileSystem.js";
import type { ChunkLists } from "../replicator/contentShipping.js";
import { SourceSession } from "../replicator/sourceSession.js";
import { StreamingSource } from "../replicator/streamingSource.js";
import { ChunkStore, withRetries } from "./chunkStore.js";
import {
  BucketKeys,
  closeFanout,
  describeAddress,
  encodeValue,
  type FanoutConnection,
  type NatsSecurityOptions,
  openFanout,
  parseFanoutUrl,
} from "./streamLayout.js";
import { StreamTarget } from "./streamTarget.js";
import { readSnapshotHead, readStreamTree, writeSnapshot } from "./streamTree.js";

/** Options of `mirrorlog publish`. */
export interface PublishOptions extends NatsSecurityOptions {
  watch: boolean;
  state?: string;
  exclude: string[];
  json: boolean;
  /** Stream and bucket copies in a cluster (used when they are created). */
  replicas: number;
  /** Seconds operations stay in the stream (0: no age limit). */
  maxAge: number;
  /** Bytes of operations the stream keeps (0: no size limit). */
  maxBytes: number;
  /** watch: a snapshot once this many operations were published since the last one (and at the end). */
  snapshotEvery: number;
  /** watch: seconds between reconcile scans. */
  rescanInterval: number;
  allowEmptySource?: boolean;
  owner?: boolean;
  group?: boolean;
  hardLinks?: boolean;
}

/** What a publish run did; the field names are the stable `--json` interface. */
export interface PublishSummary {
  fanout: string;
  filesScanned: number;
  operationsPublished: number;
  /** Content bytes of the files the published operations wrote. */
  contentBytes: number;
  chunksPut: number;
  /** Encoded chunk bytes put into the bucket. */
  chunkBytesPut: number;
  /** Every byte this process sent to the server (chunks, operations, snapshots, protocol). */
  bytesUploaded: number;
  /** Stream sequence of the last operation, and of the newest snapshot. */
  streamSeq: number;
  snapshotSeq: number | null;
  durationMs: number;
  problems: { path: string; reason: string }[];
}

/** Chunk lists the session is given: none, so it builds no deltas (the bucket stores each chunk once anyway). */
const NO_CHUNK_LISTS: ChunkLists = { get: () => undefined, set: () => {} };
/** watch: how often (ms) whether a snapshot is due is checked. */
const SNAPSHOT_CHECK_MS = 5_000;

/**
 * `mirrorlog publish SRC nats://HOST:PORT/NAME`: mirrors SRC into the fan-out NAME (operations to its
 * stream, new chunks to its bucket), then, with --watch, follows changes until SIGINT/SIGTERM. Writes a
 * snapshot at the end (and every --snapshot-every operations while watching). Returns the exit code.
 */
export async function runPublish(src: string, url: string, options: PublishOptions): Promise<number> {
  const started = monotonicMs();
  const address = parseAddress(url);
  const sourceRoot = resolveSource(src);
  const statePath = options.state
    ? posix.resolve(options.state)
    : posix.join(
        stateDirectory(),
        `publish-${posix.basename(sourceRoot) || "root"}-${pairId(sourceRoot, describeAddress(address))}.db`,
      );
  const stateProblem = statePathProblem(statePath, [sourceRoot]);
  if (stateProblem !== null) throw new CliError(stateProblem);
  makeStateDirectory(statePath);
  const { log, state } = openPublisherState(statePath, sourceRoot, describeAddress(address));
  let fanout: FanoutConnection | undefined;
  const fs = new NodeFileSystem({ root: sourceRoot, onProblem: (problem) => session?.reportProblem(problem) });
  let session: SourceSession | undefined;
  try {
    const create = { replicas: options.replicas, maxAgeSeconds: options.maxAge, maxBytes: options.maxBytes };
    // Retried: a cluster that just lost a node answers once it has elected new leaders.
    fanout = await withRetries("connecting", () => openFanout(address, options, create)).catch((error: Error) => {
      throw new CliError(`cannot open fan-out ${describeAddress(address)}: ${error.message}`);
    });
    await ensureMeta(fanout);
    const store = new ChunkStore(fanout);
    const target = new StreamTarget(fanout, store, sourceRoot, await readStreamTree(fanout, store));
    const isExcluded = exclusionRules(fs, sourceRoot, options.exclude);
    let driver: StreamingSource | undefined;
    const opened = new SourceSession({
      fs,
      root: sourceRoot,
      log,
      index: state,
      chunkLists: NO_CHUNK_LISTS,
      refuseEmptySource: !options.allowEmptySource,
      preserveOwner: options.owner ?? true,
      preserveGroup: options.group ?? true,
      hardLinks: options.hardLinks ?? false,
      ...(isExcluded === undefined ? {} : { isExcluded }),
      ...(options.watch ? { onWatchEvent: (event) => driver?.hint(event) } : {}),
    });
    session = opened;
    let failure: unknown;
    driver = new StreamingSource(opened, target, {
      onError: (error) => {
        failure ??= error;
        process.stderr.write(`mirrorlog publish: ${(error as Error).message}\n`);
      },
    });
    await driver.establish();
    state.flush();
    // With retention limits, operations may leave the stream: every run ends with a snapshot that covers them.
    const retained = options.maxAge > 0 || options.maxBytes > 0;
    let snapshotSeq = await snapshotIfBehind(fanout, target, retained ? 1 : options.snapshotEvery);
    if (options.watch) {
      snapshotSeq = await follow(driver, fanout, target, options, snapshotSeq);
      if (failure !== undefined) throw failure;
    }
    state.flush();
    const stats = opened.stats;
    const summary: PublishSummary = {
      fanout: describeAddress(address),
      filesScanned: stats.filesScanned,
      operationsPublished: target.totals.operationsPublished,
      contentBytes: target.totals.contentBytes,
      chunksPut: store.traffic.chunksPut,
      chunkBytesPut: store.traffic.bytesPut,
      bytesUploaded: fanout.nc.stats().outBytes,
      streamSeq: target.position,
      snapshotSeq,
      durationMs: Math.round(monotonicMs() - started),
      problems: stats.problems,
    };
    report(summary, options.json);
    return summary.problems.length > 0 ? 1 : 0;
  } catch (error) {
    if (error instanceof CliError) throw error;
    if (error instanceof StateFileError) throw new CliError(`publisher ${stateFileAdvice(error)}`, STATE_UNUSABLE_EXIT);
    throw new CliError(
      `publishing ${sourceRoot} to ${describeAddress(address)} failed: ${(error as Error).message}`,
      1,
    );
  } finally {
    session?.releaseWatches();
    if (fanout !== undefined) await closeFanout(fanout);
    for (const closable of [state, log, fs]) {
      try {
        closable.close();
      } catch {
        // closing is best effort once the run has its answer
      }
    }
  }
}

/** The address of a fan-out URL, or the one-line usage error. */
export function parseAddress(url: string): ReturnType<typeof parseFanoutUrl> {
  try {
    return parseFanoutUrl(url);
  } catch (error) {
    throw new CliError((error as Error).message);
  }
}

function resolveSource(src: string): string {
  let root: string;
  try {
    root = realpathSync(src);
  } catch (error) {
    throw new CliError(`source ${quoteText(src)} cannot be read: ${(error as Error).message}`);
  }
  if (!lstatSync(root).isDirectory()) throw new CliError(`source ${quoteText(src)} is not a directory`);
  return root;
}

function pairId(sourceRoot: string, fanout: string): string {
  return createHash("sha256").update(`${sourceRoot}\0${fanout}`).digest("hex").slice(0, 16);
}

/** The publisher's own state: its log (positions, audit) and content index, in one SQLite file. */
function openPublisherState(
  statePath: string,
  sourceRoot: string,
  fanout: string,
): { log: OperationLog; state: StateStore } {
  let log: OperationLog | undefined;
  try {
    log = new OperationLog(statePath, { verify: true });
    const state = new StateStore(statePath, { writeAheadAfter: SOURCE_WRITE_AHEAD });
    log.describePair(sourceRoot, fanout);
    return { log, state };
  } catch (error) {
    log?.close();
    if (error instanceof StateFileError) throw new CliError(`publisher ${stateFileAdvice(error)}`, STATE_UNUSABLE_EXIT);
    throw error;
  }
}

/** Gives the fan-out its identity (the log id its subscribers' targets record) if it has none yet. */
async function ensureMeta(fanout: FanoutConnection): Promise<void> {
  const existing = await withRetries("reading the fan-out's identity", () => fanout.kv.get(BucketKeys.meta));
  if (existing !== null && existing.value.length > 0) return;
  const meta = { v: 1, id: randomBytes(16).toString("hex"), createdAt: Date.now() };
  // create() fails if another publisher made it meanwhile: theirs stands.
  await fanout.kv.create(BucketKeys.meta, encodeValue(meta)).catch(() => {});
}

/**
 * Writes a snapshot when there is none yet, or when at least `every` operations were published after the
 * newest one (a snapshot rewrites the whole manifest: after a small edit it would cost more than the edit).
 * Returns the newest snapshot's position.
 */
async function snapshotIfBehind(fanout: FanoutConnection, target: StreamTarget, every: number): Promise<number | null> {
  const head = await readSnapshotHead(fanout);
  if (head !== null && target.position - head.streamSeq < every) return head.streamSeq;
  if (target.position === 0) return head?.streamSeq ?? null;
  return (await writeSnapshot(fanout, target.snapshotState(), Date.now())).streamSeq;
}

/** watch: replicates until SIGINT/SIGTERM, with reconcile scans and periodic snapshots. */
async function follow(
  driver: StreamingSource,
  fanout: FanoutConnection,
  target: StreamTarget,
  options: PublishOptions,
  snapshotSeq: number | null,
): Promise<number | null> {
  process.stderr.write(`mirrorlog publish: watching ${driver.session.root} (Ctrl-C to stop)\n`);
  let last = snapshotSeq;
  const reconcile = setInterval(() => driver.rescan("rescan"), options.rescanInterval * 1000);
  let lastAt = Date.now();
  const snapshots = setInterval(() => {
    const published = target.position - (last ?? 0);
    // With an age limit, a snapshot at least every half of it: no operation leaves the stream uncovered.
    const aged = options.maxAge > 0 && published > 0 && Date.now() - lastAt >= (options.maxAge * 1000) / 2;
    if (published < options.snapshotEvery && !aged) return;
    void driver.runExclusive(async () => {
      last = (await writeSnapshot(fanout, target.snapshotState(), Date.now())).streamSeq;
      lastAt = Date.now();
    });
  }, SNAPSHOT_CHECK_MS);
  try {
    await new Promise<void>((resolve) => {
      const stop = (): void => {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        resolve();
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    });
  } finally {
    clearInterval(reconcile);
    clearInterval(snapshots);
  }
  driver.session.releaseWatches();
  await driver.idle();
  return snapshotIfBehind(fanout, target, 1);
}

function report(summary: PublishSummary, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    return;
  }
  process.stdout.write(
    `published ${summary.operationsPublished} operations to ${summary.fanout} (stream at ${summary.streamSeq}, ` +
      `snapshot at ${summary.snapshotSeq ?? "none"}): ${summary.contentBytes} content bytes, ${summary.chunksPut} new chunks ` +
      `(${summary.chunkBytesPut} bytes), ${summary.bytesUploaded} bytes uploaded in ${summary.durationMs} ms\n`,
  );
  for (const problem of summary.problems) {
    process.stdout.write(`problem: ${quoteText(problem.path)}: ${quoteText(problem.reason)}\n`);
  }
}
