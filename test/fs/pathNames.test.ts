// normalizePath returns a normal path as it is and pathUnder joins without normalising (both save the
// kilobytes posix.normalize allocates per call on the apply path): each must agree with posix's definition.

import { posix } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { normalizePath, pathUnder } from "../../src/fs/fileSystem.js";

/** Segments around the cases normalisation cares about: empty, ".", "..", and names that only look like them. */
const segment = fc.constantFrom("a", "b", "", ".", "..", ".a", "..b", "...", "x y", "é", "a.", "-");
const absolutePath = fc.array(segment, { maxLength: 8 }).map((segments) => `/${segments.join("/")}`);

function normalizedByPosix(path: string): string {
  const normalized = posix.normalize(path);
  return normalized.length > 1 && normalized.endsWith("/") ? normalized.slice(0, -1) : normalized;
}

describe("normalizePath", () => {
  it("agrees with posix.normalize (without a trailing slash) for any absolute path", () => {
    fc.assert(
      fc.property(absolutePath, (path) => {
        expect(normalizePath(path)).toBe(normalizedByPosix(path));
      }),
      { numRuns: 5_000 },
    );
  });

  it("leaves normal paths, the root and dot-names alone, and normalises the others", () => {
    for (const path of ["/", "/a", "/a/b", "/.a/..b/...", "/a./b"]) expect(normalizePath(path)).toBe(path);
    expect(normalizePath("/a/")).toBe("/a");
    expect(normalizePath("//a//b")).toBe("/a/b");
    expect(normalizePath("/a/./b")).toBe("/a/b");
    expect(normalizePath("/a/b/..")).toBe("/a");
    expect(normalizePath("/..")).toBe("/");
  });
});

describe("pathUnder", () => {
  const relativePath = fc
    .array(fc.constantFrom("a", "b", ".a", "..b", "x y", "é"), { maxLength: 6 })
    .map((segments) => segments.join("/"));

  it("is posix.join for a normal relative path under any absolute root", () => {
    fc.assert(
      fc.property(fc.constantFrom("/", "/r", "/r/s", "/r/"), relativePath, (root, path) => {
        expect(pathUnder(root, path)).toBe(path === "" ? root : posix.join(root, path));
      }),
      { numRuns: 2_000 },
    );
  });
});
