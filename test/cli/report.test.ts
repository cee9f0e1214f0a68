import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { count } from "../../src/cli/report.js";

describe("count", () => {
  it("groups thousands as toLocaleString('en-US') does, for every integer", () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.integer({ min: -999_999, max: 999_999 })), (n) => {
        expect(count(n)).toBe(n.toLocaleString("en-US"));
      }),
    );
    for (const n of [0, 7, 999, 1_000, 20_000, 123_456_789, -1_000, Number.MAX_SAFE_INTEGER]) {
      expect(count(n)).toBe(n.toLocaleString("en-US"));
    }
    expect(count(20_000)).toBe("20,000");
  });

  it("leaves what is not a safe integer to toLocaleString", () => {
    for (const n of [1.5, 2 ** 60, Number.NaN]) expect(count(n)).toBe(n.toLocaleString("en-US"));
  });
});
