// Issue 10, finding 7: serveStream's time limits (per frame, idle, handshake), nothing but a hello
// before the handshake, and no listener left behind by a write that waits for 'drain'.
import { PassThrough, Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { checkLimits, DEFAULT_LIMITS, LimitsError } from "../../src/events/limits.js";
import { encodeFrame } from "../../src/transport/frames.js";
import { helloFrame, serveStream, TransportError } from "../../src/transport/streamConnection.js";

const VERSION = 7;

/** A server on in-memory pipes with a plain handler; the test drives the client's bytes by hand. */
function servedByHand(options: { frameTimeoutMs?: number; idleTimeoutMs?: number; handshakeTimeoutMs?: number } = {}) {
  const toServer = new PassThrough();
  const toClient = new PassThrough();
  const served = serveStream<{ n: number }, { doubled: number }>(toServer, toClient, {
    version: VERSION,
    validateRequest: (v) => v as { n: number },
    handle: (req) => ({ doubled: req.n * 2 }),
    ...options,
  });
  served.catch(() => {}); // awaited by each test
  return { toServer, toClient, served };
}

describe("serveStream bounds the time a client may hold it", () => {
  it("a client stalled mid-frame is cut after frameTimeoutMs, naming the limit", async () => {
    const { toServer, served } = servedByHand({ frameTimeoutMs: 150 });
    toServer.write(encodeFrame(helloFrame(VERSION)));
    const request = encodeFrame({ id: 1, body: { n: 2 } });
    toServer.write(request.subarray(0, request.length - 1));
    await expect(served).rejects.toThrow(TransportError);
    await expect(served).rejects.toThrow(/limit frameTimeoutMs/);
  });

  it("more bytes of the same frame do not extend its deadline (slowloris)", async () => {
    const { toServer, served } = servedByHand({ frameTimeoutMs: 300 });
    toServer.write(encodeFrame(helloFrame(VERSION)));
    const request = encodeFrame({ id: 1, body: { n: 2, pad: "x".repeat(1000) } });
    let at = 0;
    // One byte every 20 ms: the whole frame would take 20 s, each byte arrives well inside 300 ms.
    const drip = setInterval(() => {
      if (at < request.length - 1) toServer.write(request.subarray(at, ++at));
    }, 20);
    try {
      await expect(served).rejects.toThrow(/limit frameTimeoutMs/);
    } finally {
      clearInterval(drip);
    }
    expect(at).toBeLessThan(request.length - 1);
  });

  it("a greeted client that sends nothing is cut after idleTimeoutMs", async () => {
    const { toServer, served } = servedByHand({ idleTimeoutMs: 150 });
    toServer.write(encodeFrame(helloFrame(VERSION)));
    await expect(served).rejects.toThrow(/sent nothing for 150 ms \(limit idleTimeoutMs\)/);
  });

  it("the default idle time is unbounded: a quiet watch keeps its connection", () => {
    expect(DEFAULT_LIMITS.idleTimeoutMs).toBe(Number.POSITIVE_INFINITY);
    expect(Number.isFinite(DEFAULT_LIMITS.frameTimeoutMs)).toBe(true);
  });

  it("the time the server spends handling a request is not charged to the client's next frame", async () => {
    const toServer = new PassThrough();
    const toClient = new PassThrough();
    const answers: unknown[] = [];
    toClient.on("data", (chunk: Buffer) => answers.push(chunk));
    let release!: () => void;
    const slow = new Promise<void>((resolve) => {
      release = resolve;
    });
    const served = serveStream<{ n: number }, { doubled: number }>(toServer, toClient, {
      version: VERSION,
      validateRequest: (v) => v as { n: number },
      handle: async (req) => {
        if (req.n === 1) await slow;
        return { doubled: req.n * 2 };
      },
      frameTimeoutMs: 100,
    });
    const first = encodeFrame({ id: 1, body: { n: 1 } });
    const second = encodeFrame({ id: 2, body: { n: 2 } });
    // The second request's first half arrives with the first request: it waits while the first is handled.
    toServer.write(Buffer.concat([encodeFrame(helloFrame(VERSION)), first, second.subarray(0, 3)]));
    const started = performance.now();
    while (performance.now() - started < 300) await new Promise((resolve) => setImmediate(resolve));
    release();
    toServer.end(second.subarray(3));
    await expect(served).resolves.toBeUndefined();
  });

  it("before the handshake nothing but a hello is accepted", async () => {
    const { toServer, served } = servedByHand();
    toServer.write(encodeFrame({ id: 1, body: { n: 1 } }));
    await expect(served).rejects.toThrow(/non-protocol/);
  });

  it("a client that does not read its responses is cut after frameTimeoutMs", async () => {
    const toServer = new PassThrough();
    // An output that never finishes a write: every frame waits for a 'drain' that never comes.
    const stuck = new Writable({ highWaterMark: 16, write: () => {} });
    const served = serveStream<{ n: number }, { doubled: number }>(toServer, stuck, {
      version: VERSION,
      validateRequest: (v) => v as { n: number },
      handle: (req) => ({ doubled: req.n * 2 }),
      frameTimeoutMs: 150,
      endOutput: false,
    });
    toServer.write(encodeFrame({ id: 1, body: { n: 1 } }));
    await expect(served).rejects.toThrow(/did not read a response within 150 ms/);
  });
});

describe("serveStream leaves no listener behind a write that waits", () => {
  it("500 responses through a slow pipe: no MaxListenersExceededWarning, listener counts flat", async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on("warning", onWarning);
    const toServer = new PassThrough();
    // A pipe that takes each write a turn of the event loop later, with a tiny buffer: every response waits.
    const slow = new Writable({
      highWaterMark: 64,
      write: (_chunk, _encoding, callback) => setImmediate(callback),
    });
    const maxCounts = { close: 0, error: 0, drain: 0 };
    const served = serveStream<{ n: number }, { doubled: number; pad: string }>(toServer, slow, {
      version: VERSION,
      validateRequest: (v) => v as { n: number },
      handle: (req) => {
        for (const event of ["close", "error", "drain"] as const)
          maxCounts[event] = Math.max(maxCounts[event], slow.listenerCount(event));
        return { doubled: req.n * 2, pad: "y".repeat(256) };
      },
    });
    const frames = [encodeFrame(helloFrame(VERSION))];
    for (let id = 1; id <= 500; id++) frames.push(encodeFrame({ id, body: { n: id } }));
    toServer.end(Buffer.concat(frames));
    try {
      await served;
      // Warnings are emitted on the next tick: let it pass before judging.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off("warning", onWarning);
    }
    expect(warnings.filter((w) => w.name === "MaxListenersExceededWarning")).toEqual([]);
    expect(maxCounts.close).toBeLessThanOrEqual(2);
    expect(maxCounts.error).toBeLessThanOrEqual(3);
    expect(maxCounts.drain).toBeLessThanOrEqual(1);
  });
});

describe("the one Limits object", () => {
  it("the defaults satisfy every invariant", () => {
    expect(checkLimits(DEFAULT_LIMITS)).toBe(DEFAULT_LIMITS);
    expect(Object.isFrozen(DEFAULT_LIMITS)).toBe(true);
  });

  it.each([
    ["a source request no longer fits a frame", { maxFrameBytes: DEFAULT_LIMITS.sourceRequestContentBytes }],
    ["a piece may decode to more than a request", { maxDecodedPieceBytes: DEFAULT_LIMITS.maxDecodedRequestBytes + 1 }],
    ["the source sends more operations than the target takes", { maxOperationsPerRequest: 100 }],
    ["a manifest page no longer fits a frame", { manifestPageBytes: DEFAULT_LIMITS.maxFrameBytes }],
    ["a limit of zero", { maxOpenUploads: 0 }],
  ])("inconsistent limits are refused at start: %s", (_what, change) => {
    expect(() => checkLimits({ ...DEFAULT_LIMITS, ...change })).toThrow(LimitsError);
  });

  it("serveStream checks the limits it is given before it reads anything", async () => {
    const toServer = new PassThrough();
    const served = serveStream(toServer, new PassThrough(), {
      version: VERSION,
      validateRequest: (v) => v,
      handle: (v) => v,
      limits: { ...DEFAULT_LIMITS, maxFrameBytes: 1024 },
    });
    await expect(served).rejects.toThrow(LimitsError);
  });
});
