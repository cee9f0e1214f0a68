import { crc32 } from "node:zlib";
import { fc, test } from "@fast-check/vitest";
import { pack } from "msgpackr";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  DEFAULT_MAX_FRAME_BYTES,
  decodeFramePayload,
  encodeFrame,
  encodeReusableFrame,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameError,
} from "../../src/transport/frames.js";

/** Plain wire values: what requests and responses are made of. */
const plainValue = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double({ noNaN: true }).filter((n) => !Object.is(n, -0)),
    fc.string(),
    fc.string({ unit: "binary" }),
    fc.uint8Array({ maxLength: 300 }),
    fc.array(tie("value"), { maxLength: 5 }),
    fc.dictionary(
      fc.string().filter((k) => k !== "__proto__"),
      tie("value"),
      { maxKeys: 5 },
    ),
  ),
})).value;

/** Splits bytes at arbitrary cut points (sorted, possibly repeated, so empty chunks occur too). */
function splitAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [0, ...cuts.map((c) => c % (bytes.length + 1)).sort((a, b) => a - b), bytes.length];
  const chunks: Buffer[] = [];
  for (let i = 1; i < points.length; i++) chunks.push(bytes.subarray(points[i - 1], points[i]));
  return chunks;
}

/** A frame header declaring `length` bytes whose checksum is that of `payload` (none: of nothing). */
function header(length: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const bytes = Buffer.alloc(FRAME_HEADER_BYTES);
  bytes.writeUInt32BE(length, 0);
  bytes.writeUInt32BE(crc32(payload), 4);
  return bytes;
}

describe("frame codec", () => {
  test.prop([plainValue])("encode then decode gives the same plain value", (value) => {
    const decoded = new FrameDecoder().push(encodeFrame(value));
    expect(decoded).toEqual([value]);
    // structuredClone-stable: the decoded value is plain data, no Buffer subclass left.
    expect(structuredClone(decoded[0])).toEqual(value);
  });

  test.prop([fc.array(plainValue, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 20 })])(
    "any split of a stream of frames decodes to the same messages in order",
    (messages, cuts) => {
      const stream = Buffer.concat(messages.map((m) => encodeFrame(m)));
      const decoder = new FrameDecoder();
      const decoded = splitAt(stream, cuts).flatMap((chunk) => decoder.push(chunk));
      expect(decoded).toEqual(messages);
      expect(decoder.bufferedBytes).toBe(0);
      expect(decoder.inFrame).toBe(false);
    },
  );

  test.prop([fc.uint8Array({ maxLength: 5000 })])("byte arrays come back as plain Uint8Array", (bytes) => {
    const [decoded] = new FrameDecoder().push(encodeFrame({ bytes }));
    const value = (decoded as { bytes: Uint8Array }).bytes;
    expect(Object.getPrototypeOf(value)).toBe(Uint8Array.prototype);
    expect(Buffer.isBuffer(value)).toBe(false);
    expect(Array.from(value)).toEqual(Array.from(bytes));
  });

  it("writes header and payload as one buffer whose header is the payload length and CRC-32", () => {
    const frame = encodeFrame({ hello: "world" });
    expect(frame.readUInt32BE(0)).toBe(frame.length - FRAME_HEADER_BYTES);
    expect(frame.readUInt32BE(4)).toBe(crc32(frame.subarray(FRAME_HEADER_BYTES)));
  });

  it("accepts a frame of exactly the max size and refuses one byte more when encoding", () => {
    const payloadOf = (n: number) => encodeFrame(new Uint8Array(n)).length - FRAME_HEADER_BYTES;
    const size = payloadOf(100);
    expect(() => encodeFrame(new Uint8Array(100), size)).not.toThrow();
    expect(() => encodeFrame(new Uint8Array(101), size)).toThrow(FrameError);
    expect(() => encodeFrame(new Uint8Array(101), size)).toThrow(/oversized frame: \d+ bytes > max \d+/);
  });

  it("a frame kept while more are encoded stays as it was (msgpackr's shared buffer is never written over)", () => {
    const first = { type: "upload", pieces: [new Uint8Array(3000).fill(7)] };
    const frame = encodeFrame(first);
    const copy = Buffer.from(frame);
    for (let i = 0; i < 200; i++) encodeFrame({ type: "upload", pieces: [new Uint8Array(100_000).fill(i)] });
    expect(frame.equals(copy)).toBe(true);
    expect(new FrameDecoder().push(frame)).toEqual([first]);
  });

  it("packs into a buffer again once every frame in it was said written, and never over one that was not", () => {
    const MiB = 1024 * 1024;
    const kept = encodeFrame({ type: "upload", pieces: [new Uint8Array(MiB).fill(1)] });
    const pending = encodeReusableFrame({ type: "upload", pieces: [new Uint8Array(MiB).fill(2)] });
    const [keptCopy, pendingCopy] = [Buffer.from(kept), Buffer.from(pending.frame)];
    const buffers = new Set<ArrayBufferLike>();
    for (let i = 0; i < 40; i++) {
      const { frame, written } = encodeReusableFrame({ type: "upload", pieces: [new Uint8Array(MiB).fill(i)] });
      buffers.add(frame.buffer);
      const [decoded] = new FrameDecoder().push(frame) as [{ pieces: Uint8Array[] }];
      // (A boolean: a failure message must not print a megabyte.)
      expect(Buffer.from(decoded.pieces[0]!).equals(Buffer.alloc(MiB, i))).toBe(true);
      written();
    }
    // 40 MiB of frames in a few buffers (msgpackr's are 4 MiB and more here): without reuse, one per 4 frames.
    expect(buffers.size).toBeLessThanOrEqual(3);
    expect(kept.equals(keptCopy)).toBe(true);
    expect(pending.frame.equals(pendingCopy)).toBe(true);
    pending.written();
  });

  it("never packs over what another packer sharing msgpackr's state put in its buffer", () => {
    const MiB = 1024 * 1024;
    for (let i = 0; i < 8; i++) encodeReusableFrame({ pieces: [new Uint8Array(MiB).fill(i)] }).written();
    // msgpackr's module-wide state: this does not fit the buffer the frames above were packed into, so
    // msgpackr takes a new one (four times its size), where the frames below are packed next.
    const foreign = pack({ pieces: [new Uint8Array(5 * MiB).fill(9)] });
    const foreignCopy = Buffer.from(foreign);
    for (let i = 0; i < 40; i++) encodeReusableFrame({ pieces: [new Uint8Array(MiB).fill(i)] }).written();
    expect(foreign.equals(foreignCopy)).toBe(true);
  });

  test.prop([
    fc.array(
      fc.oneof(
        // Mostly small frames, some large: msgpackr's buffers (four times the largest message) fill, are
        // left and are handed back often.
        { arbitrary: fc.record({ encode: fc.integer({ min: 0, max: 6_000 }) }), weight: 20 },
        { arbitrary: fc.record({ encode: fc.integer({ min: 40_000, max: 200_000 }) }), weight: 1 },
        { arbitrary: fc.record({ keep: fc.integer({ min: 0, max: 5_000 }) }), weight: 1 },
        { arbitrary: fc.record({ foreign: fc.integer({ min: 0, max: 100_000 }) }), weight: 1 },
        { arbitrary: fc.record({ written: fc.nat() }), weight: 24 },
      ),
      { minLength: 300, maxLength: 600 },
    ),
  ])("whatever order writes are reported in, no frame changes before it is said written", (steps) => {
    const pending: { frame: Buffer; copy: Buffer; written: () => void }[] = [];
    const kept: { frame: Uint8Array; copy: Buffer }[] = [];
    steps.forEach((step, n) => {
      if ("encode" in step) {
        const { frame, written } = encodeReusableFrame({ n, bytes: new Uint8Array(step.encode).fill(n) });
        pending.push({ frame, copy: Buffer.from(frame), written });
      } else if ("keep" in step) {
        const frame = encodeFrame({ n, bytes: new Uint8Array(step.keep).fill(n) });
        kept.push({ frame, copy: Buffer.from(frame) });
      } else if ("foreign" in step) {
        const frame = pack({ n, bytes: new Uint8Array(step.foreign).fill(n) });
        kept.push({ frame, copy: Buffer.from(frame) });
      } else if (pending.length > 0) {
        const [said] = pending.splice(step.written % pending.length, 1);
        expect(said!.frame.equals(said!.copy)).toBe(true);
        said!.written();
      }
    });
    for (const { frame, copy } of [...pending, ...kept]) expect(Buffer.from(frame).equals(copy)).toBe(true);
    for (const { written } of pending) written();
  });

  it("an upload's pieces stay views of the frame they came in (no second copy); a small array is copied", () => {
    const MiB = 1024 * 1024;
    const pieces = [new Uint8Array(MiB).fill(1), new Uint8Array(MiB).fill(2)];
    const frame = encodeFrame({ type: "upload", pieces, hash: new Uint8Array(32).fill(3) });
    const decoder = new FrameDecoder();
    // Delivered as a pipe delivers it, 64 KiB at a time: the decoder joins the frame into one payload.
    const decoded = splitAt(
      frame,
      Array.from({ length: frame.length >> 16 }, (_, i) => (i + 1) << 16),
    ).flatMap((chunk) => decoder.push(chunk));
    const message = decoded[0] as { pieces: Uint8Array[]; hash: Uint8Array };
    const [one, two] = message.pieces;
    // (Booleans and numbers: a failure message must not print megabytes.)
    expect(one!.buffer === two!.buffer).toBe(true);
    expect(one!.buffer.byteLength).toBe(frame.length - FRAME_HEADER_BYTES);
    expect(Buffer.from(one!).equals(Buffer.from(pieces[0]!))).toBe(true);
    expect(Buffer.from(two!).equals(Buffer.from(pieces[1]!))).toBe(true);
    // 32 bytes must not pin 2 MiB.
    expect(message.hash.buffer.byteLength).toBe(32);
  });

  it("keeps the default cap at 16 MiB", () => {
    expect(DEFAULT_MAX_FRAME_BYTES).toBe(16 * 1024 * 1024);
  });

  it("decodes a large frame delivered one byte at a time in linear time", () => {
    const payload = new Uint8Array(200_000).map((_, i) => i % 251);
    const frame = encodeFrame(payload);
    const decoder = new FrameDecoder();
    let decoded: unknown[] = [];
    const started = performance.now();
    for (let i = 0; i < frame.length; i++) decoded = decoded.concat(decoder.push(frame.subarray(i, i + 1)));
    const elapsedMs = performance.now() - started;
    expect(decoded).toHaveLength(1);
    expect(Buffer.from(decoded[0] as Uint8Array).equals(Buffer.from(payload))).toBe(true);
    // Quadratic joining would copy ~2*10^10 bytes here; linear decoding takes well under a second.
    expect(elapsedMs).toBeLessThan(5_000);
  });
});

describe("hostile frames", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("rejects a declared length above the max from the header alone", () => {
    const decoder = new FrameDecoder(1024);
    expect(() => decoder.push(header(1025))).toThrow("oversized frame: 1025 bytes > max 1024");
  });

  it("rejects length 0xFFFFFFFF with the default cap without allocating it", () => {
    const allocations = spyOnAllocations();
    const decoder = new FrameDecoder();
    expect(() => decoder.push(Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 2, 3]))).toThrow(FrameError);
    expect(largestAllocation(allocations)).toBeLessThan(1024);
  });

  it("rejects a zero-length frame", () => {
    expect(() => new FrameDecoder().push(header(0))).toThrow(/zero-length/);
  });

  it("does not allocate a declared size that has not arrived yet", () => {
    const allocations = spyOnAllocations();
    const decoder = new FrameDecoder();
    const declared = DEFAULT_MAX_FRAME_BYTES; // legal, but only 10 bytes of it ever come
    for (let i = 0; i < 10; i++) expect(decoder.push(i === 0 ? header(declared) : Buffer.from([0x90]))).toEqual([]);
    expect(decoder.inFrame).toBe(true);
    expect(decoder.bufferedBytes).toBe(9);
    expect(largestAllocation(allocations)).toBeLessThan(1024);
  });

  it("reports a truncated frame as still in progress, never as a message", () => {
    const frame = encodeFrame({ a: "b".repeat(100) });
    const decoder = new FrameDecoder();
    expect(decoder.push(frame.subarray(0, frame.length - 1))).toEqual([]);
    expect(decoder.inFrame).toBe(true);
    expect(decoder.bufferedBytes).toBe(frame.length - 1 - FRAME_HEADER_BYTES);
  });

  it.each([
    ["reserved byte 0xc1", [0xc1]],
    ["truncated map", [0x81, 0xa1]],
    ["trailing bytes after the value", [0xc0, 0xc0]],
    ["msgpack timestamp (a Date is not plain data)", [0xd6, 0xff, 0, 0, 0, 1]],
    ["string header longer than the payload", [0xdb, 0xff, 0xff, 0xff, 0xff]],
    ["array32 declaring 2^32-1 elements", [0xdd, 0xff, 0xff, 0xff, 0xff]],
    ["map32 declaring 10^8 entries", [0xdf, 0x05, 0xf5, 0xe1, 0x00]],
    ["bin32 declaring 10^8 bytes", [0xc6, 0x05, 0xf5, 0xe1, 0x00]],
  ])("rejects a garbage payload: %s", (_name, payload) => {
    const decoder = new FrameDecoder();
    const bytes = Buffer.concat([header(payload.length, Buffer.from(payload)), Buffer.from(payload)]);
    expect(() => decoder.push(bytes)).toThrow(FrameError);
    expect(() => decoder.push(bytes)).toThrow(/malformed frame/);
  });

  // A bit flip that msgpack and zod would both accept (a mode 0644 -> 0645) is caught by the checksum alone:
  // a transport fault seed once landed exactly that on a target (0645 on disk, exit 0).
  it("refuses a frame whose payload no longer matches its CRC-32, naming the frame", () => {
    const good = encodeFrame({ type: "setMode", path: "d/n0", mode: 0o644 });
    const flipped = Buffer.from(good);
    const modeByte = flipped.lastIndexOf(0xa4); // 0o644 = 0x01a4, a uint16 at the end of the map
    flipped[modeByte]! ^= 1;
    expect(decodeFramePayload(flipped.subarray(FRAME_HEADER_BYTES))).toMatchObject({ mode: 0o645 });
    const decoder = new FrameDecoder();
    expect(decoder.push(encodeFrame({ n: 1 }))).toEqual([{ n: 1 }]);
    expect(() => decoder.push(flipped)).toThrow(/corrupt frame: frame 1 \(\d+ bytes\) does not match its CRC-32/);
  });

  test.prop([fc.nat(), fc.integer({ min: 0, max: 7 })])(
    "a single flipped bit anywhere in the payload is refused",
    (at, bit) => {
      const frame = Buffer.from(encodeFrame({ path: "a/b", mode: 0o644, size: 12345, name: "x".repeat(40) }));
      frame[FRAME_HEADER_BYTES + (at % (frame.length - FRAME_HEADER_BYTES))]! ^= 1 << bit;
      expect(() => new FrameDecoder().push(frame)).toThrow(/corrupt frame/);
    },
  );

  it("stays failed after an error: the stream position is lost", () => {
    const decoder = new FrameDecoder(16);
    expect(() => decoder.push(header(17))).toThrow(FrameError);
    expect(() => decoder.push(encodeFrame(1))).toThrow(/oversized frame/);
  });

  test.prop([fc.uint8Array({ minLength: 1, maxLength: 200 })])(
    "random payload bytes decode to plain data or fail with FrameError, never anything else",
    (payload) => {
      try {
        const value = decodeFramePayload(payload);
        expect(() => structuredClone(value)).not.toThrow();
      } catch (error) {
        expect(error).toBeInstanceOf(FrameError);
      }
    },
  );

  test.prop([fc.uint8Array({ maxLength: 400 }), fc.array(fc.nat(), { maxLength: 6 })])(
    "random byte streams only ever produce FrameError or plain messages",
    (bytes, cuts) => {
      const decoder = new FrameDecoder(1 << 20);
      try {
        for (const chunk of splitAt(Buffer.from(bytes), cuts)) decoder.push(chunk);
      } catch (error) {
        expect(error).toBeInstanceOf(FrameError);
      }
    },
  );

  it("refuses nesting deep enough to threaten the stack", () => {
    let value: unknown = 1;
    for (let i = 0; i < 300; i++) value = [value];
    expect(() => new FrameDecoder().push(encodeFrame(value))).toThrow(/nesting/);
  });
});

function spyOnAllocations(): number[] {
  const sizes: number[] = [];
  const record =
    <A extends unknown[]>(size: (...args: A) => number) =>
    (...args: A) => {
      sizes.push(size(...args));
    };
  const allocUnsafe = Buffer.allocUnsafe;
  const alloc = Buffer.alloc;
  const concat = Buffer.concat;
  vi.spyOn(Buffer, "allocUnsafe").mockImplementation((size: number) => {
    record((n: number) => n)(size);
    return allocUnsafe(size);
  });
  vi.spyOn(Buffer, "alloc").mockImplementation(((size: number, ...rest: never[]) => {
    record((n: number) => n)(size);
    return alloc(size, ...rest);
  }) as typeof Buffer.alloc);
  vi.spyOn(Buffer, "concat").mockImplementation((list: readonly Uint8Array[], total?: number) => {
    sizes.push(total ?? list.reduce((sum, b) => sum + b.length, 0));
    return concat(list, total);
  });
  return sizes;
}

function largestAllocation(sizes: number[]): number {
  return sizes.reduce((max, n) => Math.max(max, n), 0);
}

describe("decoder statelessness", () => {
  it("ignores msgpackr record definitions: a later 0x40 byte is still the number 64", () => {
    // A record definition from one peer must not change how later frames (of any connection) decode.
    const recordDefinition = Buffer.from([0xd4, 0x72, 0x40, 0x92, 0xa1, 0x78, 0xa1, 0x79, 0x01, 0x02]);
    try {
      decodeFramePayload(recordDefinition);
    } catch (error) {
      expect(error).toBeInstanceOf(FrameError);
    }
    expect(decodeFramePayload(Buffer.from([0x40]))).toBe(64);
  });
});
