// The one spelling of a relative path a target accepts: every unsafe spelling is refused by the
// checker and by the operation schemas, and ordinary (if odd-looking) names are accepted.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { OperationSchema } from "../../src/events/operation.js";
import {
  childOf,
  compareWalkOrder,
  escapeForDisplay,
  escapeUnsafeJson,
  isAtOrBelow,
  listedChildProblem,
  MAX_PATH_BYTES,
  MAX_SEGMENT_BYTES,
  MAX_SYMLINK_BYTES,
  parentOf,
  RESERVED_PREFIX,
  relativePathProblem,
  segmentsOf,
  symlinkTargetProblem,
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
  ["NUL byte", "a\u0000b", /NUL/],
  ["256-byte segment", "a".repeat(256), /segment over 255 bytes/],
  ["256-byte multibyte segment", "é".repeat(128), /segment over 255 bytes/],
  ["4097-byte path", pathOfBytes(4097), /longer than 4096 bytes/],
  ["lone high surrogate", "a\ud800b", /canonical spelling/],
  ["lone low surrogate", "x/\udc00", /canonical spelling/],
  // Byte escapes (fs/byteNames.ts) spelling bytes that are valid UTF-8: the canonical string is the text.
  ["escapes spelling valid UTF-8 (é)", "\uefc3\uefa9", /canonical spelling/],
  ["escapes spelling U+FF80 (valid UTF-8 EF BE 80)", "a/\uefef\uefbe\uef80", /canonical spelling/],
  ["escapes spelling a 4-byte character (😀)", "d/\ueff0\uef9f\uef98\uef80", /canonical spelling/],
  ["256 escaped bytes in a segment", "\uefff".repeat(256), /segment over 255 bytes/],
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
  // Linux names are bytes: a backslash is an ordinary character, and a name that merely looks like one of
  // mirrorlog's temps is user data (only a file system's own internal names are refused, by the target).
  ["backslash", "a\\b"],
  ["windows drive", "C:\\x"],
  ["reserved temp prefix", `${RESERVED_PREFIX}x`],
  ["reserved temp prefix below a dir", `a/${RESERVED_PREFIX}`],
  ["canonical escape of a byte that is not UTF-8", "a\uefff/\uef80"],
  ["canonical escapes of a real U+EF80 (EE BE 80)", "\uefee\uefbe\uef80"],
  ["escapes of bytes a slash separates", "\uefc3/\uefa9"],
  ["private-use text outside the escape range", "\uef41\uef7f\uf000"],
  ["prototype key", "__proto__/constructor"],
  ["LIKE wildcards", "%/_"],
  ["255-byte segment", "a".repeat(MAX_SEGMENT_BYTES)],
  ["255-byte multibyte segment", `${"é".repeat(127)}a`],
  ["4096-byte path", pathOfBytes(MAX_PATH_BYTES)],
  // Each escape stands for one byte: 255 of them fill a segment exactly.
  ["255 escaped bytes in a segment", "\uefff".repeat(MAX_SEGMENT_BYTES)],
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

  it("judges each segment as splitting the path would (random paths around empty, dot and long segments)", () => {
    const segmentProblem = (segment: string): string | null => {
      if (segment === "") return "has an empty segment";
      if (segment === "." || segment === "..") return `has a "${segment}" segment`;
      return new TextEncoder().encode(segment).length > MAX_SEGMENT_BYTES
        ? `has a segment over ${MAX_SEGMENT_BYTES} bytes`
        : null;
    };
    const segment = fc.constantFrom("", ".", "..", "...", ".a", "a.", "a", "é", "a".repeat(255), "é".repeat(128));
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 6 }), (segments) => {
        const path = segments.join("/");
        if (path === "" || path.startsWith("/")) return;
        const expected = segments.map(segmentProblem).find((problem) => problem !== null) ?? null;
        expect(relativePathProblem(path)).toBe(expected);
      }),
      { numRuns: 3_000 },
    );
  });
});

describe("listedChildProblem", () => {
  // What a directory listing can give: a name without slash or NUL, not "." or "..", at most 255 bytes.
  const listable = [...UNSAFE, ...SAFE]
    .map(([label, path]) => [label, path] as const)
    .filter(([, path]) => {
      const name = path.slice(path.lastIndexOf("/") + 1);
      const own = name === "" ? "empty" : relativePathProblem(name);
      return relativePathProblem(parentOf(path)) === null && (own === null || /canonical spelling/.test(own));
    });

  it("covers both verdicts", () => {
    expect(listable.some(([, path]) => relativePathProblem(path) === null)).toBe(true);
    expect(listable.filter(([, path]) => relativePathProblem(path) !== null).length).toBeGreaterThanOrEqual(5);
  });

  it.each(listable)("judges %s as relativePathProblem does", (_label, path) => {
    const slash = path.lastIndexOf("/");
    const [parent, name] = slash < 0 ? ["", path] : [path.slice(0, slash), path.slice(slash + 1)];
    expect(listedChildProblem(parent, name)).toBe(relativePathProblem(path));
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

  it("escapeForDisplay shows a byte that is not UTF-8 as \\xNN, and bidi or C1 controls as \\uXXXX", () => {
    expect(escapeForDisplay("a\uefff/\uef80b")).toBe("a\\xff/\\x80b");
    expect(escapeForDisplay("\uefee\uefbe\uef80")).toBe("\\xee\\xbe\\x80");
    expect(escapeForDisplay("evil\u202etxt.exe")).toBe("evil\\u202etxt.exe");
    expect(escapeForDisplay("a\u009bb\u007f")).toBe("a\\u009bb\\u007f");
  });

  it("escapeUnsafeJson keeps JSON valid and the same value, with terminal-active characters escaped", () => {
    const value = { path: "x\u2028y\u202ez\u0085\ufeff", plain: "é😀" };
    const escaped = escapeUnsafeJson(JSON.stringify(value));
    expect(escaped).not.toMatch(/[\u007f-\u009f\u2028\u202e\ufeff]/);
    expect(escaped).toContain("\\u2028");
    expect(escaped).toContain("é😀");
    expect(JSON.parse(escaped)).toEqual(value);
  });

  it("compareWalkOrder orders segment by segment, parents before children", () => {
    const paths = ["a-c", "a/b", "a", "b", "a/b/c", "", "a.b", "a/a"];
    expect([...paths].sort(compareWalkOrder)).toEqual(["", "a", "a/a", "a/b", "a/b/c", "a-c", "a.b", "b"]);
    expect(compareWalkOrder("x/y", "x/y")).toBe(0);
  });

  it("compareWalkOrder agrees with comparing the segments one by one, for any paths", () => {
    // The definition, which the character-by-character comparison must not drift from.
    const bySegments = (a: string, b: string): number => {
      const x = segmentsOf(a);
      const y = segmentsOf(b);
      for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! < y[i]! ? -1 : 1;
      return x.length - y.length;
    };
    // Names from characters around "/" in code-unit order (space, "-", ".", digits, letters, non-ASCII).
    const name = fc.string({
      unit: fc.constantFrom(" ", "-", ".", "0", "a", "b", "~", "é", "😀"),
      minLength: 1,
      maxLength: 3,
    });
    const path = fc.array(name, { maxLength: 4 }).map((names) => names.join("/"));
    fc.assert(
      fc.property(path, path, (a, b) => {
        expect(Math.sign(compareWalkOrder(a, b))).toBe(Math.sign(bySegments(a, b)));
      }),
      { numRuns: 2000 },
    );
  });
});

describe("symlinkTargetProblem", () => {
  it.each([
    ["absolute", "/etc/passwd"],
    ["climbing", "../../x"],
    ["backslashes", "a\\b"],
    ["a byte that is not UTF-8", "\uefff"],
    ["4095 bytes", "x".repeat(MAX_SYMLINK_BYTES)],
    ["4095 escaped bytes", "\uef80".repeat(MAX_SYMLINK_BYTES)],
  ])("stores any text: %s", (_label, target) => {
    expect(symlinkTargetProblem(target)).toBeNull();
  });

  it.each([
    ["empty", "", /empty/],
    ["NUL", "a\u0000b", /NUL/],
    ["4096 bytes", "x".repeat(MAX_SYMLINK_BYTES + 1), /longer than 4095 bytes/],
    ["4096 escaped bytes", "\uef80".repeat(MAX_SYMLINK_BYTES + 1), /longer than 4095 bytes/],
    ["a non-canonical escape", "\uefc3\uefa9", /canonical spelling/],
    ["a lone surrogate", "\ud800", /canonical spelling/],
  ])("refuses %s", (_label, target, reason) => {
    expect(symlinkTargetProblem(target)).toMatch(reason);
    const parsed = OperationSchema.safeParse({ type: "writeSymlink", path: "l", target });
    expect(parsed.success).toBe(false);
  });
});
