// Request/response multiplexing over a pair of byte streams (a child's stdout/stdin, or
// process.stdin/stdout on the serving side), framed by ./frames.ts.
//
// Wire shape (all frames are msgpack maps):
//   first frame each way: { hello: { protocol: "mirrorlog", version } }
//   client -> server:     { id, body }                 ids are positive integers, never reused
//   server -> client:     { id, body } | { id, error: { message } }
// The client pipelines: it writes every request as soon as it is asked (only the stream's own
// backpressure holds it back) and matches responses by id. The server handles requests one at a
// time, in arrival order, because the target applies operations sequentially.
// Message bodies are opaque here: callers pass validators, so this file knows no schema.
import { once } from "node:events";
import { Socket } from "node:net";
import type { Readable, Writable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import { checkLimits, DEFAULT_LIMITS, type Limits } from "../events/limits.js";
import { monotonicMs } from "../fs/clock.js";
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame, encodeReusableFrame, FrameDecoder, FrameError } from "./frames.js";

/** The protocol name every hello frame carries; anything else on the stream is not us. */
export const PROTOCOL_NAME = "mirrorlog";

/** Default deadline for the peer's hello (ssh connection setup and authentication included). */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = DEFAULT_LIMITS.handshakeTimeoutMs;

/** Default time `close()` waits for the peer to finish before it cuts the streams. */
export const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;

/** The connection failed or a request could not be carried: cut, stream end, framing, handshake or deadline. */
export class TransportError extends Error {
  override readonly name = "TransportError";
}

/** The peer received the request but answered with an error instead of a response body. */
export class RemoteRequestError extends Error {
  override readonly name = "RemoteRequestError";
  /** Creates the error for request `requestId` with the peer's message. */
  constructor(
    readonly requestId: number,
    readonly remoteMessage: string,
  ) {
    super(`peer rejected request ${requestId}: ${remoteMessage}`);
  }
}

/** Byte and frame counters of one connection; bytes are counted when handed to / taken from the streams. */
export interface StreamStats {
  bytesSent: number;
  bytesReceived: number;
  framesSent: number;
  framesReceived: number;
}

/** The first frame each side sends. */
export interface HelloFrame {
  hello: { protocol: typeof PROTOCOL_NAME; version: number };
}

/** Builds this side's hello frame for a protocol version. */
export function helloFrame(version: number): HelloFrame {
  return { hello: { protocol: PROTOCOL_NAME, version } };
}

/** Options of a StreamClient. */
export interface StreamClientOptions<Res> {
  /** What the peer writes (e.g. the child's stdout). */
  input: Readable;
  /** Where requests go (e.g. the child's stdin). */
  output: Writable;
  /** Our protocol version; the peer must speak exactly this one. */
  version: number;
  /** Validates a response body; throwing marks the peer as broken and closes the connection. */
  validateResponse: (value: unknown) => Res;
  maxFrameBytes?: number;
  /** Per-request deadline; none if omitted. */
  timeoutMs?: number;
  /**
   * The peer answers strictly in request order (serveStream does): an answer to a later request then
   * means the earlier ones were lost, and the connection fails at once instead of waiting forever.
   */
  answersInOrder?: boolean;
  /** Fails the connection when requests wait and nothing at all arrives for this long (a stalled peer). */
  idleTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  closeTimeoutMs?: number;
  /**
   * Called once when the connection fails; what it returns (e.g. "ssh exited with 255: <stderr>")
   * is appended to the error. Awaited for at most two seconds.
   */
  diagnose?: () => string | undefined | Promise<string | undefined>;
}

interface PendingRequest<Res> {
  resolve: (value: Res) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

const DIAGNOSE_DEADLINE_MS = 2_000;
// How much of a non-protocol stream start (an ssh banner, a shell rc file's echo) to quote.
const QUOTED_PREFIX_BYTES = 64;

/** A frame to write, with what to call once the output no longer needs its bytes (reusable frames only). */
interface QueuedFrame {
  frame: Buffer;
  written?: () => void;
}

/** Client side of a stream connection: pipelined requests, responses matched by id. */
export class StreamClient<Req, Res> {
  /** Counters since the connection started (hello frames included). */
  readonly stats: StreamStats = { bytesSent: 0, bytesReceived: 0, framesSent: 0, framesReceived: 0 };

  private readonly input: Readable;
  private readonly output: Writable;
  /**
   * Whether a request's frame may be packed over once written (encodeReusableFrame): only into a socket or a
   * pipe, whose write completes once the kernel holds the bytes. Another stream's completes when it passed
   * the frame on (a PassThrough hands the same buffer to its reader, to be read later).
   */
  private readonly reuseFrames: boolean;
  private readonly version: number;
  private readonly validateResponse: (value: unknown) => Res;
  private readonly maxFrameBytes: number;
  private readonly timeoutMs: number | undefined;
  private readonly answersInOrder: boolean;
  private readonly idleTimeoutMs: number | undefined;
  private lastReceivedAt = monotonicMs();
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly closeTimeoutMs: number;
  private readonly diagnose: StreamClientOptions<Res>["diagnose"];
  private readonly decoder: FrameDecoder;

  private nextId = 1;
  private readonly pending = new Map<number, PendingRequest<Res>>();
  /** Frames held back while the output waits for 'drain', each with what to call once it is written. */
  private writeQueue: QueuedFrame[] = [];
  private queuedByteCount = 0;
  private waitingForDrain = false;
  private greeted = false;
  private readonly streamStart: Buffer[] = [];
  private streamStartBytes = 0;
  private failure: TransportError | undefined;
  private closing = false;
  private inputFinished = false;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private readonly handshakeDone: Promise<void>;
  private settleHandshake!: (error?: Error) => void;
  private readonly finished: Promise<void>;
  private markFinished!: () => void;

  /** Opens a client and waits for the handshake; rejects with TransportError if it fails. */
  static async connect<Req, Res>(options: StreamClientOptions<Res>): Promise<StreamClient<Req, Res>> {
    const client = new StreamClient<Req, Res>(options);
    await client.handshake();
    return client;
  }

  /** Starts the connection: sends our hello at once; requests may be issued before the handshake completes. */
  constructor(options: StreamClientOptions<Res>) {
    this.input = options.input;
    this.output = options.output;
    this.reuseFrames = options.output instanceof Socket;
    this.version = options.version;
    this.validateResponse = options.validateResponse;
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.timeoutMs = options.timeoutMs;
    this.answersInOrder = options.answersInOrder ?? false;
    this.idleTimeoutMs = options.idleTimeoutMs;
    this.closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    this.diagnose = options.diagnose;
    this.decoder = new FrameDecoder(this.maxFrameBytes);
    this.handshakeDone = new Promise<void>((resolve, reject) => {
      this.settleHandshake = (error) => (error ? reject(error) : resolve());
    });
    // A handshake failure is reported through handshake() and every request; never unhandled.
    this.handshakeDone.catch(() => {});
    this.finished = new Promise<void>((resolve) => {
      this.markFinished = resolve;
    });

    const handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    this.handshakeTimer = setTimeout(() => {
      const seen = this.streamStartBytes > 0 ? `; it sent only: ${this.quotedStreamStart()}` : "";
      this.fail(`peer did not complete the handshake within ${handshakeTimeoutMs} ms${seen}`);
    }, handshakeTimeoutMs);

    this.input.on("data", this.onData);
    this.input.on("end", this.onEnd);
    this.input.on("close", this.onInputClose);
    this.input.on("error", this.onInputError);
    this.output.on("error", this.onOutputError);
    this.send({ frame: encodeFrame(helloFrame(this.version), this.maxFrameBytes) });
  }

  /** Resolves once the peer's hello matched ours; rejects with TransportError otherwise. */
  handshake(): Promise<void> {
    return this.handshakeDone;
  }

  /** Requests sent (or queued) and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Bytes of frames held back because the output stream signalled backpressure. */
  get queuedBytes(): number {
    return this.queuedByteCount;
  }

  /** Sends one request without waiting for earlier ones; resolves with the validated response body. */
  request(req: Req): Promise<Res> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new TransportError("connection is closing; no new requests"));
    const id = this.nextId++;
    let frame: QueuedFrame;
    try {
      const message = { id, body: req };
      frame = this.reuseFrames
        ? encodeReusableFrame(message, this.maxFrameBytes)
        : { frame: encodeFrame(message, this.maxFrameBytes) };
    } catch (cause) {
      return Promise.reject(new TransportError(`cannot send request ${id}: ${describe(cause)}`, { cause }));
    }
    return new Promise<Res>((resolve, reject) => {
      const entry: PendingRequest<Res> = { resolve, reject, timer: undefined };
      if (this.timeoutMs !== undefined) {
        const timeoutMs = this.timeoutMs;
        entry.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new TransportError(`request ${id} got no response within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.pending.set(id, entry);
      this.watchIdle();
      this.send(frame);
    });
  }

  /**
   * Stops taking requests, lets queued frames and in-flight responses finish, ends our output and
   * waits for the peer to end its output (at most closeTimeoutMs, then cuts). Requests still
   * unanswered when the peer's output ends are rejected with TransportError.
   */
  async close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      if (!this.failure && !this.waitingForDrain && this.writeQueue.length === 0) this.output.end();
    }
    if (this.inputFinished || this.failure) return;
    const timer = setTimeout(
      () => this.destroy(new TransportError(`peer did not close within ${this.closeTimeoutMs} ms`)),
      this.closeTimeoutMs,
    );
    try {
      await this.finished;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Cuts the connection now; pending requests reject with `reason` (a TransportError by default). */
  destroy(reason?: Error): void {
    if (!this.failure) this.fail(reason?.message ?? "connection destroyed", reason);
  }

  // ---- input ------------------------------------------------------------------------------

  private readonly onData = (chunk: Buffer): void => {
    if (this.failure) return;
    this.stats.bytesReceived += chunk.length;
    this.lastReceivedAt = monotonicMs();
    if (!this.greeted && this.streamStartBytes < QUOTED_PREFIX_BYTES) {
      this.streamStart.push(chunk.subarray(0, QUOTED_PREFIX_BYTES - this.streamStartBytes));
      this.streamStartBytes += Math.min(chunk.length, QUOTED_PREFIX_BYTES - this.streamStartBytes);
    }
    let messages: unknown[];
    try {
      messages = this.decoder.push(chunk);
    } catch (error) {
      if (!this.greeted) this.fail(`peer sent non-protocol output on stdout: ${this.quotedStreamStart()}`, error);
      else this.fail(`framing error from peer: ${describe(error)}`, error);
      return;
    }
    for (const message of messages) {
      if (this.failure) return;
      this.stats.framesReceived++;
      if (this.greeted) this.onResponse(message);
      else this.onHello(message);
    }
  };

  private onHello(message: unknown): void {
    const hello = readHello(message);
    if (!hello || hello.protocol !== PROTOCOL_NAME) {
      this.fail(`peer sent non-protocol output on stdout: ${this.quotedStreamStart()}`);
      return;
    }
    if (hello.version !== this.version) {
      this.fail(`peer speaks protocol version ${hello.version}, we speak ${this.version}`);
      return;
    }
    this.greeted = true;
    this.streamStart.length = 0;
    clearTimeout(this.handshakeTimer);
    this.settleHandshake();
  }

  private onResponse(message: unknown): void {
    const envelope = readEnvelope(message);
    if (!envelope) {
      this.fail(`peer sent a frame that is not a response: ${preview(message)}`);
      return;
    }
    if (this.answersInOrder) {
      for (const id of this.pending.keys()) {
        if (id >= envelope.id) break; // Map keeps insertion order: ids ascend
        this.fail(`the answer to request ${id} was lost: the peer answered request ${envelope.id} first`);
        return;
      }
    }
    const entry = this.pending.get(envelope.id);
    if (!entry) {
      // An id we issued whose request already timed out: the answer is late, not wrong.
      if (envelope.id < this.nextId) return;
      this.fail(`peer answered request ${envelope.id}, which was never sent`);
      return;
    }
    this.pending.delete(envelope.id);
    clearTimeout(entry.timer);
    if ("error" in envelope) {
      entry.reject(new RemoteRequestError(envelope.id, envelope.error.message));
      return;
    }
    let body: Res;
    try {
      body = this.validateResponse(envelope.body);
    } catch (error) {
      // A peer that sends invalid responses cannot be trusted with the rest of the stream either.
      const failure = this.fail(`peer sent an invalid response to request ${envelope.id}: ${describe(error)}`, error);
      entry.reject(failure);
      return;
    }
    entry.resolve(body);
  }

  private readonly onEnd = (): void => {
    this.inputFinished = true;
    if (this.failure) return;
    if (!this.greeted) {
      this.fail(
        this.streamStartBytes > 0
          ? `peer sent non-protocol output on stdout: ${this.quotedStreamStart()}`
          : "peer closed the connection before the handshake",
      );
      return;
    }
    if (this.decoder.inFrame) {
      this.fail(`peer closed the connection in the middle of a frame (${this.decoder.bufferedBytes} bytes buffered)`);
      return;
    }
    if (this.pending.size > 0) {
      this.fail(`peer closed the connection with ${this.pending.size} request(s) unanswered`);
      return;
    }
    if (!this.closing) {
      this.fail("peer closed the connection");
      return;
    }
    this.cleanup();
    this.markFinished();
  };

  private readonly onInputClose = (): void => {
    // 'close' without 'end' means the stream was destroyed: the connection was cut.
    if (!this.inputFinished && !this.failure) this.fail("connection cut: peer output closed without ending");
    this.inputFinished = true;
  };

  private readonly onInputError = (error: Error): void => {
    this.fail(`read error: ${describe(error)}`, error);
  };

  private readonly onOutputError = (error: Error): void => {
    // A peer gone before it greeted (ssh that could not connect, a target that exited at once) breaks the
    // pipe under our hello: it is the same failure as its output ending, and says so.
    if (!this.greeted && (error as NodeJS.ErrnoException).code === "EPIPE") {
      this.fail("peer closed the connection before the handshake", error);
      return;
    }
    this.fail(`write error: ${describe(error)}`, error);
  };

  // ---- output -----------------------------------------------------------------------------

  /**
   * Writes a frame now, or queues it (in order) while the output waits for 'drain'. A reusable frame's
   * `written` is called once the output is done with its bytes (see encodeReusableFrame); a frame dropped
   * unwritten (the connection failed) keeps its buffer from reuse.
   */
  private send(queued: QueuedFrame): void {
    if (this.failure) return;
    if (this.waitingForDrain) {
      this.writeQueue.push(queued);
      this.queuedByteCount += queued.frame.length;
      return;
    }
    this.write(queued);
  }

  private write({ frame, written }: QueuedFrame): void {
    this.stats.bytesSent += frame.length;
    this.stats.framesSent++;
    // Called with or without an error: either way the stream no longer reads the frame.
    if (!this.output.write(frame, written)) {
      this.waitingForDrain = true;
      this.output.once("drain", this.onDrain);
    }
  }

  private readonly onDrain = (): void => {
    this.waitingForDrain = false;
    if (this.failure) return;
    let index = 0;
    while (index < this.writeQueue.length && !this.waitingForDrain) {
      const queued = this.writeQueue[index++]!;
      this.queuedByteCount -= queued.frame.length;
      this.write(queued);
    }
    this.writeQueue = this.writeQueue.slice(index);
    if (this.closing && !this.waitingForDrain && this.writeQueue.length === 0) this.output.end();
  };

  // ---- failure ----------------------------------------------------------------------------

  /** Marks the connection failed (once), cuts both streams and rejects everything waiting. */
  /** While requests wait, checks that the peer keeps sending something. */
  private watchIdle(): void {
    const limit = this.idleTimeoutMs;
    if (limit === undefined || this.idleTimer !== undefined) return;
    this.lastReceivedAt = monotonicMs();
    this.idleTimer = setInterval(
      () => {
        if (this.pending.size === 0) {
          clearInterval(this.idleTimer);
          this.idleTimer = undefined;
          return;
        }
        const silent = monotonicMs() - this.lastReceivedAt;
        if (silent >= limit) {
          this.fail(`peer sent nothing for ${Math.round(silent)} ms while ${this.pending.size} requests waited`);
        }
      },
      Math.max(10, Math.floor(limit / 4)),
    );
    this.idleTimer.unref();
  }

  private fail(message: string, cause?: unknown): TransportError {
    if (this.failure) return this.failure;
    clearInterval(this.idleTimer);
    this.idleTimer = undefined;
    const failure = new TransportError(message, cause === undefined ? undefined : { cause });
    this.failure = failure;
    clearTimeout(this.handshakeTimer);
    this.cleanup();
    this.input.destroy();
    this.output.destroy();
    this.writeQueue = [];
    this.queuedByteCount = 0;
    const rejectAll = () => {
      this.settleHandshake(failure);
      for (const entry of this.pending.values()) {
        clearTimeout(entry.timer);
        entry.reject(failure);
      }
      this.pending.clear();
      this.markFinished();
    };
    if (!this.diagnose) {
      rejectAll();
      return failure;
    }
    // Enrich the message (e.g. with ssh's exit status and stderr) before anyone sees it.
    void withDeadline(Promise.resolve().then(this.diagnose), DIAGNOSE_DEADLINE_MS)
      .then((detail) => {
        if (detail) failure.message = `${failure.message}\n${detail}`;
      })
      .catch(() => {})
      .finally(rejectAll);
    return failure;
  }

  private cleanup(): void {
    this.input.off("data", this.onData);
    this.output.off("drain", this.onDrain);
    // The error listeners stay: a stream destroyed above may still emit 'error' (EPIPE) later.
  }

  private quotedStreamStart(): string {
    return quoteBytes(Buffer.concat(this.streamStart));
  }
}

/** Options of serveStream. */
export interface ServeStreamOptions<Req, Res> {
  /** Validates a request body; a failure is answered with `{ id, error }` and the connection goes on. */
  validateRequest: (value: unknown) => Req;
  /** Handles one request; called one at a time, in arrival order. A throw is answered with `{ id, error }`. */
  handle: (req: Req) => Res | Promise<Res>;
  version: number;
  /** The limits in force (checked at start; DEFAULT_LIMITS when not given); the options below override them. */
  limits?: Limits;
  maxFrameBytes?: number;
  handshakeTimeoutMs?: number;
  /** Time from a request frame's first byte to its last, and for the client to take one response frame. */
  frameTimeoutMs?: number;
  /** Time the client may send nothing between whole requests. */
  idleTimeoutMs?: number;
  /** Told about every per-request failure (invalid request, handler throw, unsendable response). */
  onError?: (error: unknown) => void;
  /** End `output` when serving stops (default true). */
  endOutput?: boolean;
}

/**
 * Serves requests from `input`, answering on `output`: sends our hello, checks the client's,
 * then handles requests strictly in order. Resolves when the input ends cleanly; rejects with
 * TransportError on a framing or handshake error (after ending the output).
 */
export async function serveStream<Req, Res>(
  input: Readable,
  output: Writable,
  options: ServeStreamOptions<Req, Res>,
): Promise<void> {
  const limits = checkLimits(options.limits ?? DEFAULT_LIMITS);
  const maxFrameBytes = options.maxFrameBytes ?? limits.maxFrameBytes;
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? limits.handshakeTimeoutMs;
  const frameTimeoutMs = options.frameTimeoutMs ?? limits.frameTimeoutMs;
  const idleTimeoutMs = options.idleTimeoutMs ?? limits.idleTimeoutMs;
  const decoder = new FrameDecoder(maxFrameBytes);
  let outputError: Error | undefined;
  const onOutputError = (error: Error) => {
    outputError ??= error;
    input.destroy(new TransportError(`write error: ${describe(error)}`, { cause: error }));
  };
  output.on("error", onOutputError);
  // One deadline at a time, always on what the client owes us: its hello, the rest of a frame it
  // started, or (when idle time is bounded) its next request. None runs while we handle a request.
  const deadline = new Deadline((message) => input.destroy(new TransportError(message)));
  deadline.arm(
    "handshake",
    handshakeTimeoutMs,
    `client did not complete the handshake within ${handshakeTimeoutMs} ms (limit handshakeTimeoutMs)`,
  );
  // A frame's deadline runs from its first byte: more bytes of the same frame never extend it (slowloris).
  const awaitClient = () => {
    if (!decoder.inFrame) {
      deadline.arm("idle", idleTimeoutMs, `client sent nothing for ${idleTimeoutMs} ms (limit idleTimeoutMs)`);
    } else if (deadline.kind !== "frame") {
      deadline.arm(
        "frame",
        frameTimeoutMs,
        `client did not finish a frame within ${frameTimeoutMs} ms (limit frameTimeoutMs)`,
      );
    }
  };

  let greeted = false;
  let failed = false;
  try {
    await writeFrame(output, encodeFrame(helloFrame(options.version), maxFrameBytes), frameTimeoutMs);
    // for-await pulls the next chunk only after the previous one's requests were handled and
    // answered, so a fast client fills the pipe and then waits: backpressure for free.
    for await (const chunk of input as AsyncIterable<Buffer>) {
      let messages: unknown[];
      try {
        messages = decoder.push(chunk);
      } catch (error) {
        throw new TransportError(`framing error from client: ${describe(error)}`, { cause: error });
      }
      // A frame that started before a complete one was handled gets its full time once we read again.
      if (messages.length > 0) deadline.disarm();
      for (const message of messages) {
        if (!greeted) {
          // Nothing but a hello is accepted before the handshake: any other frame ends the connection.
          const hello = readHello(message);
          if (!hello || hello.protocol !== PROTOCOL_NAME) {
            throw new TransportError(`client sent non-protocol data: ${preview(message)}`);
          }
          if (hello.version !== options.version) {
            throw new TransportError(`client speaks protocol version ${hello.version}, we speak ${options.version}`);
          }
          greeted = true;
          continue;
        }
        const response = await answer(message, options);
        let frame: Buffer;
        try {
          frame = encodeFrame(response, maxFrameBytes);
        } catch (error) {
          options.onError?.(error);
          frame = encodeFrame({
            id: response.id,
            error: { message: `response could not be sent: ${describe(error)}` },
          });
        }
        await writeFrame(output, frame, frameTimeoutMs);
      }
      // Before the hello only the handshake deadline runs.
      if (greeted) awaitClient();
    }
    if (outputError) throw new TransportError(`write error: ${describe(outputError)}`, { cause: outputError });
    if (decoder.inFrame) throw new TransportError("client closed the connection in the middle of a frame");
    if (!greeted) throw new TransportError("client closed the connection before the handshake");
  } catch (error) {
    failed = true;
    if (error instanceof TransportError) throw error;
    throw new TransportError(`connection failed: ${describe(error)}`, { cause: error });
  } finally {
    deadline.disarm();
    if (options.endOutput ?? true) {
      if (failed) output.end();
      else await endStream(output, frameTimeoutMs);
    }
    output.off("error", onOutputError);
    // A late EPIPE after we stopped must not crash the process.
    output.on("error", () => {});
  }
}

/** One pending deadline (monotonic: Node timers do not follow the wall clock); re-arming replaces it. */
class Deadline {
  private timer: NodeJS.Timeout | undefined;
  /** What the pending deadline waits for, or undefined when none is armed. */
  kind: "handshake" | "frame" | "idle" | undefined;

  constructor(private readonly onExpiry: (message: string) => void) {}

  /** Fires `onExpiry(message)` after `ms` unless disarmed or re-armed first; an infinite `ms` never fires. */
  arm(kind: "handshake" | "frame" | "idle", ms: number, message: string): void {
    this.disarm();
    this.kind = kind;
    if (!Number.isFinite(ms)) return;
    this.timer = setTimeout(() => this.onExpiry(message), ms);
  }

  /** Cancels the pending deadline, if any. */
  disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.kind = undefined;
  }
}

/** Handles one request frame and builds its response envelope (never throws for per-request problems). */
async function answer<Req, Res>(
  message: unknown,
  options: ServeStreamOptions<Req, Res>,
): Promise<{ id: number; body: Res } | { id: number; error: { message: string } }> {
  const envelope = readRequestEnvelope(message);
  if (!envelope) throw new TransportError(`client sent a frame that is not a request: ${preview(message)}`);
  let req: Req;
  try {
    req = options.validateRequest(envelope.body);
  } catch (error) {
    options.onError?.(error);
    return { id: envelope.id, error: { message: `invalid request: ${describe(error)}` } };
  }
  try {
    return { id: envelope.id, body: await options.handle(req) };
  } catch (error) {
    options.onError?.(error);
    return { id: envelope.id, error: { message: describe(error) } };
  }
}

// ---- envelope readers (hand-written: tiny, hot, and independent of any message schema) -------

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function isRequestId(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
}

function readHello(message: unknown): { protocol: string; version: number } | undefined {
  if (!isRecord(message) || Object.keys(message).length !== 1 || !isRecord(message.hello)) return undefined;
  const { protocol, version } = message.hello;
  if (typeof protocol !== "string" || typeof version !== "number" || !Number.isSafeInteger(version)) return undefined;
  return { protocol, version };
}

function readRequestEnvelope(message: unknown): { id: number; body: unknown } | undefined {
  if (!isRecord(message) || !isRequestId(message.id) || !("body" in message)) return undefined;
  if (Object.keys(message).length !== 2) return undefined;
  return { id: message.id, body: message.body };
}

function readEnvelope(
  message: unknown,
): { id: number; body: unknown } | { id: number; error: { message: string } } | undefined {
  if (!isRecord(message) || !isRequestId(message.id) || Object.keys(message).length !== 2) return undefined;
  if ("body" in message) return { id: message.id, body: message.body };
  const error = message.error;
  if (isRecord(error) && typeof error.message === "string")
    return { id: message.id, error: { message: error.message } };
  return undefined;
}

// ---- stream plumbing ----------------------------------------------------------------------

/** Writes one frame and, if the stream asks for it, waits for 'drain' (at most `timeoutMs`; fails if the stream dies). */
async function writeFrame(output: Writable, frame: Buffer, timeoutMs?: number): Promise<void> {
  if (output.destroyed || output.writableEnded) throw new TransportError("write after the output closed");
  if (output.write(frame)) return;
  await waitFor(output, "drain", timeoutMs);
}

/** Ends a writable and waits until everything written was flushed (at most `timeoutMs`: a client that stopped reading). */
async function endStream(output: Writable, timeoutMs?: number): Promise<void> {
  if (output.writableFinished || output.destroyed) return;
  if (!output.writableEnded) output.end();
  // Ending is best effort: the answers were sent; a peer that will not take the rest is not an error here.
  await waitFor(output, "finish", timeoutMs).catch(() => {});
}

/**
 * Waits for `event`, failing if the stream closes first or `timeoutMs` passes. Every listener it adds
 * goes with one abort signal when it returns: a wait per write must not leave a 'close' or 'error'
 * listener behind (thousands of waits would pile up as a MaxListenersExceededWarning, and leak).
 */
async function waitFor(stream: Writable, event: "drain" | "finish", timeoutMs?: number): Promise<void> {
  const controller = new AbortController();
  const { signal } = controller;
  const waits: Promise<unknown>[] = [
    once(stream, event, { signal }),
    once(stream, "close", { signal }).then(() => {
      throw new TransportError(`output closed while waiting for '${event}'`);
    }),
  ];
  if (timeoutMs !== undefined && Number.isFinite(timeoutMs)) {
    waits.push(
      delay(timeoutMs, undefined, { signal }).then(() => {
        throw new TransportError(`client did not read a response within ${timeoutMs} ms (limit frameTimeoutMs)`);
      }),
    );
  }
  try {
    await Promise.race(waits);
  } finally {
    controller.abort();
    // The losers reject with AbortError now; that is their way of letting go, not a failure.
    for (const wait of waits) wait.catch(() => {});
  }
}

async function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

// ---- messages -----------------------------------------------------------------------------

/** Quotes bytes for an error message: printable ASCII as is, everything else escaped. */
export function quoteBytes(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) {
    if (byte === 0x0a) text += "\\n";
    else if (byte === 0x0d) text += "\\r";
    else if (byte === 0x09) text += "\\t";
    else if (byte === 0x5c) text += "\\\\";
    else if (byte === 0x22) text += '\\"';
    else if (byte >= 0x20 && byte < 0x7f) text += String.fromCharCode(byte);
    else text += `\\x${byte.toString(16).padStart(2, "0")}`;
  }
  return `"${text}"`;
}

function preview(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value, (_key, v) => (typeof v === "bigint" ? `${v}n` : v)) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 120 ? `${text.slice(0, 120)}...` : text;
}

function describe(error: unknown): string {
  if (error instanceof FrameError || error instanceof Error) return error.message;
  return String(error);
}
