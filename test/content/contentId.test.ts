import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ContentHasher, contentIdOf, EMPTY_CONTENT_ID, isContentId } from "../../src/content/index.js";

describe("contentId", () => {
  it("matches the published sha256 test vectors", () => {
    expect(contentIdOf(new Uint8Array(0))).toBe(EMPTY_CONTENT_ID);
    expect(contentIdOf(new TextEncoder().encode("abc"))).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  });

  it("streams to the same id as the one-shot, whatever the split", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), fc.array(fc.nat(4096), { maxLength: 8 }), (bytes, cuts) => {
        const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
        const hasher = new ContentHasher();
        let previous = 0;
        for (const point of [...points, bytes.length]) {
          hasher.update(bytes.subarray(previous, point));
          previous = point;
        }
        expect(hasher.size).toBe(bytes.length);
        expect(hasher.digest()).toBe(contentIdOf(bytes));
      }),
    );
  });

  it("refuses reuse after digest", () => {
    const hasher = new ContentHasher().update(new Uint8Array([1]));
    hasher.digest();
    expect(() => hasher.digest()).toThrow();
    expect(() => hasher.update(new Uint8Array([2]))).toThrow();
  });

  it("recognises the id shape", () => {
    expect(isContentId(EMPTY_CONTENT_ID)).toBe(true);
    expect(isContentId(EMPTY_CONTENT_ID.toUpperCase())).toBe(false);
    expect(isContentId(EMPTY_CONTENT_ID.slice(1))).toBe(false);
    expect(isContentId(42)).toBe(false);
  });
});
