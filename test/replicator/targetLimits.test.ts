// Issue 10: every resource a peer can make the target spend is bounded before it is spent (each limit
// sent just over, on the in-memory file system), and index rows are hints that heal when wrong
// (finding 5), on the target and on the source.
import { describe, expect, it } from "vitest";
import { contentIdOf } from "../../src/content/contentId.js";
import { DEFAULT_LIMITS, type Limits, LimitsError } from "../../src/events/limits.js";
import {
  type ApplyEntry,
  PROTOCOL_VERSION,
  type Request,
  type Response,
  ResponseSchema,
} from "../../src/events/protocol.js";
import { ContentIndexMap } from "../../src/events/stateStore.js";
import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { indexEntry } from "../../src/replicator/scan.js";
import { SourceSession } from "../../src/replicator/sourceSession.js";
import { ReplicatorTarget, type ReplicatorTargetOptions } from "../../src/replicator/target.js";
import { zeroBomb, zeroHash } from "../support/hostileClient.js";

const LOG_ID = "0123456789abcdef";
const ROOT = "/dst";
const MiB = 1024 * 1024;
const encoder = new TextEncoder();

function machine(options: ReplicatorTargetOptions = {}) {
  const fs = new MemoryFileSystem();
  fs.makeDirs(ROOT);
  const index = new ContentIndexMap();
  const target = new ReplicatorTarget(fs, ROOT, { canSetOwner: false, index, ...options });
  const send = (request: Request): Response => ResponseSchema.parse(target.handleRequest(request));
  return { fs, index, target, send };
}

function hello(send: (r: Request) => Response): void {
  expect(send({ type: "hello", version: PROTOCOL_VERSION, logId: LOG_ID, epoch: 1 })).toMatchObject({ type: "hello" });
}

function apply(entries: ApplyEntry[]): Request {
  return { type: "apply", logId: LOG_ID, epoch: 1, entries };
}

function writeText(seq: number, path: string, text: string): ApplyEntry {
  const bytes = encoder.encode(text);
  return {
    seq,
    operation: { type: "writeFile", path, hash: contentIdOf(bytes), size: bytes.length },
    content: { kind: "inline", encoding: "raw", data: bytes },
  };
}

/** A file of `size` zero bytes sent as a zstd bomb with its size declared honestly. */
function writeZeros(seq: number, path: string, size: number): ApplyEntry {
  return {
    seq,
    operation: { type: "writeFile", path, hash: zeroHash(size), size },
    content: { kind: "inline", encoding: "zstd", data: zeroBomb(size) },
  };
}

function results(response: Response) {
  if (response.type !== "applied") throw new Error(`expected applied, got ${JSON.stringify(response)}`);
  return response.results;
}

describe("decoded bytes are bounded per piece and per request", () => {
  it("a literal of maxDecodedPieceBytes decodes; one byte more is refused naming the path and the limit", () => {
    const { send, fs } = machine();
    hello(send);
    const limit = DEFAULT_LIMITS.maxDecodedPieceBytes;
    const [ok, over] = results(send(apply([writeZeros(1, "at", limit), writeZeros(2, "over", limit + 1)])));
    expect(ok).toMatchObject({ outcome: "applied" });
    expect(over).toMatchObject({ outcome: "failed", code: "limit" });
    expect(over!.reason).toMatch(/"over".*maxDecodedPieceBytes/);
    expect(fs.exists(`${ROOT}/over`)).toBe(false);
  });

  it("literals adding up to maxDecodedRequestBytes decode; one byte more in the same request is refused", () => {
    const { send } = machine();
    hello(send);
    const piece = DEFAULT_LIMITS.maxDecodedPieceBytes;
    const count = DEFAULT_LIMITS.maxDecodedRequestBytes / piece;
    const entries = Array.from({ length: count }, (_, i) => writeZeros(i + 1, `z${i}`, piece));
    entries.push(writeZeros(count + 1, "one-more", 1));
    const answer = results(send(apply(entries)));
    expect(answer.slice(0, count).every((r) => r.outcome === "applied")).toBe(true);
    expect(answer[count]).toMatchObject({ outcome: "failed", code: "limit" });
    expect(answer[count]!.reason).toMatch(/"one-more".*maxDecodedRequestBytes/);
    // The budget is per request: the next one decodes again.
    expect(results(send(apply([writeZeros(count + 2, "next", 1)])))[0]).toMatchObject({ outcome: "applied" });
  });

  it("a pack that declares more than a piece may decode is refused before decoding; its files fail", () => {
    const { send } = machine();
    hello(send);
    const size = DEFAULT_LIMITS.maxDecodedPieceBytes + 1;
    const entry: ApplyEntry = {
      seq: 1,
      operation: { type: "writeFile", path: "p", hash: zeroHash(1), size: 1 },
      content: { kind: "packed", offset: 0, length: 1 },
    };
    const answer = results(
      send({ ...apply([entry]), pack: { encoding: "zstd", size, data: zeroBomb(size) } } as Request),
    );
    expect(answer[0]).toMatchObject({ outcome: "failed", code: "missing-content" });
    expect(answer[0]!.reason).toMatch(/maxDecodedPieceBytes/);
  });
});

describe("staged bytes fit the free space minus the reserve, checked up front", () => {
  // 100 MB file system, 10 MB free: the reserve is 1 % (1 MB), so 9 MB may be staged.
  const freeSpace = () => ({ free: 10_000_000, total: 100_000_000 });

  it("a write of exactly the usable space is staged; one byte more is refused (no-space, naming the path)", () => {
    const { send, fs } = machine({ freeSpace });
    hello(send);
    const [ok] = results(send(apply([writeZeros(1, "fits", 9_000_000)])));
    expect(ok).toMatchObject({ outcome: "applied" });
    const [over] = results(send(apply([writeZeros(2, "big", 9_000_001)])));
    expect(over).toMatchObject({ outcome: "failed", code: "no-space" });
    expect(over!.reason).toMatch(
      /ENOSPC: no space left on device: \/dst\/big needs 9000001 bytes, 9000000 free beyond the reserve/,
    );
    expect(fs.exists(`${ROOT}/big`)).toBe(false);
  });

  it("what one request stages counts in full: the free space is asked once, and each file's bytes are taken from it", () => {
    const { send, fs } = machine({ freeSpace });
    hello(send);
    const [first, second] = results(
      send(apply([writeZeros(1, "first", 6_000_000), writeZeros(2, "second", 3_000_001)])),
    );
    expect(first).toMatchObject({ outcome: "applied" });
    expect(second).toMatchObject({ outcome: "failed", code: "no-space" });
    expect(second!.reason).toMatch(/second needs 3000001 bytes, 3000000 free beyond the reserve/);
    expect(fs.exists(`${ROOT}/second`)).toBe(false);
  });

  it("an upload's growth is checked per request before any of it is written", () => {
    const { send } = machine({ freeSpace });
    hello(send);
    const piece = (size: number) => ({
      kind: "literal" as const,
      encoding: "zstd" as const,
      size,
      data: zeroBomb(size),
    });
    const first = send({ type: "upload", uploadId: "u", path: "up", offset: 0, pieces: [piece(5_000_000)] });
    expect(first).toMatchObject({ type: "uploaded", size: 5_000_000 });
    expect(first).not.toHaveProperty("code");
    // The file system in this test does not shrink as bytes are staged, so 9 MB more is still "free"...
    const second = send({ type: "upload", uploadId: "u", path: "up", offset: 5_000_000, pieces: [piece(9_000_001)] });
    // ...and 9 MB + 1 is not.
    expect(second).toMatchObject({ type: "uploaded", code: "no-space" });
    expect((second as { reason: string }).reason).toMatch(/ENOSPC.*\/dst\/up needs 9000001 bytes/);
  });
});

describe("copy ranges lie inside the basis and inside the declared size", () => {
  function withBasis() {
    const m = machine();
    hello(m.send);
    const basis = "0123456789".repeat(10);
    expect(results(m.send(apply([writeText(1, "f", basis)])))[0]).toMatchObject({ outcome: "applied" });
    return { ...m, baseHash: contentIdOf(encoder.encode(basis)) };
  }

  it("a copy reaching one byte past the basis is refused before anything is copied", () => {
    const { send, baseHash } = withBasis();
    const want = encoder.encode("x".repeat(100));
    const [result] = results(
      send(
        apply([
          {
            seq: 2,
            operation: { type: "writeFile", path: "f", hash: contentIdOf(want), size: 101 },
            content: { kind: "delta", baseHash, pieces: [{ kind: "copy", offset: 1, length: 100 }] },
          },
        ]),
      ),
    );
    expect(result).toMatchObject({ outcome: "failed", code: "missing-basis" });
    expect(result!.reason).toMatch(/copy range 1\+100 lies past the end of "f" \(100 bytes\)/);
  });

  it("copies past the declared size are refused at the first byte over (temp bytes ≤ the declared size)", () => {
    const { send, baseHash } = withBasis();
    const [result] = results(
      send(
        apply([
          {
            seq: 2,
            operation: { type: "writeFile", path: "f", hash: contentIdOf(encoder.encode("0123456")), size: 6 },
            content: {
              kind: "delta",
              baseHash,
              pieces: [
                { kind: "copy", offset: 0, length: 6 },
                { kind: "copy", offset: 0, length: 1 },
              ],
            },
          },
        ]),
      ),
    );
    expect(result).toMatchObject({ outcome: "failed", code: "limit" });
    expect(result!.reason).toMatch(/"f": 1 bytes more after 6 pass the declared size 6/);
  });
});

describe("requests, uploads and manifests are bounded in count", () => {
  it("maxOperationsPerRequest operations are taken; one more is refused whole", () => {
    const { send, fs } = machine();
    hello(send);
    const ensure = (n: number): ApplyEntry[] =>
      Array.from({ length: n }, (_, i) => ({ seq: i + 1, operation: { type: "ensureDir", path: `d${i}` } }));
    const refused = send(apply(ensure(DEFAULT_LIMITS.maxOperationsPerRequest + 1)));
    expect(refused).toMatchObject({ type: "error", code: "limit" });
    expect(fs.exists(`${ROOT}/d0`)).toBe(false);
    expect(send(apply(ensure(DEFAULT_LIMITS.maxOperationsPerRequest)))).toMatchObject({ type: "applied" });
  });

  it("an upload past maxOpenUploads is refused; finishing one makes room", () => {
    const limits: Limits = { ...DEFAULT_LIMITS, maxOpenUploads: 2 };
    const { send } = machine({ limits });
    hello(send);
    const bytes = encoder.encode("abc");
    const piece = { kind: "literal" as const, encoding: "raw" as const, size: 3, data: bytes };
    const start = (id: string) => send({ type: "upload", uploadId: id, path: `f${id}`, offset: 0, pieces: [piece] });
    expect(start("a")).not.toHaveProperty("code");
    expect(start("b")).not.toHaveProperty("code");
    expect(start("c")).toMatchObject({ code: "limit", reason: expect.stringMatching(/"fc".*maxOpenUploads 2/) });
    const named: ApplyEntry = {
      seq: 1,
      operation: { type: "writeFile", path: "fa", hash: contentIdOf(bytes), size: 3 },
      content: { kind: "upload", uploadId: "a" },
    };
    expect(results(send(apply([named])))[0]).toMatchObject({ outcome: "applied" });
    expect(start("c")).not.toHaveProperty("code");
  });

  it("a manifest page stops at manifestPageBytes, and the pages add up to the whole tree", () => {
    const { send, fs } = machine({ limits: { ...DEFAULT_LIMITS, manifestPageBytes: 1 } });
    for (const name of ["a", "b", "c"]) fs.writeFile(`${ROOT}/${name.repeat(200)}`, name);
    const pages: Response[] = [];
    let offset = 0;
    for (;;) {
      const page = send({ type: "manifest", offset });
      pages.push(page);
      if (page.type !== "manifest") throw new Error("expected a manifest page");
      offset += page.entries.length;
      if (page.complete) break;
    }
    expect(pages.every((p) => p.type === "manifest" && p.entries.length === 1)).toBe(true);
    expect(offset).toBeGreaterThanOrEqual(3);
  });

  it("past maxStashEntries removed files the stash is emptied: content set aside before is gone, after is kept", () => {
    const { send } = machine({ limits: { ...DEFAULT_LIMITS, maxStashEntries: 2 } });
    hello(send);
    const files = ["a", "b", "c"].map((name, i) => writeText(i + 1, name, `content of ${name}`));
    expect(results(send(apply(files))).every((r) => r.outcome === "applied")).toBe(true);
    const removes: ApplyEntry[] = ["a", "b", "c"].map((path, i) => ({
      seq: 4 + i,
      operation: { type: "remove", path },
    }));
    expect(results(send(apply(removes))).every((r) => r.outcome === "applied")).toBe(true);
    const reuse = (seq: number, path: string, from: ApplyEntry): ApplyEntry => ({
      seq,
      operation: { ...(from.operation as Extract<ApplyEntry["operation"], { type: "writeFile" }>), path },
      content: { kind: "local" },
    });
    const [fromA, fromC] = results(send(apply([reuse(7, "a2", files[0]!), reuse(8, "c2", files[2]!)])));
    expect(fromA).toMatchObject({ outcome: "failed", code: "missing-content" });
    expect(fromC).toMatchObject({ outcome: "applied" });
  });

  it("chunk lists (whole-file reads) are refused before hello", () => {
    const { send } = machine();
    expect(send({ type: "chunks", paths: ["f"] })).toMatchObject({ type: "error", code: "no-session" });
  });

  it("inconsistent limits are refused when the target is built", () => {
    expect(() => machine({ limits: { ...DEFAULT_LIMITS, maxDecodedRequestBytes: MiB } })).toThrow(LimitsError);
  });
});

describe("index rows are hints: a wrong one heals (finding 5)", () => {
  it("target: an index row claiming the new content does not stop the write the source sends", () => {
    const { send, fs, index } = machine();
    hello(send);
    expect(results(send(apply([writeText(1, "f", "old bytes")])))[0]).toMatchObject({ outcome: "applied" });
    // The row matches the file's stat, but names the version the source is about to send.
    const next = writeText(2, "f", "new bytes");
    const row = index.get("f")!;
    index.set("f", { ...row, hash: (next.operation as { hash: string }).hash });
    expect(results(send(apply([next])))[0]).toMatchObject({ outcome: "applied", wroteFile: true });
    expect(new TextDecoder().decode(fs.readFile(`${ROOT}/f`))).toBe("new bytes");
  });

  it("target: a basis whose row is wrong is read, the row corrected, and the delta applied", () => {
    const { send, fs, index } = machine();
    hello(send);
    const basis = "0123456789".repeat(10);
    expect(results(send(apply([writeText(1, "f", basis)])))[0]).toMatchObject({ outcome: "applied" });
    const baseHash = contentIdOf(encoder.encode(basis));
    index.set("f", { ...index.get("f")!, hash: contentIdOf(encoder.encode("something else")) });
    const want = basis.slice(0, 50);
    const [result] = results(
      send(
        apply([
          {
            seq: 2,
            operation: { type: "writeFile", path: "f", hash: contentIdOf(encoder.encode(want)), size: 50 },
            content: { kind: "delta", baseHash, pieces: [{ kind: "copy", offset: 0, length: 50 }] },
          },
        ]),
      ),
    );
    expect(result).toMatchObject({ outcome: "applied" });
    expect(new TextDecoder().decode(fs.readFile(`${ROOT}/f`))).toBe(want);
  });

  it("source: a wrong cached hash is dropped when the target answers drift, and the retry sends the truth", () => {
    const sourceFs = new MemoryFileSystem();
    sourceFs.makeDirs("/src");
    sourceFs.writeFile("/src/f", "payload");
    const index = new ContentIndexMap();
    index.set("f", indexEntry(sourceFs.lstat("/src/f"), contentIdOf(encoder.encode("a stale version"))));
    const { send, fs } = machine();
    const session = new SourceSession({ fs: sourceFs, root: "/src", index });
    expect(session.resume(send(session.openingHello()))).toEqual({ replay: [] });
    while (!session.acceptManifest(send(session.manifestRequest()))) {}
    let paths = [""];
    for (let round = 0; round < 3 && paths.length > 0; round++) {
      const entries = paths.flatMap((path) => session.planPath(path, round === 0 ? "initial" : "retry"));
      paths = [];
      for (const request of session.requestsFor(entries)) paths.push(...session.settle(request, send(request)));
    }
    expect(new TextDecoder().decode(fs.readFile(`${ROOT}/f`))).toBe("payload");
    expect(index.get("f")?.hash).toBe(contentIdOf(encoder.encode("payload")));
    session.log.close();
  });
});
