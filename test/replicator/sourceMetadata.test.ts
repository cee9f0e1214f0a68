// Metadata end to end (SourceSession → ReplicatorTarget on MemoryFileSystems): modes, exact mtimes of
// files, symlinks, directories and the root, owners when asked for and allowed, and hard links, after the
// initial sync and after every hinted change (a change of an entry restates its directory's mtime).
import { describe, expect, it } from "vitest";
import { FileSystemEventType } from "../../src/fs/fileSystem.js";
import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { DST, expectMirrored, metadataTree, replicate, SRC } from "./metadataHarness.js";

const { FILE_OR_SUBDIR_ADDED: ADDED, FILE_OR_SUBDIR_REMOVED: REMOVED, FILE_MODIFIED: MODIFIED } = FileSystemEventType;

/** A source tree with odd modes and exact, distinct mtimes everywhere (the root's included). */
function sourceMachine(options: { uid?: number } = {}) {
  const fs = new MemoryFileSystem({ uid: options.uid ?? 0, gid: options.uid ?? 0 });
  fs.makeDirs(`${SRC}/d/e`);
  fs.writeFile(`${SRC}/d/f`, "f");
  fs.writeFile(`${SRC}/d/e/g`, "g");
  fs.writeFile(`${SRC}/x`, "exec");
  fs.makeSymlink(`${SRC}/d/l`, "f");
  fs.setMetadata(`${SRC}/x`, { mode: 0o4755, mtime: { sec: -86_400, nsec: 1 } });
  fs.setMetadata(`${SRC}/d/f`, { mode: 0o600, mtime: { sec: 1_000, nsec: 999_999_999 } });
  fs.setMetadata(`${SRC}/d/l`, { mtime: { sec: 2_000, nsec: 5 } });
  fs.setMetadata(`${SRC}/d/e`, { mode: 0o500, mtime: { sec: 3_000, nsec: 0 } });
  fs.setMetadata(`${SRC}/d`, { mode: 0o555, mtime: { sec: 4_000, nsec: 4 } });
  fs.setMetadata(SRC, { mode: 0o750, mtime: { sec: 5_000, nsec: 5 } });
  return fs;
}

function targetMachine(): MemoryFileSystem {
  const fs = new MemoryFileSystem({ uid: 1000, gid: 1000 });
  fs.makeDirs(DST);
  return fs;
}

describe("metadata replicates", () => {
  it("initial sync: modes and exact mtimes of files, symlinks, directories and the root", () => {
    const sourceFs = sourceMachine();
    const targetFs = targetMachine();
    const { retried } = replicate(sourceFs, targetFs);
    expectMirrored(sourceFs, targetFs);
    expect(retried).toEqual([]);
  });

  it("a target that starts with the same bytes but other metadata gets the metadata, not the bytes again", () => {
    const sourceFs = sourceMachine();
    const targetFs = targetMachine();
    targetFs.makeDirs(`${DST}/d/e`);
    targetFs.writeFile(`${DST}/d/f`, "f");
    targetFs.writeFile(`${DST}/d/e/g`, "g");
    targetFs.writeFile(`${DST}/x`, "exec");
    const writes = targetFs.getNumOperations("writeFile");
    const { retried } = replicate(sourceFs, targetFs);
    expectMirrored(sourceFs, targetFs);
    expect(targetFs.getNumOperations("writeFile")).toBe(writes);
    expect(retried).toEqual([]);
  });

  it("after each hinted change, the changed entry's directory has the source's mtime again", () => {
    const sourceFs = sourceMachine();
    const targetFs = targetMachine();
    const { event, retried } = replicate(sourceFs, targetFs);
    sourceFs.writeFile(`${SRC}/d/new`, "new");
    event("d/new", ADDED);
    expectMirrored(sourceFs, targetFs);
    sourceFs.removeFile(`${SRC}/d/f`);
    event("d/f", REMOVED);
    expectMirrored(sourceFs, targetFs);
    sourceFs.writeFile(`${SRC}/d/e/g`, "g2");
    event("d/e/g", MODIFIED);
    expectMirrored(sourceFs, targetFs);
    sourceFs.setMetadata(`${SRC}/d/e/g`, { mode: 0o640 });
    event("d/e/g", MODIFIED);
    expectMirrored(sourceFs, targetFs);
    sourceFs.makeDir(`${SRC}/top`);
    sourceFs.setMetadata(`${SRC}/top`, { mode: 0o1777, mtime: { sec: 7, nsec: 7 } });
    event("top", ADDED);
    expectMirrored(sourceFs, targetFs);
    expect(retried).toEqual([]);
  });

  it("a file whose metadata alone changed still lends its bytes to a new copy (no bytes resent)", () => {
    const sourceFs = sourceMachine();
    const targetFs = targetMachine();
    const { event, retried } = replicate(sourceFs, targetFs);
    sourceFs.setMetadata(`${SRC}/x`, { mode: 0o700 });
    event("x", MODIFIED);
    expectMirrored(sourceFs, targetFs);
    // The target holds "exec" at x: the source sends no bytes for the copy, and the target must find them.
    sourceFs.writeFile(`${SRC}/copy`, "exec");
    event("copy", ADDED);
    expectMirrored(sourceFs, targetFs);
    expect(retried).toEqual([]);
  });

  it("owners replicate when the source preserves them and the target can set them", () => {
    const sourceFs = sourceMachine({ uid: 4321 });
    const targetFs = targetMachine();
    replicate(sourceFs, targetFs, { canSetOwner: true, preserveOwner: true, preserveGroup: true });
    expectMirrored(sourceFs, targetFs, { owners: true });
  });

  it("owners do not replicate when the target cannot set them, even if the source asks", () => {
    const sourceFs = sourceMachine({ uid: 4321 });
    const targetFs = targetMachine();
    const { session } = replicate(sourceFs, targetFs, { canSetOwner: false, preserveOwner: true, preserveGroup: true });
    expectMirrored(sourceFs, targetFs);
    for (const line of metadataTree(targetFs, DST, { owners: true })) expect(line).toContain(" 1000:1000");
    const logged = session.log.readAfter(1, 0).map((e) => e.operation);
    expect(logged.some((o) => "uid" in o || "gid" in o)).toBe(false);
  });
});

describe("hard links", () => {
  function linkedSource(): MemoryFileSystem {
    const fs = new MemoryFileSystem();
    fs.makeDirs(`${SRC}/d`);
    fs.writeFile(`${SRC}/a`, "one");
    fs.commitStaged([fs.stageLink(`${SRC}/a`, `${SRC}/d/b`)]);
    expect(fs.lstat(`${SRC}/d/b`).ino).toBe(fs.lstat(`${SRC}/a`).ino);
    return fs;
  }

  it("with hardLinks, linked names stay one inode on the target, across an edit through either name", () => {
    const sourceFs = linkedSource();
    const targetFs = targetMachine();
    const { event, retried } = replicate(sourceFs, targetFs, { hardLinks: true });
    expectMirrored(sourceFs, targetFs);
    expect(metadataTree(targetFs, DST).filter((l) => l.includes("linkA/2"))).toHaveLength(2);
    // An in-place write through the follower changes the leader's content too: both are planned.
    sourceFs.writeFile(`${SRC}/d/b`, "two");
    event("d/b", MODIFIED);
    expectMirrored(sourceFs, targetFs);
    sourceFs.writeFile(`${SRC}/a`, "three");
    event("a", MODIFIED);
    expectMirrored(sourceFs, targetFs);
    expect(retried).toEqual([]);
  });

  it.each([
    ["the follower", true, "d/b"],
    ["the leader", true, "a"],
    ["one name", false, "d/b"],
    ["the other name", false, "a"],
  ])(
    "a chmod and touch through %s reaches every name's copy on the target (hardLinks %s)",
    (_label, hardLinks, name) => {
      const sourceFs = linkedSource();
      const targetFs = targetMachine();
      const { event, retried } = replicate(sourceFs, targetFs, { hardLinks });
      sourceFs.setMetadata(`${SRC}/${name}`, { mode: 0o600, mtime: { sec: 77, nsec: 7 } });
      event(name, MODIFIED);
      // Without hardLinks the target's names are separate files: their metadata is compared, not their links.
      expectMirrored(sourceFs, targetFs, { links: hardLinks });
      expect(retried).toEqual([]);
    },
  );

  it.each([true, false])("a new session against an up-to-date target plans nothing (hardLinks %s)", (hardLinks) => {
    const sourceFs = linkedSource();
    const targetFs = targetMachine();
    // The target holds the names as links either way (another run, or rsync -H, made them).
    replicate(sourceFs, targetFs, { hardLinks: true });
    expect(targetFs.lstat(`${DST}/d/b`).nlink).toBe(2);
    const { session } = replicate(sourceFs, targetFs, { hardLinks });
    const planned = session.log.readAfter(1, 0).map((e) => e.operation);
    expect(planned).toEqual([]);
    expectMirrored(sourceFs, targetFs);
  });

  it("without hardLinks, an edit through one name still reaches the other name's copy", () => {
    const sourceFs = linkedSource();
    const targetFs = targetMachine();
    const { event } = replicate(sourceFs, targetFs);
    const read = (path: string) => new TextDecoder().decode(targetFs.readFile(`${DST}/${path}`));
    expect([read("a"), read("d/b")]).toEqual(["one", "one"]);
    expect(targetFs.lstat(`${DST}/a`).nlink).toBe(1);
    sourceFs.writeFile(`${SRC}/d/b`, "two");
    event("d/b", MODIFIED);
    expect([read("a"), read("d/b")]).toEqual(["two", "two"]);
  });
});
