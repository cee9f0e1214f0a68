import { spawn } from "node:child_process";
import { PassThrough, type Readable, Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { encodeFrame, FrameError } from "../../src/transport/frames.js";
import {
  helloFrame,
  RemoteRequestError,
  type ServeStreamOptions,
  StreamClient,
  type StreamClientOptions,
  serveStream,
  TransportError,
} from "../../src/transport/streamConnection.js";

const VERSION = 3;
const requestSchema = z.object({ n: z.number().int(), pad: z.string().optional() });
const responseSchema = z.object({ doubled: z.number().int() });
type Req = z.infer<typeof requestSchema>;
type Res = z.infer<typeof responseSchema>;

/** Polls a condition until it holds or the deadline passes (no fixed sleeps). */
async function until(condition: () => boolean, what: string, deadlineMs = 5_000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > deadlineMs) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** A client and a server joined by two in-memory pipes. */
function connectedPair(
  server: Partial<ServeStreamOptions<Req, Res>> = {},
  client: Partial<StreamClientOptions<Res>> = {},
) {
  const toServer = new PassThrough();
  const toClient = new PassThrough();
  const served = serveStream<Req, Res>(toServer, toClient, {
    version: VERSION,
    validateRequest: (v) => requestSchema.parse(v),
    handle: (req) => ({ doubled: req.n * 2 }),
    ...server,
  });
  served.catch(() => {}); // inspected by the tests that care
  const streamClient = new StreamClient<Req, Res>({
    input: toClient,
    output: toServer,
    version: VERSION,
    validateResponse: (v) => responseSchema.parse(v),
    ...client,
  });
  return { client: streamClient, served, toServer, toClient };
}

/** A client talking to a hand-driven peer, for feeding it arbitrary bytes. */
function clientWithFakePeer(options: Partial<StreamClientOptions<Res>> = {}) {
  const fromPeer = new PassThrough();
  const toPeer = new PassThrough();
  const client = new StreamClient<Req, Res>({
    input: fromPeer,
    output: toPeer,
    version: VERSION,
    validateResponse: (v) => responseSchema.parse(v),
    ...options,
  });
  return { client, fromPeer, toPeer };
}

describe("StreamClient and serveStream", () => {
  it("round-trips requests and counts frames and bytes on both sides of the handshake", async () => {
    const { client, served } = connectedPair();
    await client.handshake();
    expect(await client.request({ n: 21 })).toEqual({ doubled: 42 });
    expect(client.stats.framesSent).toBe(2); // hello + one request
    expect(client.stats.framesReceived).toBe(2);
    expect(client.stats.bytesSent).toBe(
      encodeFrame(helloFrame(VERSION)).length + encodeFrame({ id: 1, body: { n: 21 } }).length,
    );
    expect(client.stats.bytesReceived).toBeGreaterThan(0);
    await client.close();
    await expect(served).resolves.toBeUndefined();
  });

  it("pipelines: all 100 requests are written while the server still holds the first one", async () => {
    let releaseFirst!: () => void;
    const firstHeld = new Promise<void>((resolve) => {
      releaseFirst = resolve;
    });
    const handledOrder: number[] = [];
    let running = 0;
    let maxRunning = 0;
    const { client, served } = connectedPair({
      handle: async (req) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        if (req.n === 0) await firstHeld;
        handledOrder.push(req.n);
        running--;
        return { doubled: req.n * 2 };
      },
    });
    const responses = Array.from({ length: 100 }, (_, n) => client.request({ n }));
    // No response can arrive while request 0 is held, so every frame written by now was pipelined.
    await until(() => client.stats.framesSent === 101, "101 frames written");
    expect(client.stats.framesReceived).toBeLessThanOrEqual(1); // at most the server's hello
    expect(client.inFlight).toBe(100);
    releaseFirst();
    expect(await Promise.all(responses)).toEqual(Array.from({ length: 100 }, (_, n) => ({ doubled: n * 2 })));
    expect(handledOrder).toEqual(Array.from({ length: 100 }, (_, n) => n));
    expect(maxRunning).toBe(1); // the server applies strictly one at a time
    await client.close();
    await served;
  });

  it("rejects a peer that speaks another protocol version, on both sides", async () => {
    const toServer = new PassThrough();
    const toClient = new PassThrough();
    const served = serveStream<Req, Res>(toServer, toClient, {
      version: 7,
      validateRequest: (v) => requestSchema.parse(v),
      handle: () => ({ doubled: 0 }),
    });
    const client = new StreamClient<Req, Res>({
      input: toClient,
      output: toServer,
      version: 6,
      validateResponse: (v) => responseSchema.parse(v),
    });
    const pending = client.request({ n: 1 });
    await expect(client.handshake()).rejects.toThrow(new TransportError("peer speaks protocol version 7, we speak 6"));
    await expect(pending).rejects.toBeInstanceOf(TransportError);
    await expect(served).rejects.toThrow("client speaks protocol version 6, we speak 7");
  });

  it("explains an ssh banner printed on stdout instead of reporting a huge frame", async () => {
    const { client, fromPeer } = clientWithFakePeer();
    fromPeer.write("Welcome to Ubuntu 22.04 LTS\n\x1b[0m");
    fromPeer.write(encodeFrame(helloFrame(VERSION)));
    const error = await client.handshake().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect((error as Error).message).toBe(
      'peer sent non-protocol output on stdout: "Welcome to Ubuntu 22.04 LTS\\n\\x1b[0m"',
    );
    expect((error as Error).cause).toBeInstanceOf(FrameError);
  });

  it("explains a short line on stdout followed by the end of the stream", async () => {
    const { client, fromPeer } = clientWithFakePeer();
    fromPeer.end("ok\n");
    await expect(client.handshake()).rejects.toThrow('peer sent non-protocol output on stdout: "ok\\n"');
  });

  it("rejects a first frame that is valid msgpack but not a mirrorlog hello", async () => {
    const { client, fromPeer } = clientWithFakePeer();
    fromPeer.write(encodeFrame({ hello: { protocol: "other", version: VERSION } }));
    await expect(client.handshake()).rejects.toThrow(/peer sent non-protocol output on stdout/);
  });

  it("fails the handshake at its deadline when the peer says nothing", async () => {
    const { client } = clientWithFakePeer({ handshakeTimeoutMs: 50 });
    const pending = client.request({ n: 1 });
    await expect(client.handshake()).rejects.toThrow("peer did not complete the handshake within 50 ms");
    await expect(pending).rejects.toBeInstanceOf(TransportError);
  });

  it("rejects every pending request when the connection is cut mid-frame", async () => {
    const { client, fromPeer } = clientWithFakePeer();
    fromPeer.write(encodeFrame(helloFrame(VERSION)));
    await client.handshake();
    const pending = [client.request({ n: 1 }), client.request({ n: 2 }), client.request({ n: 3 })];
    const answer = encodeFrame({ id: 1, body: { doubled: 2 } });
    fromPeer.write(answer);
    const second = encodeFrame({ id: 2, body: { doubled: 4 } });
    fromPeer.end(second.subarray(0, second.length - 2));
    const results = await Promise.allSettled(pending);
    expect(results[0]).toEqual({ status: "fulfilled", value: { doubled: 2 } });
    for (const result of results.slice(1)) {
      expect(result.status).toBe("rejected");
      const reason = (result as PromiseRejectedResult).reason as Error;
      expect(reason).toBeInstanceOf(TransportError);
      expect(reason.message).toMatch(/middle of a frame/);
    }
    await expect(client.request({ n: 4 })).rejects.toBeInstanceOf(TransportError);
  });

  it("rejects pending requests when the peer's stream is destroyed without ending", async () => {
    const { client, fromPeer } = clientWithFakePeer();
    fromPeer.write(encodeFrame(helloFrame(VERSION)));
    await client.handshake();
    const pending = client.request({ n: 1 });
    fromPeer.destroy();
    await expect(pending).rejects.toThrow(/connection cut/);
  });

  it("rejects pending requests with the stream's error as the cause", async () => {
    const { client, fromPeer } = clientWithFakePeer();
    fromPeer.write(encodeFrame(helloFrame(VERSION)));
    await client.handshake();
    const pending = client.request({ n: 1 });
    const cut = new Error("ECONNRESET");
    fromPeer.destroy(cut);
    const error = await pending.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect((error as Error).cause).toBe(cut);
  });

  it("appends what diagnose() reports (e.g. ssh's stderr) to the failure", async () => {
    const { client, fromPeer } = clientWithFakePeer({ diagnose: async () => "ssh exited with status 255" });
    const pending = client.request({ n: 1 });
    fromPeer.end();
    await expect(pending).rejects.toThrow(
      "peer closed the connection before the handshake\nssh exited with status 255",
    );
  });

  it("a pipe broken before the peer greeted reads as the peer having closed before the handshake", async () => {
    const { client, toPeer } = clientWithFakePeer({ diagnose: async () => "ssh exited with status 255" });
    const pending = client.request({ n: 1 });
    toPeer.destroy(Object.assign(new Error("write EPIPE"), { code: "EPIPE" }));
    await expect(pending).rejects.toThrow(
      "peer closed the connection before the handshake\nssh exited with status 255",
    );
  });

  it("holds frames back while write() reports backpressure, then sends them all in order", async () => {
    const highWaterMark = 1024;
    const toServer = new PassThrough({ highWaterMark });
    const toClient = new PassThrough();
    const client = new StreamClient<Req, Res>({
      input: toClient,
      output: toServer,
      version: VERSION,
      validateResponse: (v) => responseSchema.parse(v),
    });
    const pad = "x".repeat(500);
    const responses = Array.from({ length: 200 }, (_, n) => client.request({ n, pad }));
    // Nobody reads toServer yet: the client must have stopped after a few frames.
    const frameBytes = encodeFrame({ id: 200, body: { n: 199, pad } }).length;
    expect(client.stats.framesSent).toBeLessThan(10);
    expect(toServer.writableLength).toBeLessThanOrEqual(highWaterMark + frameBytes);
    expect(client.queuedBytes).toBeGreaterThan(150 * frameBytes);
    const served = serveStream<Req, Res>(toServer, toClient, {
      version: VERSION,
      validateRequest: (v) => requestSchema.parse(v),
      handle: (req) => ({ doubled: req.n * 2 }),
    });
    expect(await Promise.all(responses)).toEqual(Array.from({ length: 200 }, (_, n) => ({ doubled: n * 2 })));
    expect(client.queuedBytes).toBe(0);
    expect(client.stats.framesSent).toBe(201);
    await client.close();
    await served;
  });

  it("never lets the client's stream buffer grow past one frame over the mark with a slow reader", async () => {
    const highWaterMark = 4096;
    let maxBuffered = 0;
    const written: Buffer[] = [];
    const slowSink = new Writable({
      highWaterMark,
      write(chunk: Buffer, _encoding, callback) {
        written.push(chunk);
        setImmediate(callback); // one frame per turn of the event loop: a slow reader
      },
    });
    const originalWrite = slowSink.write.bind(slowSink);
    slowSink.write = ((chunk: Buffer) => {
      const ok = originalWrite(chunk);
      maxBuffered = Math.max(maxBuffered, slowSink.writableLength);
      return ok;
    }) as typeof slowSink.write;
    const { client, fromPeer } = { ...clientWithFakePeerWith(slowSink) };
    const pad = "y".repeat(1000);
    for (let n = 0; n < 300; n++) client.request({ n, pad }).catch(() => {});
    await until(() => written.length === 301, "all frames reached the slow reader");
    const frameBytes = encodeFrame({ id: 300, body: { n: 299, pad } }).length;
    expect(maxBuffered).toBeLessThanOrEqual(highWaterMark + frameBytes);
    client.destroy();
    fromPeer.destroy();
  });

  it("answers an invalid request with an error response and keeps serving", async () => {
    const errors: unknown[] = [];
    const { client, served } = connectedPair({ onError: (e) => errors.push(e) });
    const bad = client.request({ n: "nope" } as unknown as Req);
    const good = client.request({ n: 5 });
    const error = await bad.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RemoteRequestError);
    expect((error as RemoteRequestError).requestId).toBe(1);
    expect((error as Error).message).toMatch(/^peer rejected request 1: invalid request:/);
    expect(await good).toEqual({ doubled: 10 });
    expect(errors).toHaveLength(1);
    await client.close();
    await served;
  });

  it("answers a handler failure with an error response and keeps serving", async () => {
    const { client, served } = connectedPair({
      handle: (req) => {
        if (req.n < 0) throw new Error("negative input");
        return { doubled: req.n * 2 };
      },
    });
    await expect(client.request({ n: -1 })).rejects.toThrow("peer rejected request 1: negative input");
    expect(await client.request({ n: 1 })).toEqual({ doubled: 2 });
    await client.close();
    await served;
  });

  it("treats a response that fails validation as a broken peer and closes", async () => {
    const { client, served } = connectedPair({ handle: () => ({ doubled: "two" }) as unknown as Res });
    const first = client.request({ n: 1 });
    await expect(first).rejects.toThrow(/peer sent an invalid response to request 1/);
    await expect(client.request({ n: 2 })).rejects.toBeInstanceOf(TransportError);
    await served.catch(() => {});
  });

  it("rejects a request that misses its deadline", async () => {
    const { client, served } = connectedPair(
      { handle: (req) => (req.n === 1 ? new Promise<Res>(() => {}) : { doubled: req.n * 2 }) },
      { timeoutMs: 50 },
    );
    await expect(client.request({ n: 1 })).rejects.toThrow(
      new TransportError("request 1 got no response within 50 ms"),
    );
    client.destroy();
    void served;
  });

  it("refuses to send a request larger than the frame cap, and the connection goes on", async () => {
    const { client, served } = connectedPair({ maxFrameBytes: 4096 }, { maxFrameBytes: 4096 });
    await expect(client.request({ n: 1, pad: "z".repeat(5000) })).rejects.toThrow(
      /cannot send request 1: oversized frame/,
    );
    expect(await client.request({ n: 2 })).toEqual({ doubled: 4 });
    await client.close();
    await served;
  });

  it("carries a 1 MiB byte payload split across many chunks", async () => {
    const toServer = new PassThrough({ highWaterMark: 1024 });
    const toClient = new PassThrough({ highWaterMark: 1024 });
    const blob = new Uint8Array(1 << 20).map((_, i) => (i * 7) % 256);
    const served = serveStream<{ blob: Uint8Array }, { length: number; last: number }>(toServer, toClient, {
      version: VERSION,
      validateRequest: (v) => z.object({ blob: z.instanceof(Uint8Array) }).parse(v),
      handle: (req) => ({ length: req.blob.length, last: req.blob[req.blob.length - 1]! }),
    });
    const client = await StreamClient.connect<{ blob: Uint8Array }, { length: number; last: number }>({
      input: toClient,
      output: toServer,
      version: VERSION,
      validateResponse: (v) => z.object({ length: z.number(), last: z.number() }).parse(v),
    });
    expect(await client.request({ blob })).toEqual({ length: blob.length, last: blob[blob.length - 1] });
    await client.close();
    await served;
  });

  it("sends 1 MiB requests intact whether the stream passes them on at once or holds them unread", async () => {
    // The client packs over a frame's buffer once its write completed: into a pipe (cat), once the kernel
    // holds the bytes; into a PassThrough never (its writes complete while the frames wait in it, unread).
    type Blob = { n: number; blob: Uint8Array };
    const MiB = 1 << 20;
    const serve = (input: Readable, output: PassThrough) =>
      serveStream<Blob, { n: number; intact: boolean }>(input, output, {
        version: VERSION,
        validateRequest: (v) => z.object({ n: z.number(), blob: z.instanceof(Uint8Array) }).parse(v),
        handle: (req) => ({ n: req.n, intact: req.blob.length === MiB && req.blob.every((b) => b === req.n % 256) }),
      });
    const cat = spawn("cat", [], { stdio: ["pipe", "pipe", "inherit"] });
    const unread = new PassThrough({ highWaterMark: 64 * MiB });
    for (const [output, input, readLate] of [
      [cat.stdin, cat.stdout, false],
      [unread, unread, true],
    ] as const) {
      const toClient = new PassThrough();
      const served = readLate ? undefined : serve(input, toClient);
      const client = new StreamClient<Blob, { n: number; intact: boolean }>({
        input: toClient,
        output,
        version: VERSION,
        validateResponse: (v) => z.object({ n: z.number(), intact: z.boolean() }).parse(v),
      });
      const wave = (from: number) =>
        Array.from({ length: 20 }, (_, i) => client.request({ n: from + i, blob: new Uint8Array(MiB).fill(from + i) }));
      const first = wave(0);
      // The second wave is packed once the first was handed to the stream and its writes reported back.
      await new Promise((resolve) => setImmediate(resolve));
      await until(() => client.queuedBytes === 0, "the first wave handed to the stream", 20_000);
      const second = wave(20);
      const late = readLate ? serve(input, toClient) : undefined;
      const answers = await Promise.all([...first, ...second]);
      expect(answers).toEqual(Array.from({ length: 40 }, (_, n) => ({ n, intact: true })));
      await client.close();
      await (served ?? late);
    }
    cat.kill();
  });

  it("close() waits for in-flight responses, then the server resolves", async () => {
    const { client, served } = connectedPair({ handle: async (req) => ({ doubled: req.n * 2 }) });
    const responses = [client.request({ n: 1 }), client.request({ n: 2 })];
    await client.close();
    expect(await Promise.all(responses)).toEqual([{ doubled: 2 }, { doubled: 4 }]);
    await expect(served).resolves.toBeUndefined();
    await expect(client.request({ n: 3 })).rejects.toBeInstanceOf(TransportError);
  });
});

describe("serveStream against a hostile client", () => {
  function hostileClient() {
    const toServer = new PassThrough();
    const toClient = new PassThrough();
    const handled: Req[] = [];
    const served = serveStream<Req, Res>(toServer, toClient, {
      version: VERSION,
      validateRequest: (v) => requestSchema.parse(v),
      handle: (req) => {
        handled.push(req);
        return { doubled: req.n * 2 };
      },
    });
    return { toServer, toClient, served, handled };
  }

  it("closes with a TransportError caused by FrameError on an oversized length", async () => {
    const { toServer, toClient, served } = hostileClient();
    toServer.write(encodeFrame(helloFrame(VERSION)));
    toServer.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]));
    const error = await served.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect((error as Error).message).toMatch(/framing error from client: oversized frame: 4294967295 bytes/);
    expect((error as Error).cause).toBeInstanceOf(FrameError);
    expect(toClient.writableEnded).toBe(true);
  });

  it("refuses requests before a hello and handles none of them", async () => {
    const { toServer, served, handled } = hostileClient();
    toServer.write(encodeFrame({ id: 1, body: { n: 1 } }));
    await expect(served).rejects.toThrow(/client sent non-protocol data/);
    expect(handled).toEqual([]);
  });

  it("closes on a frame that is not a request envelope", async () => {
    const { toServer, served } = hostileClient();
    toServer.write(encodeFrame(helloFrame(VERSION)));
    toServer.write(encodeFrame({ id: -4, body: { n: 1 } }));
    await expect(served).rejects.toThrow(/not a request/);
  });

  it("reports a client that hangs up mid-frame", async () => {
    const { toServer, served } = hostileClient();
    toServer.write(encodeFrame(helloFrame(VERSION)));
    toServer.end(encodeFrame({ id: 1, body: { n: 1 } }).subarray(0, 6));
    await expect(served).rejects.toThrow("client closed the connection in the middle of a frame");
  });

  it("gives up on a client that never says hello", async () => {
    const toServer = new PassThrough();
    const served = serveStream<Req, Res>(toServer, new PassThrough(), {
      version: VERSION,
      validateRequest: (v) => requestSchema.parse(v),
      handle: () => ({ doubled: 0 }),
      handshakeTimeoutMs: 50,
    });
    await expect(served).rejects.toThrow("client did not complete the handshake within 50 ms");
  });
});

function clientWithFakePeerWith(output: Writable) {
  const fromPeer = new PassThrough();
  const client = new StreamClient<Req, Res>({
    input: fromPeer,
    output,
    version: VERSION,
    validateResponse: (v) => responseSchema.parse(v),
  });
  return { client, fromPeer };
}
