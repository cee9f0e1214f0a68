// The fan-out scenario (issue 12): one source, 10 targets on this machine. mirrorlog publishes the tree once
// to a real `nats-server -js` and 10 `subscribe` runs pull it; the peer is 10 parallel `rsync -a --delete`
// runs over ssh (the throwaway sshd of the bench context), one per target. Measured for the initial mirror
// of the generated tree and then for 100 rewritten files: the bytes the source sends (mirrorlog: every byte
// the publisher's NATS connection wrote, its `--json` bytesUploaded; rsync: the sum of each run's "Total
// bytes sent" from --stats) against the content bytes, and the time until all 10 targets are exact. Every
// target is compared byte for byte with the source after each timed phase (never inside it).
import { mkdirSync, writeFileSync } from "node:fs";
import { posix } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { startNatsServer } from "../test/support/natsServer.js";
import { type BenchContext, flushDirtyPages, freshPath, MIRRORLOG_COMMAND } from "./contenders.js";
import { formatResultsTable, median, type ResultRow, type TimedRun, timeCommand } from "./measurement.js";
import type { OneShotSource } from "./oneShotScenarios.js";
import { SeededRandom, treeDifference } from "./workload.js";

/** How many targets the source feeds: the fleet of 10. */
export const FANOUT_TARGETS = 10;
/** Files rewritten in each modification trial. */
const MODIFIED_FILES = 100;
/** The goal: the source uploads at most this multiple of the content, whatever the number of targets. */
const UPLOAD_GOAL = 1.05;
/** The fan-out's name on the server. */
const FANOUT_NAME = "bench";

/** The fields of `publish --json` the benchmark reads. */
interface PublishSummary {
  operationsPublished: number;
  contentBytes: number;
  chunkBytesPut: number;
  bytesUploaded: number;
  streamSeq: number;
  problems: unknown[];
}

/** The fields of `subscribe --json` the benchmark reads. */
interface SubscribeSummary {
  streamSeq: number;
  operationsApplied: number;
  chunkBytesFetched: number;
  problems: unknown[];
}

/** One phase (initial mirror, or one modification) measured for both tools. */
interface PhaseResult {
  /** Publish start to the last subscriber's exit, ms. */
  mirrorlogMs: number;
  publishMs: number;
  /** The slowest of the 10 parallel subscribers, ms. */
  subscribeMs: number;
  publish: PublishSummary;
  /** Bytes the server's operation stream and its bucket grew by (stored form: payload, subject and headers). */
  serverStoredBytes: { operations: number; bucket: number };
  chunkBytesFetched: number;
  /** The 10 parallel rsync runs, start to the last exit, ms. */
  rsyncMs: number;
  /** Sum of "Total bytes sent" over the 10 rsync runs. */
  rsyncBytesSent: number;
  /** Bytes of the files the phase had to carry (the tree, or the rewritten files). */
  contentBytes: number;
}

/** One bytes row: same columns as formatResultsTable, in bytes. */
interface BytesRow {
  scenario: string;
  peer: string;
  mirrorlog: number;
  peerValue: number;
  goal?: number;
  note: string;
}

/**
 * The fan-out scenario: initial mirror of the source tree to 10 targets, then `modifiedTrials` trials of
 * 100 rewritten files (a different 100 each), mirrorlog and rsync alternating. Returns the report section
 * (a heading, one table in formatResultsTable's format with time and byte rows, notes).
 */
export async function fanoutScenario(
  context: BenchContext,
  source: OneShotSource,
  modifiedTrials: number,
): Promise<string[]> {
  const root = source.tree.root;
  context.log("  fan-out: starting nats-server -js");
  const server = await startNatsServer();
  const url = `${server.url}/${FANOUT_NAME}`;
  const mirrorlogTargets = Array.from({ length: FANOUT_TARGETS }, (_, i) => freshPath(context, `fanout-sub${i}`));
  const rsyncTargets = Array.from({ length: FANOUT_TARGETS }, (_, i) => freshPath(context, `fanout-rsync${i}`));
  try {
    const phases: { label: string; result: PhaseResult }[] = [];
    const initial = await runPhase(context, url, root, mirrorlogTargets, rsyncTargets, source.tree.bytes, "initial");
    if (initial.publish.operationsPublished < source.tree.files.length)
      throw new Error(
        `publish logged ${initial.publish.operationsPublished} operations for ${source.tree.files.length} files`,
      );
    phases.push({ label: "initial", result: initial });

    const random = new SeededRandom(source.shape.seed + 1200);
    const order = random.shuffled(source.tree.files);
    const modified: PhaseResult[] = [];
    for (let trial = 0; trial < modifiedTrials; trial++) {
      const batch = order.slice(trial * MODIFIED_FILES, (trial + 1) * MODIFIED_FILES);
      if (batch.length < MODIFIED_FILES)
        throw new Error(`--files ${order.length} is too few for ${modifiedTrials} trials`);
      // Untimed: the source changes before both tools' runs of this trial.
      let contentBytes = 0;
      for (const path of batch) {
        const bytes = random.bytes(random.integer(source.shape.minFileBytes, source.shape.maxFileBytes));
        writeFileSync(posix.join(root, path), bytes);
        contentBytes += bytes.length;
      }
      const result = await runPhase(context, url, root, mirrorlogTargets, rsyncTargets, contentBytes, "modified");
      if (result.publish.operationsPublished < batch.length)
        throw new Error(
          `publish logged ${result.publish.operationsPublished} operations for ${batch.length} rewritten files`,
        );
      modified.push(result);
    }
    if (modified.length > 0) phases.push({ label: "modified", result: medianPhase(modified) });
    return report(source, phases, modifiedTrials);
  } finally {
    await server.stop();
  }
}

/** Phases run so far: which tool goes first alternates. */
let phaseCounter = 0;

/**
 * One phase: `publish` then 10 parallel `subscribe` runs (timed together), then 10 parallel rsync runs over
 * ssh (timed together); every target is checked against the source afterwards. The two tools alternate
 * which goes first from one phase to the next, so drift of the machine lands on both.
 */
async function runPhase(
  context: BenchContext,
  url: string,
  root: string,
  mirrorlogTargets: readonly string[],
  rsyncTargets: readonly string[],
  contentBytes: number,
  label: string,
): Promise<PhaseResult> {
  const order = phaseCounter++ % 2 === 0 ? ["mirrorlog", "rsync"] : ["rsync", "mirrorlog"];
  let mirrorlog: Omit<PhaseResult, "rsyncMs" | "rsyncBytesSent" | "contentBytes"> | undefined;
  let rsync: { ms: number; bytesSent: number } | undefined;
  for (const tool of order) {
    flushDirtyPages();
    if (tool === "mirrorlog") mirrorlog = await runMirrorlogFanout(context, url, root, mirrorlogTargets);
    else rsync = await runRsyncFanout(context, root, rsyncTargets);
  }
  context.log(
    `  fan-out ${label}: mirrorlog ${seconds(mirrorlog!.mirrorlogMs)} (publish ${seconds(mirrorlog!.publishMs)}, ` +
      `slowest subscribe ${seconds(mirrorlog!.subscribeMs)}), ${mirrorlog!.publish.bytesUploaded} B uploaded; ` +
      `rsync ${seconds(rsync!.ms)}, ${rsync!.bytesSent} B sent; content ${contentBytes} B`,
  );
  for (const [tool, targets] of [
    ["mirrorlog subscribe", mirrorlogTargets],
    ["rsync", rsyncTargets],
  ] as const) {
    for (const target of targets) {
      const difference = treeDifference(root, target);
      if (difference !== null) throw new Error(`${tool} did not mirror ${root} to ${target}: ${difference}`);
    }
  }
  return { ...mirrorlog!, rsyncMs: rsync!.ms, rsyncBytesSent: rsync!.bytesSent, contentBytes };
}

/** `mirrorlog publish --json SRC URL`, then `mirrorlog subscribe --json URL DST_i` for every target at once. */
async function runMirrorlogFanout(
  context: BenchContext,
  url: string,
  root: string,
  targets: readonly string[],
): Promise<Omit<PhaseResult, "rsyncMs" | "rsyncBytesSent" | "contentBytes">> {
  const storedBefore = await serverStoredBytes(url);
  const started = performance.now();
  const publishRun = await timeCommand({
    argv: [...MIRRORLOG_COMMAND, "publish", "--json", root, url],
    env: context.env,
    rssFile: rssPath(context),
  });
  const publish = JSON.parse(publishRun.stdout) as PublishSummary;
  if (publish.problems.length > 0)
    throw new Error(`publish reported problems: ${JSON.stringify(publish.problems.slice(0, 5))}`);
  const subscribed = await Promise.all(
    targets.map((target) =>
      timeCommand({
        argv: [...MIRRORLOG_COMMAND, "subscribe", "--json", url, target],
        env: context.env,
        rssFile: rssPath(context),
      }),
    ),
  );
  const ms = performance.now() - started;
  let chunkBytesFetched = 0;
  for (const run of subscribed) {
    const summary = JSON.parse(run.stdout) as SubscribeSummary;
    if (summary.problems.length > 0)
      throw new Error(`subscribe reported problems: ${JSON.stringify(summary.problems.slice(0, 5))}`);
    if (summary.streamSeq !== publish.streamSeq)
      throw new Error(`a subscriber stopped at ${summary.streamSeq}, the stream ends at ${publish.streamSeq}`);
    chunkBytesFetched += summary.chunkBytesFetched;
  }
  return {
    mirrorlogMs: ms,
    publishMs: publishRun.ms,
    subscribeMs: Math.max(...subscribed.map((run) => run.ms)),
    publish,
    serverStoredBytes: subtract(await serverStoredBytes(url), storedBefore),
    chunkBytesFetched,
  };
}

/** 10 parallel `rsync -a --delete --stats -e <ssh> SRC/ localhost:DST_i/`: wall time and bytes sent in all. */
async function runRsyncFanout(
  context: BenchContext,
  root: string,
  targets: readonly string[],
): Promise<{ ms: number; bytesSent: number }> {
  const started = performance.now();
  const runs = await Promise.all(targets.map((target) => rsyncOnce(context, root, target)));
  const ms = performance.now() - started;
  return { ms, bytesSent: runs.reduce((sum, run) => sum + bytesSentOf(run.stdout), 0) };
}

/**
 * One rsync over ssh; retried once when it fails (ten connections at once are at the edge of sshd's default
 * MaxStartups 10), logged with the end of sshd's log, so one refused connection does not discard the run.
 */
async function rsyncOnce(context: BenchContext, root: string, target: string): Promise<TimedRun> {
  const argv = [
    "rsync",
    "-a",
    "--delete",
    "--stats",
    "-e",
    context.ssh.sshCommandLine,
    `${root}/`,
    `localhost:${target}/`,
  ];
  try {
    return await timeCommand({ argv, rssFile: rssPath(context) });
  } catch (error) {
    context.log(`  rsync to ${target} failed, retrying once: ${(error as Error).message.slice(0, 400)}`);
    context.log(`  sshd log tail:\n${context.ssh.serverLog().slice(-1000)}`);
    return timeCommand({ argv, rssFile: rssPath(context) });
  }
}

/** "Total bytes sent: 1,234,567" of rsync's --stats. */
function bytesSentOf(stats: string): number {
  const match = /^Total bytes sent: ([\d,.]+)/m.exec(stats);
  if (match === null) throw new Error(`no "Total bytes sent" in rsync's --stats:\n${stats.slice(-1000)}`);
  return Number(match[1]!.replaceAll(/[,.]/g, ""));
}

/** `after - before`, field by field. */
function subtract(
  after: PhaseResult["serverStoredBytes"],
  before: PhaseResult["serverStoredBytes"],
): PhaseResult["serverStoredBytes"] {
  return { operations: after.operations - before.operations, bucket: after.bucket - before.bucket };
}

/** Bytes the server stores for the fan-out: its operation stream and its bucket's stream. */
async function serverStoredBytes(url: string): Promise<PhaseResult["serverStoredBytes"]> {
  const server = url.slice(0, url.lastIndexOf("/"));
  const nc = await connect({ servers: server });
  try {
    const jsm = await jetstreamManager(nc);
    const bytesOf = (stream: string): Promise<number> =>
      jsm.streams
        .info(stream)
        .then((info) => info.state.bytes)
        .catch((error: Error) => {
          if (/stream not found/i.test(error.message)) return 0; // before the first publish
          throw error;
        });
    return {
      operations: await bytesOf(`MIRRORLOG_${FANOUT_NAME}`),
      bucket: await bytesOf(`KV_mirrorlog_${FANOUT_NAME}`),
    };
  } finally {
    await nc.close();
  }
}

let rssCounter = 0;

/** A fresh file for GNU time's output (timeCommand wraps every run in it when installed). */
function rssPath(context: BenchContext): string {
  const dir = posix.join(context.dir, "rss-fanout");
  mkdirSync(dir, { recursive: true });
  rssCounter += 1;
  return posix.join(dir, `${rssCounter}.txt`);
}

/** The median of each measured field over the modification trials. */
function medianPhase(results: readonly PhaseResult[]): PhaseResult {
  const of = (pick: (result: PhaseResult) => number): number => median(results.map(pick));
  return {
    mirrorlogMs: of((r) => r.mirrorlogMs),
    publishMs: of((r) => r.publishMs),
    subscribeMs: of((r) => r.subscribeMs),
    publish: {
      ...results[0]!.publish,
      operationsPublished: of((r) => r.publish.operationsPublished),
      bytesUploaded: of((r) => r.publish.bytesUploaded),
      contentBytes: of((r) => r.publish.contentBytes),
      chunkBytesPut: of((r) => r.publish.chunkBytesPut),
    },
    serverStoredBytes: {
      operations: of((r) => r.serverStoredBytes.operations),
      bucket: of((r) => r.serverStoredBytes.bucket),
    },
    chunkBytesFetched: of((r) => r.chunkBytesFetched),
    rsyncMs: of((r) => r.rsyncMs),
    rsyncBytesSent: of((r) => r.rsyncBytesSent),
    contentBytes: of((r) => r.contentBytes),
  };
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(3)} s`;
}

/** The report section: one table (time rows by formatResultsTable, byte rows in its columns), then notes. */
function report(
  source: OneShotSource,
  phases: readonly { label: string; result: PhaseResult }[],
  trials: number,
): string[] {
  const timeRows: ResultRow[] = [];
  const byteRows: BytesRow[] = [];
  const notes: string[] = [];
  for (const { label, result } of phases) {
    const what =
      label === "initial"
        ? `fan-out initial mirror (${source.tree.files.length} files, ${FANOUT_TARGETS} targets)`
        : `fan-out, ${MODIFIED_FILES} files modified (${FANOUT_TARGETS} targets)`;
    const how =
      label === "initial"
        ? "one trial, fresh targets"
        : trials === 1
          ? "one trial"
          : `median of ${trials} trials, a different ${MODIFIED_FILES} files each`;
    timeRows.push({
      scenario: `${what}: time until all ${FANOUT_TARGETS} targets are exact`,
      peer: `${FANOUT_TARGETS} parallel rsync over ssh`,
      unit: "s",
      mirrorlog: result.mirrorlogMs,
      peerValue: result.rsyncMs,
      note: `${how}; mirrorlog: \`publish\`, then ${FANOUT_TARGETS} \`subscribe\` at once`,
    });
    byteRows.push({
      scenario: `${what}: bytes the source uploads`,
      peer: "content bytes",
      mirrorlog: result.publish.bytesUploaded,
      peerValue: result.contentBytes,
      goal: UPLOAD_GOAL,
      note: `${how}; \`publish --json\` bytesUploaded (all the publisher's NATS connection wrote)`,
    });
    byteRows.push({
      scenario: `${what}: bytes the source uploads`,
      peer: `${FANOUT_TARGETS} rsync, Total bytes sent`,
      mirrorlog: result.publish.bytesUploaded,
      peerValue: result.rsyncBytesSent,
      note: `${how}; rsync's --stats summed over the ${FANOUT_TARGETS} runs (inside ssh)`,
    });
    notes.push(
      `${label}: publish ${seconds(result.publishMs)}, slowest of the ${FANOUT_TARGETS} subscribers ${seconds(result.subscribeMs)}; ` +
        `chunks put ${result.publish.chunkBytesPut} B, ${result.publish.operationsPublished} operations published; on the server ` +
        `(stored form, subjects and headers included) the operation stream grew by ${result.serverStoredBytes.operations} B ` +
        `and the bucket (chunks, snapshot, subscriber reports) by ${result.serverStoredBytes.bucket} B; ` +
        `the subscribers fetched ${result.chunkBytesFetched} B of chunks in all; ` +
        `publish counted ${result.publish.contentBytes} content bytes (the workload: ${result.contentBytes}).`,
    );
  }
  notes.push(
    "mirrorlog's time is serial: `publish` ends before the subscribers start (each a one-shot catch-up); " +
      "`subscribe --watch` subscribers would overlap with the publish. NATS runs on loopback without TLS; rsync goes " +
      "through ssh to the throwaway sshd; all 20 targets and the server share this machine's disk and cores.",
  );
  return [
    `## Fan-out: one source, ${FANOUT_TARGETS} targets (\`npm run bench -- fanout\`)`,
    "",
    formatResultsTable(timeRows),
    ...byteRows.map(formatBytesRow),
    "",
    ...notes.map((note) => `- ${note}`),
  ];
}

/** A bytes row in formatResultsTable's columns (scenario, mirrorlog, peer, ratio, goal, met?, how). */
function formatBytesRow(row: BytesRow): string {
  const ratio = row.mirrorlog / row.peerValue;
  const goal = row.goal === undefined ? "—" : `≤ ${row.goal.toFixed(2)}×`;
  const met = row.goal === undefined ? "—" : ratio <= row.goal ? "yes" : "**no**";
  const bytes = (n: number): string => `${Math.round(n).toLocaleString("en-US")} B`;
  return `| ${row.scenario} | ${bytes(row.mirrorlog)} | ${bytes(row.peerValue)} (${row.peer}) | ${ratio.toFixed(2)}× | ${goal} | ${met} | ${row.note} |`;
}
