import { CliError } from "../cli/cliError.js";
import { quoteText, terminalSafeJson } from "../cli/terminalText.js";
import { parseAddress } from "./publish.js";
import {
  BucketKeys,
  closeFanout,
  decodeValue,
  describeAddress,
  type NatsSecurityOptions,
  openFanout,
  SubscriberReportSchema,
} from "./streamLayout.js";
import { readSnapshotHead, streamBounds } from "./streamTree.js";

/** Options of `mirrorlog status nats://…/NAME`. */
export interface FanoutStatusOptions extends NatsSecurityOptions {
  json: boolean;
}

/** Where one subscriber stands; field names are the stable `--json` interface. */
export interface SubscriberStatus {
  consumer: string;
  /** The target directory and host it last reported, when it did. */
  target: string | null;
  host: string | null;
  /** The last stream sequence it acknowledged: its cursor. */
  position: number;
  /** Operations of the stream after its cursor (delivered but unacknowledged ones included). */
  lagOperations: number;
  /** ISO time it last acknowledged (or was last delivered) anything; null when never. */
  lastSeen: string | null;
  chunkBytesFetched: number | null;
}

/** The status of a fan-out: its stream, its newest snapshot and every subscriber. */
export interface FanoutStatus {
  fanout: string;
  stream: { firstSeq: number; lastSeq: number; messages: number; bytes: number };
  snapshotSeq: number | null;
  subscribers: SubscriberStatus[];
}

/**
 * `mirrorlog status nats://HOST:PORT/NAME`: each subscriber's position, lag in operations and when it was
 * last seen, from its durable consumer (and what it last reported in the bucket). Returns the exit code.
 */
export async function runFanoutStatus(url: string, options: FanoutStatusOptions): Promise<number> {
  const address = parseAddress(url);
  const fanout = await openFanout(address, options).catch((error: Error) => {
    throw new CliError(`cannot open fan-out ${describeAddress(address)}: ${error.message}`, 1);
  });
  try {
    const info = await fanout.jsm.streams.info(fanout.names.stream);
    const bounds = await streamBounds(fanout);
    const head = await readSnapshotHead(fanout);
    const subscribers: SubscriberStatus[] = [];
    for await (const consumer of fanout.jsm.consumers.list(fanout.names.stream)) {
      const name = consumer.config.durable_name ?? consumer.name;
      if (consumer.config.durable_name === undefined) continue; // readers of the stream, not subscribers
      const reported = await fanout.kv.get(BucketKeys.subscriber(name)).catch(() => null);
      let report: ReturnType<typeof SubscriberReportSchema.parse> | undefined;
      try {
        if (reported !== null && reported.value.length > 0)
          report = decodeValue(SubscriberReportSchema, reported.value, `report of ${name}`);
      } catch {
        report = undefined;
      }
      const lastActive = consumer.ack_floor.last_active ?? consumer.delivered.last_active;
      const seen = [lastActive ? Date.parse(String(lastActive)) : Number.NaN, report?.seenAt ?? Number.NaN].filter(
        (t) => Number.isFinite(t),
      );
      subscribers.push({
        consumer: name,
        target: report?.target ?? null,
        host: report?.host ?? null,
        // A consumer created after a snapshot starts past it: its cursor is there before its first ack.
        position: Math.max(
          consumer.ack_floor.stream_seq,
          (consumer.config.opt_start_seq ?? 1) - 1,
          report?.streamSeq ?? 0,
        ),
        lagOperations: consumer.num_pending + consumer.num_ack_pending,
        lastSeen: seen.length === 0 ? null : new Date(Math.max(...seen)).toISOString(),
        chunkBytesFetched: report?.chunkBytesFetched ?? null,
      });
    }
    subscribers.sort((a, b) => a.consumer.localeCompare(b.consumer));
    const status: FanoutStatus = {
      fanout: describeAddress(address),
      stream: { firstSeq: bounds.first, lastSeq: bounds.last, messages: info.state.messages, bytes: info.state.bytes },
      snapshotSeq: head?.streamSeq ?? null,
      subscribers,
    };
    if (options.json) {
      process.stdout.write(`${terminalSafeJson(status)}\n`);
      return 0;
    }
    const lines = [
      `${status.fanout}: operations ${bounds.first}-${bounds.last} (${info.state.messages} kept, ${info.state.bytes} bytes), ` +
        `snapshot at ${status.snapshotSeq ?? "none"}`,
    ];
    if (subscribers.length === 0) lines.push("  no subscribers");
    for (const s of subscribers) {
      lines.push(
        `  ${quoteText(s.consumer)}${s.target === null ? "" : ` (${quoteText(`${s.host ?? "?"}:${s.target}`)})`}: ` +
          `at ${s.position}, ${s.lagOperations} behind, last seen ${s.lastSeen ?? "never"}`,
      );
    }
    process.stdout.write(`${lines.join("\n")}\n`);
    return 0;
  } finally {
    await closeFanout(fanout);
  }
}
