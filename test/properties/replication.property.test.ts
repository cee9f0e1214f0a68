// Laws of seed replication over two MemoryFileSystems (shared/SEED_API.md rules 1-7), checked after
// every step of random source mutations, plus replay idempotence of any suffix of the source's log.
// The oracle is a flat model of the source tree kept by the test, never the replicator's own state.
import { fc, test } from "@fast-check/vitest";
import { expect } from "vitest";
import { contentIdOf } from "../../src/content/contentId.js";
import type { ApplyEntry, ApplyRequest } from "../../src/events/protocol.js";
import { FileSystemEventType } from "../../src/fs/fileSystem.js";
import type { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import {
  type Replication,
  renderedTrees,
  type SeedMachines,
  seedMachines,
  startReplication,
} from "../support/seedHarness.js";

/** Runs per property; CI uses the default (200), a local soak sets MIRRORLOG_FC_RUNS higher. */
const NUM_RUNS = Number(process.env.MIRRORLOG_FC_RUNS ?? 200);

/** Few names so that adds collide with existing entries, and a small content pool so identical files occur. */
const NAMES = ["a", "b", "c", "d"] as const;
/** Contents include the empty file and one long enough for the wire to compress it. */
const CONTENTS = ["", "x", "y", "hello\nworld", "z".repeat(200)] as const;
/** Deepest entry below a root: "a/b/c". */
const MAX_DEPTH = 3;

/** A nested tree as generated: a name maps to a content index (file) or to a nested tree (directory). */
interface GeneratedDir {
  [name: string]: number | GeneratedDir;
}

const contentIndex = fc.nat({ max: CONTENTS.length - 1 });
const name = fc.constantFrom(...NAMES);

/** Trees whose entries lie at most `depth` levels deep. */
function generatedDir(depth: number): fc.Arbitrary<GeneratedDir> {
  const entry: fc.Arbitrary<number | GeneratedDir> =
    depth <= 1 ? contentIndex : fc.oneof(contentIndex, generatedDir(depth - 1));
  return fc.dictionary(name, entry, { maxKeys: NAMES.length });
}

/** The flat model of a tree: relative path → file content, or null for a directory. The root is implicit. */
type Model = Map<string, string | null>;

type Action = "writeFile" | "modifyFile" | "remove" | "addDir" | "replaceFileByDir" | "replaceDirByFile";

/** One random step: the pick numbers select among whatever exists when the step runs. */
interface Step {
  action: Action;
  pick: number;
  name: string;
  content: number;
  subtree: GeneratedDir;
  hintPick: number;
}

const step: fc.Arbitrary<Step> = fc.record({
  action: fc.constantFrom<Action>(
    "writeFile",
    "modifyFile",
    "remove",
    "addDir",
    "replaceFileByDir",
    "replaceDirByFile",
  ),
  pick: fc.nat(),
  name,
  content: contentIndex,
  subtree: generatedDir(MAX_DEPTH - 1),
  hintPick: fc.nat(),
});

function join(dir: string, child: string): string {
  return dir === "" ? child : `${dir}/${child}`;
}

function depthOf(path: string): number {
  return path === "" ? 0 : path.split("/").length;
}

function absolute(root: string, path: string): string {
  return path === "" ? root : `${root}/${path}`;
}

/** Writes `tree` below the existing directory `dir` (relative to `root`) on `fs` and in `model`, within MAX_DEPTH. */
function populate(fs: MemoryFileSystem, root: string, model: Model, dir: string, tree: GeneratedDir): void {
  for (const [childName, value] of Object.entries(tree)) {
    const path = join(dir, childName);
    if (depthOf(path) > MAX_DEPTH) continue;
    if (typeof value === "number") {
      fs.writeFile(absolute(root, path), CONTENTS[value]!);
      model.set(path, CONTENTS[value]!);
    } else {
      fs.makeDir(absolute(root, path));
      model.set(path, null);
      populate(fs, root, model, path, value);
    }
  }
}

function removeFromModel(model: Model, path: string): void {
  for (const key of [...model.keys()]) if (key === path || key.startsWith(`${path}/`)) model.delete(key);
}

function removeEntry(fs: MemoryFileSystem, root: string, model: Model, path: string): void {
  if (model.get(path) === null) fs.removeDir(absolute(root, path));
  else fs.removeFile(absolute(root, path));
  removeFromModel(model, path);
}

function dirsOf(model: Model): string[] {
  return ["", ...[...model.entries()].filter(([, v]) => v === null).map(([k]) => k)].sort();
}

function filesOf(model: Model): string[] {
  return [...model.entries()]
    .filter(([, v]) => v !== null)
    .map(([k]) => k)
    .sort();
}

/** Files of `after` whose bytes a mirror of `before` does not already hold at the same path. */
function changedFileCount(before: Model, after: Model): number {
  let count = 0;
  for (const [path, content] of after) if (content !== null && before.get(path) !== content) count++;
  return count;
}

/**
 * Applies one step to the source file system and the model; returns the path that changed and the
 * event type a watcher would report, or undefined when the step found nothing to act on.
 */
function mutate(
  fs: MemoryFileSystem,
  root: string,
  model: Model,
  s: Step,
): { path: string; eventType: FileSystemEventType } | undefined {
  const parents = dirsOf(model).filter((d) => depthOf(d) < MAX_DEPTH);
  const pickFrom = <T>(items: readonly T[]): T | undefined =>
    items.length === 0 ? undefined : items[s.pick % items.length];
  switch (s.action) {
    case "writeFile": {
      const path = join(pickFrom(parents)!, s.name);
      const existing = model.get(path);
      if (existing === null) removeEntry(fs, root, model, path); // a directory replaced by a file
      fs.writeFile(absolute(root, path), CONTENTS[s.content]!);
      model.set(path, CONTENTS[s.content]!);
      return {
        path,
        eventType:
          existing === undefined ? FileSystemEventType.FILE_OR_SUBDIR_ADDED : FileSystemEventType.FILE_MODIFIED,
      };
    }
    case "modifyFile": {
      const path = pickFrom(filesOf(model));
      if (path === undefined) return undefined;
      // Possibly the same bytes again: the target must then not write.
      fs.writeFile(absolute(root, path), CONTENTS[s.content]!);
      model.set(path, CONTENTS[s.content]!);
      return { path, eventType: FileSystemEventType.FILE_MODIFIED };
    }
    case "remove": {
      const path = pickFrom([...model.keys()].sort());
      if (path === undefined) return undefined;
      removeEntry(fs, root, model, path);
      return { path, eventType: FileSystemEventType.FILE_OR_SUBDIR_REMOVED };
    }
    case "addDir":
    case "replaceFileByDir": {
      const path = s.action === "addDir" ? join(pickFrom(parents)!, s.name) : pickFrom(filesOf(model));
      if (path === undefined) return undefined;
      if (model.has(path)) removeEntry(fs, root, model, path);
      fs.makeDir(absolute(root, path));
      model.set(path, null);
      populate(fs, root, model, path, s.subtree);
      return { path, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED };
    }
    case "replaceDirByFile": {
      const path = pickFrom(dirsOf(model).filter((d) => d !== ""));
      if (path === undefined) return undefined;
      removeEntry(fs, root, model, path);
      fs.writeFile(absolute(root, path), CONTENTS[s.content]!);
      model.set(path, CONTENTS[s.content]!);
      return { path, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED };
    }
  }
}

/** The path itself or one of its ancestors up to the root (""), chosen by `pick`. */
function hintFor(path: string, pick: number): string {
  const candidates = [path];
  for (let p = path; p !== ""; ) {
    const slash = p.lastIndexOf("/");
    p = slash < 0 ? "" : p.slice(0, slash);
    candidates.push(p);
  }
  return candidates[pick % candidates.length]!;
}

/** What must stay untouched on both machines: canaries beside the roots and the listings above them. */
function outsideState(r: SeedMachines): string {
  const listings = ["/", "/a", "/a/b", "/x", "/x/y"];
  return [
    r.sourceFs.debugString("/a/outside"),
    r.targetFs.debugString("/x/outside"),
    ...listings.filter((p) => r.sourceFs.exists(p)).map((p) => `source ${p}: ${r.sourceFs.listDir(p).join(",")}`),
    ...listings.filter((p) => r.targetFs.exists(p)).map((p) => `target ${p}: ${r.targetFs.listDir(p).join(",")}`),
  ].join("\n");
}

/** Builds both machines: canaries outside the roots, the initial trees inside them. */
function buildMachines(sourceTree: GeneratedDir, targetTree: GeneratedDir) {
  const machines = seedMachines();
  const sourceModel: Model = new Map();
  const targetModel: Model = new Map();
  machines.sourceFs.makeDirs(machines.sourceDir);
  machines.targetFs.makeDirs(machines.targetDir);
  machines.sourceFs.makeDirs("/a/outside/deep");
  machines.sourceFs.writeFile("/a/outside/keep", "source canary");
  machines.targetFs.makeDirs("/x/outside/deep");
  machines.targetFs.writeFile("/x/outside/keep", "target canary");
  machines.targetFs.writeFile("/x/y/sibling", "next to the target root");
  populate(machines.sourceFs, machines.sourceDir, sourceModel, "", sourceTree);
  populate(machines.targetFs, machines.targetDir, targetModel, "", targetTree);
  return { machines, sourceModel, targetModel };
}

function assertMirrors(r: Replication, model: Model, context: string): void {
  const { source, target } = renderedTrees(r);
  expect(target, `${context}\nsource:\n${source}\ntarget:\n${target}`).toBe(source);
  expect(r.sourceFs.numWatchedDirs(), `${context}: watched dirs\nsource:\n${source}`).toBe(dirsOf(model).length);
}

/** Every content of the pool by hash: all versions any run can write, so any log suffix can carry its bytes. */
const CONTENT_BY_HASH = new Map(CONTENTS.map((c) => [contentIdOf(new TextEncoder().encode(c)), c]));

test.prop([generatedDir(MAX_DEPTH), generatedDir(MAX_DEPTH), fc.array(step, { maxLength: 15 }), fc.nat()], {
  numRuns: NUM_RUNS,
})(
  "the target mirrors the source after every hinted step, with minimal writes and nothing outside touched",
  (sourceTree, targetTree, steps, suffixPick) => {
    const { machines, sourceModel, targetModel } = buildMachines(sourceTree, targetTree);
    const outsideBefore = outsideState(machines);
    const writesBefore = machines.targetFs.getNumOperations("writeFile");

    const r = startReplication(machines);
    assertMirrors(r, sourceModel, "after the initial sync");
    expect(r.targetFs.getNumOperations("writeFile") - writesBefore, "writes of the initial sync").toBe(
      changedFileCount(targetModel, sourceModel),
    );
    expect(outsideState(r), "outside the roots after the initial sync").toBe(outsideBefore);

    for (const [index, s] of steps.entries()) {
      const before = new Map(sourceModel);
      const change = mutate(r.sourceFs, r.sourceDir, sourceModel, s);
      const hint = change === undefined ? "" : hintFor(change.path, s.hintPick);
      const writes = r.targetFs.getNumOperations("writeFile");
      r.source.handleEvent({
        path: absolute(r.sourceDir, hint),
        eventType: change?.eventType ?? FileSystemEventType.FILE_MODIFIED,
      });
      const context = `step ${index} ${s.action} ${change?.path ?? "(nothing)"} hinted at ${JSON.stringify(hint)}`;
      assertMirrors(r, sourceModel, context);
      expect(r.targetFs.getNumOperations("writeFile") - writes, `${context}: target writes`).toBe(
        changedFileCount(before, sourceModel),
      );
      expect(outsideState(r), `${context}: outside the roots`).toBe(outsideBefore);
    }

    assertOutsideHintsAreIgnored(r);
    assertReplayIsDuplicate(r, suffixPick);
  },
);

/** Hints naming paths outside the root (one a sibling whose name extends the root's) log and change nothing. */
function assertOutsideHintsAreIgnored(r: Replication): void {
  r.sourceFs.writeFile("/a/b/cc", "a sibling whose name starts like the root");
  r.sourceFs.writeFile("/a/outside/keep", "changed outside the root");
  const head = r.source.log.lastPosition();
  const tree = r.targetFs.debugString("/");
  r.source.handleEvent({ path: "/a/b/cc", eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
  r.source.handleEvent({ path: "/a/outside/keep", eventType: FileSystemEventType.FILE_MODIFIED });
  r.source.handleEvent({ path: "/a/b", eventType: FileSystemEventType.FILE_MODIFIED });
  expect(r.source.log.lastPosition()).toEqual(head);
  expect(r.targetFs.debugString("/")).toBe(tree);
}

/** Re-sends a suffix of the source's log to the target: every entry is a duplicate and nothing changes. */
function assertReplayIsDuplicate(r: Replication, suffixPick: number): void {
  const head = r.source.log.lastPosition();
  if (head.seq === 0) return;
  const afterSeq = suffixPick % head.seq;
  const logged = r.source.log.readAfter(head.epoch, afterSeq);
  expect(logged.length).toBe(head.seq - afterSeq);
  const entries: ApplyEntry[] = logged.map(({ position, operation }) => {
    if (operation.type !== "writeFile") return { seq: position.seq, operation };
    const text = CONTENT_BY_HASH.get(operation.hash);
    expect(text, `content of ${operation.path} (${operation.hash}) is one of the pool`).toBeDefined();
    return {
      seq: position.seq,
      operation,
      content: { kind: "inline", encoding: "raw", data: new TextEncoder().encode(text) },
    };
  });
  const request: ApplyRequest = { type: "apply", logId: r.source.log.logId, epoch: head.epoch, entries };
  const treeBefore = r.targetFs.debugString("/");
  const writesBefore = r.targetFs.getNumOperations("writeFile");
  const appliedBefore = r.target.appliedPosition();

  const response = r.transport.rpcHandle(request);

  expect(response.type, JSON.stringify(response)).toBe("applied");
  if (response.type !== "applied") return;
  expect(response.results.map((x) => [x.seq, x.outcome, x.wroteFile])).toEqual(
    entries.map((e) => [e.seq, "duplicate", false]),
  );
  expect(response.applied).toEqual(appliedBefore);
  const treeAfter = r.targetFs.debugString("/");
  expect(treeAfter, `before:\n${treeBefore}\nafter:\n${treeAfter}`).toBe(treeBefore);
  expect(r.targetFs.getNumOperations("writeFile")).toBe(writesBefore);
}
