import { describe, expect, test } from "vitest";
import { FileSystemEventType } from "../../src/fs/fileSystem.js";
import { renderedTrees, type SeedMachines, seedMachines, startReplication } from "../support/seedHarness.js";

const { FILE_OR_SUBDIR_ADDED: ADDED, FILE_OR_SUBDIR_REMOVED: REMOVED, FILE_MODIFIED: MODIFIED } = FileSystemEventType;

function expectMirrored(m: SeedMachines): void {
  const { source, target } = renderedTrees(m);
  expect(target, `source:\n${source}\ntarget:\n${target}`).toBe(source);
}

describe("the seed's tasks", () => {
  test("initial sync: an empty target receives the whole source tree", () => {
    const m = seedMachines();
    m.sourceFs.makeDirs("/a/b/c/d/e");
    m.sourceFs.writeFile("/a/b/c/top.txt", "top");
    m.sourceFs.writeFile("/a/b/c/d/mid.txt", "mid");
    m.sourceFs.writeFile("/a/b/c/d/e/deep.txt", "deep");
    m.sourceFs.writeFile("/a/b/c/d/empty.txt", "");
    m.sourceFs.makeDirs("/a/b/c/emptydir");
    startReplication(m);
    expectMirrored(m);
    expect(m.targetFs.readFile("/x/y/z/d/e/deep.txt")).toEqual(new TextEncoder().encode("deep"));
    expect(m.targetFs.isDir("/x/y/z/emptydir")).toBe(true);
  });

  test("unrelated directories on both machines are untouched", () => {
    const m = seedMachines();
    m.sourceFs.makeDirs("/a/b/c/sub");
    m.sourceFs.writeFile("/a/b/c/sub/f", "f");
    m.sourceFs.makeDirs("/a/b/sibling");
    m.sourceFs.writeFile("/a/b/sibling/s", "source sibling");
    m.sourceFs.writeFile("/a/rootfile", "r");
    m.targetFs.makeDirs("/x/y/sibling");
    m.targetFs.writeFile("/x/y/sibling/t", "target sibling");
    m.targetFs.writeFile("/x/rootfile", "r2");
    const sourceOutside = m.sourceFs.debugString("/a/b/sibling") + m.sourceFs.readFile("/a/rootfile").join();
    const targetOutside = m.targetFs.debugString("/x/y/sibling") + m.targetFs.readFile("/x/rootfile").join();
    const r = startReplication(m);
    m.sourceFs.writeFile("/a/b/c/sub/g", "g");
    r.source.handleEvent({ path: "/a/b/c/sub/g", eventType: ADDED });
    expectMirrored(m);
    expect(m.sourceFs.debugString("/a/b/sibling") + m.sourceFs.readFile("/a/rootfile").join()).toBe(sourceOutside);
    expect(m.targetFs.debugString("/x/y/sibling") + m.targetFs.readFile("/x/rootfile").join()).toBe(targetOutside);
    expect(m.targetFs.listDir("/x/y").sort()).toEqual(["sibling", "z"]);
  });

  test("watching: changes after the initial sync are replicated, one event at a time", () => {
    const m = seedMachines();
    m.sourceFs.makeDirs("/a/b/c/d");
    const r = startReplication(m);
    m.sourceFs.writeFile("/a/b/c/d/f.txt", "one");
    r.source.handleEvent({ path: "/a/b/c/d/f.txt", eventType: ADDED });
    expectMirrored(m);
    m.sourceFs.writeFile("/a/b/c/d/f.txt", "two");
    r.source.handleEvent({ path: "/a/b/c/d/f.txt", eventType: MODIFIED });
    expectMirrored(m);
    // A hint naming an already replicated directory after files were added deep inside it.
    m.sourceFs.makeDirs("/a/b/c/d/e/f");
    m.sourceFs.writeFile("/a/b/c/d/e/f/g.txt", "deep");
    r.source.handleEvent({ path: "/a/b/c/d", eventType: ADDED });
    expectMirrored(m);
    expect(m.sourceFs.numWatchedDirs()).toBe(4);
    m.sourceFs.removeFile("/a/b/c/d/f.txt");
    r.source.handleEvent({ path: "/a/b/c/d/f.txt", eventType: REMOVED });
    expectMirrored(m);
  });

  test("watching: every source directory is watched, and nothing else", () => {
    const m = seedMachines();
    m.sourceFs.makeDirs("/a/b/c/d/e");
    m.sourceFs.makeDirs("/a/b/c/f");
    m.sourceFs.makeDirs("/a/b/unrelated");
    startReplication(m);
    expect(m.sourceFs.numWatchedDirs()).toBe(4); // c, c/d, c/d/e, c/f
    expect(m.targetFs.numWatchedDirs()).toBe(0);
  });

  test("unwatching: a removed subtree releases its watch and every watch below it", () => {
    const m = seedMachines();
    m.sourceFs.makeDirs("/a/b/c/d/e/f");
    m.sourceFs.makeDirs("/a/b/c/g");
    const r = startReplication(m);
    expect(m.sourceFs.numWatchedDirs()).toBe(5);
    m.sourceFs.removeDir("/a/b/c/d");
    r.source.handleEvent({ path: "/a/b/c/d", eventType: REMOVED });
    expect(m.sourceFs.numWatchedDirs()).toBe(2);
    expectMirrored(m);
    m.sourceFs.makeDirs("/a/b/c/d/h");
    r.source.handleEvent({ path: "/a/b/c/d", eventType: ADDED });
    expect(m.sourceFs.numWatchedDirs()).toBe(4);
    // A file replacing a watched directory releases its watch too.
    m.sourceFs.removeDir("/a/b/c/g");
    m.sourceFs.writeFile("/a/b/c/g", "now a file");
    r.source.handleEvent({ path: "/a/b/c/g", eventType: ADDED });
    expect(m.sourceFs.numWatchedDirs()).toBe(3);
    expectMirrored(m);
  });

  test("non-empty target: extra entries go, wrong kinds are replaced, it ends exactly equal", () => {
    const m = seedMachines();
    m.sourceFs.makeDirs("/a/b/c/dir_in_source");
    m.sourceFs.writeFile("/a/b/c/dir_in_source/inner", "inner");
    m.sourceFs.writeFile("/a/b/c/file_in_source", "file");
    m.sourceFs.writeFile("/a/b/c/identical", "same");
    m.sourceFs.writeFile("/a/b/c/different", "source version");
    m.targetFs.makeDirs("/x/y/z/file_in_source/nested"); // a directory where the source has a file
    m.targetFs.writeFile("/x/y/z/dir_in_source", "a file where the source has a directory");
    m.targetFs.writeFile("/x/y/z/identical", "same");
    m.targetFs.writeFile("/x/y/z/different", "target version");
    m.targetFs.writeFile("/x/y/z/extra", "extra");
    m.targetFs.makeDirs("/x/y/z/extra_dir/deeper");
    startReplication(m);
    expectMirrored(m);
    expect(m.targetFs.exists("/x/y/z/extra")).toBe(false);
    expect(m.targetFs.exists("/x/y/z/extra_dir")).toBe(false);
  });

  test("minimal writes: writeFile is called once per file whose bytes differ, never for identical ones", () => {
    const m = seedMachines();
    m.sourceFs.makeDirs("/a/b/c/d");
    m.sourceFs.writeFile("/a/b/c/same1", "same");
    m.sourceFs.writeFile("/a/b/c/d/same2", "also same");
    m.sourceFs.writeFile("/a/b/c/changed", "new");
    m.sourceFs.writeFile("/a/b/c/d/missing", "missing");
    m.targetFs.makeDirs("/x/y/z/d");
    m.targetFs.writeFile("/x/y/z/same1", "same");
    m.targetFs.writeFile("/x/y/z/d/same2", "also same");
    m.targetFs.writeFile("/x/y/z/changed", "old");
    const before = m.targetFs.getNumOperations("writeFile");
    const r = startReplication(m);
    expect(m.targetFs.getNumOperations("writeFile") - before).toBe(2);
    expectMirrored(m);
    // An event naming an unchanged file, or a directory of unchanged files, writes nothing.
    const afterInitial = m.targetFs.getNumOperations("writeFile");
    r.source.handleEvent({ path: "/a/b/c/same1", eventType: MODIFIED });
    r.source.handleEvent({ path: "/a/b/c/d", eventType: ADDED });
    expect(m.targetFs.getNumOperations("writeFile")).toBe(afterInitial);
    // Rewriting a file with the same bytes writes nothing either.
    m.sourceFs.writeFile("/a/b/c/changed", "new");
    r.source.handleEvent({ path: "/a/b/c/changed", eventType: MODIFIED });
    expect(m.targetFs.getNumOperations("writeFile")).toBe(afterInitial);
    m.sourceFs.writeFile("/a/b/c/changed", "newer");
    r.source.handleEvent({ path: "/a/b/c/changed", eventType: MODIFIED });
    expect(m.targetFs.getNumOperations("writeFile")).toBe(afterInitial + 1);
    expectMirrored(m);
  });

  test("all of these at once", () => {
    const m = seedMachines();
    m.sourceFs.makeDirs("/a/b/c/keep/deep");
    m.sourceFs.writeFile("/a/b/c/keep/deep/k", "k");
    m.sourceFs.writeFile("/a/b/c/keep/same", "same");
    m.sourceFs.makeDirs("/a/b/other");
    m.sourceFs.writeFile("/a/b/other/o", "outside");
    m.targetFs.makeDirs("/x/y/z/keep");
    m.targetFs.writeFile("/x/y/z/keep/same", "same");
    m.targetFs.writeFile("/x/y/z/keep/deep", "file where a dir belongs");
    m.targetFs.makeDirs("/x/y/z/gone/sub");
    m.targetFs.makeDirs("/x/y/other");
    m.targetFs.writeFile("/x/y/other/t", "target outside");
    const outside = m.sourceFs.debugString("/a/b/other") + m.targetFs.debugString("/x/y/other");
    const writesBefore = m.targetFs.getNumOperations("writeFile");
    const r = startReplication(m);
    expectMirrored(m);
    expect(m.targetFs.getNumOperations("writeFile") - writesBefore).toBe(1); // keep/deep/k only
    expect(m.sourceFs.numWatchedDirs()).toBe(3);
    m.sourceFs.removeDir("/a/b/c/keep/deep");
    r.source.handleEvent({ path: "/a/b/c/keep/deep", eventType: REMOVED });
    m.sourceFs.makeDirs("/a/b/c/new/one/two");
    m.sourceFs.writeFile("/a/b/c/new/one/two/file", "fresh");
    r.source.handleEvent({ path: "/a/b/c/new", eventType: ADDED });
    expectMirrored(m);
    expect(m.sourceFs.numWatchedDirs()).toBe(5);
    expect(m.sourceFs.debugString("/a/b/other") + m.targetFs.debugString("/x/y/other")).toBe(outside);
  });
});

describe("beyond the seed's tests", () => {
  test("every change passes through the log, with how it was detected and what the target did", () => {
    const m = seedMachines();
    m.sourceFs.makeDirs("/a/b/c");
    m.sourceFs.writeFile("/a/b/c/f", "1");
    const r = startReplication(m);
    m.sourceFs.writeFile("/a/b/c/f", "2");
    r.source.handleEvent({ path: "/a/b/c/f", eventType: MODIFIED });
    const history = r.log.history("f");
    expect(history.map((h) => [h.entry.operation.type, h.entry.detectedBy, h.result?.outcome])).toEqual([
      ["writeFile", "initial", "applied"],
      ["writeFile", "watch", "applied"],
    ]);
    expect(r.target.appliedPosition()).toEqual({ logId: r.log.logId, ...r.log.lastPosition() });
  });

  test("bytes crossing the RPC boundary are counted", () => {
    const m = seedMachines();
    m.sourceFs.makeDirs("/a/b/c");
    m.sourceFs.writeFile("/a/b/c/big", new Uint8Array(100_000).fill(7));
    const r = startReplication(m);
    expect(r.transport.stats.bytesSent).toBeGreaterThan(0);
    expect(r.transport.stats.bytesReceived).toBeGreaterThan(0);
    // Compressible content is compressed on the wire.
    expect(r.transport.stats.bytesSent).toBeLessThan(100_000);
  });

  test("events outside the source root are ignored", () => {
    const m = seedMachines();
    m.sourceFs.makeDirs("/a/b/c");
    m.sourceFs.writeFile("/a/b/outside", "o");
    const r = startReplication(m);
    const logged = r.log.lastPosition();
    r.source.handleEvent({ path: "/a/b/outside", eventType: ADDED });
    expect(r.log.lastPosition()).toEqual(logged);
    expectMirrored(m);
  });
});
