// The target's manifest is produced lazily, one directory listing at a time (issue 10, memory): the pages
// must describe exactly the tree a whole-tree scan sees, parents first, while the walk holds no more than
// the page being served and what one directory listing adds.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DEFAULT_LIMITS } from "../../src/events/limits.js";
import { parentOf } from "../../src/events/paths.js";
import type { ManifestPageEntry } from "../../src/events/protocol.js";
import { ContentIndexMap, StateStore } from "../../src/events/stateStore.js";
import { type DirNode, type FileNode, nodeAt } from "../../src/events/tree.js";
import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { NodeFileSystem } from "../../src/fs/nodeFileSystem.js";
import {
  listingDigest,
  ManifestListings,
  ManifestOrderError,
  ManifestTreeBuilder,
  manifestFromTree,
  treeFromManifest,
} from "../../src/projections/expectedTree.js";
import { ManifestWalk } from "../../src/replicator/manifestWalk.js";
import { scanPath } from "../../src/replicator/scan.js";
import { ReplicatorTarget } from "../../src/replicator/target.js";
import { pollUntil } from "../support/cliRunner.js";

const ROOT = "/target";
/** An mtime utimes can set again exactly. */
const WHOLE_SECOND = 1_600_000_000;

/** A tree of `dirs` directories (nested three levels) with `perDir` files each. */
function populated(dirs: number, perDir: number): MemoryFileSystem {
  const fs = new MemoryFileSystem();
  fs.makeDirs(ROOT);
  for (let d = 0; d < dirs; d++) {
    const dir = `${ROOT}/a${d % 5}/b${d % 7}/c${d}`;
    fs.makeDirs(dir);
    for (let f = 0; f < perDir; f++) fs.writeFile(`${dir}/f${f}`, `${d}/${f}`);
  }
  return fs;
}

/** Every entry of the manifest, read in pages of `pageEntries` through the walk. */
function pagesOf(walk: ManifestWalk, pageEntries: number): { entries: ManifestPageEntry[]; largestHeld: number } {
  const entries: ManifestPageEntry[] = [];
  let largestHeld = 0;
  for (let offset = 0; ; ) {
    walk.releaseBefore(offset);
    let entry = walk.entryAt(offset);
    const start = offset;
    while (entry !== undefined && offset - start < pageEntries) {
      entries.push(entry);
      entry = walk.entryAt(++offset);
    }
    largestHeld = Math.max(largestHeld, (walk as unknown as { held: unknown[] }).held.length);
    if (entry === undefined) break;
  }
  return { entries, largestHeld };
}

describe("the manifest walk", () => {
  it("describes the same tree as a whole-tree scan, parents first, holding about a page at a time", () => {
    const fs = populated(60, 10);
    const { entries, largestHeld } = pagesOf(new ManifestWalk({ fs, root: ROOT, index: new ContentIndexMap() }), 25);
    const scanned = scanPath({ fs, root: ROOT, keepContentUpTo: -1, owners: { uid: true, gid: true } }, "");
    const whole = manifestFromTree(scanned.node as Parameters<typeof manifestFromTree>[0]);
    expect(entries).toHaveLength(whole.length);
    // treeFromManifest throws when a child comes before its parent.
    expect(manifestFromTree(treeFromManifest(entries))).toEqual(whole);
    // 60 directories × 10 files + 108 directories: far more than a page plus the largest listing (10 files).
    expect(largestHeld).toBeLessThanOrEqual(25 + 10 + 1);
  });

  it("serves pages through the target, and an offset it let go of restarts the walk instead of failing", () => {
    const fs = populated(30, 4);
    const target = new ReplicatorTarget(fs, ROOT);
    const all: ManifestPageEntry[] = [];
    let offset = 0;
    for (;;) {
      const page = target.handleRequest({ type: "manifest", offset });
      if (page.type !== "manifest") throw new Error(`expected a manifest page, got ${JSON.stringify(page)}`);
      all.push(...page.entries);
      offset += page.entries.length;
      if (page.complete) break;
    }
    const again = target.handleRequest({ type: "manifest", offset: 1 });
    expect(again.type === "manifest" && again.entries[0]).toEqual(all[1]);
  });

  it("answers a short first page, then lists the next page while no request comes (a few directories per turn)", async () => {
    const fs = populated(300, 10);
    let listings = 0;
    const listDirStats = fs.listDirStats.bind(fs);
    fs.listDirStats = (path: string) => {
      listings++;
      return listDirStats(path);
    };
    const target = new ReplicatorTarget(fs, ROOT, { limits: { ...DEFAULT_LIMITS, manifestPageEntries: 1000 } });
    const first = target.handleRequest({ type: "manifest", offset: 0 });
    if (first.type !== "manifest") throw new Error(`expected a manifest page, got ${JSON.stringify(first)}`);
    expect(first.entries.length).toBeLessThanOrEqual(512);
    expect(first.complete).toBe(false);
    const answered = listings;
    // One turn lists a few directories (their handles serve each other), not one, nor the whole page.
    await new Promise((resolve) => setImmediate(resolve));
    expect(listings - answered).toBeGreaterThan(1);
    expect(listings - answered).toBeLessThan(30);
    // No request: the walk goes on by itself until it holds the next page.
    await pollUntil(() => listings >= answered + 50, { deadlineMs: 5_000, describe: () => `${listings} listings` });
    const held = (target as unknown as { manifestWalk: { held: unknown[] } }).manifestWalk.held.length;
    expect(held).toBeGreaterThanOrEqual(1000);
    expect(held).toBeLessThanOrEqual(2 * 1000 + 11);
    // The pages read afterwards are the same walk: every entry once, parents first.
    const all = [...first.entries];
    for (let offset = all.length; ; ) {
      const page = target.handleRequest({ type: "manifest", offset });
      if (page.type !== "manifest") throw new Error(`expected a manifest page, got ${JSON.stringify(page)}`);
      all.push(...page.entries);
      offset += page.entries.length;
      if (page.complete) break;
    }
    const scanned = scanPath({ fs, root: ROOT, keepContentUpTo: -1, owners: { uid: true, gid: true } }, "");
    expect(all).toEqual(manifestFromTree(scanned.node as Parameters<typeof manifestFromTree>[0]));
  });

  it("a turn of listing ahead is bounded by the directories it lists: empty ones (digests of nothing) too", () => {
    const fs = new MemoryFileSystem();
    for (let d = 0; d < 300; d++) fs.makeDirs(`${ROOT}/e${d}`);
    let listings = 0;
    const listDirStats = fs.listDirStats.bind(fs);
    fs.listDirStats = (path: string) => {
      listings++;
      return listDirStats(path);
    };
    const digests = { attributes: ["mode", "mtime"] as const, fits: () => true, key: "test" };
    const walk = new ManifestWalk({ fs, root: ROOT, index: new ContentIndexMap(), digests });
    walk.entryAt(0); // the root, whose listing pushes the 300 directories
    const before = listings;
    expect(walk.listAhead(10_000, 16)).toBe(true);
    // Each empty directory counts as one: 16 directories, not all 300 of them in one turn.
    expect(listings - before).toBe(16);
  });

  it("builds the source's tree page by page, leaving out what `keep` rejects but counting it", () => {
    const fs = populated(10, 3);
    const { entries } = pagesOf(new ManifestWalk({ fs, root: ROOT, index: new ContentIndexMap() }), 7);
    const builder = new ManifestTreeBuilder();
    for (let i = 0; i < entries.length; i += 7) {
      builder.add(entries.slice(i, i + 7), (entry) => !entry.path.startsWith("a1"));
    }
    expect(builder.received).toBe(entries.length);
    expect(manifestFromTree(builder.tree)).toEqual(
      manifestFromTree(treeFromManifest(entries.filter((entry) => !entry.path.startsWith("a1")))),
    );
  });

  it("with digests, states each listing as one digest the source's own listing reproduces, a large one whole", () => {
    const fs = populated(12, 4);
    for (let f = 0; f < 30; f++) fs.writeFile(`${ROOT}/a0/wide${f}`, `${f}`);
    const attributes = ["mode", "mtime"] as const;
    const digests = { attributes, fits: (entries: readonly unknown[]) => entries.length <= 20, key: "" };
    const walk = new ManifestWalk({ fs, root: ROOT, index: new ContentIndexMap(), digests });
    const { entries } = pagesOf(walk, 5);
    const plain = pagesOf(new ManifestWalk({ fs, root: ROOT, index: new ContentIndexMap() }), 5).entries;
    const scanned = scanPath({ fs, root: ROOT, keepContentUpTo: -1, owners: { uid: true, gid: true } }, "");
    const dirOf = (path: string) => nodeAt(scanned.node as DirNode, path) as DirNode;

    // The root entry, then per directory either one digest or (a0: 35 children, over the page) its entries.
    expect(entries[0]).toEqual(plain[0]);
    const wide = entries.filter((entry) => entry.path.startsWith("a0/wide"));
    expect(wide).toHaveLength(30);
    const stated = entries.filter((entry) => entry.kind === "digest");
    const listedDirs = new Set(plain.slice(1).map((entry) => parentOf(entry.path)));
    expect(stated.map((entry) => entry.path).sort()).toEqual([...listedDirs].filter((dir) => dir !== "a0").sort());
    for (const entry of stated) {
      const children = dirOf(entry.path).children;
      expect(entry).toEqual({
        kind: "digest",
        path: entry.path,
        count: children.size,
        digest: listingDigest(children, attributes),
      });
      // What the digest stands for, read whole, is what the plain manifest lists there.
      expect(walk.listingOf(entry.path)).toEqual(plain.filter((e) => e.path !== "" && parentOf(e.path) === entry.path));
    }
    // A digest changes with any stated field of any child, and not with one that is not stated.
    const some = stated.find((entry) => [...dirOf(entry.path).children.values()].some((node) => node.kind === "file"))!;
    const children = new Map(dirOf(some.path).children);
    const [name, child] = [...children].find(([, node]) => node.kind === "file")!;
    children.set(name, { ...(child as FileNode), mtime: { sec: 1, nsec: 2 } });
    expect(listingDigest(children, attributes)).not.toBe(some.digest);
    children.set(name, { ...(child as FileNode), uid: 4242 });
    expect(listingDigest(children, attributes)).toBe(some.digest);
    expect(listingDigest(children, ["uid", ...attributes])).not.toBe(
      listingDigest(dirOf(some.path).children, ["uid", ...attributes]),
    );
  });

  it("a source reading digests refuses entries after a directory's digest and listings it did not ask for", () => {
    const listings = new ManifestListings();
    const digest = { kind: "digest" as const, path: "a", count: 1, digest: "0".repeat(64) };
    listings.add([{ kind: "dir", path: "" }, { kind: "dir", path: "a" }, digest], false);
    // A digest is a whole listing: the walk may adopt "a" before the next page.
    expect(listings.readyFor("a")).toBe(true);
    expect(() => listings.add([{ kind: "unknown", path: "a/x" }], false)).toThrow(ManifestOrderError);
    expect(() => listings.fill("b", [])).toThrow(ManifestOrderError);
    expect(() => listings.fill("a", [{ kind: "unknown", path: "elsewhere/x" }])).toThrow(ManifestOrderError);
    listings.fill("a", [{ kind: "unknown", path: "a/x" }]);
    expect(listings.takeUpTo("a")).toEqual([
      { dir: "", entries: [{ kind: "dir", path: "a" }] },
      { dir: "a", entries: [{ kind: "unknown", path: "a/x" }] },
    ]);
    expect(() => new ManifestTreeBuilder().add([digest])).toThrow(ManifestOrderError);
  });

  it("with a digest cache, an unchanged listing's digest is recalled; any change to a child's state is seen", () => {
    const root = mkdtempSync(join(tmpdir(), "mirrorlog-digest-cache-"));
    try {
      for (let d = 0; d < 6; d++) {
        mkdirSync(join(root, `d${d}`, "sub"), { recursive: true });
        for (let f = 0; f < 3; f++) writeFileSync(join(root, `d${d}`, `f${f}`), `${d}/${f}`);
      }
      utimesSync(join(root, "d1/f0"), WHOLE_SECOND, WHOLE_SECOND);
      const fs = new NodeFileSystem({ root, onProblem: () => {} });
      const cache = new StateStore();
      let recalled = 0;
      const counting = {
        recallDigest: (dir: string, signature: string) => {
          const found = cache.recallDigest(dir, signature);
          if (found !== undefined) recalled++;
          return found;
        },
        recordDigest: cache.recordDigest.bind(cache),
      };
      const attributes = ["mode", "mtime"] as const;
      const walk = (withCache: boolean) =>
        pagesOf(
          new ManifestWalk({
            fs,
            root,
            index: new ContentIndexMap(),
            digests: { attributes, fits: () => true, key: "k", ...(withCache ? { cache: counting } : {}) },
          }),
          7,
        ).entries;
      const first = walk(true);
      expect(recalled).toBe(0);
      expect(walk(true)).toEqual(first);
      // Every directory but the root: d0..d5 and their empty subdirectories (no digest: nothing in them).
      expect(recalled).toBe(6);

      // A file rewritten with its size and mtime kept, a mode, a new subdirectory, a removed file.
      writeFileSync(join(root, "d1/f0"), "X/0");
      utimesSync(join(root, "d1/f0"), WHOLE_SECOND, WHOLE_SECOND);
      chmodSync(join(root, "d2/f1"), 0o600);
      mkdirSync(join(root, "d3/new"));
      rmSync(join(root, "d4/f2"));
      recalled = 0;
      const changed = walk(true);
      expect(recalled).toBe(2);
      expect(changed).toEqual(walk(false));
      const digestOf = (entries: ManifestPageEntry[], path: string) =>
        entries.find((entry) => entry.kind === "digest" && entry.path === path);
      for (const dir of ["d1", "d2", "d3", "d4"]) expect(digestOf(changed, dir)).not.toEqual(digestOf(first, dir));
      for (const dir of ["d0", "d5"]) expect(digestOf(changed, dir)).toEqual(digestOf(first, dir));
      cache.close();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
