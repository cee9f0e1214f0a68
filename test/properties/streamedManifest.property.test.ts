// A whole-tree pass that reads the target's manifest listing by listing as its walk reaches each
// directory (and, one-shot, forgets each directory's files once planned) must leave the target exactly
// equal to the source, whatever both held before: entries only on one side, a file where the other has
// a directory, names that sort around "/" ("a-b", "a.b", "a/b"), excluded paths left alone, and pages of
// a few entries so that listings span pages. Failures print the seed and both trees.
import { fc, test } from "@fast-check/vitest";
import { expect } from "vitest";
import { DEFAULT_LIMITS } from "../../src/events/limits.js";
import { OperationLog } from "../../src/events/operationLog.js";
import { type Request, type Response, ResponseSchema } from "../../src/events/protocol.js";
import { type DigestCache, StateStore } from "../../src/events/stateStore.js";
import type { DirNode, TreeNode } from "../../src/events/tree.js";
import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { manifestFromTree } from "../../src/projections/expectedTree.js";
import { SourceSession } from "../../src/replicator/sourceSession.js";
import { StreamingSource } from "../../src/replicator/streamingSource.js";
import { ReplicatorTarget } from "../../src/replicator/target.js";

const NUM_RUNS = Number(process.env.MIRRORLOG_FC_RUNS ?? 150);
const NAMES = ["a", "a-b", "a.b", "ab", "b", "keep"] as const;
const CONTENTS = ["", "x", "y", "z".repeat(300)] as const;

interface GeneratedDir {
  [name: string]: number | GeneratedDir;
}

function generatedDir(depth: number): fc.Arbitrary<GeneratedDir> {
  const content = fc.nat({ max: CONTENTS.length - 1 });
  const entry: fc.Arbitrary<number | GeneratedDir> = depth <= 1 ? content : fc.oneof(content, generatedDir(depth - 1));
  return fc.dictionary(fc.constantFrom(...NAMES), entry, { maxKeys: NAMES.length });
}

function build(fs: MemoryFileSystem, dir: string, tree: GeneratedDir): void {
  for (const [name, entry] of Object.entries(tree)) {
    const path = `${dir}/${name}`;
    if (typeof entry === "number") fs.writeFile(path, CONTENTS[entry]!);
    else {
      fs.makeDirs(path);
      build(fs, path, entry);
    }
  }
}

/** Directories and files below `dir` as "path" / "path=content" lines, excluded names left out. */
function render(fs: MemoryFileSystem, dir: string, excluded: boolean, prefix = ""): string[] {
  const lines: string[] = [];
  for (const name of [...fs.listDir(`${dir}${prefix}`)].sort()) {
    if (excluded && name === "keep") continue;
    const path = `${prefix}/${name}`;
    if (fs.isDir(`${dir}${path}`)) lines.push(`${path}/`, ...render(fs, dir, excluded, path));
    else lines.push(`${path}=${fs.readFile(`${dir}${path}`)}`);
  }
  return lines;
}

/** Paths of the files and symlinks a tree holds. */
function filesIn(node: TreeNode, prefix = ""): string[] {
  if (node.kind !== "dir") return node.kind === "unknown" ? [] : [prefix];
  return [...node.children].flatMap(([name, child]) => filesIn(child, `${prefix}/${name}`));
}

test.prop([generatedDir(3), generatedDir(3), fc.integer({ min: 1, max: 4 }), fc.boolean(), fc.boolean()], {
  numRuns: NUM_RUNS,
})("a streamed manifest leaves the target equal to the source", async (source, target, page, oneShot, exclude) => {
  const sourceFs = new MemoryFileSystem();
  const targetFs = new MemoryFileSystem();
  sourceFs.makeDirs("/src");
  targetFs.makeDirs("/dst");
  build(sourceFs, "/src", source);
  build(targetFs, "/dst", target);
  const keptAtTop = () => render(targetFs, "/dst", false).filter((line) => line.startsWith("/keep"));
  const keptBefore = keptAtTop();
  const replicator = new ReplicatorTarget(targetFs, "/dst", {
    limits: { ...DEFAULT_LIMITS, manifestPageEntries: page },
  });
  const manifestPages: number[] = [];
  const connection = {
    request: async (request: Request): Promise<Response> => {
      if (request.type === "manifest") manifestPages.push(request.offset);
      return ResponseSchema.parse(replicator.handleRequest(structuredClone(request)));
    },
  };
  const isExcluded = exclude ? (path: string) => path.split("/").at(-1) === "keep" : undefined;
  const session = new SourceSession({
    fs: sourceFs,
    root: "/src",
    log: new OperationLog(),
    oneShot,
    ...(isExcluded === undefined ? {} : { isExcluded }),
  });
  await new StreamingSource(session, connection).establish();

  const want = render(sourceFs, "/src", exclude).join("\n");
  const got = render(targetFs, "/dst", exclude).join("\n");
  expect(got, `source:\n${want}\n\ntarget:\n${got}`).toBe(want);
  // An excluded entry of the target's root is never touched.
  if (exclude) expect(keptAtTop()).toEqual(keptBefore);
  // One-shot, the expected tree keeps directories only (and what a retry planned again after the walk):
  // memory does not grow with the number of files.
  if (oneShot) {
    const head = session.log.lastPosition();
    const retried = session.log
      .readAfter(head.epoch, 0, 10_000)
      .filter((e) => e.detectedBy === "retry")
      .map((e) => `/${e.operation.path}`);
    expect(filesIn(session.expectedTree()).filter((path) => !retried.includes(path))).toEqual([]);
  }
  // The manifest was read a page at a time, each page once.
  expect(new Set(manifestPages).size).toBe(manifestPages.length);
});

/** Makes the tree at `dir` hold `tree`: what already matches is left as it is (its mtimes too). */
function reshape(fs: MemoryFileSystem, dir: string, tree: GeneratedDir): void {
  for (const name of fs.listDir(dir)) {
    const entry = tree[name];
    const path = `${dir}/${name}`;
    if (entry === undefined || typeof entry === "number" ? fs.isDir(path) : !fs.isDir(path)) {
      if (fs.isDir(path)) fs.removeDir(path);
      else fs.removeFile(path);
    }
  }
  for (const [name, entry] of Object.entries(tree)) {
    const path = `${dir}/${name}`;
    if (typeof entry !== "number") {
      if (!fs.exists(path)) fs.makeDir(path);
      reshape(fs, path, entry);
    } else if (!fs.exists(path) || new TextDecoder().decode(fs.readFile(path)) !== CONTENTS[entry]) {
      fs.writeFile(path, CONTENTS[entry]!);
    }
  }
}

test.prop([generatedDir(3), generatedDir(3), generatedDir(3), fc.integer({ min: 1, max: 4 }), fc.boolean()], {
  numRuns: NUM_RUNS,
})(
  "re-runs over a mirror read unchanged listings as digests: the target ends equal, unchanged costs nothing, drift is repaired",
  async (first, second, tamper, page, exclude) => {
    const sourceFs = new MemoryFileSystem();
    const targetFs = new MemoryFileSystem();
    sourceFs.makeDirs("/src");
    targetFs.makeDirs("/dst");
    build(sourceFs, "/src", first);
    // Persistent state on both sides, as the CLI keeps it: recorded listings and digests across the runs.
    const sourceState = new StateStore();
    const targetState = new StateStore();
    const replicator = new ReplicatorTarget(targetFs, "/dst", {
      limits: { ...DEFAULT_LIMITS, manifestPageEntries: page },
      index: targetState,
      digestCache: targetState,
    });
    const requests: Request["type"][] = [];
    let digests = 0;
    const connection = {
      request: async (request: Request): Promise<Response> => {
        requests.push(request.type);
        const response = ResponseSchema.parse(replicator.handleRequest(structuredClone(request)));
        if (response.type === "manifest") digests += response.entries.filter((e) => e.kind === "digest").length;
        return response;
      },
    };
    const isExcluded = exclude ? (path: string) => path.split("/").at(-1) === "keep" : undefined;
    // The source's own digests, recalled where its listing states as when recorded (the CLI keeps them too,
    // without exclusions): which directories' digests were recalled and how many were recorded, per run.
    const recalled = new Set<string>();
    let recorded = 0;
    const sourceDigests: DigestCache = {
      recallDigest: (dir, signature) => {
        const digest = sourceState.recallDigest(dir, signature);
        if (digest !== undefined) recalled.add(dir);
        return digest;
      },
      recordDigest: (...args) => {
        recorded++;
        sourceState.recordDigest(...args);
      },
    };
    // Each run a new session and log, as a run of another source would: the whole tree is compared.
    const run = async () => {
      requests.length = 0;
      digests = 0;
      recalled.clear();
      recorded = 0;
      const session = new SourceSession({
        fs: sourceFs,
        root: "/src",
        log: new OperationLog(),
        index: sourceState,
        ...(isExcluded === undefined ? { digestCache: sourceDigests } : { isExcluded }),
      });
      await new StreamingSource(session, connection).establish();
      const want = render(sourceFs, "/src", exclude).join("\n");
      const got = render(targetFs, "/dst", exclude).join("\n");
      expect(got, `source:\n${want}\n\ntarget:\n${got}`).toBe(want);
    };
    await run();
    reshape(sourceFs, "/src", second);
    await run();
    // Nothing changed: every listing the target states as a digest matches; none is read whole, nothing applied.
    // (Excluded names count on the target's side only: their directories are read whole.)
    await run();
    if (!exclude) expect(requests.filter((type) => type === "listing" || type === "apply")).toEqual([]);
    // ...every listing that fits a page came as a digest.
    const dirs = ["", ...render(targetFs, "/dst", false).filter((line) => line.endsWith("/"))].map((line) =>
      line.replace(/\/$/, ""),
    );
    const fitting = dirs.filter((dir) => {
      const children = targetFs.listDir(`/dst${dir}`).length;
      return children > 0 && children <= page;
    });
    expect(digests).toBe(fitting.length);
    // Once more: the source now recalls its own digest of each of them (recorded when last compared)
    // instead of computing it again.
    await run();
    if (!exclude) {
      expect(recalled.size).toBe(digests);
      expect(recorded).toBe(0);
    }
    // Changed on the target alone (contents rewritten, entries added): recorded digests must not hide it.
    reshape(targetFs, "/dst", tamper);
    await run();
  },
);

test.each([
  ["zzz", "aaa"],
  ["aaa", "zzz"],
])("a directory renamed from %s to %s is reused from what the target set aside, not sent again", async (from, to) => {
  const sourceFs = new MemoryFileSystem();
  const targetFs = new MemoryFileSystem();
  for (const [fs, root, dir] of [
    [sourceFs, "/src", to],
    [targetFs, "/dst", from],
  ] as const) {
    fs.makeDirs(`${root}/${dir}/inner`);
    fs.makeDirs(`${root}/mmm`);
    for (let i = 0; i < 5; i++) fs.writeFile(`${root}/${dir}/inner/f${i}`, `file ${i} `.repeat(40 + i));
  }
  const replicator = new ReplicatorTarget(targetFs, "/dst", { limits: { ...DEFAULT_LIMITS, manifestPageEntries: 2 } });
  const connection = {
    request: async (request: Request): Promise<Response> =>
      ResponseSchema.parse(replicator.handleRequest(structuredClone(request))),
  };
  const session = new SourceSession({ fs: sourceFs, root: "/src", log: new OperationLog(), oneShot: true });
  await new StreamingSource(session, connection).establish();
  expect(render(targetFs, "/dst", false)).toEqual(render(sourceFs, "/src", false));
  expect(session.stats.content).toMatchObject({ literal: 0, compressed: 0 });
  expect(session.stats.content.reused).toBeGreaterThan(0);
});

test("a tree handed out mid-walk stays as it was while later listings are adopted", async () => {
  const sourceFs = new MemoryFileSystem();
  const targetFs = new MemoryFileSystem();
  for (const [fs, root] of [
    [sourceFs, "/src"],
    [targetFs, "/dst"],
  ] as const) {
    for (const dir of ["a/x", "a/y", "b/x", "c"]) fs.makeDirs(`${root}/${dir}`);
    for (const dir of ["a/x", "a/y", "b/x", "c"]) fs.writeFile(`${root}/${dir}/f`, dir);
  }
  const replicator = new ReplicatorTarget(targetFs, "/dst", { limits: { ...DEFAULT_LIMITS, manifestPageEntries: 2 } });
  const session = new SourceSession({ fs: sourceFs, root: "/src", log: new OperationLog(), oneShot: true });
  const handedOut: { tree: DirNode; seen: string }[] = [];
  const connection = {
    request: async (request: Request): Promise<Response> => {
      // Each manifest page after the first: what the walk has adopted so far, as a caller would keep it.
      if (request.type === "manifest" && request.offset > 0) {
        const tree = session.expectedTree();
        handedOut.push({ tree, seen: JSON.stringify(manifestFromTree(tree)) });
      }
      return ResponseSchema.parse(replicator.handleRequest(structuredClone(request)));
    },
  };
  await new StreamingSource(session, connection).establish();
  expect(handedOut.length).toBeGreaterThan(2);
  for (const { tree, seen } of handedOut) {
    expect(JSON.stringify(manifestFromTree(tree))).toBe(seen);
  }
});
