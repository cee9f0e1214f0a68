// The target is exposed to a source it does not trust: whatever arrives (arbitrary values, valid
// requests with mutated fields, hostile paths), it never throws, always answers with a valid response,
// and never touches anything outside its root (a canary directory beside it).
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { PROTOCOL_VERSION, ResponseSchema } from "../../src/events/protocol.js";
import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { ReplicatorTarget } from "../../src/replicator/target.js";

const NUM_RUNS = Number(process.env.MIRRORLOG_FC_RUNS ?? 200);
const LOG_ID = "0123456789abcdef";
const HASH = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const hostilePath = fc.oneof(
  fc.constantFrom(
    "..",
    "../x",
    "a/../../x",
    "/etc/passwd",
    "//x",
    "a//b",
    "./a",
    "a/",
    "",
    "a\\..\\b",
    "C:\\x",
    "a\0b",
  ),
  fc.constantFrom("link/f", "link", "x".repeat(256), `${"a/".repeat(3000)}b`, ".mirrorlog-tmp-stash/x", "outside"),
  fc.string({ maxLength: 20 }),
);

const operation = fc.oneof(
  fc.record({ type: fc.constant("remove"), path: hostilePath }),
  fc.record({ type: fc.constant("ensureDir"), path: hostilePath, mode: fc.integer({ min: -1, max: 0o7777 }) }),
  fc.record({ type: fc.constant("writeSymlink"), path: hostilePath, target: fc.string({ maxLength: 10 }) }),
  fc.record({
    type: fc.constant("writeFile"),
    path: hostilePath,
    hash: fc.oneof(fc.constant(HASH), fc.string({ maxLength: 70 })),
    size: fc.oneof(fc.integer({ min: -1, max: 100 }), fc.constant(2 ** 53 + 1), fc.double()),
    mtimeMs: fc.oneof(fc.double(), fc.constant(Number.NaN)),
  }),
  fc.record({ type: fc.string({ maxLength: 8 }), path: hostilePath }),
);

const content = fc.oneof(
  fc.record({
    kind: fc.constant("inline"),
    encoding: fc.constantFrom("raw", "zstd", "gzip"),
    data: fc.uint8Array({ maxLength: 64 }),
  }),
  fc.record({ kind: fc.constant("local") }),
  fc.record({
    kind: fc.constant("delta"),
    baseHash: fc.constant(HASH),
    pieces: fc.array(
      fc.oneof(
        fc.record({
          kind: fc.constant("copy"),
          offset: fc.integer({ min: -5, max: 1 << 30 }),
          length: fc.integer({ min: -5, max: 1 << 30 }),
        }),
        fc.record({
          kind: fc.constant("literal"),
          encoding: fc.constantFrom("raw", "zstd"),
          size: fc.integer({ min: -1, max: 1 << 30 }),
          data: fc.uint8Array({ maxLength: 32 }),
        }),
      ),
      { maxLength: 3 },
    ),
  }),
  fc.record({ kind: fc.constant("upload"), uploadId: fc.string({ maxLength: 40 }) }),
  fc.record({
    kind: fc.constant("packed"),
    offset: fc.integer({ min: -1, max: 64 }),
    length: fc.integer({ min: -1, max: 64 }),
  }),
);

const request = fc.oneof(
  fc.anything(),
  fc.record({
    type: fc.constant("hello"),
    version: fc.oneof(fc.constant(PROTOCOL_VERSION), fc.integer()),
    logId: fc.oneof(fc.constant(LOG_ID), fc.string()),
    epoch: fc.integer({ min: -1, max: 5 }),
  }),
  fc.record({ type: fc.constant("manifest"), offset: fc.integer({ min: -1, max: 5 }) }),
  fc.record({
    type: fc.constant("apply"),
    logId: fc.oneof(fc.constant(LOG_ID), fc.string()),
    epoch: fc.integer({ min: 0, max: 3 }),
    entries: fc.array(
      fc.record({ seq: fc.integer({ min: -1, max: 5 }), operation, content }, { requiredKeys: ["seq", "operation"] }),
      { maxLength: 4 },
    ),
    pack: fc.record({
      encoding: fc.constantFrom("raw", "zstd"),
      size: fc.integer({ min: -1, max: 64 }),
      data: fc.uint8Array({ maxLength: 64 }),
    }),
  }),
  fc.record({
    type: fc.constant("upload"),
    uploadId: fc.string({ maxLength: 10 }),
    path: hostilePath,
    offset: fc.integer({ min: -1, max: 10 }),
    pieces: fc.array(
      fc.record({
        kind: fc.constant("literal"),
        encoding: fc.constant("raw"),
        size: fc.nat(8),
        data: fc.uint8Array({ maxLength: 8 }),
      }),
      { maxLength: 2 },
    ),
  }),
  fc.record({ type: fc.constant("chunks"), paths: fc.array(hostilePath, { maxLength: 3 }) }),
  fc.record({ type: fc.constant("release") }),
);

describe("the target under arbitrary and mutated requests", () => {
  test.prop([fc.array(request, { minLength: 1, maxLength: 8 })], { numRuns: NUM_RUNS })(
    "never throws, always answers validly, never touches anything outside its root",
    (requests) => {
      const fs = new MemoryFileSystem();
      fs.makeDirs("/x/outside");
      fs.writeFile("/x/outside/canary", "do not touch");
      fs.makeDirs("/x/root/dir");
      fs.writeFile("/x/root/dir/file", "inside");
      fs.makeSymlink("/x/root/link", "/x/outside");
      const target = new ReplicatorTarget(fs, "/x/root");
      const outsideBefore = fs.debugString("/x/outside");
      target.handleRequest({ type: "hello", version: PROTOCOL_VERSION, logId: LOG_ID, epoch: 1 });
      for (const r of requests) {
        const response = target.handleRequest(r);
        expect(() => ResponseSchema.parse(response)).not.toThrow();
      }
      expect(fs.debugString("/x/outside")).toBe(outsideBefore);
      expect(fs.listDir("/x").sort()).toEqual(["outside", "root"]);
    },
  );
});
