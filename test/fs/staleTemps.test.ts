import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RESERVED_PREFIX } from "../../src/fs/fileSystem.js";
import { NodeFileSystem } from "../../src/fs/nodeFileSystem.js";

const roots: string[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

function tempRoot(): string {
  const root = mkdtempSync(join(tmpdir(), "mirrorlog-stale-"));
  roots.push(root);
  return root;
}

describe("stale temp files of a crashed writer", () => {
  it("are removed when a listing meets them, while this instance's own staged temps survive to commit", () => {
    const root = tempRoot();
    writeFileSync(join(root, `${RESERVED_PREFIX}dead00000001`), "half a file from a killed run");
    writeFileSync(join(root, "kept.txt"), "kept");
    const fs = new NodeFileSystem({ root, removeStaleTemps: true, durability: "none" });
    const staged = fs.stageFile(join(root, "new.txt"), new TextEncoder().encode("new"), {});
    expect(fs.listDir(root)).toEqual(["kept.txt"]);
    expect(readdirSync(root).sort()).toEqual([staged.tempPath.split("/").pop(), "kept.txt"].sort());
    fs.commitStaged([staged]);
    expect(readdirSync(root).sort()).toEqual(["kept.txt", "new.txt"]);
  });

  it("are left alone without the option (a source never deletes anything)", () => {
    const root = tempRoot();
    const stale = join(root, `${RESERVED_PREFIX}dead00000001`);
    writeFileSync(stale, "x");
    new NodeFileSystem({ root }).listDir(root);
    expect(existsSync(stale)).toBe(true);
  });
});
