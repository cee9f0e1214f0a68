// The target is exposed to a source it does not trust: whatever arrives (arbitrary values, valid
// requests with mutated fields, hostile paths), it never throws, always answers with a valid response,
// and never touches anything outside its root (a canary directory beside it).
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { contentIdOf } from "../../src/content/contentId.js";
import { PROTOCOL_VERSION, ResponseSchema } from "../../src/events/protocol.js";
import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { ReplicatorTarget } from "../../src/replicator/target.js";

const NUM_RUNS = Number(process.env.MIRRORLOG_FC_RUNS ?? 200);
const LOG_ID = "0123456789abcdef";
/** A placeholder for the target file system's internal name (known only once the file system exists). */
const INTERNAL = "<internal>";
const HASH = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/** The canary's content hash: a hard link to it would pass the content check if confinement failed. */
const CANARY_HASH = contentIdOf(new TextEncoder().encode("do not touch"));

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
  fc.constantFrom(
    "link/f",
    "link",
    "link/canary",
    "x".repeat(256),
    `${"a/".repeat(3000)}b`,
    ".mirrorlog-tmp-stash/x",
    "outside",
    "dir/file",
    "\uefc3\uefa9",
    "\ud800",
  ),
  // Replaced by the target file system's own internal names (its stash, a temp) once that exists.
  fc.constantFrom(INTERNAL, `${INTERNAL}/x`, `dir/${INTERNAL}`),
  fc.string({ maxLength: 20 }),
);

/** Hostile metadata: out of range, of the wrong type, or of the old shape. */
const mtime = fc.oneof(
  fc.record({ sec: fc.integer({ min: -2e12, max: 2e12 }), nsec: fc.integer({ min: -1, max: 1e9 }) }),
  fc.record({ sec: fc.double(), nsec: fc.double() }),
  fc.constant({ sec: 0, nsec: 0, extra: 1 }),
  fc.double(),
);
const ownerId = fc.oneof(fc.integer({ min: -1, max: 2 ** 32 }), fc.double(), fc.constant("0"));
const mode = fc.oneof(fc.integer({ min: -1, max: 0o17777 }), fc.double());

const operation = fc.oneof(
  fc.record({ type: fc.constant("remove"), path: hostilePath }),
  fc.record(
    { type: fc.constant("ensureDir"), path: hostilePath, mode, mtime, uid: ownerId, gid: ownerId },
    { requiredKeys: ["type", "path"] },
  ),
  fc.record(
    {
      type: fc.constant("writeSymlink"),
      path: hostilePath,
      target: fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom("/x/outside/canary", "\uefc3\uefa9", "")),
      mtime,
      uid: ownerId,
    },
    { requiredKeys: ["type", "path", "target"] },
  ),
  fc.record(
    {
      type: fc.constant("writeFile"),
      path: hostilePath,
      hash: fc.oneof(fc.constant(HASH), fc.constant(CANARY_HASH), fc.string({ maxLength: 70 })),
      size: fc.oneof(fc.integer({ min: -1, max: 100 }), fc.constant(2 ** 53 + 1), fc.double()),
      linkTo: hostilePath,
      mode,
      mtime,
      uid: ownerId,
      gid: ownerId,
      mtimeMs: fc.oneof(fc.double(), fc.constant(Number.NaN)),
    },
    { requiredKeys: ["type", "path", "hash", "size"] },
  ),
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

/** The requests with every INTERNAL placeholder in a string replaced by `name`. */
function withInternalNames(requests: unknown[], name: string): unknown[] {
  const replace = (value: unknown): unknown => {
    if (typeof value === "string") return value.replaceAll(INTERNAL, name);
    if (Array.isArray(value)) return value.map(replace);
    if (value !== null && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, replace(v)]));
    }
    return value;
  };
  return requests.map(replace);
}

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
      const target = new ReplicatorTarget(fs, "/x/root", { canSetOwner: true });
      const outsideBefore = fs.debugString("/x/outside");
      const canaryBefore = fs.lstat("/x/outside/canary");
      const outsideDirBefore = fs.lstat("/x/outside");
      target.handleRequest({ type: "hello", version: PROTOCOL_VERSION, logId: LOG_ID, epoch: 1 });
      for (const r of withInternalNames(requests, fs.internalName("stash"))) {
        const response = target.handleRequest(r);
        expect(() => ResponseSchema.parse(response)).not.toThrow();
      }
      expect(fs.debugString("/x/outside")).toBe(outsideBefore);
      // Not linked, chmod-ed, chown-ed or touched through a symlink either.
      expect(fs.lstat("/x/outside/canary")).toEqual(canaryBefore);
      expect(fs.lstat("/x/outside")).toEqual(outsideDirBefore);
      expect(fs.listDir("/x").sort()).toEqual(["outside", "root"]);
    },
  );
});
