// Issue 10, finding 1 (and 7's uploads before the handshake): honest-looking requests must not make
// the real `serve` spend memory or disk beyond its limits. Each request is sent to the real binary by
// the hostile-client library, which measures the child's peak RSS and the temp bytes under the root;
// each answer must be a refusal naming the limit, and serve must answer the next request.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { contentIdOf } from "../../src/content/contentId.js";
import { DEFAULT_LIMITS } from "../../src/events/limits.js";
import type { ApplyEntry, Request, Response } from "../../src/events/protocol.js";
import {
  HOSTILE_LOG_ID,
  type HostileServe,
  hello,
  peakRssBytes,
  sendMeasured,
  startServe,
  stopServe,
  zeroBomb,
  zeroHash,
} from "../support/hostileClient.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** What serve may reach, whatever a request declares: its own baseline plus a few pieces in flight. */
const RSS_BOUND = 300 * 1_000_000;

const created: string[] = [];
let serve: HostileServe | undefined;
let base: string;

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), "mirrorlog-hostile-"));
  created.push(base);
});

afterEach(async () => {
  if (serve !== undefined) await stopServe(serve);
  serve = undefined;
});

afterAll(() => {
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

/** A fresh target root and a serve on it. */
async function freshServe(label: string): Promise<HostileServe> {
  const root = join(base, `${label}-dst`);
  serve = await startServe(root, join(base, `${label}-state`));
  return serve;
}

function apply(entries: ApplyEntry[], extra: Partial<Extract<Request, { type: "apply" }>> = {}): Request {
  return { type: "apply", logId: HOSTILE_LOG_ID, epoch: 1, entries, ...extra };
}

function write(seq: number, path: string, size: number, hash: string, content?: ApplyEntry["content"]): ApplyEntry {
  return {
    seq,
    operation: { type: "writeFile", path, hash, size },
    ...(content === undefined ? {} : { content }),
  };
}

/** The failure of the only result of an apply answer. */
function onlyFailure(response: Response | Error): { code?: string; reason?: string } {
  if (response instanceof Error) throw response;
  expect(response.type).toBe("applied");
  const results = (response as Extract<Response, { type: "applied" }>).results;
  expect(results).toHaveLength(1);
  expect(results[0]!.outcome).toBe("failed");
  return results[0]!;
}

/** serve still answers: a plain write after the hostile request lands. */
async function expectAlive(s: HostileServe, seq: number): Promise<void> {
  const bytes = new TextEncoder().encode("still here");
  const response = await s.client.request(
    apply([
      write(seq, `alive-${seq}`, bytes.length, contentIdOf(bytes), { kind: "inline", encoding: "raw", data: bytes }),
    ]),
  );
  expect(response).toMatchObject({ type: "applied", results: [{ outcome: "applied" }] });
}

describe("hostile requests to serve are refused before their cost is spent", () => {
  it("an apply carrying 1 GiB of compressed zeros (size declared honestly) is refused unread (limit maxDecodedPieceBytes)", async () => {
    const s = await freshServe("bomb");
    await hello(s);
    const size = GiB;
    const data = zeroBomb(size);
    expect(data.length).toBeLessThan(40_000);
    const { response, peakTempBytes, peakRssBytes } = await sendMeasured(
      s,
      apply([write(1, "zeros", size, zeroHash(size), { kind: "inline", encoding: "zstd", data })]),
    );
    const failure = onlyFailure(response);
    expect(failure.code).toBe("limit");
    expect(failure.reason).toMatch(/"zeros".*maxDecodedPieceBytes/);
    expect(peakRssBytes).toBeLessThan(RSS_BOUND);
    expect(peakTempBytes).toBe(0);
    await expectAlive(s, 2);
  });

  it("an upload of four compressed pieces of 512 MiB each is refused at the first piece", async () => {
    const s = await freshServe("upload-bomb");
    await hello(s);
    const piece = { kind: "literal" as const, encoding: "zstd" as const, size: 512 * MiB, data: zeroBomb(512 * MiB) };
    const { response, peakTempBytes, peakRssBytes } = await sendMeasured(s, {
      type: "upload",
      uploadId: "u1",
      path: "big",
      offset: 0,
      pieces: [piece, piece, piece, piece],
    });
    if (response instanceof Error) throw response;
    expect(response).toMatchObject({ type: "uploaded", uploadId: "u1", size: 0, code: "limit" });
    expect((response as { reason?: string }).reason).toMatch(/"big".*maxDecodedPieceBytes/);
    expect(peakRssBytes).toBeLessThan(RSS_BOUND);
    expect(peakTempBytes).toBe(0);
    await expectAlive(s, 1);
  });

  it("256 copies of a 4 MiB basis for a file declared as 6 bytes write at most 6 bytes of temp (limit: the declared size)", async () => {
    const s = await freshServe("copies");
    await hello(s);
    const basis = new Uint8Array(4 * MiB).fill(7);
    const basisHash = contentIdOf(basis);
    const seeded = await s.client.request(
      apply([write(1, "f", basis.length, basisHash, { kind: "inline", encoding: "raw", data: basis })]),
    );
    expect(seeded).toMatchObject({ type: "applied", results: [{ outcome: "applied" }] });
    const pieces = Array.from({ length: 256 }, () => ({ kind: "copy" as const, offset: 0, length: 4 * MiB }));
    const six = new TextEncoder().encode("sixsix");
    const { response, peakTempBytes } = await sendMeasured(
      s,
      apply([write(2, "f", 6, contentIdOf(six), { kind: "delta", baseHash: basisHash, pieces })]),
    );
    const failure = onlyFailure(response);
    expect(failure.code).toBe("limit");
    expect(failure.reason).toMatch(/"f".*declared size 6/);
    expect(peakTempBytes).toBeLessThanOrEqual(6);
    await expectAlive(s, 3);
  });

  it("a write declared one byte over maxFileBytes is refused naming the limit", async () => {
    const s = await freshServe("file-cap");
    await hello(s);
    const size = DEFAULT_LIMITS.maxFileBytes + 1;
    const { response, peakTempBytes } = await sendMeasured(
      s,
      apply([write(1, "huge", size, zeroHash(0), { kind: "inline", encoding: "zstd", data: zeroBomb(1) })]),
    );
    const failure = onlyFailure(response);
    expect(failure.code).toBe("limit");
    expect(failure.reason).toMatch(/"huge".*maxFileBytes/);
    expect(peakTempBytes).toBe(0);
    await expectAlive(s, 2);
  });

  it("an apply of maxOperationsPerRequest + 1 operations is refused whole, naming the limit", async () => {
    const s = await freshServe("ops");
    await hello(s);
    const count = DEFAULT_LIMITS.maxOperationsPerRequest + 1;
    const entries: ApplyEntry[] = Array.from({ length: count }, (_, i) => ({
      seq: i + 1,
      operation: { type: "ensureDir", path: `d${i}` },
    }));
    const { response } = await sendMeasured(s, apply(entries));
    expect(response).toMatchObject({ type: "error", code: "limit" });
    expect((response as { message: string }).message).toMatch(/maxOperationsPerRequest/);
    await expectAlive(s, 1);
  });

  it("uploads past maxOpenUploads are refused; the open ones still work", async () => {
    const s = await freshServe("uploads");
    await hello(s);
    const piece = { kind: "literal" as const, encoding: "raw" as const, size: 1, data: new Uint8Array([1]) };
    const answers: Response[] = [];
    for (let i = 0; i <= DEFAULT_LIMITS.maxOpenUploads; i++) {
      answers.push(
        await s.client.request({ type: "upload", uploadId: `u${i}`, path: `f${i}`, offset: 0, pieces: [piece] }),
      );
    }
    expect(answers.slice(0, -1).every((a) => a.type === "uploaded" && a.code === undefined)).toBe(true);
    expect(answers.at(-1)).toMatchObject({ type: "uploaded", code: "limit" });
    expect((answers.at(-1) as { reason: string }).reason).toMatch(/maxOpenUploads/);
    await expectAlive(s, 1);
  });

  it("an upload before the handshake's hello is refused (no-session) and stages nothing", async () => {
    const s = await freshServe("before-hello");
    const piece = { kind: "literal" as const, encoding: "raw" as const, size: 3, data: new Uint8Array([1, 2, 3]) };
    const { response, peakTempBytes } = await sendMeasured(s, {
      type: "upload",
      uploadId: "early",
      path: "f",
      offset: 0,
      pieces: [piece],
    });
    expect(response).toMatchObject({ type: "error", code: "no-session" });
    expect(peakTempBytes).toBe(0);
    await hello(s);
    await expectAlive(s, 1);
  });

  it("serve's baseline stays far below the bound (the bound measures the requests, not Node)", async () => {
    const s = await freshServe("baseline");
    await hello(s);
    expect(peakRssBytes(s)).toBeLessThan(RSS_BOUND / 2);
  });
});
