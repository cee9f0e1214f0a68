// Law: plan∘apply converges on metadata too. After random steps on the source (writes, chmod with any of
// the 12 bits, exact mtimes before and after 1970, new directories and symlinks, removals), each hinted
// at the changed path, the target renders exactly as the source: kinds, bytes, modes and mtimes of every
// entry, the root included.
import { fc, test } from "@fast-check/vitest";
import { FileSystemEventType } from "../../src/fs/fileSystem.js";
import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { DST, expectMirrored, replicate, SRC } from "../replicator/metadataHarness.js";

const NUM_RUNS = Number(process.env.MIRRORLOG_FC_RUNS ?? 100);
const NAMES = ["a", "b", "c"] as const;
const CONTENTS = ["", "x", "y"] as const;

type Action = "write" | "chmod" | "touch" | "mkdir" | "symlink" | "remove";

interface Step {
  action: Action;
  pick: number;
  name: (typeof NAMES)[number];
  content: number;
  mode: number;
  mtime: { sec: number; nsec: number };
}

const step: fc.Arbitrary<Step> = fc.record({
  action: fc.constantFrom<Action>("write", "chmod", "touch", "mkdir", "symlink", "remove"),
  pick: fc.nat(),
  name: fc.constantFrom(...NAMES),
  content: fc.nat({ max: CONTENTS.length - 1 }),
  mode: fc.integer({ min: 0, max: 0o7777 }),
  mtime: fc.record({
    sec: fc.integer({ min: -1e10, max: 1e10 }),
    nsec: fc.integer({ min: 0, max: 999_999_999 }),
  }),
});

/** Relative paths of every entry below the root (the root "" first), depth first. */
function entries(fs: MemoryFileSystem, path = ""): string[] {
  const absolute = path === "" ? SRC : `${SRC}/${path}`;
  if (fs.lstat(absolute).kind !== "dir") return [path];
  return [path, ...fs.listDir(absolute).flatMap((name) => entries(fs, path === "" ? name : `${path}/${name}`))];
}

/** Applies one step to the source; returns the relative path to hint at and the event type. */
function mutate(fs: MemoryFileSystem, s: Step): { path: string; eventType: FileSystemEventType } | undefined {
  const all = entries(fs);
  const dirs = all.filter((p) => fs.lstat(p === "" ? SRC : `${SRC}/${p}`).kind === "dir" && p.split("/").length < 3);
  const at = (p: string) => (p === "" ? SRC : `${SRC}/${p}`);
  const pick = <T>(items: readonly T[]): T => items[s.pick % items.length]!;
  switch (s.action) {
    case "write":
    case "mkdir":
    case "symlink": {
      const dir = pick(dirs);
      const path = dir === "" ? s.name : `${dir}/${s.name}`;
      const existing = fs.lstatIfExists(at(path));
      if (existing?.kind === "dir") fs.removeDir(at(path));
      else if (existing !== undefined && s.action !== "write") fs.removeFile(at(path));
      if (s.action === "write") fs.writeFile(at(path), CONTENTS[s.content]!);
      if (s.action === "mkdir") fs.makeDir(at(path));
      if (s.action === "symlink") fs.makeSymlink(at(path), `../${s.name}`);
      return {
        path,
        eventType:
          existing === undefined ? FileSystemEventType.FILE_OR_SUBDIR_ADDED : FileSystemEventType.FILE_MODIFIED,
      };
    }
    case "chmod":
    case "touch": {
      const path = pick(all);
      fs.setMetadata(at(path), s.action === "chmod" ? { mode: s.mode } : { mtime: s.mtime });
      return { path, eventType: FileSystemEventType.FILE_MODIFIED };
    }
    case "remove": {
      const candidates = all.filter((p) => p !== "");
      if (candidates.length === 0) return undefined;
      const path = pick(candidates);
      if (fs.lstat(at(path)).kind === "dir") fs.removeDir(at(path));
      else fs.removeFile(at(path));
      return { path, eventType: FileSystemEventType.FILE_OR_SUBDIR_REMOVED };
    }
  }
}

test.prop([fc.array(step, { maxLength: 12 })], { numRuns: NUM_RUNS })(
  "the target holds the source's modes and exact mtimes after every hinted step",
  (steps) => {
    const sourceFs = new MemoryFileSystem();
    sourceFs.makeDirs(`${SRC}/d`);
    sourceFs.writeFile(`${SRC}/d/f`, "f");
    const targetFs = new MemoryFileSystem();
    targetFs.makeDirs(DST);
    const { event } = replicate(sourceFs, targetFs);
    expectMirrored(sourceFs, targetFs);
    for (const s of steps) {
      const change = mutate(sourceFs, s);
      if (change === undefined) continue;
      event(change.path, change.eventType);
      expectMirrored(sourceFs, targetFs);
    }
  },
);
