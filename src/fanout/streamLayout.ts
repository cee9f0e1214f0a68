// What a fan-out NAME is on a NATS server: the stream of operations, the bucket of chunks and snapshots,
// their names and keys, the message formats (msgpack, checked with zod on the way in), and the connection.
import { readFileSync } from "node:fs";
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import {
  type ConnectionOptions,
  connect,
  credsAuthenticator,
  type NatsConnection,
  tokenAuthenticator,
  usernamePasswordAuthenticator,
} from "@nats-io/transport-node";
import { pack, unpack } from "msgpackr";
import * as z from "zod";
import type { Chunk } from "../content/chunker.js";
import { ContentHashSchema } from "../events/operation.js";
import { LogIdSchema, ManifestEntrySchema } from "../events/protocol.js";

/** The fan-out does not exist on the server (nothing was published to it): not worth retrying. */
export class NoFanoutError extends Error {
  override readonly name = "NoFanoutError";
}

/** Where a fan-out lives: the server to dial (credentials never part of it) and the NAME of the stream. */
export interface FanoutAddress {
  /** `nats://host:port` or `tls://host:port`, without user information. */
  server: string;
  name: string;
  /** User and password (or a token) from the URL's user information; never printed. */
  user?: string;
  pass?: string;
}

/** How to authenticate and secure the connection; passed through to the NATS client. */
export interface NatsSecurityOptions {
  /** A NATS credentials file (JWT + nkey seed), like the nats CLI's --creds. */
  creds?: string;
  /** CA bundle to verify the server with (turns TLS on). */
  tlsCa?: string;
  /** Client certificate and key for mutual TLS. */
  tlsCert?: string;
  tlsKey?: string;
}

/** A fan-out NAME: letters, digits, `-` and `_` (it becomes part of stream, subject and bucket names). */
export const FanoutNameSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "NAME must be 1-64 letters, digits, - or _");

/** Parses `nats://[user[:pass]@]HOST:PORT/NAME`; throws an Error naming what is wrong. */
export function parseFanoutUrl(text: string): FanoutAddress {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`${redactUrl(text)}: not a URL of the form nats://HOST:PORT/NAME`);
  }
  if (url.protocol !== "nats:" && url.protocol !== "tls:") {
    throw new Error(`${redactUrl(text)}: the scheme must be nats:// or tls://`);
  }
  const name = decodeURIComponent(url.pathname.replace(/^\//, ""));
  const parsed = FanoutNameSchema.safeParse(name);
  if (!parsed.success) throw new Error(`${redactUrl(text)}: ${parsed.error.issues[0]?.message ?? "bad NAME"}`);
  if (url.hostname === "") throw new Error(`${redactUrl(text)}: no host`);
  const address: FanoutAddress = {
    server: `${url.protocol}//${url.hostname}${url.port === "" ? "" : `:${url.port}`}`,
    name,
  };
  if (url.username !== "") address.user = decodeURIComponent(url.username);
  if (url.password !== "") address.pass = decodeURIComponent(url.password);
  return address;
}

/** True for an argument that names a fan-out rather than a directory. */
export function isFanoutUrl(text: string): boolean {
  return /^(nats|tls):\/\//.test(text);
}

/** `text` with any user information of a URL replaced by `***`, so credentials never reach a log or a terminal. */
export function redactUrl(text: string): string {
  return text.replace(/^([a-z]+:\/\/)[^@/]*@/i, "$1***@");
}

/** The fan-out as printed: server and name, never credentials. */
export function describeAddress(address: FanoutAddress): string {
  return `${address.server}/${address.name}`;
}

/** The names of a fan-out's stream, subject and bucket on the server. */
export interface FanoutNames {
  stream: string;
  subject: string;
  bucket: string;
}

/** Names on the server for fan-out `name`. */
export function fanoutNames(name: string): FanoutNames {
  return { stream: `MIRRORLOG_${name}`, subject: `mirrorlog.${name}.ops`, bucket: `mirrorlog_${name}` };
}

/** Keys of the bucket: content chunks by hash, chunk lists of large files, snapshots, the fan-out's identity. */
export const BucketKeys = {
  chunk: (id: string) => `c.${id}`,
  recipePage: (hash: string, page: number) => `r.${hash}.${page}`,
  snapshotHead: "s.head",
  snapshotPage: (streamSeq: number, page: number) => `s.${streamSeq}.${page}`,
  meta: "m.meta",
  subscriber: (name: string) => `sub.${name}`,
} as const;

/** Files with more chunks than this keep their chunk list in bucket pages (`r.HASH.N`), not in the message. */
export const INLINE_RECIPE_CHUNKS = 4096;
/** Chunks per recipe page and entries per snapshot page: each page stays well under the 1 MiB message limit. */
export const RECIPE_PAGE_CHUNKS = 8192;
/** Estimated encoded bytes per snapshot page before a new page starts. */
export const SNAPSHOT_PAGE_BYTES = 512 * 1024;

/** A chunk of a file as a recipe lists it: its hash and length (offsets follow from the lengths). */
export const RecipeChunkSchema = z.tuple([
  ContentHashSchema,
  z
    .number()
    .int()
    .min(0)
    .max(2 ** 31),
]);

/** How a written file's chunks are found: listed inline, or in `pages` recipe pages of the bucket. */
export const RecipeRefSchema = z.union([
  z.strictObject({ chunks: z.array(RecipeChunkSchema).max(INLINE_RECIPE_CHUNKS) }),
  z.strictObject({ pages: z.number().int().min(1).max(1_000_000) }),
]);
/** A recipe reference. */
export type RecipeRef = z.infer<typeof RecipeRefSchema>;

/**
 * One message of the stream: one logged operation of the publishing source, with its position in that
 * source's log (for audit; subscribers follow the stream's own sequence) and, for a written file, its
 * chunk list. The operation is validated by the subscribing target itself, as `serve` validates it.
 */
export const OperationMessageSchema = z.strictObject({
  v: z.literal(1),
  logId: LogIdSchema,
  epoch: z.number().int().min(1),
  seq: z.number().int().min(1),
  loggedAt: z.number(),
  operation: z.unknown(),
  recipe: RecipeRefSchema.optional(),
});
/** A stream message. */
export type OperationMessage = z.infer<typeof OperationMessageSchema>;

/** Where the newest snapshot is: the stream sequence it describes the tree at, and its page count. */
export const SnapshotHeadSchema = z.strictObject({
  v: z.literal(1),
  streamSeq: z.number().int().min(0),
  pages: z.number().int().min(0),
  entries: z.number().int().min(0),
  takenAt: z.number(),
});
/** A snapshot head. */
export type SnapshotHead = z.infer<typeof SnapshotHeadSchema>;

/** One page of a snapshot: manifest entries (parents first), each file's with its recipe. */
export const SnapshotPageSchema = z.array(z.tuple([ManifestEntrySchema, RecipeRefSchema.optional()]));

/** The fan-out's identity: the id its subscribers' targets record as the log they follow. */
export const FanoutMetaSchema = z.strictObject({ v: z.literal(1), id: LogIdSchema, createdAt: z.number() });

/** What a subscriber last reported of itself (status shows it beside the consumer's own numbers). */
export const SubscriberReportSchema = z.strictObject({
  v: z.literal(1),
  target: z.string(),
  host: z.string(),
  streamSeq: z.number().int().min(0),
  seenAt: z.number(),
  operationsApplied: z.number().int().min(0),
  chunkBytesFetched: z.number().int().min(0),
  problems: z.number().int().min(0),
});
/** A subscriber's report. */
export type SubscriberReport = z.infer<typeof SubscriberReportSchema>;

/** Encodes a value for the stream or the bucket. */
export function encodeValue(value: unknown): Uint8Array {
  return pack(value);
}

/** Decodes and validates a value from the stream or the bucket; throws an Error saying what is wrong. */
export function decodeValue<T>(schema: z.ZodType<T>, bytes: Uint8Array, what: string): T {
  let raw: unknown;
  try {
    raw = unpack(bytes);
  } catch (error) {
    throw new Error(`${what} is not msgpack: ${(error as Error).message}`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const at = issue === undefined || issue.path.length === 0 ? "" : ` at ${issue.path.join(".")}`;
    throw new Error(`${what} is malformed${at}: ${issue?.message ?? "invalid"}`);
  }
  return parsed.data;
}

/** A chunk list as a recipe lists it. */
export function recipeChunksOf(chunks: readonly Chunk[]): [string, number][] {
  return chunks.map((chunk) => [chunk.id, chunk.length]);
}

/** Chunks with offsets from a recipe's [hash, length] pairs. */
export function chunksOfRecipe(recipe: readonly (readonly [string, number])[]): Chunk[] {
  let offset = 0;
  return recipe.map(([id, length]) => {
    const chunk = { offset, length, id };
    offset += length;
    return chunk;
  });
}

/** An open fan-out: the connection, JetStream and the bucket. */
export interface FanoutConnection {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  kv: KV;
  names: FanoutNames;
  address: FanoutAddress;
}

/** How a fan-out's stream and bucket are created when they do not exist (publish creates them). */
export interface FanoutCreateOptions {
  /** Copies of the stream and bucket in a cluster (R1 by default; R3 survives one node lost). */
  replicas?: number;
  /** Operations older than this many seconds leave the stream (0: kept until --max-bytes). */
  maxAgeSeconds?: number;
  /** The stream keeps at most this many bytes of operations, oldest dropped first (0: unlimited). */
  maxBytes?: number;
}

/** The NATS connection options for an address and security options; reads the files they name. */
export function connectionOptions(address: FanoutAddress, security: NatsSecurityOptions): ConnectionOptions {
  const options: ConnectionOptions = {
    servers: address.server.replace(/^tls:/, "nats:"),
    name: "mirrorlog",
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
  };
  if (security.creds !== undefined) {
    options.authenticator = credsAuthenticator(readFileSync(security.creds));
  } else if (address.user !== undefined && address.pass !== undefined) {
    options.authenticator = usernamePasswordAuthenticator(address.user, address.pass);
  } else if (address.user !== undefined) {
    options.authenticator = tokenAuthenticator(address.user);
  }
  if (
    address.server.startsWith("tls:") ||
    security.tlsCa !== undefined ||
    security.tlsCert !== undefined ||
    security.tlsKey !== undefined
  ) {
    options.tls = {
      ...(security.tlsCa === undefined ? {} : { caFile: security.tlsCa }),
      ...(security.tlsCert === undefined ? {} : { certFile: security.tlsCert }),
      ...(security.tlsKey === undefined ? {} : { keyFile: security.tlsKey }),
    };
  }
  return options;
}

/**
 * Connects to the fan-out at `address`. With `create`, its stream and bucket are made when missing (and
 * their limits brought in line); without it, a fan-out that does not exist is an Error saying so.
 */
export async function openFanout(
  address: FanoutAddress,
  security: NatsSecurityOptions,
  create?: FanoutCreateOptions,
): Promise<FanoutConnection> {
  const nc = await connect(connectionOptions(address, security));
  try {
    const names = fanoutNames(address.name);
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const kvm = new Kvm(nc);
    let kv: KV;
    if (create === undefined) {
      try {
        await jsm.streams.info(names.stream);
      } catch (error) {
        // Anything else (a timeout while a cluster elects a leader) is worth another try.
        if (!/stream not found/i.test((error as Error).message)) throw error;
        throw new NoFanoutError(`no fan-out ${describeAddress(address)} (nothing published yet)`);
      }
      kv = await kvm.open(names.bucket);
    } else {
      const replicas = create.replicas ?? 1;
      const config = {
        subjects: [names.subject],
        num_replicas: replicas,
        max_age: Math.round((create.maxAgeSeconds ?? 0) * 1e9),
        max_bytes: create.maxBytes === undefined || create.maxBytes === 0 ? -1 : create.maxBytes,
      };
      try {
        const info = await jsm.streams.info(names.stream);
        const current = info.config;
        if (current.max_age !== config.max_age || current.max_bytes !== config.max_bytes) {
          await jsm.streams.update(names.stream, { ...current, max_age: config.max_age, max_bytes: config.max_bytes });
        }
      } catch {
        await jsm.streams.add({ name: names.stream, ...config });
      }
      kv = await kvm.create(names.bucket, { history: 1, replicas });
    }
    return { nc, js, jsm, kv, names, address };
  } catch (error) {
    await nc.close().catch(() => {});
    throw error;
  }
}

/** Closes a fan-out connection, flushing what is buffered. */
export async function closeFanout(fanout: FanoutConnection): Promise<void> {
  await fanout.nc.drain().catch(() => fanout.nc.close());
}
