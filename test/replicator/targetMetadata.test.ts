// The target applies metadata as operations state it (MemoryFileSystem): a directory's mode and mtime are
// final at the end of every request whatever was written into it, one file that cannot be renamed into
// place fails alone with a typed code, owners are applied only when the target may set them, hard links
// are real links, and the file system's own internal names cannot be named by any operation.
import { describe, expect, it } from "vitest";
import { contentIdOf } from "../../src/content/contentId.js";
import type { Operation } from "../../src/events/operation.js";
import {
  type ApplyEntry,
  type ApplyResponse,
  type ApplyResult,
  type ManifestPageEntry,
  PROTOCOL_VERSION,
  type Response,
  ResponseSchema,
} from "../../src/events/protocol.js";
import { FileSystemError, type Timestamp } from "../../src/fs/fileSystem.js";
import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { failureCodeOf, ReplicatorTarget } from "../../src/replicator/target.js";

const LOG_ID = "0123456789abcdef";
const ROOT = "/x/y/z";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const DIR_MTIME: Timestamp = { sec: 1_600_000_000, nsec: 123_456_789 };
const ROOT_MTIME: Timestamp = { sec: 1_500_000_000, nsec: 42 };
const FILE_MTIME: Timestamp = { sec: 1_400_000_000, nsec: 7 };

/** A target on a fresh memory file system whose new entries belong to uid/gid 1000 (not root's 0). */
function targetMachine(options: { canSetOwner?: boolean } = {}) {
  const fs = new MemoryFileSystem({ uid: 1000, gid: 1000 });
  fs.makeDirs(ROOT);
  const target = new ReplicatorTarget(fs, ROOT, { canSetOwner: options.canSetOwner ?? false });
  const hello = ResponseSchema.parse(
    target.handleRequest({ type: "hello", version: PROTOCOL_VERSION, logId: LOG_ID, epoch: 1 }),
  );
  let seq = 0;
  /** Applies operations as the next positions; `contents` gives the bytes of written files by path. */
  const apply = (operations: Operation[], contents: Record<string, string> = {}): ApplyResult[] => {
    const entries: ApplyEntry[] = operations.map((operation) => {
      const text = operation.type === "writeFile" ? contents[operation.path] : undefined;
      return {
        seq: ++seq,
        operation,
        ...(text === undefined ? {} : { content: { kind: "inline", encoding: "raw", data: encoder.encode(text) } }),
      };
    });
    const response = ResponseSchema.parse(target.handleRequest({ type: "apply", logId: LOG_ID, epoch: 1, entries }));
    expect(response.type, JSON.stringify(response)).toBe("applied");
    return (response as ApplyResponse).results;
  };
  const manifest = (): ManifestPageEntry[] => {
    const response = ResponseSchema.parse(target.handleRequest({ type: "manifest", offset: 0 })) as Extract<
      Response,
      { type: "manifest" }
    >;
    return response.entries;
  };
  return { fs, target, hello, apply, manifest };
}

/** A writeFile of `text` at `path` with the given extra fields. */
function write(path: string, text: string, extra: Partial<Extract<Operation, { type: "writeFile" }>> = {}): Operation {
  const bytes = encoder.encode(text);
  return { type: "writeFile", path, hash: contentIdOf(bytes), size: bytes.length, ...extra };
}

const read = (fs: MemoryFileSystem, path: string) => decoder.decode(fs.readFile(`${ROOT}/${path}`));
const outcomes = (results: ApplyResult[]) => results.map((r) => (r.outcome === "failed" ? r.code : r.outcome));

describe("a directory's mode and mtime are final at the end of each request", () => {
  it("holds for a read-only directory written into in the same request and in later ones", () => {
    const { fs, apply, manifest } = targetMachine();
    const stated = (): void => {
      const stat = fs.lstat(`${ROOT}/d`);
      expect({ mode: stat.mode, mtime: stat.mtime }).toEqual({ mode: 0o555, mtime: DIR_MTIME });
      expect(fs.lstat(ROOT).mtime).toEqual(ROOT_MTIME);
    };
    const first = apply(
      [
        { type: "ensureDir", path: "", mtime: ROOT_MTIME },
        { type: "ensureDir", path: "d", mode: 0o555, mtime: DIR_MTIME },
        write("d/a", "a"),
        write("d/b", "b"),
      ],
      { "d/a": "a", "d/b": "b" },
    );
    expect(outcomes(first)).toEqual(["applied", "applied", "applied", "applied"]);
    stated();
    expect(read(fs, "d/a")).toBe("a");

    // A later request changes the directory's entries without stating it again.
    expect(outcomes(apply([write("d/c", "c"), write("top", "t")], { "d/c": "c", top: "t" }))).toEqual([
      "applied",
      "applied",
    ]);
    stated();
    // Replacing and removing set entries aside in the stash (a new entry of the root) and rename out of d.
    expect(outcomes(apply([write("d/a", "a2"), { type: "remove", path: "d/b" }], { "d/a": "a2" }))).toEqual([
      "applied",
      "applied",
    ]);
    stated();
    expect(fs.listDir(`${ROOT}/d`).sort()).toEqual(["a", "c"]);
    expect(read(fs, "d/a")).toBe("a2");
    // A subdirectory created in it, and a symlink.
    expect(
      outcomes(
        apply([
          { type: "ensureDir", path: "d/sub" },
          { type: "writeSymlink", path: "d/l", target: "a" },
        ]),
      ),
    ).toEqual(["applied", "applied"]);
    stated();
    expect(manifest().filter((e) => e.path === "" || e.path === "d")).toEqual([
      expect.objectContaining({ kind: "dir", path: "", mtime: ROOT_MTIME }),
      expect.objectContaining({ kind: "dir", path: "d", mode: 0o555, mtime: DIR_MTIME }),
    ]);
  });

  it("holds after the session ends and the stash is emptied (release)", () => {
    const { fs, target, apply } = targetMachine();
    apply(
      [
        { type: "ensureDir", path: "", mode: 0o750, mtime: ROOT_MTIME },
        { type: "ensureDir", path: "d", mode: 0o555, mtime: DIR_MTIME },
        write("d/a", "a"),
      ],
      { "d/a": "a" },
    );
    apply([{ type: "remove", path: "d/a" }]);
    expect(target.handleRequest({ type: "release" })).toMatchObject({ type: "released" });
    expect({ mode: fs.lstat(ROOT).mode, mtime: fs.lstat(ROOT).mtime }).toEqual({ mode: 0o750, mtime: ROOT_MTIME });
    expect({ mode: fs.lstat(`${ROOT}/d`).mode, mtime: fs.lstat(`${ROOT}/d`).mtime }).toEqual({
      mode: 0o555,
      mtime: DIR_MTIME,
    });
    expect(fs.listDir(ROOT)).toEqual(["d"]);
  });

  it("nested directories each keep their own stated mtime", () => {
    const { fs, apply } = targetMachine();
    const inner = { sec: 1_700_000_000, nsec: 0 };
    apply(
      [
        { type: "ensureDir", path: "d", mode: 0o755, mtime: DIR_MTIME },
        { type: "ensureDir", path: "d/e", mode: 0o500, mtime: inner },
        write("d/e/f", "f"),
        write("d/g", "g"),
      ],
      { "d/e/f": "f", "d/g": "g" },
    );
    expect(fs.lstat(`${ROOT}/d`).mtime).toEqual(DIR_MTIME);
    expect(fs.lstat(`${ROOT}/d/e`)).toMatchObject({ mode: 0o500, mtime: inner });
  });

  it("a restated directory takes the new values, and files keep theirs", () => {
    const { fs, apply } = targetMachine();
    apply(
      [
        { type: "ensureDir", path: "d", mode: 0o555, mtime: DIR_MTIME },
        write("d/f", "f", { mode: 0o640, mtime: FILE_MTIME }),
      ],
      { "d/f": "f" },
    );
    expect(fs.lstat(`${ROOT}/d/f`)).toMatchObject({ mode: 0o640, mtime: FILE_MTIME });
    const later = { sec: DIR_MTIME.sec + 1, nsec: 0 };
    expect(outcomes(apply([{ type: "ensureDir", path: "d", mode: 0o711, mtime: later }]))).toEqual(["applied"]);
    expect(fs.lstat(`${ROOT}/d`)).toMatchObject({ mode: 0o711, mtime: later });
    expect(outcomes(apply([{ type: "ensureDir", path: "d", mode: 0o711, mtime: later }]))).toEqual(["unchanged"]);
  });

  it("a file's metadata alone is brought in line without rewriting its bytes", () => {
    const { fs, apply } = targetMachine();
    apply([write("f", "same", { mode: 0o644, mtime: FILE_MTIME })], { f: "same" });
    const writes = fs.getNumOperations("writeFile");
    const results = apply([write("f", "same", { mode: 0o600, mtime: { sec: 1, nsec: 2 } })]);
    expect(results[0]).toMatchObject({ outcome: "applied", wroteFile: false });
    expect(fs.lstat(`${ROOT}/f`)).toMatchObject({ mode: 0o600, mtime: { sec: 1, nsec: 2 } });
    expect(fs.getNumOperations("writeFile")).toBe(writes);
  });

  it("an entry that is not there yet is looked up once, not again through the plain interface", () => {
    const { fs, apply } = targetMachine();
    apply([{ type: "ensureDir", path: "d", mode: 0o755, mtime: DIR_MTIME }]);
    const exists = fs.getNumOperations("exists");
    const contents = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`d/f${i}`, `bytes ${i}`]));
    const results = apply(
      Object.entries(contents).map(([path, text]) => write(path, text)),
      contents,
    );
    expect(outcomes(results)).toEqual(Array(20).fill("applied"));
    expect(read(fs, "d/f19")).toBe("bytes 19");
    expect(fs.getNumOperations("exists") - exists).toBe(0);
  });
});

describe("content the target holds stays reusable", () => {
  it("before a metadata-only change of the file holding it, a write without bytes finds them", () => {
    const { fs, apply } = targetMachine();
    apply([write("a", "shared bytes")], { a: "shared bytes" });
    // No content given: the target must take the bytes from what it holds (here, a).
    expect(outcomes(apply([write("b", "shared bytes")]))).toEqual(["applied"]);
    expect(read(fs, "b")).toBe("shared bytes");
  });

  it("after a metadata-only change of the file holding it, a write without bytes still finds them", () => {
    const { fs, apply } = targetMachine();
    apply([write("a", "shared bytes")], { a: "shared bytes" });
    // Only the mode and mtime change: the bytes (and their hash) stay.
    expect(outcomes(apply([write("a", "shared bytes", { mode: 0o600, mtime: FILE_MTIME })]))).toEqual(["applied"]);
    expect(fs.lstat(`${ROOT}/a`)).toMatchObject({ mode: 0o600, mtime: FILE_MTIME });
    expect(outcomes(apply([write("b", "shared bytes")]))).toEqual(["applied"]);
    expect(read(fs, "b")).toBe("shared bytes");
  });
});

describe("one file that cannot be committed fails alone", () => {
  it("an immutable file fails with code permission; the files around it commit", () => {
    const { fs, apply } = targetMachine();
    apply([{ type: "ensureDir", path: "d" }, write("d/b", "old b")], { "d/b": "old b" });
    fs.setImmutable(`${ROOT}/d/b`, true);
    const results = apply([write("d/a", "a"), write("d/b", "new b"), write("d/c", "c"), write("d/d", "d")], {
      "d/a": "a",
      "d/b": "new b",
      "d/c": "c",
      "d/d": "d",
    });
    expect(outcomes(results)).toEqual(["applied", "permission", "applied", "applied"]);
    expect(results[1]).toMatchObject({ outcome: "failed", wroteFile: false, bytesWritten: 0 });
    expect(results[1]!.reason).toMatch(/EPERM/);
    expect(["a", "b", "c", "d"].map((name) => read(fs, `d/${name}`))).toEqual(["a", "old b", "c", "d"]);
    // No temp is left behind in the directory.
    fs.setImmutable(`${ROOT}/d/b`, false);
    expect(fs.listDir(`${ROOT}/d`).sort()).toEqual(["a", "b", "c", "d"]);
  });

  it("an immutable directory fails every write into it with code permission", () => {
    const { fs, apply } = targetMachine();
    apply([{ type: "ensureDir", path: "d" }, write("ok", "ok")], { ok: "ok" });
    fs.setImmutable(`${ROOT}/d`, true);
    const results = apply([write("d/a", "a"), write("ok", "ok2"), { type: "remove", path: "d" }], {
      "d/a": "a",
      ok: "ok2",
    });
    expect(outcomes(results)).toEqual(["permission", "applied", "permission"]);
    expect(read(fs, "ok")).toBe("ok2");
  });
});

describe("a directory whose final metadata cannot be set", () => {
  it("turns the request's last result at or below it into a metadata failure", () => {
    const { fs, apply } = targetMachine();
    apply([{ type: "ensureDir", path: "d", mode: 0o755 }]);
    fs.setImmutable(`${ROOT}/d`, true);
    const results = apply(
      [write("top", "t"), { type: "ensureDir", path: "d", mode: 0o700, mtime: DIR_MTIME }, write("other", "o")],
      { top: "t", other: "o" },
    );
    expect(outcomes(results)).toEqual(["applied", "metadata", "applied"]);
    expect(results[1]!.reason).toMatch(/directory d/);
    expect(fs.lstat(`${ROOT}/d`).mode).toBe(0o755);
  });
});

describe("failureCodeOf", () => {
  it.each([
    ["EACCES", "permission"],
    ["EPERM", "permission"],
    ["EROFS", "read-only"],
    ["ENOSPC", "no-space"],
    ["EDQUOT", "no-space"],
    ["ELOOP", "unsafe-path"],
    ["ENOENT", "not-found"],
    ["ENOTDIR", "not-found"],
    ["EIO", "io"],
    ["EISDIR", "io"],
  ])("%s is %s, as a FileSystemError and as a Node error", (errno, code) => {
    expect(failureCodeOf(new FileSystemError(errno, "/p"))).toBe(code);
    expect(failureCodeOf(Object.assign(new Error(`${errno}: x`), { code: errno }))).toBe(code);
  });

  it("an error without a code is io, whatever its message says", () => {
    expect(failureCodeOf(new Error("content missing: permission denied"))).toBe("io");
    expect(failureCodeOf("missing")).toBe("io");
    expect(failureCodeOf(null)).toBe("io");
  });
});

describe("owners and groups", () => {
  const owned = (path: string, type: "file" | "dir" | "symlink"): Operation =>
    type === "file"
      ? write(path, "owned", { uid: 1234, gid: 567 })
      : type === "dir"
        ? { type: "ensureDir", path, uid: 1234, gid: 567 }
        : { type: "writeSymlink", path, target: "f", uid: 1234, gid: 567 };

  it("are applied when the target can set them, and its hello says so", () => {
    const { fs, hello, apply } = targetMachine({ canSetOwner: true });
    expect(hello).toMatchObject({ type: "hello", canSetOwner: true });
    const results = apply([owned("f", "file"), owned("d", "dir"), owned("l", "symlink")], { f: "owned" });
    expect(outcomes(results)).toEqual(["applied", "applied", "applied"]);
    for (const name of ["f", "d", "l"]) {
      expect(fs.lstat(`${ROOT}/${name}`), name).toMatchObject({ uid: 1234, gid: 567 });
    }
    // An existing directory whose owner differs is changed too.
    expect(outcomes(apply([{ type: "ensureDir", path: "d", uid: 99 }]))).toEqual(["applied"]);
    expect(fs.lstat(`${ROOT}/d`)).toMatchObject({ uid: 99, gid: 567 });
  });

  it("are not applied when it cannot, and its hello says so", () => {
    const { fs, hello, apply } = targetMachine({ canSetOwner: false });
    expect(hello).toMatchObject({ type: "hello", canSetOwner: false });
    const results = apply([owned("f", "file"), owned("d", "dir"), owned("l", "symlink")], { f: "owned" });
    expect(outcomes(results)).toEqual(["applied", "applied", "applied"]);
    for (const name of ["f", "d", "l"]) {
      expect(fs.lstat(`${ROOT}/${name}`), name).toMatchObject({ uid: 1000, gid: 1000 });
    }
    expect(read(fs, "f")).toBe("owned");
    // Restating only the owner of what is already there is nothing to do.
    expect(outcomes(apply([owned("f", "file"), owned("d", "dir")]))).toEqual(["unchanged", "unchanged"]);
  });
});

describe("hard links", () => {
  it("a writeFile with linkTo makes the same inode under a second name", () => {
    const { fs, apply, manifest } = targetMachine();
    const results = apply([write("a", "shared"), write("b", "shared", { linkTo: "a" })], { a: "shared" });
    expect(outcomes(results)).toEqual(["applied", "applied"]);
    expect(results[1]).toMatchObject({ wroteFile: false, bytesWritten: 0 });
    const [a, b] = [fs.lstat(`${ROOT}/a`), fs.lstat(`${ROOT}/b`)];
    expect(b.ino).toBe(a.ino);
    expect([a.nlink, b.nlink]).toEqual([2, 2]);
    expect(manifest().find((e) => e.path === "b")).toMatchObject({ kind: "file", linkTo: "a" });
    expect(manifest().find((e) => e.path === "a")).not.toHaveProperty("linkTo");
    // Stating the same link again changes nothing.
    expect(outcomes(apply([write("b", "shared", { linkTo: "a" })]))).toEqual(["unchanged"]);
  });

  it("new content through the leader, then the follower's link, updates both names (one request)", () => {
    const { fs, apply } = targetMachine();
    apply([write("a", "one"), write("b", "one", { linkTo: "a" })], { a: "one" });
    const results = apply([write("a", "two"), write("b", "two", { linkTo: "a" })], { a: "two" });
    expect(outcomes(results)).toEqual(["applied", "applied"]);
    expect([read(fs, "a"), read(fs, "b")]).toEqual(["two", "two"]);
    expect(fs.lstat(`${ROOT}/b`).ino).toBe(fs.lstat(`${ROOT}/a`).ino);
    expect(fs.lstat(`${ROOT}/a`).nlink).toBe(2);
  });

  it("new content through the leader, then the follower's link, updates both names (two requests)", () => {
    const { fs, apply } = targetMachine();
    apply([write("a", "one"), write("b", "one", { linkTo: "a" })], { a: "one" });
    expect(outcomes(apply([write("a", "two")], { a: "two" }))).toEqual(["applied"]);
    expect(outcomes(apply([write("b", "two", { linkTo: "a" })]))).toEqual(["applied"]);
    expect([read(fs, "a"), read(fs, "b")]).toEqual(["two", "two"]);
    expect(fs.lstat(`${ROOT}/b`).ino).toBe(fs.lstat(`${ROOT}/a`).ino);
    expect(fs.lstat(`${ROOT}/a`).nlink).toBe(2);
  });

  it("the metadata a link states is the shared inode's after-state, linked before or now", () => {
    const { fs, apply } = targetMachine();
    apply([write("a", "one", { mode: 0o644 }), write("b", "one", { linkTo: "a", mode: 0o644 })], { a: "one" });
    // Already linked: only the inode's mode and mtime change (a chmod through the second name).
    const restated = apply([write("b", "one", { linkTo: "a", mode: 0o600, mtime: FILE_MTIME })]);
    expect(outcomes(restated)).toEqual(["applied"]);
    expect(fs.lstat(`${ROOT}/a`)).toMatchObject({ mode: 0o600, mtime: FILE_MTIME, nlink: 2 });
    // Linked by this operation.
    apply([write("c", "two", { mode: 0o644 })], { c: "two" });
    expect(outcomes(apply([write("e", "two", { linkTo: "c", mode: 0o640, mtime: FILE_MTIME })]))).toEqual(["applied"]);
    expect(fs.lstat(`${ROOT}/e`)).toMatchObject({ mode: 0o640, mtime: FILE_MTIME, nlink: 2 });
  });

  it("a link to a leader that does not hold the stated content fails with missing-basis", () => {
    const { fs, apply } = targetMachine();
    apply([write("a", "one")], { a: "one" });
    const results = apply([write("b", "other", { linkTo: "a" }), write("c", "x", { linkTo: "nothing" })]);
    expect(outcomes(results)).toEqual(["missing-basis", "missing-basis"]);
    expect(fs.exists(`${ROOT}/b`)).toBe(false);
    expect(fs.lstat(`${ROOT}/a`).nlink).toBe(1);
  });
});

describe("the file system's own internal names", () => {
  it("no operation may name one (unsafe-path), at any depth", () => {
    const { fs, apply } = targetMachine();
    apply([{ type: "ensureDir", path: "d" }]);
    const internal = fs.internalName("x");
    expect(fs.isInternalName(internal)).toBe(true);
    const before = fs.debugString("/");
    const results = apply(
      [
        write(internal, "evil"),
        write(`d/${internal}`, "evil"),
        { type: "ensureDir", path: internal },
        { type: "writeSymlink", path: `d/${internal}`, target: "/" },
        { type: "remove", path: internal },
        write(`${internal}/f`, "evil"),
        write("d/f", "x", { linkTo: internal }),
      ],
      { [internal]: "evil", [`d/${internal}`]: "evil", [`${internal}/f`]: "evil" },
    );
    expect(outcomes(results).slice(0, 6)).toEqual(Array(6).fill("unsafe-path"));
    expect(results[6]!.outcome).toBe("failed");
    expect(fs.debugString("/")).toBe(before);
  });

  it("cannot reach the stash, where removed files wait for reuse", () => {
    const { fs, apply } = targetMachine();
    apply([write("f", "kept aside")], { f: "kept aside" });
    apply([{ type: "remove", path: "f" }]);
    const stash = fs.internalName("stash");
    const results = apply([{ type: "remove", path: stash }, write(`${stash}/0`, "x")], { [`${stash}/0`]: "x" });
    expect(outcomes(results)).toEqual(["unsafe-path", "unsafe-path"]);
  });

  it("a name that merely starts with the reserved prefix is user data", () => {
    const { fs, apply, manifest } = targetMachine();
    const results = apply([write(".mirrorlog-tmp-1", "mine"), { type: "ensureDir", path: ".mirrorlog-tmp-stash" }], {
      ".mirrorlog-tmp-1": "mine",
    });
    expect(outcomes(results)).toEqual(["applied", "applied"]);
    expect(read(fs, ".mirrorlog-tmp-1")).toBe("mine");
    expect(manifest().map((e) => e.path)).toEqual(["", ".mirrorlog-tmp-1", ".mirrorlog-tmp-stash"]);
  });
});
