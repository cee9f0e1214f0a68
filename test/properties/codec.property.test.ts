// Seed rule 8: requests, responses and operations are plain data. Every valid value survives the wire
// codec (one frame, whole or split into chunks), zod validation, structuredClone and v8 serialization
// unchanged.
import v8 from "node:v8";
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { type Operation, OperationSchema } from "../../src/events/operation.js";
import { relativePathProblem } from "../../src/events/paths.js";
import {
  type ManifestEntry,
  PROTOCOL_VERSION,
  type Request,
  RequestSchema,
  type Response,
  ResponseSchema,
} from "../../src/events/protocol.js";
import { decodeFramePayload, encodeFrame, FRAME_HEADER_BYTES, FrameDecoder } from "../../src/transport/frames.js";

const NUM_RUNS = Number(process.env.MIRRORLOG_FC_RUNS ?? 200);

// ---- arbitraries of valid values ----------------------------------------------------------------

/** fc.record with Object.prototype: wire messages are plain objects, not null-prototype ones. */
function plainRecord<T>(
  model: { [K in keyof T]: fc.Arbitrary<T[K]> },
  constraints: { requiredKeys?: (keyof T)[] } = {},
): fc.Arbitrary<T> {
  return fc.record(model, { ...constraints, noNullPrototype: true } as never) as unknown as fc.Arbitrary<T>;
}

/** Names a scan meets, including ones that look like traversal or prototype keys but are ordinary names. */
const NOTABLE_SEGMENTS = ["a", "..a", "a..", "-x", "with space", "é", "日本", "😀", "__proto__", "constructor", "%_"];

/** Well-formed text: arbitrary code points, never a lone surrogate (paths forbid them; see the report on symlinks). */
const text = fc.string({ unit: "binary", maxLength: 40 });

const segment = fc.oneof(
  fc.constantFrom(...NOTABLE_SEGMENTS),
  fc
    .string({ unit: "binary", minLength: 1, maxLength: 12 })
    .filter((s) => !s.includes("/") && relativePathProblem(s) === null),
);

/** A canonical relative path naming an entry below the root. */
const entryPath = fc.array(segment, { minLength: 1, maxLength: 4 }).map((segments) => segments.join("/"));
/** A canonical relative path, the root ("") included. */
const relativePath = fc.oneof(fc.constant(""), entryPath);

const hash = fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: 64, maxLength: 64 });
const size = fc.oneof(fc.nat({ max: 1 << 20 }), fc.maxSafeNat());
const mode = fc.integer({ min: 0, max: 0o777 });
/** msgpack carries -0 as 0, harmless for a time; the generator leaves it out so deep equality is exact. */
const mtimeMs = fc
  .oneof(fc.integer({ min: -1e13, max: 1e14 }), fc.double({ min: -1e13, max: 1e14, noNaN: true }))
  .filter((n) => !Object.is(n, -0));
const epoch = fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }));
const seq = fc.oneof(fc.nat({ max: 1000 }), fc.maxSafeNat());
const logId = fc.oneof(
  fc.uuid(),
  fc.string({ unit: fc.constantFrom(..."0123456789abcdef-"), minLength: 8, maxLength: 64 }),
);
const integer = fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.constant(PROTOCOL_VERSION));
const anyNumber = fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Object.is(n, -0));

const ensureDir = plainRecord(
  { type: fc.constant("ensureDir" as const), path: relativePath, mode },
  { requiredKeys: ["type", "path"] },
);
const writeFile = plainRecord(
  { type: fc.constant("writeFile" as const), path: entryPath, hash, size, mode, mtimeMs },
  { requiredKeys: ["type", "path", "hash", "size"] },
);
const writeSymlink = plainRecord({
  type: fc.constant("writeSymlink" as const),
  path: entryPath,
  target: fc.oneof(
    fc.constantFrom("../x", "/etc/passwd", "a b", "x".repeat(4095)),
    fc.string({ unit: "binary", minLength: 1, maxLength: 60 }).filter((t) => !t.includes("\0")),
  ),
});
const remove = plainRecord({ type: fc.constant("remove" as const), path: entryPath });

const operationOf = {
  ensureDir,
  writeFile,
  writeSymlink,
  remove,
} satisfies Record<Operation["type"], fc.Arbitrary<Operation>>;
const operation: fc.Arbitrary<Operation> = fc.oneof(...Object.values(operationOf));

const bytes = fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ minLength: 200, maxLength: 1200 }));
const encoding = fc.constantFrom("raw" as const, "zstd" as const);
const piece = fc.oneof(
  plainRecord({ kind: fc.constant("literal" as const), encoding, size, data: bytes }),
  plainRecord({ kind: fc.constant("copy" as const), offset: size, length: fc.integer({ min: 1, max: 1 << 30 }) }),
);
const uploadId = fc.string({ unit: fc.constantFrom(..."0123456789abcdefxyz"), minLength: 1, maxLength: 32 });

const content = fc.oneof(
  plainRecord({ kind: fc.constant("inline" as const), encoding, data: bytes }),
  plainRecord({ kind: fc.constant("local" as const) }),
  plainRecord({ kind: fc.constant("delta" as const), baseHash: hash, pieces: fc.array(piece, { maxLength: 4 }) }),
  plainRecord({ kind: fc.constant("upload" as const), uploadId }),
  plainRecord({ kind: fc.constant("packed" as const), offset: size, length: size }),
);

const applyEntry = plainRecord({ seq, operation, content }, { requiredKeys: ["seq", "operation"] });

const requestOf = {
  hello: plainRecord({ type: fc.constant("hello" as const), version: integer, logId, epoch }),
  manifest: plainRecord({ type: fc.constant("manifest" as const), offset: seq }),
  apply: plainRecord(
    {
      type: fc.constant("apply" as const),
      logId,
      epoch,
      entries: fc.array(applyEntry, { minLength: 1, maxLength: 5 }),
      pack: plainRecord({ encoding, size, data: bytes }),
    },
    { requiredKeys: ["type", "logId", "epoch", "entries"] },
  ),
  upload: plainRecord(
    {
      type: fc.constant("upload" as const),
      uploadId,
      path: entryPath,
      offset: size,
      baseHash: hash,
      pieces: fc.array(piece, { minLength: 1, maxLength: 4 }),
    },
    { requiredKeys: ["type", "uploadId", "path", "offset", "pieces"] },
  ),
  chunks: plainRecord({ type: fc.constant("chunks" as const), paths: fc.array(entryPath, { maxLength: 4 }) }),
  release: plainRecord({ type: fc.constant("release" as const) }),
} satisfies Record<Request["type"], fc.Arbitrary<Request>>;

const appliedPosition = plainRecord({ logId, epoch, seq });

const manifestEntry: fc.Arbitrary<ManifestEntry> = fc.oneof(
  plainRecord(
    { kind: fc.constant("dir" as const), path: relativePath, mode: integer },
    { requiredKeys: ["kind", "path"] },
  ),
  plainRecord(
    { kind: fc.constant("file" as const), path: relativePath, hash, size, mode: integer, mtimeMs: anyNumber },
    { requiredKeys: ["kind", "path", "hash", "size"] },
  ),
  plainRecord({ kind: fc.constant("symlink" as const), path: relativePath, target: text }),
  plainRecord({ kind: fc.constant("unknown" as const), path: relativePath }),
);

const applyResult = plainRecord(
  {
    seq,
    outcome: fc.constantFrom("applied" as const, "unchanged" as const, "duplicate" as const, "failed" as const),
    wroteFile: fc.boolean(),
    bytesWritten: size,
    reason: text,
  },
  { requiredKeys: ["seq", "outcome", "wroteFile", "bytesWritten"] },
);

const responseOf = {
  hello: plainRecord({
    type: fc.constant("hello" as const),
    version: integer,
    applied: fc.option(appliedPosition, { nil: null }),
  }),
  manifest: plainRecord({
    type: fc.constant("manifest" as const),
    entries: fc.array(manifestEntry, { maxLength: 6 }),
    complete: fc.boolean(),
  }),
  applied: plainRecord({
    type: fc.constant("applied" as const),
    results: fc.array(applyResult, { maxLength: 5 }),
    applied: appliedPosition,
  }),
  error: plainRecord(
    {
      type: fc.constant("error" as const),
      code: fc.constantFrom(
        "invalid-request" as const,
        "unsafe-path" as const,
        "version-mismatch" as const,
        "no-session" as const,
        "stale-epoch" as const,
        "position-gap" as const,
        "internal" as const,
      ),
      message: text,
      path: text,
    },
    { requiredKeys: ["type", "code", "message"] },
  ),
  uploaded: plainRecord(
    { type: fc.constant("uploaded" as const), uploadId, size, reason: text },
    { requiredKeys: ["type", "uploadId", "size"] },
  ),
  chunks: plainRecord({
    type: fc.constant("chunks" as const),
    files: fc.array(
      plainRecord({
        path: entryPath,
        hash,
        chunks: fc.array(plainRecord({ offset: size, length: size, id: hash }), { maxLength: 3 }),
      }),
      { maxLength: 3 },
    ),
  }),
  released: plainRecord({ type: fc.constant("released" as const) }),
} satisfies Record<Response["type"], fc.Arbitrary<Response>>;

// ---- the round trips ------------------------------------------------------------------------

/** One frame through the decoder, delivered in chunks cut at `cuts`. */
function throughDecoder(frame: Buffer, cuts: number[]): unknown {
  const points = [0, ...cuts.map((c) => c % (frame.length + 1)).sort((a, b) => a - b), frame.length];
  const decoder = new FrameDecoder();
  const messages: unknown[] = [];
  for (let i = 1; i < points.length; i++) messages.push(...decoder.push(frame.subarray(points[i - 1], points[i])));
  expect(messages).toHaveLength(1);
  expect(decoder.bufferedBytes).toBe(0);
  return messages[0];
}

/** Asserts that `value` is valid for `schema` and survives every plain-data round trip unchanged. */
function assertRoundTrips(value: unknown, schema: { parse(v: unknown): unknown }, cuts: number[]): void {
  expect(schema.parse(value)).toStrictEqual(value);
  const frame = encodeFrame(value);
  expect(frame.readUInt32BE(0)).toBe(frame.length - FRAME_HEADER_BYTES);
  expect(schema.parse(decodeFramePayload(frame.subarray(FRAME_HEADER_BYTES)))).toStrictEqual(value);
  expect(schema.parse(throughDecoder(frame, cuts))).toStrictEqual(value);
  expect(schema.parse(structuredClone(value))).toStrictEqual(value);
  expect(schema.parse(v8.deserialize(v8.serialize(value)))).toStrictEqual(value);
}

const cuts = fc.array(fc.nat(), { maxLength: 4 });

describe("operations round-trip through the codec, zod, structuredClone and v8", () => {
  for (const [type, arbitrary] of Object.entries(operationOf)) {
    test.prop([arbitrary, cuts], { numRuns: NUM_RUNS })(type, (value, at) => {
      assertRoundTrips(value, OperationSchema, at);
    });
  }
});

describe("requests round-trip through the codec, zod, structuredClone and v8", () => {
  for (const [type, arbitrary] of Object.entries(requestOf)) {
    test.prop([arbitrary, cuts], { numRuns: NUM_RUNS })(type, (value, at) => {
      assertRoundTrips(value, RequestSchema, at);
    });
  }
});

describe("responses round-trip through the codec, zod, structuredClone and v8", () => {
  for (const [type, arbitrary] of Object.entries(responseOf)) {
    test.prop([arbitrary, cuts], { numRuns: NUM_RUNS })(type, (value, at) => {
      assertRoundTrips(value, ResponseSchema, at);
    });
  }
});

test.prop(
  [fc.array(fc.oneof(...Object.values(requestOf), ...Object.values(responseOf)), { minLength: 1, maxLength: 6 }), cuts],
  {
    numRuns: NUM_RUNS,
  },
)("a stream of several messages decodes to the same messages, in order", (messages, at) => {
  const stream = Buffer.concat(messages.map((m) => encodeFrame(m)));
  const points = [0, ...at.map((c) => c % (stream.length + 1)).sort((a, b) => a - b), stream.length];
  const decoder = new FrameDecoder();
  const decoded: unknown[] = [];
  for (let i = 1; i < points.length; i++) decoded.push(...decoder.push(stream.subarray(points[i - 1], points[i])));
  expect(decoded).toStrictEqual(messages);
});
