// The source's count of files per content hash, in typed arrays: it answers like a Map of the hash
// strings (the model) through growth, decrements to zero and clears.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { HashCounts } from "../../src/content/hashCounts.js";

describe("HashCounts", () => {
  it("counts like a Map of the hash strings", () => {
    const hash = fc.oneof(fc.stringMatching(/^[0-9a-f]{64}$/), fc.constantFrom("a", "b", "", "h1"));
    const step = fc.record({
      hash,
      delta: fc.constantFrom(1, 1, -1),
      clear: fc.integer({ min: 0, max: 49 }).map((n) => n === 0),
    });
    fc.assert(
      fc.property(fc.array(step, { maxLength: 3000 }), (steps) => {
        const counts = new HashCounts();
        const model = new Map<string, number>();
        for (const { hash: h, delta, clear } of steps) {
          if (clear) {
            counts.clear();
            model.clear();
            continue;
          }
          counts.add(h, delta);
          model.set(h, Math.max(0, (model.get(h) ?? 0) + delta));
        }
        for (const [h, n] of model) expect(counts.get(h)).toBe(n);
        expect(counts.get("f".repeat(64))).toBe(model.get("f".repeat(64)) ?? 0);
      }),
      { numRuns: 50 },
    );
  });

  it("holds 200,000 distinct hashes", () => {
    const counts = new HashCounts();
    const hashOf = (i: number) => i.toString(16).padStart(64, "0");
    for (let i = 0; i < 200_000; i++) counts.add(hashOf(i), 1 + (i % 3));
    for (let i = 0; i < 200_000; i += 997) expect(counts.get(hashOf(i))).toBe(1 + (i % 3));
    expect(counts.get(hashOf(200_001))).toBe(0);
  });
});
