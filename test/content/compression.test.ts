import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import zstd from "zstd-napi/binding.js";
import {
  CompressionError,
  type CompressionErrorReason,
  decodeLiteral,
  type EncodedLiteral,
  encodeLiteral,
} from "../../src/content/index.js";

/**
 * A zstd frame of `total` zero bytes, built by streaming 1 MiB at a time so the test never
 * holds the inflated size either. `pledge` writes the true size into the frame header.
 */
function zeroFrame(total: number, settings: { pledge: boolean; windowLog?: number }): Uint8Array {
  const cctx = new zstd.CCtx();
  cctx.setParameter(zstd.CParameter.compressionLevel, 1);
  if (settings.windowLog !== undefined) cctx.setParameter(zstd.CParameter.windowLog, settings.windowLog);
  if (settings.pledge) cctx.setPledgedSrcSize(total);
  const piece = new Uint8Array(1 << 20);
  const out: Uint8Array[] = [];
  const scratch = new Uint8Array(zstd.cStreamOutSize());
  let remaining = total;
  for (;;) {
    const last = remaining <= piece.length;
    let input = piece.subarray(0, Math.min(remaining, piece.length));
    for (;;) {
      const [left, wrote, read] = cctx.compressStream2(
        scratch,
        input,
        last ? zstd.EndDirective.end : zstd.EndDirective.continue,
      );
      out.push(scratch.slice(0, wrote));
      input = input.subarray(read);
      if (last ? left === 0 : input.length === 0) break;
    }
    if (last) break;
    remaining -= piece.length;
  }
  return Buffer.concat(out);
}

function expectCompressionError(run: () => unknown, reason: CompressionErrorReason): void {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(CompressionError);
    expect((error as CompressionError).reason).toBe(reason);
    return;
  }
  expect.fail(`expected CompressionError(${reason})`);
}

describe("literal compression", () => {
  it("round-trips arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 20_000 }), fc.constantFrom<1 | 2 | 3>(1, 2, 3), (bytes, level) => {
        const encoded = encodeLiteral(bytes, { level });
        expect(encoded.size).toBe(bytes.length);
        expect(new Uint8Array(decodeLiteral(encoded, bytes.length))).toEqual(bytes);
      }),
    );
  });

  it("round-trips compressible bytes, and compresses them", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 40 }), fc.integer({ min: 10, max: 2000 }), (word, repeat) => {
        const bytes = new TextEncoder().encode(word.repeat(repeat));
        const encoded = encodeLiteral(bytes);
        if (bytes.length >= 200) expect(encoded.encoding).toBe("zstd");
        expect(encoded.data.length).toBeLessThanOrEqual(bytes.length);
        expect(new Uint8Array(decodeLiteral(encoded, bytes.length))).toEqual(bytes);
      }),
    );
    const text = new TextEncoder().encode("mirrorlog keeps a target directory an exact, live mirror. ".repeat(2000));
    const encoded = encodeLiteral(text, { level: 3 });
    expect(encoded.encoding).toBe("zstd");
    expect(encoded.data.length).toBeLessThan(text.length / 20);
  });

  it("leaves incompressible and tiny bytes raw, as they are", () => {
    const noise = randomBytes(64 * 1024);
    const encoded = encodeLiteral(noise);
    expect(encoded.encoding).toBe("raw");
    expect(encoded.data).toBe(noise);
    const tiny = new Uint8Array(40); // all zeros: compressible, but too small to be worth a frame
    expect(encodeLiteral(tiny)).toEqual({ encoding: "raw", data: tiny, size: 40 });
    expect(encodeLiteral(new Uint8Array(0))).toEqual({ encoding: "raw", data: new Uint8Array(0), size: 0 });
  });

  it("survives structuredClone", () => {
    const bytes = new TextEncoder().encode("abc".repeat(1000));
    const encoded = structuredClone(encodeLiteral(bytes));
    expect(new Uint8Array(decodeLiteral(encoded, 1 << 20))).toEqual(bytes);
  });
});

describe("decodeLiteral limits", () => {
  it("rejects a decompression bomb without allocating its inflated size", () => {
    const hundredMegabytes = 100 * 1000 * 1000;
    for (const pledge of [true, false]) {
      const bomb = zeroFrame(hundredMegabytes, { pledge });
      expect(bomb.length).toBeLessThan(64 * 1024);
      const before = process.memoryUsage();
      expectCompressionError(
        () => decodeLiteral({ encoding: "zstd", data: bomb, size: 1024 }, 1 << 20),
        "exceeds-declared-size",
      );
      const after = process.memoryUsage();
      const grown = after.arrayBuffers - before.arrayBuffers + (after.rss - before.rss);
      expect(grown).toBeLessThan(32 * 1024 * 1024);
    }
  });

  it("refuses a declared size above the limit before decoding anything", () => {
    const encoded = encodeLiteral(new Uint8Array(10_000));
    expectCompressionError(() => decodeLiteral(encoded, 9_999), "too-large");
    expectCompressionError(() => decodeLiteral({ encoding: "raw", data: new Uint8Array(5), size: 5 }, 4), "too-large");
  });

  it("rejects frames that inflate to less than declared", () => {
    const encoded = encodeLiteral(new Uint8Array(10_000));
    expectCompressionError(() => decodeLiteral({ ...encoded, size: 10_001 }, 1 << 20), "size-mismatch");
    expectCompressionError(() => decodeLiteral({ ...encoded, size: 9_999 }, 1 << 20), "exceeds-declared-size");
  });

  it("rejects truncated, garbage and trailing-garbage frames", () => {
    const encoded = encodeLiteral(new TextEncoder().encode("hello world ".repeat(500)));
    expect(encoded.encoding).toBe("zstd");
    const truncated: EncodedLiteral = { ...encoded, data: encoded.data.subarray(0, encoded.data.length - 3) };
    expectCompressionError(() => decodeLiteral(truncated, 1 << 20), "corrupt");
    expectCompressionError(() => decodeLiteral({ ...encoded, data: randomBytes(100) }, 1 << 20), "corrupt");
    expectCompressionError(() => decodeLiteral({ ...encoded, data: new Uint8Array(0) }, 1 << 20), "corrupt");
    const trailing = { ...encoded, data: Buffer.concat([encoded.data, Buffer.from([1, 2, 3])]) };
    expectCompressionError(() => decodeLiteral(trailing, 1 << 20), "corrupt");
  });

  it("rejects a frame that demands a huge window", () => {
    const frame = zeroFrame(3 << 20, { pledge: false, windowLog: 27 });
    expectCompressionError(() => decodeLiteral({ encoding: "zstd", data: frame, size: 3 << 20 }, 1 << 30), "corrupt");
  });

  it("rejects malformed literals", () => {
    expectCompressionError(
      () => decodeLiteral({ encoding: "raw", data: new Uint8Array(3), size: 4 }, 10),
      "size-mismatch",
    );
    expectCompressionError(
      () => decodeLiteral({ encoding: "lz4", data: new Uint8Array(3), size: 3 } as unknown as EncodedLiteral, 10),
      "malformed",
    );
    expectCompressionError(
      () => decodeLiteral({ encoding: "raw", data: new Uint8Array(3), size: -3 }, 10),
      "malformed",
    );
    expectCompressionError(
      () => decodeLiteral({ encoding: "raw", data: "abc", size: 3 } as unknown as EncodedLiteral, 10),
      "malformed",
    );
  });
});
