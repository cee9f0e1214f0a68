// The one spelling of a relative path a target accepts: every unsafe spelling is refused by the
// checker and by the operation schemas, and ordinary (if odd-looking) names are accepted.
import { describe, expect, it } from "vitest";
import { OperationSchema } from "../../src/events/operation.js";
import {
  childOf,
  escapeForDisplay,
  isAtOrBelow,
  MAX_PATH_BYTES,
  MAX_SEGMENT_BYTES,
  parentOf,
  RESERVED_PREFIX,
  relativePathProblem,
  segmentsOf,
} from "../../src/events/paths.js";

/** A path of exactly `bytes` UTF-8 bytes (4001 or more): twenty 199-byte segments, then one that fills the rest. */
function pathOfBytes(bytes: number): string {
  return `${"x".repeat(199)}/`.repeat(20) + "y".repeat(bytes - 4000);
}

const UNSAFE: [label: string, path: string, reason: RegExp][] = [
  ["parent", "..", /".." segment/],
  ["parent then name", "../x", /".." segment/],
  ["climbing out through a name", "a/../../x", /".." segment/],
  ["parent at the end", "a/..", /".." segment/],
  ["absolute", "/etc/passwd", /absolute/],
  ["double leading slash", "//x", /absolute/],
  ["empty segment", "a//b", /empty segment/],
  ["dot segment", "a/./b", /"\." segment/],
  ["trailing slash", "a/", /empty segment/],
  ["dot", ".", /"\." segment/],
  ["backslash", "a\\b", /backslash/],
  ["windows drive", "C:\\x", /backslash/],
  ["NUL byte", "a\u0000b", /NUL/],
  ["256-byte segment", "a".repeat(256), /segment over 255 bytes/],
  ["256-byte multibyte segment", "é".repeat(128), /segment over 255 bytes/],
  ["4097-byte path", pathOfBytes(4097), /longer than 4096 bytes/],
  ["reserved temp prefix", `${RESERVED_PREFIX}x`, /reserved temp prefix/],
  ["reserved temp prefix below a dir", `a/${RESERVED_PREFIX}`, /reserved temp prefix/],
  ["lone high surrogate", "a\ud800b", /well-formed/],
  ["lone low surrogate", "x/\udc00", /well-formed/],
];

const SAFE: [label: string, path: string][] = [
  ["one name", "a"],
  ["nested", "a/b/c"],
  ["spaces", "with space/ and more "],
  ["unicode", "日本/語/é/😀"],
  ["dots inside a name", "..a"],
  ["dots at the end", "a.."],
  ["three dots", "..."],
  ["hidden file", ".hidden"],
  ["leading dash", "-x"],
  ["reserved prefix not at the start", `a${RESERVED_PREFIX}x`],
  ["truncated reserved prefix", ".mirrorlog-tmp"],
  ["prototype key", "__proto__/constructor"],
  ["LIKE wildcards", "%/_"],
  ["255-byte segment", "a".repeat(MAX_SEGMENT_BYTES)],
  ["255-byte multibyte segment", `${"é".repeat(127)}a`],
  ["4096-byte path", pathOfBytes(MAX_PATH_BYTES)],
];

describe("relativePathProblem", () => {
  it("builds the boundary paths it means to", () => {
    expect(new TextEncoder().encode(pathOfBytes(4097)).length).toBe(4097);
    expect(new TextEncoder().encode(pathOfBytes(4096)).length).toBe(4096);
    expect(relativePathProblem(pathOfBytes(4096))).toBeNull();
  });

  it.each(UNSAFE)("refuses %s", (_label, path, reason) => {
    expect(relativePathProblem(path)).toMatch(reason);
  });

  it.each(SAFE)("accepts %s", (_label, path) => {
    expect(relativePathProblem(path)).toBeNull();
  });

  it("accepts the empty string as the root", () => {
    expect(relativePathProblem("")).toBeNull();
  });
});

describe("OperationSchema confines every operation's path", () => {
  const operationsAt = (path: string) => [
    { type: "ensureDir", path },
    { type: "writeFile", path, hash: "0".repeat(64), size: 0 },
    { type: "writeSymlink", path, target: "t" },
    { type: "remove", path },
  ];

  it.each(UNSAFE)("refuses %s in every operation type", (_label, path) => {
    for (const operation of operationsAt(path)) {
      const parsed = OperationSchema.safeParse(operation);
      expect(parsed.success, `${operation.type} ${JSON.stringify(path)}`).toBe(false);
      expect(parsed.error?.issues[0]?.message).toMatch(/^unsafe path/);
    }
  });

  it.each(SAFE)("accepts %s in every operation type", (_label, path) => {
    for (const operation of operationsAt(path)) expect(OperationSchema.parse(operation)).toEqual(operation);
  });

  it("lets only ensureDir name the root", () => {
    const [ensureDir, ...others] = operationsAt("");
    expect(OperationSchema.safeParse(ensureDir).success).toBe(true);
    for (const operation of others) expect(OperationSchema.safeParse(operation).success, operation.type).toBe(false);
  });

  it("refuses a path that is not a string", () => {
    for (const path of [undefined, null, 1, ["a"], { toString: () => "a" }]) {
      expect(OperationSchema.safeParse({ type: "remove", path }).success).toBe(false);
    }
  });
});

describe("path arithmetic", () => {
  it("parentOf, childOf and segmentsOf agree", () => {
    expect(parentOf("a")).toBe("");
    expect(parentOf("a/b/c")).toBe("a/b");
    expect(childOf("", "a")).toBe("a");
    expect(childOf("a/b", "c")).toBe("a/b/c");
    expect(segmentsOf("")).toEqual([]);
    expect(segmentsOf("a/b")).toEqual(["a", "b"]);
  });

  it("isAtOrBelow matches whole segments only", () => {
    expect(isAtOrBelow("", "anything/at/all")).toBe(true);
    expect(isAtOrBelow("a", "a")).toBe(true);
    expect(isAtOrBelow("a", "a/b")).toBe(true);
    expect(isAtOrBelow("a", "ab")).toBe(false);
    expect(isAtOrBelow("a", "ab/x")).toBe(false);
    expect(isAtOrBelow("a/b", "a")).toBe(false);
  });

  it("escapeForDisplay makes control characters visible", () => {
    expect(escapeForDisplay("a\u0000b\nc")).toBe("a\\u0000b\\nc");
    expect(escapeForDisplay("plain/é")).toBe("plain/é");
  });
});
