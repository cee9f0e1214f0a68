// A large file the target cannot hold yet (nothing at its path, no content of its size anywhere) is
// uploaded while the walk reads, hashes and cuts it, before its write is logged: the source reads it once,
// not once to hash and again to ship. Files the target may hold still go as a reference or a delta, and a file
// that changes while it is uploaded is read again: the target gets one whole version.
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { OperationLog } from "../../src/events/operationLog.js";
import type { Request, Response } from "../../src/events/protocol.js";
import type { EntryStat } from "../../src/fs/fileSystem.js";
import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { NodeFileSystem } from "../../src/fs/nodeFileSystem.js";
import { ContentShipping, PIECE_BYTES, PIECES_PER_UPLOAD } from "../../src/replicator/contentShipping.js";
import type { ReadContent } from "../../src/replicator/scan.js";
import { requestContentBytes, SourceSession } from "../../src/replicator/sourceSession.js";
import { StreamingSource } from "../../src/replicator/streamingSource.js";
import { fixedRandomBytes } from "../support/fixedBytes.js";
import { localPair } from "../support/localPair.js";
import { compareTrees, formatDifferences } from "../support/treeOracle.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const MiB = 1024 * 1024;
const SIZE = 12 * MiB + 5; // above the scan's streaming threshold (8 MiB)

/** A source disk counting the bytes read of each file; `duringRead` runs once per read, before it. */
class CountedReads extends NodeFileSystem {
  readonly bytesRead = new Map<string, number>();
  /** The buffers ranges were read into. */
  readonly rangeBuffers = new Set<ArrayBufferLike>();
  duringRead: ((path: string, offset: number) => void) | undefined;
  override readFileRange(path: string, offset: number, length: number, into?: Uint8Array): Uint8Array {
    this.duringRead?.(path, offset);
    const bytes = super.readFileRange(path, offset, length, into);
    this.bytesRead.set(path, (this.bytesRead.get(path) ?? 0) + bytes.length);
    this.rangeBuffers.add(bytes.buffer);
    return bytes;
  }
  override readFileStated(path: string): { bytes: Uint8Array; stat: EntryStat } {
    const read = super.readFileStated(path);
    this.bytesRead.set(path, (this.bytesRead.get(path) ?? 0) + read.bytes.length);
    return read;
  }
}

/**
 * A StreamingSource over a local pair, recording each request and the file bytes the requests carried. The
 * target answers as each request is sent (a copy of it), or with `answerLater` on a later turn, from the
 * request itself (as publish's stream target does); `copiesRequests` is what the connection says of that.
 */
function pairWithSource(prefix: string, options: { copiesRequests?: boolean; answerLater?: boolean } = {}) {
  const pair = localPair(prefix, dirs);
  const fs = new CountedReads({ root: pair.src, onProblem: () => {} });
  const log = new OperationLog();
  const sent: Request[] = [];
  let contentBytes = 0;
  /** For each upload request, whether the log held the write of its path when it went out. */
  const uploadsAfterLogged: boolean[] = [];
  const connection = {
    request: async (request: Request): Promise<Response> => {
      sent.push(request);
      if (request.type === "apply" || request.type === "upload") contentBytes += requestContentBytes(request);
      if (request.type === "upload") uploadsAfterLogged.push(log.history(request.path).length > 0);
      if (options.answerLater) await new Promise((resolve) => setImmediate(resolve));
      return pair.answer(request);
    },
    ...(options.copiesRequests === undefined ? {} : { copiesRequests: options.copiesRequests }),
  };
  const session = new SourceSession({ fs, root: pair.src, log });
  const source = new StreamingSource(session, connection);
  return {
    ...pair,
    fs,
    log,
    source,
    session,
    sent,
    uploadsAfterLogged,
    takeContentBytes: () => {
      const bytes = contentBytes;
      contentBytes = 0;
      return bytes;
    },
  };
}

function expectMirrored(src: string, dst: string): void {
  const differences = compareTrees(src, dst, { mtimes: true });
  expect(differences, formatDifferences(differences)).toEqual([]);
}

describe("a large file the target lacks", () => {
  it("is read once, uploaded before its write is logged, and counted as that write's bytes", async () => {
    const p = pairWithSource("mirrorlog-ahead-");
    mkdirSync(join(p.src, "new/deeper"), { recursive: true });
    writeFileSync(join(p.src, "new/deeper/big.bin"), fixedRandomBytes(SIZE, "big"));
    writeFileSync(join(p.src, "new/small.txt"), "small\n");
    await p.source.establish();

    expectMirrored(p.src, p.dst);
    // Read once: hashed as it was uploaded (a scan and then a shipment read it twice).
    expect(p.fs.bytesRead.get(join(p.src, "new/deeper/big.bin"))).toBe(SIZE);
    // Every upload went out before the write naming it was logged (into a directory the same pass made).
    expect(p.uploadsAfterLogged.length).toBeGreaterThan(1);
    expect(p.uploadsAfterLogged.every((logged) => !logged)).toBe(true);
    const [write] = p.log.history("new/deeper/big.bin");
    expect(write?.entry.operation.type).toBe("writeFile");
    expect(write?.result?.outcome).toBe("applied");
    expect(write?.result?.content).toMatchObject({ literal: SIZE, reused: 0 });
    expect(p.session.stats.filesScanned).toBe(2);
    // The target keeps no leftover upload: only the mirrored entries are there.
    expect(readdirSync(join(p.dst, "new/deeper"))).toEqual(["big.bin"]);
  });

  it("that changes while it is uploaded is read again: the target gets one whole version", async () => {
    const p = pairWithSource("mirrorlog-ahead-torn-");
    const file = join(p.src, "changing.bin");
    writeFileSync(file, fixedRandomBytes(SIZE, "v1"));
    let changed = false;
    p.fs.duringRead = (path, offset) => {
      if (path === file && offset >= 4 * MiB && !changed) {
        // Its start, uploaded already, changes: what went is half of each version.
        changed = true;
        const fd = openSync(file, "r+");
        writeSync(fd, "changed while uploaded", 0);
        closeSync(fd);
      }
    };
    await p.source.establish();

    expect(changed).toBe(true);
    expectMirrored(p.src, p.dst);
    expect(readFileSync(join(p.dst, "changing.bin")).subarray(0, 22).toString()).toBe("changed while uploaded");
    expect(p.session.stats.problems).toEqual([]);
    expect(readdirSync(p.dst)).toEqual(["changing.bin"]);
  });
});

describe("a large file the target may hold", () => {
  it("moved to a new path goes as a reference to the content the target holds, not uploaded again", async () => {
    const p = pairWithSource("mirrorlog-ahead-moved-");
    mkdirSync(join(p.src, "a"));
    mkdirSync(join(p.src, "z"));
    writeFileSync(join(p.src, "a/big.bin"), fixedRandomBytes(SIZE, "moved"));
    await p.source.establish();
    expect(p.takeContentBytes()).toBeGreaterThanOrEqual(SIZE);

    renameSync(join(p.src, "a/big.bin"), join(p.src, "z/big.bin"));
    await p.source.establish();
    expectMirrored(p.src, p.dst);
    expect(p.takeContentBytes()).toBeLessThan(64 * 1024);
  });

  it("changed in place travels as a delta: its chunks were cut as it was uploaded, the target is not asked", async () => {
    const p = pairWithSource("mirrorlog-ahead-delta-");
    const bytes = fixedRandomBytes(SIZE, "delta");
    writeFileSync(join(p.src, "big.bin"), bytes);
    await p.source.establish();
    expect(p.takeContentBytes()).toBeGreaterThanOrEqual(SIZE);

    bytes.write("a change in the middle", 6 * MiB);
    writeFileSync(join(p.src, "big.bin"), bytes);
    await p.source.establish();
    expectMirrored(p.src, p.dst);
    expect(p.sent.some((request) => request.type === "chunks")).toBe(false);
    expect(p.takeContentBytes()).toBeLessThan(1 * MiB);
  });
});

describe("an upload's pieces", () => {
  it.each([
    [
      "the same few buffers in turn when the connection encodes each request as it is sent",
      { copiesRequests: true },
      PIECES_PER_UPLOAD,
    ],
    [
      "a buffer each when the connection answers later from the request itself",
      { answerLater: true },
      Math.ceil(SIZE / PIECE_BYTES),
    ],
  ] as const)("are read into %s", async (_, options, buffers) => {
    const p = pairWithSource("mirrorlog-ahead-pieces-", options);
    writeFileSync(join(p.src, "big.bin"), fixedRandomBytes(SIZE, "pieces"));
    await p.source.establish();

    expectMirrored(p.src, p.dst);
    // One upload, every byte right: no piece was read over before the target had it.
    expect(p.takeContentBytes()).toBe(SIZE);
    expect(p.session.stats.problems).toEqual([]);
    expect(p.fs.rangeBuffers.size).toBe(buffers);
  });
});

describe("an upload ahead ended early", () => {
  it("closes the file's reader, whose `finally` frees the hashing thread it holds", () => {
    const shipping = new ContentShipping(new MemoryFileSystem(), "/src");
    let readerClosed = false;
    const reader = (function* (): Generator<Uint8Array, ReadContent> {
      try {
        // Incompressible: each piece is a request's worth on the wire.
        yield fixedRandomBytes(3 * MiB, "first");
        yield fixedRandomBytes(3 * MiB, "second");
        return { hash: "0".repeat(64), size: 6 * MiB };
      } finally {
        readerClosed = true;
      }
    })();
    const uploads = shipping.uploadAhead("big.bin", reader);
    expect(uploads.next().value).toMatchObject({ type: "upload", path: "big.bin", offset: 0 });
    // The pass is refused here: the caller stops taking uploads.
    uploads.return(undefined as unknown as ReadContent);
    expect(readerClosed).toBe(true);
  });
});
