// A large file's whole-content hash on the helper thread: the same sha256 as on the calling thread, for
// any split of its bytes into pieces (a piece larger than a slot included), the helper really used for a
// large file and not for a small one, a file given up halfway not leaking into the next one's hash, and a
// file hashed while the helper is busy hashed on the calling thread.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { WholeContentHasher } from "../../src/content/contentId.js";
import { contentIdOf } from "../../src/content/contentId.js";
import { NodeFileSystem } from "../../src/fs/nodeFileSystem.js";
import {
  bytesHashedOnHelper,
  HASHING_THREAD_MIN_BYTES,
  wholeContentHasher,
} from "../../src/replicator/hashingThread.js";
import { scanPath } from "../../src/replicator/scan.js";

const MiB = 1024 * 1024;

/** Runs `work` with a whole-content hasher for `size` bytes, released (the helper freed) however it ends. */
function withWholeContentHasher<T>(size: number, work: (hasher: WholeContentHasher) => T): T {
  const { hasher, release } = wholeContentHasher(size);
  try {
    return work(hasher);
  } finally {
    release();
  }
}
const large = randomBytes(HASHING_THREAD_MIN_BYTES + 12_345);

/** Hashes `bytes` in pieces of the given sizes (cycled) through withWholeContentHasher. */
function hashInPieces(bytes: Uint8Array, sizes: number[]): string {
  return withWholeContentHasher(bytes.length, (hasher) => {
    let i = 0;
    for (let at = 0; at < bytes.length; i++) {
      const size = sizes[i % sizes.length]!;
      hasher.update(bytes.subarray(at, at + size));
      at += size;
    }
    expect(hasher.size).toBe(bytes.length);
    return hasher.digest();
  });
}

describe("the hashing thread", () => {
  it("hashes a large file on the helper, to the same sha256, whatever the pieces", () => {
    for (const sizes of [[4 * MiB], [1, 3 * MiB + 7, 9 * MiB], [MiB - 1]]) {
      const before = bytesHashedOnHelper();
      expect(hashInPieces(large, sizes)).toBe(contentIdOf(large));
      expect(bytesHashedOnHelper() - before).toBe(large.length);
    }
  });

  it("hashes a small file on the calling thread", () => {
    const small = large.subarray(0, HASHING_THREAD_MIN_BYTES - 1);
    const before = bytesHashedOnHelper();
    expect(hashInPieces(small, [4 * MiB])).toBe(contentIdOf(small));
    expect(bytesHashedOnHelper()).toBe(before);
  });

  it("starts over after a file given up halfway", () => {
    expect(() =>
      withWholeContentHasher(large.length, (hasher) => {
        hasher.update(large.subarray(0, 10 * MiB));
        throw new Error("read failed");
      }),
    ).toThrow("read failed");
    const before = bytesHashedOnHelper();
    expect(hashInPieces(large, [4 * MiB])).toBe(contentIdOf(large));
    expect(bytesHashedOnHelper() - before).toBe(large.length);
  });

  it("hashes a second file on the calling thread while the helper is busy with the first", () => {
    const other = Buffer.from(large).reverse();
    const before = bytesHashedOnHelper();
    const [outer, inner] = withWholeContentHasher(large.length, (hasher) => {
      hasher.update(large.subarray(0, 5 * MiB));
      const nested = hashInPieces(other, [4 * MiB]);
      hasher.update(large.subarray(5 * MiB));
      return [hasher.digest(), nested];
    });
    expect(outer).toBe(contentIdOf(large));
    expect(inner).toBe(contentIdOf(other));
    expect(bytesHashedOnHelper() - before).toBe(large.length);
  });
});

describe("a scan of a large file", () => {
  const root = mkdtempSync(join(tmpdir(), "mirrorlog-hashing-thread-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("states the file's sha256, hashed on the helper", () => {
    writeFileSync(join(root, "big.bin"), large);
    const before = bytesHashedOnHelper();
    const scan = scanPath({ fs: new NodeFileSystem({ root }), root, keepContentUpTo: -1 }, "", true);
    const node = scan.node?.kind === "dir" ? scan.node.children.get("big.bin") : undefined;
    expect(scan.problems).toEqual([]);
    expect(node?.kind === "file" ? node.hash : undefined).toBe(contentIdOf(large));
    expect(bytesHashedOnHelper() - before).toBe(large.length);
    expect(scan.chunks.get(contentIdOf(large))?.reduce((sum, chunk) => sum + chunk.length, 0)).toBe(large.length);
  });
});
