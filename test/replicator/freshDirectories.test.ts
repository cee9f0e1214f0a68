// A target writes a new name in a directory it created during the burst without looking it up first
// (FreshDirectories). Whatever another process puts there meanwhile meets what it would after a lookup:
// a file is replaced, a directory fails that one write (left intact) and the source's retry converges.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { contentIdOf } from "../../src/content/contentId.js";
import { type ApplyEntry, PROTOCOL_VERSION, type Response } from "../../src/events/protocol.js";
import { NodeFileSystem } from "../../src/fs/nodeFileSystem.js";
import { FreshDirectories } from "../../src/replicator/freshDirectories.js";
import { ReplicatorTarget } from "../../src/replicator/target.js";

const LOG_ID = "0123456789abcdef";
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function writeEntry(seq: number, path: string, text: string): ApplyEntry {
  const bytes = new TextEncoder().encode(text);
  return {
    seq,
    operation: { type: "writeFile", path, hash: contentIdOf(bytes), size: bytes.length },
    content: { kind: "inline", encoding: "raw", data: bytes },
  };
}

function outcomes(response: Response): string[] {
  if (response.type !== "applied") throw new Error(JSON.stringify(response));
  return response.results.map((r) => `${r.seq} ${r.outcome}${r.outcome === "failed" ? ` ${r.code}: ${r.reason}` : ""}`);
}

describe("FreshDirectories", () => {
  it("knows a name absent only in a directory it saw created, until the name is used or all is forgotten", () => {
    const fresh = new FreshDirectories();
    expect(fresh.isAbsent("d/a")).toBe(false); // d was not created: unknown
    fresh.created("d");
    expect(fresh.isAbsent("d/a")).toBe(true);
    expect(fresh.isAbsent("d/e/a")).toBe(false);
    fresh.named("d/a");
    expect(fresh.isAbsent("d/a")).toBe(false);
    expect(fresh.isAbsent("d/b")).toBe(true);
    fresh.created("d/e");
    expect(fresh.isAbsent("d/e")).toBe(false); // named in d by its creation
    expect(fresh.isAbsent("d/e/a")).toBe(true);
    fresh.forget();
    expect(fresh.isAbsent("d/b")).toBe(false);
    expect(fresh.isAbsent("d/e/a")).toBe(false);
  });

  it("a racer's entries in a directory the target just created: a file is replaced, a directory fails alone, the retry converges", () => {
    const base = mkdtempSync(join(tmpdir(), "mirrorlog-fresh-"));
    dirs.push(base);
    const dst = join(base, "dst");
    mkdirSync(dst);
    const fs = new NodeFileSystem({ root: dst, durability: "batched", onProblem: () => {} });
    const target = new ReplicatorTarget(fs, dst);
    expect(target.handleRequest({ type: "hello", version: PROTOCOL_VERSION, logId: LOG_ID, epoch: 1 }).type).toBe(
      "hello",
    );
    const apply = (entries: ApplyEntry[]) => target.handleRequest({ type: "apply", logId: LOG_ID, epoch: 1, entries });

    expect(outcomes(apply([{ seq: 1, operation: { type: "ensureDir", path: "d" } }]))).toEqual(["1 applied"]);
    // Another process, between two requests: a directory (with a file of its own) and a file at names to come.
    mkdirSync(join(dst, "d", "x"));
    writeFileSync(join(dst, "d", "x", "inside"), "the racer's");
    writeFileSync(join(dst, "d", "y"), "the racer's");

    const second = outcomes(
      apply([writeEntry(2, "d/x", "x from the source"), writeEntry(3, "d/y", "y"), writeEntry(4, "d/z", "z")]),
    );
    expect(second[0]).toMatch(/^2 failed .*EISDIR/);
    expect(second.slice(1)).toEqual(["3 applied", "4 applied"]);
    expect(readFileSync(join(dst, "d", "x", "inside"), "utf8")).toBe("the racer's");
    expect(readFileSync(join(dst, "d", "y"), "utf8")).toBe("y");

    // The source plans the failed path again: now looked up, the directory is replaced.
    expect(outcomes(apply([writeEntry(5, "d/x", "x from the source")]))).toEqual(["5 applied"]);
    expect(readFileSync(join(dst, "d", "x"), "utf8")).toBe("x from the source");
    expect(existsSync(join(dst, "d", "x", "inside"))).toBe(false);
    expect(readdirSync(join(dst, "d")).sort()).toEqual(["x", "y", "z"]); // no temp left
    target.close();
  });
});
