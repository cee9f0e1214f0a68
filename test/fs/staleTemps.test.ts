// Temps of another writer (a crashed run, a live sync) are ordinary entries to this instance: listings
// never delete anything (a read-only `verify` once deleted a live sync's temps this way), and a crashed
// run's leftovers simply show up in the next listing, where the source's plan removes them.
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

describe("temp files of other writers", () => {
  it("a listing deletes nothing: another instance's temp is an ordinary entry, this instance's own are hidden", () => {
    const root = tempRoot();
    const writer = new NodeFileSystem({ root, durability: "none" });
    const reader = new NodeFileSystem({ root, durability: "none" });
    const live = writer.stageFile(join(root, "new.txt"), new TextEncoder().encode("new"), {});
    const liveName = live.tempPath.slice(root.length + 1);
    writeFileSync(join(root, `${RESERVED_PREFIX}dead00000001`), "half a file from a killed run");
    writeFileSync(join(root, "kept.txt"), "kept");
    const onDisk = readdirSync(root).sort();

    expect(reader.listDir(root)).toEqual([`${RESERVED_PREFIX}dead00000001`, liveName, "kept.txt"].sort());
    expect(reader.listDirStats(root).map((entry) => entry.name)).toEqual(reader.listDir(root));
    expect(writer.listDir(root)).toEqual([`${RESERVED_PREFIX}dead00000001`, "kept.txt"]);
    expect(readdirSync(root).sort()).toEqual(onDisk);

    // The writer's temp survived the other instance's listing and commits.
    expect(writer.commitStaged([live])).toEqual([]);
    expect(readdirSync(root).sort()).toEqual([`${RESERVED_PREFIX}dead00000001`, "kept.txt", "new.txt"]);
    writer.close();
    reader.close();
  });

  it("a crashed run's temp is removed like any entry, by the plan that finds it listed", () => {
    const root = tempRoot();
    const stale = join(root, `${RESERVED_PREFIX}dead00000001`);
    writeFileSync(stale, "x");
    const fs = new NodeFileSystem({ root });
    const listed = fs.listDir(root);
    expect(listed).toEqual([`${RESERVED_PREFIX}dead00000001`]);
    for (const name of listed) fs.removeFile(join(root, name));
    expect(existsSync(stale)).toBe(false);
    fs.close();
  });
});
