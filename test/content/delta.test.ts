import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { pack, unpack } from "msgpackr";
import { describe, expect, it } from "vitest";
import {
  applyDelta,
  buildDelta,
  type Chunk,
  type ChunkerOptions,
  chunkContent,
  contentIdOf,
  type Delta,
  DeltaError,
  type DeltaErrorReason,
  deltaLiteralSize,
  EMPTY_CONTENT_ID,
  planDelta,
} from "../../src/content/index.js";

const TINY: ChunkerOptions = { minSize: 64, averageSize: 256, maxSize: 1024 };

/** New content derived from old by a few splices, so deltas have both copies and literals. */
const editedPair = fc
  .tuple(
    fc.uint8Array({ maxLength: 8192 }),
    fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.nat(200), fc.uint8Array({ maxLength: 200 })), {
      maxLength: 4,
    }),
  )
  .map(([old, edits]) => {
    let next = Buffer.from(old);
    for (const [where, deleteCount, inserted] of edits) {
      const at = Math.floor(next.length * where);
      next = Buffer.concat([next.subarray(0, at), inserted, next.subarray(at + deleteCount)]);
    }
    return [old, new Uint8Array(next)] as const;
  });

function deltaFor(old: Uint8Array, next: Uint8Array, options: ChunkerOptions = TINY): Delta {
  return buildDelta(chunkContent(old, options), next, { chunking: options });
}

function expectDeltaError(run: () => unknown, reason: DeltaErrorReason): void {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(DeltaError);
    expect((error as DeltaError).reason).toBe(reason);
    return;
  }
  expect.fail(`expected DeltaError(${reason})`);
}

describe("delta round trip", () => {
  it("rebuilds the new content from arbitrary old and new buffers", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 8192 }), fc.uint8Array({ maxLength: 8192 }), (old, next) => {
        expect(applyDelta(old, deltaFor(old, next))).toEqual(next);
      }),
    );
  });

  it("rebuilds edited content, copying what the basis has", () => {
    fc.assert(
      fc.property(editedPair, ([old, next]) => {
        const delta = deltaFor(old, next);
        expect(applyDelta(old, delta)).toEqual(next);
        expect(delta.resultSize).toBe(next.length);
        expect(delta.resultId).toBe(contentIdOf(next));
        expect(delta.baseId).toBe(contentIdOf(old));
      }),
    );
  });

  it("is one copy for identical content and nothing for empty content", () => {
    const bytes = randomBytes(20_000);
    const delta = deltaFor(bytes, bytes);
    expect(delta.instructions).toEqual([
      { kind: "copy", chunkId: chunkContent(bytes, TINY).chunks[0]!.id, offset: 0, length: bytes.length },
    ]);
    const emptied = deltaFor(bytes, new Uint8Array(0));
    expect(emptied).toEqual({
      baseId: contentIdOf(bytes),
      resultId: EMPTY_CONTENT_ID,
      resultSize: 0,
      instructions: [],
    });
    expect(applyDelta(bytes, emptied)).toEqual(new Uint8Array(0));
  });

  it("sends about one or two chunks of literals for a few changed bytes in 1 MiB", () => {
    const old = randomBytes(1 << 20);
    const next = Buffer.from(old);
    for (let i = 0; i < 3; i++) next.writeUInt8(next.readUInt8(500_000 + i * 7) ^ 0xff, 500_000 + i * 7);
    const delta = buildDelta(chunkContent(old), next); // protocol default sizes (64 KiB average)
    // Compared by id: toEqual on a 1 MiB array walks it element by element (seconds).
    expect(contentIdOf(applyDelta(old, delta))).toBe(contentIdOf(next));
    const newChunkLengths = chunkContent(next).chunks.map((chunk) => chunk.length);
    const twoLargest = [...newChunkLengths].sort((a, b) => b - a).slice(0, 2);
    const literal = deltaLiteralSize(delta);
    expect(literal).toBeGreaterThan(0);
    expect(literal).toBeLessThanOrEqual(twoLargest[0]! + twoLargest[1]!);
    // Copies before and after the edit, each merged into one range.
    expect(delta.instructions.map((instruction) => instruction.kind)).toEqual(["copy", "literal", "copy"]);
  });

  it("survives structuredClone and msgpackr unchanged", () => {
    fc.assert(
      fc.property(editedPair, ([old, next]) => {
        const delta = deltaFor(old, next);
        const cloned = structuredClone(delta);
        expect(cloned).toEqual(delta);
        expect(applyDelta(old, cloned)).toEqual(next);
        const decoded = unpack(pack(delta)) as Delta;
        // msgpackr hands binary back as Buffer, a Uint8Array subclass: compare as plain bytes.
        const plain = {
          ...decoded,
          instructions: decoded.instructions.map((instruction) =>
            instruction.kind === "literal"
              ? { kind: "literal", bytes: new Uint8Array(instruction.bytes) }
              : instruction,
          ),
        };
        expect(plain).toEqual(delta);
        expect(applyDelta(old, decoded)).toEqual(next);
      }),
      { numRuns: 40 },
    );
  });

  it("carries compact literals (copies, not views of the whole new file)", () => {
    const old = randomBytes(50_000);
    const next = Buffer.concat([old.subarray(0, 25_000), randomBytes(100), old.subarray(25_000)]);
    for (const instruction of deltaFor(old, next).instructions) {
      if (instruction.kind === "literal") expect(instruction.bytes.buffer.byteLength).toBe(instruction.bytes.length);
    }
  });
});

describe("planDelta", () => {
  const chunk = (id: string, offset: number, length: number): Chunk => ({ id: id.repeat(64), offset, length });

  it("merges copies that are adjacent in the basis and literals that are adjacent in the new content", () => {
    const basis = [chunk("a", 0, 10), chunk("b", 10, 10), chunk("a", 20, 10), chunk("c", 30, 10)];
    const plan = planDelta(basis, [
      chunk("b", 0, 10),
      chunk("a", 10, 10), // "a" also at 0, but 20 continues the copy of "b"
      chunk("c", 20, 10),
      chunk("d", 30, 5),
      chunk("e", 35, 7),
      chunk("a", 42, 10),
    ]);
    expect(plan).toEqual({
      ranges: [
        { kind: "copy", offset: 0, length: 30, basisOffset: 10, chunkId: "b".repeat(64) },
        { kind: "literal", offset: 30, length: 12 },
        { kind: "copy", offset: 42, length: 10, basisOffset: 0, chunkId: "a".repeat(64) },
      ],
      resultSize: 52,
      copyBytes: 40,
      literalBytes: 12,
    });
  });

  it("does not merge copies that are not adjacent in the basis", () => {
    const basis = [chunk("a", 0, 10), chunk("b", 10, 10), chunk("c", 20, 10)];
    const plan = planDelta(basis, [chunk("c", 0, 10), chunk("a", 10, 10)]);
    expect(plan.ranges).toEqual([
      { kind: "copy", offset: 0, length: 10, basisOffset: 20, chunkId: "c".repeat(64) },
      { kind: "copy", offset: 10, length: 10, basisOffset: 0, chunkId: "a".repeat(64) },
    ]);
  });

  it("agrees with buildDelta", () => {
    fc.assert(
      fc.property(editedPair, ([old, next]) => {
        const plan = planDelta(chunkContent(old, TINY).chunks, chunkContent(next, TINY).chunks);
        const delta = deltaFor(old, next);
        expect(plan.resultSize).toBe(next.length);
        expect(plan.literalBytes).toBe(deltaLiteralSize(delta));
        expect(plan.ranges.length).toBe(delta.instructions.length);
      }),
    );
  });
});

describe("applyDelta validation", () => {
  const basis = randomBytes(4096);
  const next = Buffer.concat([basis.subarray(0, 2000), Buffer.from("changed"), basis.subarray(2000)]);
  const good = deltaFor(basis, next);
  const copyIndex = good.instructions.findIndex((instruction) => instruction.kind === "copy");
  const withCopy = (patch: Record<string, unknown>): Delta => ({
    ...good,
    instructions: good.instructions.map((instruction, index) =>
      index === copyIndex ? ({ ...instruction, ...patch } as Delta["instructions"][number]) : instruction,
    ),
  });

  it("accepts the untouched delta", () => {
    expect(copyIndex).toBeGreaterThanOrEqual(0);
    expect(applyDelta(basis, good)).toEqual(new Uint8Array(next));
  });

  it("rejects negative, fractional, unsafe or zero ranges", () => {
    expectDeltaError(() => applyDelta(basis, withCopy({ offset: -1 })), "invalid-range");
    expectDeltaError(() => applyDelta(basis, withCopy({ offset: 0.5 })), "invalid-range");
    expectDeltaError(() => applyDelta(basis, withCopy({ offset: 2 ** 53 })), "invalid-range");
    expectDeltaError(() => applyDelta(basis, withCopy({ length: -5 })), "invalid-range");
    expectDeltaError(() => applyDelta(basis, withCopy({ length: 0 })), "invalid-range");
    expectDeltaError(() => applyDelta(basis, withCopy({ length: Number.NaN })), "invalid-range");
    expectDeltaError(() => applyDelta(basis, { ...good, resultSize: -1 }), "invalid-range");
    expectDeltaError(
      () =>
        applyDelta(basis, {
          ...good,
          instructions: [...good.instructions, { kind: "literal", bytes: new Uint8Array(0) }],
        }),
      "invalid-range",
    );
  });

  it("rejects a copy that reaches past the end of the basis", () => {
    expectDeltaError(() => applyDelta(basis, withCopy({ offset: basis.length - 1, length: 2 })), "copy-out-of-range");
    expectDeltaError(() => applyDelta(basis, withCopy({ offset: basis.length, length: 1 })), "copy-out-of-range");
    expectDeltaError(() => applyDelta(basis.subarray(0, 100), good), "copy-out-of-range");
  });

  it("rejects output longer or shorter than declared", () => {
    expectDeltaError(() => applyDelta(basis, { ...good, resultSize: good.resultSize - 1 }), "output-too-long");
    expectDeltaError(() => applyDelta(basis, { ...good, resultSize: good.resultSize + 1 }), "output-too-short");
    expectDeltaError(
      () => applyDelta(basis, { ...good, instructions: good.instructions.slice(1) }),
      "output-too-short",
    );
    expectDeltaError(
      () =>
        applyDelta(basis, {
          ...good,
          instructions: [...good.instructions, { kind: "literal", bytes: new Uint8Array(1) }],
        }),
      "output-too-long",
    );
  });

  it("checks sizes before allocating: a huge declared size fails on the sum, not on memory", () => {
    expectDeltaError(
      () => applyDelta(basis, { ...good, resultSize: 2 ** 52 }, { maxResultSize: Number.MAX_SAFE_INTEGER }),
      "output-too-short",
    );
    expectDeltaError(() => applyDelta(basis, { ...good, resultSize: 2 ** 52 }), "result-too-large");
    expectDeltaError(() => applyDelta(basis, good, { maxResultSize: good.resultSize - 1 }), "result-too-large");
  });

  it("rejects a result whose hash differs from resultId", () => {
    const tampered = good.instructions.map((instruction) =>
      instruction.kind === "literal"
        ? { kind: "literal" as const, bytes: instruction.bytes.map((b) => b ^ 1) }
        : instruction,
    );
    expectDeltaError(() => applyDelta(basis, { ...good, instructions: tampered }), "result-mismatch");
    expectDeltaError(() => applyDelta(basis, { ...good, resultId: EMPTY_CONTENT_ID }), "result-mismatch");
  });

  it("rejects a basis that is not the one the delta was built against", () => {
    const otherBasis = Buffer.from(basis);
    otherBasis.writeUInt8(otherBasis.readUInt8(4000) ^ 1, 4000);
    expectDeltaError(() => applyDelta(otherBasis, good), "base-mismatch");
  });

  it("rejects malformed deltas", () => {
    expectDeltaError(
      () => applyDelta(basis, { ...good, instructions: [{ kind: "move" }] } as unknown as Delta),
      "malformed",
    );
    expectDeltaError(() => applyDelta(basis, { ...good, instructions: [null] } as unknown as Delta), "malformed");
    expectDeltaError(() => applyDelta(basis, withCopy({ chunkId: "../../etc/shadow" })), "malformed");
    expectDeltaError(
      () => applyDelta(basis, { ...good, instructions: [{ kind: "literal", bytes: [1, 2] }] } as unknown as Delta),
      "malformed",
    );
    expectDeltaError(() => applyDelta(basis, { ...good, baseId: "nope" }), "malformed");
    expectDeltaError(() => applyDelta(basis, { ...good, instructions: "x" } as unknown as Delta), "malformed");
  });

  it("names the offending instruction", () => {
    try {
      applyDelta(basis, withCopy({ offset: -1 }));
      expect.fail("expected a DeltaError");
    } catch (error) {
      expect((error as DeltaError).instructionIndex).toBe(copyIndex);
      expect((error as DeltaError).message).toContain(`instruction ${copyIndex}`);
    }
  });
});
