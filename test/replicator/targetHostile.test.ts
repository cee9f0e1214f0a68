// A ReplicatorTarget facing a hostile or broken source: every request it must refuse gets an error
// response (or a failed result) that names the path and the reason, and nothing changes anywhere on
// the target machine: the whole file system renders the same and no file is written.

import { describe, expect, it } from "vitest";
import { encodeLiteral } from "../../src/content/compression.js";
import { contentIdOf } from "../../src/content/contentId.js";
import {
  type ApplyEntry,
  PROTOCOL_VERSION,
  type Request,
  type Response,
  ResponseSchema,
} from "../../src/events/protocol.js";
import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { ReplicatorTarget } from "../../src/replicator/target.js";
import { connectInProcess } from "../../src/transport/inProcess.js";

const LOG_ID = "0123456789abcdef";
const ROOT = "/x/y/z";
const encoder = new TextEncoder();

/** A target machine with a canary beside the root and a file inside it. */
function targetMachine(options: { maxFileBytes?: number } = {}) {
  const fs = new MemoryFileSystem();
  fs.makeDirs("/x/outside/deep");
  fs.writeFile("/x/outside/keep", "outside canary");
  fs.makeDirs(ROOT);
  fs.writeFile("/x/y/sibling", "beside the root");
  fs.writeFile(`${ROOT}/f`, "old");
  const target = new ReplicatorTarget(fs, ROOT, options);
  return { fs, target };
}

function hello(target: ReplicatorTarget, epoch = 1): Response {
  return target.handleRequest({ type: "hello", version: PROTOCOL_VERSION, logId: LOG_ID, epoch });
}

function apply(entries: unknown[], epoch = 1): unknown {
  return { type: "apply", logId: LOG_ID, epoch, entries };
}

/** A writeFile entry carrying `text` as raw content. */
function writeEntry(seq: number, path: string, text: string): ApplyEntry {
  const bytes = encoder.encode(text);
  return {
    seq,
    operation: { type: "writeFile", path, hash: contentIdOf(bytes), size: bytes.length },
    content: { kind: "inline", encoding: "raw", data: bytes },
  };
}

/** Sends `request` and asserts the target machine is exactly as it was; returns the validated response. */
function sendChangingNothing(fs: MemoryFileSystem, target: ReplicatorTarget, request: unknown): Response {
  const before = fs.debugString("/");
  const writes = fs.getNumOperations("writeFile");
  const applied = target.appliedPosition();
  const response = ResponseSchema.parse(target.handleRequest(request));
  const after = fs.debugString("/");
  expect(after, `before:\n${before}\nafter:\n${after}`).toBe(before);
  expect(fs.getNumOperations("writeFile"), "files written").toBe(writes);
  expect(target.appliedPosition(), "applied position").toEqual(applied);
  return response;
}

function expectError(response: Response, code: string, message: RegExp, path?: string): void {
  expect(response, JSON.stringify(response)).toMatchObject({ type: "error", code });
  if (response.type !== "error") return;
  expect(response.message).toMatch(message);
  if (path !== undefined) expect(response.path).toBe(path);
}

const UNSAFE_PATHS: [path: string, reason: RegExp][] = [
  ["..", /".." segment/],
  ["../x", /".." segment/],
  ["a/../../x", /".." segment/],
  ["/etc/passwd", /absolute/],
  ["a//b", /empty segment/],
  ["a\u0000b", /NUL/],
  ["n".repeat(256), /segment over 255 bytes/],
];

describe("a target refuses unsafe paths before touching anything", () => {
  const operationsAt = (path: string) => [
    writeEntry(1, path, "evil"),
    { seq: 1, operation: { type: "remove", path } },
    { seq: 1, operation: { type: "ensureDir", path } },
    { seq: 1, operation: { type: "writeSymlink", path, target: "/etc" } },
  ];

  it.each(UNSAFE_PATHS)("refuses %j in every operation type, naming it", (path, reason) => {
    const { fs, target } = targetMachine();
    hello(target);
    for (const entry of operationsAt(path)) {
      const response = sendChangingNothing(fs, target, apply([entry]));
      expectError(response, "unsafe-path", reason, path);
      expect((response as { message: string }).message).toContain(JSON.stringify(path));
    }
  });

  it("refuses the whole batch when a later entry is unsafe: the safe entries before it are not applied", () => {
    const { fs, target } = targetMachine();
    hello(target);
    const response = sendChangingNothing(
      fs,
      target,
      apply([writeEntry(1, "fine", "ok"), { seq: 2, operation: { type: "remove", path: "../outside" } }]),
    );
    expectError(response, "unsafe-path", /".." segment/, "../outside");
    expect(fs.exists(`${ROOT}/fine`)).toBe(false);
  });

  it("refuses a remove of the root itself", () => {
    const { fs, target } = targetMachine();
    hello(target);
    expectError(
      sendChangingNothing(fs, target, apply([{ seq: 1, operation: { type: "remove", path: "" } }])),
      "invalid-request",
      /root cannot be named/,
    );
  });
});

describe("a target never writes through a symlink inside its root", () => {
  function withLink() {
    const machine = targetMachine();
    machine.fs.makeSymlink(`${ROOT}/link`, "/x/outside");
    hello(machine.target);
    return machine;
  }

  it.each([
    ["writeFile", writeEntry(1, "link/f", "escaped")],
    ["writeFile over an outside file", writeEntry(1, "link/keep", "overwritten")],
    ["remove", { seq: 1, operation: { type: "remove", path: "link/keep" } }],
    ["removeDir", { seq: 1, operation: { type: "remove", path: "link/deep" } }],
    ["ensureDir", { seq: 1, operation: { type: "ensureDir", path: "link/newdir" } }],
    ["writeSymlink", { seq: 1, operation: { type: "writeSymlink", path: "link/s", target: "/" } }],
  ])("%s below the link fails, names the symlink, and changes nothing", (_label, entry) => {
    const { fs, target } = withLink();
    const outside = fs.debugString("/x/outside");
    const before = fs.debugString("/");
    const writes = fs.getNumOperations("writeFile");
    const response = ResponseSchema.parse(target.handleRequest(apply([entry])));
    expect(response.type, JSON.stringify(response)).toBe("applied");
    if (response.type !== "applied") return;
    expect(response.results).toHaveLength(1);
    expect(response.results[0]).toMatchObject({ seq: 1, outcome: "failed", wroteFile: false, bytesWritten: 0 });
    expect(response.results[0]!.reason).toMatch(/symlink link\b/);
    expect(response.results[0]!.code).toBe("unsafe-path");
    expect(fs.debugString("/x/outside")).toBe(outside);
    expect(fs.debugString("/")).toBe(before);
    expect(fs.getNumOperations("writeFile")).toBe(writes);
    expect(fs.readLink(`${ROOT}/link`)).toBe("/x/outside");
  });

  it("replaces the link itself, not what it points to, when the link is the operation's own path", () => {
    const { fs, target } = withLink();
    const outside = fs.debugString("/x/outside");
    const response = target.handleRequest(apply([writeEntry(1, "link", "now a file")]));
    expect(response).toMatchObject({ type: "applied", results: [{ outcome: "applied", wroteFile: true }] });
    expect(fs.lstat(`${ROOT}/link`).kind).toBe("file");
    expect(fs.debugString("/x/outside")).toBe(outside);
  });
});

describe("a listing request is confined like every other path", () => {
  it.each(UNSAFE_PATHS)("refuses a listing of %j, naming it", (path, reason) => {
    const { fs, target } = targetMachine();
    expectError(sendChangingNothing(fs, target, { type: "listing", dir: path }), "unsafe-path", reason, path);
  });

  it.each(["link", "link/deep"])("lists nothing of what %j leads to outside the root", (dir) => {
    const { fs, target } = targetMachine();
    fs.makeSymlink(`${ROOT}/link`, "/x/outside");
    const response = sendChangingNothing(fs, target, { type: "listing", dir });
    if (response.type === "error") expect(response.message).toMatch(/link/);
    else expect(response).toEqual({ type: "listing", dir, entries: [] });
  });
});

describe("a request cannot swap a directory it already used for something else", () => {
  it.each<[string, ApplyEntry, string]>([
    [
      "a symlink to outside the root",
      { seq: 3, operation: { type: "writeSymlink", path: "d", target: "/x/outside" } },
      "unsafe-path",
    ],
    ["a file", writeEntry(3, "d", "now a file"), "not-found"],
    ["nothing", { seq: 3, operation: { type: "remove", path: "d" } }, "not-found"],
  ])("a write below a directory replaced by %s later in the same request fails", (_label, swap, code) => {
    const { fs, target } = targetMachine();
    hello(target);
    const outside = fs.debugString("/x/outside");
    const response = ResponseSchema.parse(
      target.handleRequest(
        apply([
          { seq: 1, operation: { type: "ensureDir", path: "d" } },
          writeEntry(2, "d/f1", "one"),
          swap,
          writeEntry(4, "d/f2", "two"),
        ]),
      ),
    );
    expect(response.type, JSON.stringify(response)).toBe("applied");
    if (response.type !== "applied") return;
    expect(response.results.map((r) => r.outcome)).toEqual(["applied", "applied", "applied", "failed"]);
    expect(response.results[3]!.reason).toMatch(/\bd\b/);
    expect(response.results[3]!.code).toBe(code);
    expect(fs.debugString("/x/outside")).toBe(outside);
    expect(fs.exists("/x/outside/f2")).toBe(false);
    expect(fs.exists(`${ROOT}/d/f2`)).toBe(false);
  });
});

describe("a target refuses malformed requests", () => {
  it.each<[string, unknown]>([
    ["an unknown operation type", apply([{ seq: 1, operation: { type: "chmod", path: "f", mode: 0o777 } }])],
    ["an operation with an extra field", apply([{ seq: 1, operation: { type: "remove", path: "f", force: true } }])],
    [
      "a writeFile with a bad hash",
      apply([{ seq: 1, operation: { type: "writeFile", path: "g", hash: "x", size: 1 } }]),
    ],
    ["an empty batch", apply([])],
    ["a negative seq", apply([{ seq: -1, operation: { type: "remove", path: "f" } }])],
    ["an unknown request type", { type: "wipe", path: "" }],
    ["a request with a prototype key", JSON.parse('{"type":"manifest","offset":0,"__proto__":{"polluted":1}}')],
    ["null", null],
    ["a string", "apply"],
    ["an array", [apply([writeEntry(1, "g", "x")])]],
    [
      "content that is not bytes",
      apply([{ ...writeEntry(1, "g", "x"), content: { kind: "inline", encoding: "raw", data: [120] } }]),
    ],
    ["a hello with a non-hex log id", { type: "hello", version: PROTOCOL_VERSION, logId: "../../etc", epoch: 1 }],
  ])("refuses %s", (_label, request) => {
    const { fs, target } = targetMachine();
    hello(target);
    expectError(sendChangingNothing(fs, target, request), "invalid-request", /invalid request/);
    expect(({} as { polluted?: number }).polluted).toBeUndefined();
  });
});

describe("a target enforces the session and the order of positions", () => {
  it("refuses a hello with another protocol version, and then any apply", () => {
    const { fs, target } = targetMachine();
    const response = sendChangingNothing(fs, target, {
      type: "hello",
      version: PROTOCOL_VERSION + 1,
      logId: LOG_ID,
      epoch: 1,
    });
    expectError(response, "version-mismatch", new RegExp(`${PROTOCOL_VERSION + 1}.*${PROTOCOL_VERSION}`));
    expect(target.appliedPosition()).toBeNull();
    expectError(sendChangingNothing(fs, target, apply([writeEntry(1, "g", "x")])), "no-session", /before hello/);
  });

  it("refuses an apply before hello", () => {
    const { fs, target } = targetMachine();
    expectError(sendChangingNothing(fs, target, apply([writeEntry(1, "g", "x")])), "no-session", /before hello/);
  });

  it("refuses an apply for another log or epoch than the session's", () => {
    const { fs, target } = targetMachine();
    hello(target, 2);
    expectError(sendChangingNothing(fs, target, apply([writeEntry(1, "g", "x")], 3)), "stale-epoch", /epoch 3/);
    expectError(
      sendChangingNothing(fs, target, {
        ...(apply([writeEntry(1, "g", "x")]) as object),
        logId: "ffffffffffff",
        epoch: 2,
      }),
      "stale-epoch",
      /epoch/,
    );
  });

  it("refuses a hello for an older epoch of the log it follows", () => {
    const { fs, target } = targetMachine();
    hello(target, 5);
    expectError(
      sendChangingNothing(fs, target, { type: "hello", version: PROTOCOL_VERSION, logId: LOG_ID, epoch: 4 }),
      "stale-epoch",
      /epoch 4 is older than the applied epoch 5/,
    );
  });

  it("refuses a gap after the applied position", () => {
    const { fs, target } = targetMachine();
    hello(target);
    expect(target.handleRequest(apply([writeEntry(1, "g", "one")]))).toMatchObject({ type: "applied" });
    expectError(
      sendChangingNothing(fs, target, apply([writeEntry(3, "h", "three")])),
      "position-gap",
      /next position is 2, request starts at 3/,
    );
  });

  it("refuses non-consecutive positions inside one request without applying any of them", () => {
    const { fs, target } = targetMachine();
    hello(target);
    expectError(
      sendChangingNothing(fs, target, apply([writeEntry(1, "g", "one"), writeEntry(3, "h", "three")])),
      "position-gap",
      /not consecutive/,
    );
    expect(fs.exists(`${ROOT}/g`)).toBe(false);
  });

  it("answers a replayed position with duplicate and changes nothing, whatever the replay carries", () => {
    const { fs, target } = targetMachine();
    hello(target);
    expect(target.handleRequest(apply([writeEntry(1, "g", "first")]))).toMatchObject({
      type: "applied",
      results: [{ seq: 1, outcome: "applied", wroteFile: true }],
    });
    const response = sendChangingNothing(fs, target, apply([writeEntry(1, "g", "replayed with other bytes")]));
    expect(response).toEqual({
      type: "applied",
      results: [{ seq: 1, outcome: "duplicate", wroteFile: false, bytesWritten: 0 }],
      applied: { logId: LOG_ID, epoch: 1, seq: 1 },
    });
    const removeReplay = sendChangingNothing(fs, target, apply([{ seq: 1, operation: { type: "remove", path: "f" } }]));
    expect(removeReplay).toMatchObject({ type: "applied", results: [{ seq: 1, outcome: "duplicate" }] });
    expect(new TextDecoder().decode(fs.readFile(`${ROOT}/g`))).toBe("first");
  });

  it("applies only the new tail of a request that overlaps what it already applied", () => {
    const { fs, target } = targetMachine();
    hello(target);
    target.handleRequest(apply([writeEntry(1, "g", "one")]));
    const writes = fs.getNumOperations("writeFile");
    const response = target.handleRequest(apply([writeEntry(1, "g", "changed"), writeEntry(2, "h", "two")]));
    expect(response).toMatchObject({
      type: "applied",
      results: [
        { seq: 1, outcome: "duplicate" },
        { seq: 2, outcome: "applied", wroteFile: true },
      ],
      applied: { seq: 2 },
    });
    expect(fs.getNumOperations("writeFile")).toBe(writes + 1);
    expect(new TextDecoder().decode(fs.readFile(`${ROOT}/g`))).toBe("one");
  });
});

describe("a target verifies content before it makes a file visible", () => {
  function failedResult(request: unknown) {
    const { fs, target } = targetMachine();
    hello(target);
    const before = fs.debugString("/");
    const writes = fs.getNumOperations("writeFile");
    const response = ResponseSchema.parse(target.handleRequest(request));
    expect(response.type, JSON.stringify(response)).toBe("applied");
    expect(fs.debugString("/")).toBe(before);
    expect(fs.getNumOperations("writeFile")).toBe(writes);
    expect(new TextDecoder().decode(fs.readFile(`${ROOT}/f`))).toBe("old");
    const result = (response as Extract<Response, { type: "applied" }>).results[0]!;
    expect(result).toMatchObject({ seq: 1, outcome: "failed", wroteFile: false, bytesWritten: 0 });
    return result;
  }

  it("fails a write whose bytes do not match the declared hash, keeping the old file", () => {
    const claimed = encoder.encode("new");
    const sent = encoder.encode("bad");
    const result = failedResult(
      apply([
        {
          seq: 1,
          operation: { type: "writeFile", path: "f", hash: contentIdOf(claimed), size: 3 },
          content: { kind: "inline", encoding: "raw", data: sent },
        },
      ]),
    );
    expect(result.reason).toMatch(/hash mismatch/);
    expect(result.reason).toContain(contentIdOf(sent));
    expect(result.code).toBe("hash-mismatch");
  });

  it("fails a raw content whose length differs from the declared size", () => {
    const bytes = encoder.encode("longer than declared");
    const result = failedResult(
      apply([
        {
          seq: 1,
          operation: { type: "writeFile", path: "f", hash: contentIdOf(bytes), size: 4 },
          content: { kind: "inline", encoding: "raw", data: bytes },
        },
      ]),
    );
    expect(result.reason).toMatch(/declared 4/);
  });

  it("fails a zstd content that inflates past its declared size", () => {
    const inflated = new Uint8Array(1 << 20).fill(0x61); // 1 MiB of "a" compresses to a few dozen bytes
    const literal = encodeLiteral(inflated);
    expect(literal.encoding).toBe("zstd");
    expect(literal.data.length).toBeLessThan(200);
    const result = failedResult(
      apply([
        {
          seq: 1,
          operation: { type: "writeFile", path: "f", hash: contentIdOf(inflated.subarray(0, 16)), size: 16 },
          content: { kind: "inline", encoding: "zstd", data: literal.data },
        },
      ]),
    );
    expect(result.reason).toMatch(/inflates past the declared 16 bytes/);
  });

  it("fails a zstd content that is not a zstd frame", () => {
    const garbage = encoder.encode("definitely not zstd");
    const result = failedResult(
      apply([
        {
          seq: 1,
          operation: { type: "writeFile", path: "f", hash: contentIdOf(garbage), size: garbage.length },
          content: { kind: "inline", encoding: "zstd", data: garbage },
        },
      ]),
    );
    expect(result.reason).toMatch(/zstd/);
  });

  it("fails a write larger than the target accepts without decoding it", () => {
    const { fs, target } = targetMachine({ maxFileBytes: 8 });
    hello(target);
    const entry = writeEntry(1, "f", "nine bytes");
    const response = target.handleRequest(apply([entry]));
    expect(response).toMatchObject({ type: "applied", results: [{ outcome: "failed" }] });
    expect((response as Extract<Response, { type: "applied" }>).results[0]!.reason).toMatch(
      /exceeds the target's limit/,
    );
    expect(new TextDecoder().decode(fs.readFile(`${ROOT}/f`))).toBe("old");
  });

  it("fails a write that carries no content for bytes the target does not hold", () => {
    const bytes = encoder.encode("absent");
    const result = failedResult(
      apply([{ seq: 1, operation: { type: "writeFile", path: "f", hash: contentIdOf(bytes), size: bytes.length } }]),
    );
    expect(result.reason).toMatch(/missing/);
    expect(result.code).toBe("missing-content");
  });
});

describe("through the in-process transport", () => {
  it("an unsafe path is refused the same way after crossing the wire codec", () => {
    const { fs, target } = targetMachine();
    const { rpcHandle } = connectInProcess(target);
    expect(rpcHandle({ type: "hello", version: PROTOCOL_VERSION, logId: LOG_ID, epoch: 1 })).toMatchObject({
      type: "hello",
    });
    const before = fs.debugString("/");
    const response = rpcHandle(apply([{ seq: 1, operation: { type: "remove", path: "../outside" } }]) as Request);
    expectError(response, "unsafe-path", /".." segment/, "../outside");
    expect(fs.debugString("/")).toBe(before);
  });
});
