// Seed rule 8: requests, responses and operations are plain data. Every valid value survives the wire
// codec (one frame, whole or split into chunks), zod validation, structuredClone and v8 serialization
// unchanged.
import v8 from "node:v8";
import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { ATTRIBUTE_KEYS, type Operation, OperationSchema } from "../../src/events/operation.js";
import { relativePathProblem, symlinkTargetProblem } from "../../src/events/paths.js";
import {
  type FailureCode,
  FailureCodeSchema,
  type ManifestEntry,
  PROTOCOL_VERSION,
  type Request,
  RequestSchema,
  type Response,
  ResponseSchema,
} from "../../src/events/protocol.js";
import { nameOfBytes } from "../../src/fs/byteNames.js";
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

/**
 * Names a scan meets, including ones that look like traversal, prototype keys, Windows paths or mirrorlog's
 * temps but are ordinary Linux names, and names whose bytes are not UTF-8 (byte escapes, fs/byteNames.ts).
 */
const NOTABLE_SEGMENTS = [
  "a",
  "..a",
  "a..",
  "-x",
  "with space",
  "é",
  "日本",
  "😀",
  "__proto__",
  "constructor",
  "%_",
  "a\\b",
  "C:\\x",
  ".mirrorlog-tmp-x",
  "\uefff",
  "caf\uefe9",
  "\uefee\uefbe\uef80",
];

/** Well-formed text: arbitrary code points, never a lone surrogate. */
const text = fc.string({ unit: "binary", maxLength: 40 });

const segment = fc.oneof(
  fc.constantFrom(...NOTABLE_SEGMENTS),
  fc
    .string({ unit: "binary", minLength: 1, maxLength: 12 })
    .filter((s) => !s.includes("/") && relativePathProblem(s) === null),
  // Any bytes but NUL and "/": the one string that names them.
  fc
    .uint8Array({ minLength: 1, maxLength: 12 })
    .map((b) => nameOfBytes(b.filter((x) => x !== 0 && x !== 0x2f)))
    .filter((s) => s !== "" && relativePathProblem(s) === null),
);

/** A canonical relative path naming an entry below the root. */
const entryPath = fc.array(segment, { minLength: 1, maxLength: 4 }).map((segments) => segments.join("/"));
/** A canonical relative path, the root ("") included. */
const relativePath = fc.oneof(fc.constant(""), entryPath);

const hash = fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: 64, maxLength: 64 });
const size = fc.oneof(fc.nat({ max: 1 << 20 }), fc.maxSafeNat());
/** The 12 permission bits, setuid/setgid/sticky included. */
const mode = fc.oneof(fc.integer({ min: 0, max: 0o7777 }), fc.constantFrom(0, 0o7777, 0o4755, 0o1777));
/** An exact mtime, before 1970 and far ahead included (the schema's bounds are ±1e12 s). */
const mtime = plainRecord({
  sec: fc.oneof(fc.integer({ min: -1e12, max: 1e12 }), fc.constantFrom(-1e12, -1, 0, 1e12)),
  nsec: fc.oneof(fc.integer({ min: 0, max: 999_999_999 }), fc.constantFrom(0, 999_999_999)),
});
/** A numeric owner or group id; 2^32-1 means "no change" to chown and is never valid. */
const ownerId = fc.oneof(fc.integer({ min: 0, max: 2 ** 32 - 2 }), fc.constantFrom(0, 65534, 2 ** 32 - 2));
/** A symlink target as stored: any canonical text but NUL, at most 4095 bytes. */
const symlinkTarget = fc.oneof(
  fc.constantFrom("../x", "/etc/passwd", "a b", "x".repeat(4095), "\uefff".repeat(4095), "a\\b"),
  fc.string({ unit: "binary", minLength: 1, maxLength: 60 }).filter((t) => symlinkTargetProblem(t) === null),
  fc
    .uint8Array({ minLength: 1, maxLength: 60 })
    .map((b) => nameOfBytes(b.filter((x) => x !== 0)))
    .filter((t) => symlinkTargetProblem(t) === null),
);
const epoch = fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }));
const seq = fc.oneof(fc.nat({ max: 1000 }), fc.maxSafeNat());
const logId = fc.oneof(
  fc.uuid(),
  fc.string({ unit: fc.constantFrom(..."0123456789abcdef-"), minLength: 8, maxLength: 64 }),
);
const integer = fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.constant(PROTOCOL_VERSION));

const ensureDir = plainRecord(
  { type: fc.constant("ensureDir" as const), path: relativePath, mode, mtime, uid: ownerId, gid: ownerId },
  { requiredKeys: ["type", "path"] },
);
const writeFile = plainRecord(
  {
    type: fc.constant("writeFile" as const),
    path: entryPath,
    hash,
    size,
    linkTo: entryPath,
    mode,
    mtime,
    uid: ownerId,
    gid: ownerId,
  },
  { requiredKeys: ["type", "path", "hash", "size"] },
);
const writeSymlink = plainRecord(
  {
    type: fc.constant("writeSymlink" as const),
    path: entryPath,
    target: symlinkTarget,
    mtime,
    uid: ownerId,
    gid: ownerId,
  },
  { requiredKeys: ["type", "path", "target"] },
);
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
  manifest: plainRecord(
    {
      type: fc.constant("manifest" as const),
      offset: seq,
      digests: plainRecord({ attributes: fc.subarray([...ATTRIBUTE_KEYS]) }),
    },
    { requiredKeys: ["type", "offset"] },
  ),
  listing: plainRecord({ type: fc.constant("listing" as const), dir: relativePath }),
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
  release: plainRecord({ type: fc.constant("release" as const), durable: fc.boolean() }, { requiredKeys: ["type"] }),
} satisfies Record<Request["type"], fc.Arbitrary<Request>>;

const appliedPosition = plainRecord({ logId, epoch, seq });

const manifestEntry: fc.Arbitrary<ManifestEntry> = fc.oneof(
  plainRecord(
    { kind: fc.constant("dir" as const), path: relativePath, mode, mtime, uid: ownerId, gid: ownerId },
    { requiredKeys: ["kind", "path"] },
  ),
  plainRecord(
    {
      kind: fc.constant("file" as const),
      path: relativePath,
      hash,
      size,
      linkTo: entryPath,
      mode,
      mtime,
      uid: ownerId,
      gid: ownerId,
    },
    { requiredKeys: ["kind", "path", "hash", "size"] },
  ),
  plainRecord(
    {
      kind: fc.constant("symlink" as const),
      path: relativePath,
      target: symlinkTarget,
      mtime,
      uid: ownerId,
      gid: ownerId,
    },
    { requiredKeys: ["kind", "path", "target"] },
  ),
  plainRecord({ kind: fc.constant("unknown" as const), path: relativePath }),
);

const failureCode: fc.Arbitrary<FailureCode> = fc.constantFrom(...FailureCodeSchema.options);

const applyResult = plainRecord(
  {
    seq,
    outcome: fc.constantFrom("applied" as const, "unchanged" as const, "duplicate" as const, "failed" as const),
    wroteFile: fc.boolean(),
    bytesWritten: size,
    code: failureCode,
    reason: text,
  },
  { requiredKeys: ["seq", "outcome", "wroteFile", "bytesWritten"] },
);

const responseOf = {
  hello: plainRecord({
    type: fc.constant("hello" as const),
    version: integer,
    applied: fc.option(appliedPosition, { nil: null }),
    canSetOwner: fc.boolean(),
  }),
  manifest: plainRecord({
    type: fc.constant("manifest" as const),
    entries: fc.array(
      fc.oneof(
        manifestEntry,
        plainRecord({
          kind: fc.constant("digest" as const),
          path: relativePath,
          count: fc.integer({ min: 1 }),
          digest: hash,
        }),
      ),
      { maxLength: 6 },
    ),
    complete: fc.boolean(),
  }),
  listing: plainRecord({
    type: fc.constant("listing" as const),
    dir: relativePath,
    entries: fc.array(manifestEntry, { maxLength: 6 }),
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
    { type: fc.constant("uploaded" as const), uploadId, size, code: failureCode, reason: text },
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
  released: plainRecord({ type: fc.constant("released" as const), durable: fc.option(appliedPosition, { nil: null }) }),
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

describe("the schemas refuse metadata outside what Linux can hold", () => {
  const file = { type: "writeFile", path: "f", hash: "0".repeat(64), size: 0 };
  it.each([
    ["a mode beyond the 12 bits", { mode: 0o10000 }],
    ["a negative mode", { mode: -1 }],
    ["a fractional mode", { mode: 1.5 }],
    ["nsec of a whole second", { mtime: { sec: 0, nsec: 1_000_000_000 } }],
    ["negative nsec", { mtime: { sec: 0, nsec: -1 } }],
    ["fractional seconds", { mtime: { sec: 0.5, nsec: 0 } }],
    ["seconds beyond the bound", { mtime: { sec: 1e12 + 1, nsec: 0 } }],
    ["an mtime with extra keys", { mtime: { sec: 0, nsec: 0, ms: 0 } }],
    ["uid 2^32-1 (chown's no-change)", { uid: 2 ** 32 - 1 }],
    ["a negative gid", { gid: -1 }],
    ["the old mtimeMs", { mtimeMs: 1000 }],
    ["a linkTo naming the root", { linkTo: "" }],
    ["a linkTo that climbs out", { linkTo: "../x" }],
  ])("%s", (_label, fields) => {
    expect(OperationSchema.safeParse({ ...file, ...fields }).success).toBe(false);
  });

  it("a symlink carries no mode, and its target must be canonical", () => {
    expect(OperationSchema.safeParse({ type: "writeSymlink", path: "l", target: "t", mode: 0o777 }).success).toBe(
      false,
    );
    expect(OperationSchema.safeParse({ type: "writeSymlink", path: "l", target: "\uefc3\uefa9" }).success).toBe(false);
  });

  it("a hello answer must say whether the target can set owners", () => {
    const hello = { type: "hello", version: PROTOCOL_VERSION, applied: null };
    expect(ResponseSchema.safeParse(hello).success).toBe(false);
    expect(ResponseSchema.safeParse({ ...hello, canSetOwner: true }).success).toBe(true);
  });
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
