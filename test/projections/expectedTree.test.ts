// The expected target tree is a pure fold of confirmed operations: each operation type's after-state,
// unknown marking for failed paths, manifest loading, and structural sharing across one batch.
import { describe, expect, it } from "vitest";
import type { Operation } from "../../src/events/operation.js";
import type { ManifestEntry } from "../../src/events/protocol.js";
import { type DirNode, emptyDir, nodeAt, sameNode, type TreeNode } from "../../src/events/tree.js";
import {
  adoptListings,
  foldExpectedTree,
  ManifestListings,
  ManifestOrderError,
  manifestEntryOf,
  manifestFromTree,
  nodeOf,
  treeFromManifest,
  withoutFilesOf,
} from "../../src/projections/expectedTree.js";

const H1 = "1".repeat(64);
const H2 = "2".repeat(64);

function dir(children: Record<string, TreeNode>, mode?: number): DirNode {
  const node = emptyDir(mode === undefined ? {} : { mode });
  for (const [name, child] of Object.entries(children)) node.children.set(name, child);
  return node;
}

function file(hash: string, size = 1): TreeNode {
  return { kind: "file", hash, size };
}

/** a/ (with f and deep/g), b/ (with h), top file t. */
function sampleTree(): DirNode {
  return dir({
    a: dir({ f: file(H1), deep: dir({ g: file(H2) }) }),
    b: dir({ h: file(H1) }),
    t: file(H2),
  });
}

describe("foldExpectedTree", () => {
  it("ensureDir creates a directory, replaces a file, and keeps an existing directory's children", () => {
    const tree = foldExpectedTree(sampleTree(), [
      { type: "ensureDir", path: "new" },
      { type: "ensureDir", path: "t", mode: 0o700 },
      { type: "ensureDir", path: "a", mode: 0o750 },
    ]);
    expect(nodeAt(tree, "new")).toEqual(emptyDir());
    expect(nodeAt(tree, "t")).toEqual(emptyDir({ mode: 0o700 }));
    const a = nodeAt(tree, "a") as DirNode;
    expect(a.mode).toBe(0o750);
    expect([...a.children.keys()].sort()).toEqual(["deep", "f"]);
  });

  it("ensureDir of the root only sets its mode", () => {
    const base = sampleTree();
    const withMode = foldExpectedTree(base, [{ type: "ensureDir", path: "", mode: 0o711 }]);
    expect(withMode.mode).toBe(0o711);
    expect(sameNode(withMode, base)).toBe(true);
    expect(foldExpectedTree(base, [{ type: "ensureDir", path: "" }])).toBe(base);
  });

  it("writeFile records hash, size and metadata, replacing whatever stood there", () => {
    const tree = foldExpectedTree(sampleTree(), [
      { type: "writeFile", path: "a/f", hash: H2, size: 5 },
      {
        type: "writeFile",
        path: "b",
        hash: H1,
        size: 7,
        mode: 0o600,
        mtime: { sec: 1234, nsec: 500_000_001 },
        uid: 1000,
        gid: 100,
      },
      { type: "writeFile", path: "a/deep/new", hash: H1, size: 0 },
    ]);
    expect(nodeAt(tree, "a/f")).toEqual({ kind: "file", hash: H2, size: 5 });
    expect(nodeAt(tree, "b")).toEqual({
      kind: "file",
      hash: H1,
      size: 7,
      mode: 0o600,
      mtime: { sec: 1234, nsec: 500_000_001 },
      uid: 1000,
      gid: 100,
    });
    expect(nodeAt(tree, "b/h")).toBeUndefined();
    expect(nodeAt(tree, "a/deep/new")).toEqual({ kind: "file", hash: H1, size: 0 });
  });

  it("ensureDir of an existing directory restates only the attributes it names", () => {
    const base = foldExpectedTree(sampleTree(), [
      { type: "ensureDir", path: "a", mode: 0o750, mtime: { sec: 10, nsec: 1 }, uid: 5 },
    ]);
    const tree = foldExpectedTree(base, [
      { type: "ensureDir", path: "a", mtime: { sec: 20, nsec: 2 } },
      { type: "ensureDir", path: "", mode: 0o700, mtime: { sec: 30, nsec: 3 }, gid: 7 },
    ]);
    const a = nodeAt(tree, "a") as DirNode;
    expect({ mode: a.mode, mtime: a.mtime, uid: a.uid, gid: a.gid }).toEqual({
      mode: 0o750,
      mtime: { sec: 20, nsec: 2 },
      uid: 5,
      gid: undefined,
    });
    expect({ mode: tree.mode, mtime: tree.mtime, gid: tree.gid }).toEqual({
      mode: 0o700,
      mtime: { sec: 30, nsec: 3 },
      gid: 7,
    });
    expect([...a.children.keys()].sort()).toEqual(["deep", "f"]);
  });

  it("writeFile with linkTo records the link; a later write without it drops it", () => {
    const linked = foldExpectedTree(sampleTree(), [
      { type: "writeFile", path: "b/h2", hash: H1, size: 1, linkTo: "b/h" },
    ]);
    expect(nodeAt(linked, "b/h2")).toEqual({ kind: "file", hash: H1, size: 1, linkTo: "b/h" });
    const unlinked = foldExpectedTree(linked, [{ type: "writeFile", path: "b/h2", hash: H1, size: 1 }]);
    expect(nodeAt(unlinked, "b/h2")).toEqual({ kind: "file", hash: H1, size: 1 });
  });

  it("writeSymlink records the link text", () => {
    const tree = foldExpectedTree(sampleTree(), [{ type: "writeSymlink", path: "a", target: "../elsewhere" }]);
    expect(nodeAt(tree, "a")).toEqual({ kind: "symlink", target: "../elsewhere" });
    expect(nodeAt(tree, "a/f")).toBeUndefined();
  });

  it("remove drops a file or a whole directory, and a missing path is a no-op", () => {
    const tree = foldExpectedTree(sampleTree(), [
      { type: "remove", path: "a" },
      { type: "remove", path: "t" },
      { type: "remove", path: "nothing/here" },
    ]);
    expect([...tree.children.keys()]).toEqual(["b"]);
  });

  it("applies a batch in order: later operations see earlier ones", () => {
    const tree = foldExpectedTree(emptyDir(), [
      { type: "ensureDir", path: "d" },
      { type: "writeFile", path: "d/f", hash: H1, size: 1 },
      { type: "remove", path: "d/f" },
      { type: "writeFile", path: "d/f", hash: H2, size: 2 },
    ]);
    expect(tree).toEqual(dir({ d: dir({ f: file(H2, 2) }) }));
  });

  it("marks a failed path unknown: it then equals nothing, so the planner rewrites it", () => {
    const tree = foldExpectedTree(sampleTree(), [{ type: "unknown", path: "a/f" }]);
    expect(nodeAt(tree, "a/f")).toEqual({ kind: "unknown" });
    expect(sameNode(nodeAt(tree, "a/f"), file(H1))).toBe(false);
    expect(sameNode(nodeAt(tree, "a/f"), nodeAt(tree, "a/f"))).toBe(false);
    expect(sameNode(tree, sampleTree())).toBe(false);
  });

  it("marks a path unknown below a parent that is no longer a directory", () => {
    const tree = foldExpectedTree(sampleTree(), [{ type: "unknown", path: "t/x/y" }]);
    expect(nodeAt(tree, "t")?.kind).toBe("dir");
    expect(nodeAt(tree, "t/x/y")).toEqual({ kind: "unknown" });
  });

  it("returns the same tree for an empty batch and never mutates its input", () => {
    const base = sampleTree();
    const snapshot = sampleTree();
    expect(foldExpectedTree(base, [])).toBe(base);
    foldExpectedTree(base, [
      { type: "remove", path: "a/f" },
      { type: "writeFile", path: "b/h", hash: H2, size: 9 },
      { type: "unknown", path: "t" },
    ]);
    expect(base).toEqual(snapshot);
  });

  it("keeps the tree when no change changes it, and freezes what a fold makes", () => {
    const base = foldExpectedTree(sampleTree(), [{ type: "ensureDir", path: "a", mode: 0o750 }]);
    expect(
      foldExpectedTree(base, [
        { type: "remove", path: "nothing/here" },
        { type: "remove", path: "t/below-a-file" },
        { type: "ensureDir", path: "a", mode: 0o750 },
      ]),
    ).toBe(base);
    const next = foldExpectedTree(base, [
      { type: "ensureDir", path: "n" },
      { type: "writeFile", path: "n/f", hash: H1, size: 1, mtime: { sec: 1, nsec: 2 } },
    ]);
    const n = next.children.get("n") as DirNode;
    const f = n.children.get("f") as TreeNode & { mtime: object };
    for (const value of [next, next.children, n, n.children, f, f.mtime]) expect(Object.isFrozen(value)).toBe(true);
  });

  it("shares every untouched subtree with the previous tree", () => {
    const base = sampleTree();
    const next = foldExpectedTree(base, [
      { type: "writeFile", path: "a/deep/g", hash: H1, size: 3 },
      { type: "ensureDir", path: "a/deep/sub" },
    ]);
    const a0 = base.children.get("a") as DirNode;
    const a1 = next.children.get("a") as DirNode;
    expect(next).not.toBe(base);
    expect(a1).not.toBe(a0);
    expect(a1.children.get("deep")).not.toBe(a0.children.get("deep"));
    // Untouched: siblings at every level along the changed path, and everything off it.
    expect(next.children.get("b")).toBe(base.children.get("b"));
    expect(next.children.get("t")).toBe(base.children.get("t"));
    expect(a1.children.get("f")).toBe(a0.children.get("f"));
  });

  it("folds a large batch into a large flat directory in one pass", () => {
    let tree = emptyDir();
    tree = foldExpectedTree(
      tree,
      Array.from({ length: 5000 }, (_, i) => ({ type: "writeFile" as const, path: `f${i}`, hash: H1, size: i })),
    );
    const next = foldExpectedTree(
      tree,
      Array.from({ length: 5000 }, (_, i) => ({ type: "writeFile" as const, path: `f${i}`, hash: H2, size: i })),
    );
    expect(next.children.size).toBe(5000);
    expect(nodeAt(next, "f4999")).toEqual(file(H2, 4999));
    expect(nodeAt(tree, "f4999")).toEqual(file(H1, 4999));
  });
});

describe("nodeOf and manifestEntryOf", () => {
  const MTIME = { sec: -5, nsec: 999_999_999 };
  const states: [Operation, ManifestEntry, TreeNode][] = [
    [
      { type: "ensureDir", path: "d", mode: 0o1777, mtime: MTIME, uid: 1, gid: 2 },
      { kind: "dir", path: "d", mode: 0o1777, mtime: MTIME, uid: 1, gid: 2 },
      { kind: "dir", children: new Map(), mode: 0o1777, mtime: MTIME, uid: 1, gid: 2 },
    ],
    [
      { type: "writeFile", path: "f", hash: H1, size: 3, linkTo: "e", mode: 0o4755, mtime: MTIME, uid: 0 },
      { kind: "file", path: "f", hash: H1, size: 3, linkTo: "e", mode: 0o4755, mtime: MTIME, uid: 0 },
      { kind: "file", hash: H1, size: 3, linkTo: "e", mode: 0o4755, mtime: MTIME, uid: 0 },
    ],
    [
      { type: "writeSymlink", path: "l", target: "../x", mtime: MTIME, gid: 9 },
      { kind: "symlink", path: "l", target: "../x", mtime: MTIME, gid: 9 },
      { kind: "symlink", target: "../x", mtime: MTIME, gid: 9 },
    ],
    [
      { type: "writeFile", path: "plain", hash: H2, size: 0 },
      { kind: "file", path: "plain", hash: H2, size: 0 },
      { kind: "file", hash: H2, size: 0 },
    ],
  ];

  it.each(states)("an operation, its manifest entry and its node state the same (%o)", (operation, entry, node) => {
    if (operation.type === "remove") throw new Error("not a state");
    expect(nodeOf(operation)).toEqual(node);
    expect(nodeOf(entry as Exclude<ManifestEntry, { kind: "unknown" }>)).toEqual(node);
    expect(manifestEntryOf(node, entry.path)).toEqual(entry);
  });

  it("a node's mtime is a copy: changing the operation's afterwards does not reach the tree", () => {
    const mtime = { sec: 1, nsec: 2 };
    const node = nodeOf({ type: "writeFile", path: "f", hash: H1, size: 1, mtime });
    mtime.sec = 99;
    expect(node).toEqual({ kind: "file", hash: H1, size: 1, mtime: { sec: 1, nsec: 2 } });
  });

  it("manifestFromTree and treeFromManifest are inverse, attributes and links included", () => {
    const tree = foldExpectedTree(
      emptyDir({ mode: 0o755, mtime: MTIME }),
      states.map(([operation]) => operation),
    );
    const manifest = manifestFromTree(tree);
    expect(manifest[0]).toEqual({ kind: "dir", path: "", mode: 0o755, mtime: MTIME });
    expect(treeFromManifest(manifest)).toEqual(tree);
  });
});

describe("treeFromManifest", () => {
  it("builds the tree from entries listed parents first, with the root's mode", () => {
    const entries: ManifestEntry[] = [
      { kind: "dir", path: "", mode: 0o755 },
      { kind: "dir", path: "a", mode: 0o700 },
      { kind: "file", path: "a/f", hash: H1, size: 4, mode: 0o644, mtime: { sec: 17, nsec: 5 } },
      { kind: "symlink", path: "a/l", target: "f" },
      { kind: "unknown", path: "fifo" },
      { kind: "file", path: "top", hash: H2, size: 0 },
    ];
    expect(treeFromManifest(entries)).toEqual(
      dir(
        {
          a: dir(
            {
              f: { kind: "file", hash: H1, size: 4, mode: 0o644, mtime: { sec: 17, nsec: 5 } },
              l: { kind: "symlink", target: "f" },
            },
            0o700,
          ),
          fifo: { kind: "unknown" },
          top: file(H2, 0),
        },
        0o755,
      ),
    );
  });

  it("gives an empty tree for an empty manifest", () => {
    expect(treeFromManifest([])).toEqual(emptyDir());
  });

  it("refuses a child listed before its parent", () => {
    expect(() =>
      treeFromManifest([
        { kind: "file", path: "a/f", hash: H1, size: 1 },
        { kind: "dir", path: "a" },
      ]),
    ).toThrow(/"a\/f" before its parent/);
  });

  it("refuses a child whose parent is not a directory", () => {
    expect(() =>
      treeFromManifest([
        { kind: "file", path: "a", hash: H1, size: 1 },
        { kind: "file", path: "a/f", hash: H1, size: 1 },
      ]),
    ).toThrow(/"a\/f" before its parent/);
  });
});

describe("manifest listings in walk order", () => {
  const file = (hash: string): TreeNode => ({ kind: "file", hash, size: 1 });
  const tree = dir({
    a: dir({ x: file(H1), sub: dir({ y: file(H2) }) }),
    "a-b": file(H1),
    b: dir({ z: file(H2) }),
  });

  it("a tree's manifest lists each directory's children together, directories in walk order", () => {
    const parents = manifestFromTree(tree)
      .slice(1)
      .map((e) => e.path.split("/").slice(0, -1).join("/"));
    expect(parents).toEqual(["", "", "", "a", "a", "a/sub", "b"]);
  });

  it("hands out each listing once it is whole, across pages", () => {
    const entries = manifestFromTree(tree);
    const listings = new ManifestListings();
    listings.add(entries.slice(0, 3), false); // the root and two of its three children
    expect(listings.readyFor("")).toBe(false);
    expect(listings.takeUpTo("")).toEqual([]);
    listings.add(entries.slice(3, 5), false); // the root's last child, then "a/sub" of a's listing
    expect(listings.readyFor("")).toBe(true);
    expect(listings.readyFor("a")).toBe(false);
    expect(listings.takeUpTo("a").map((l) => [l.dir, l.entries.length])).toEqual([["", 3]]);
    listings.add(entries.slice(5), true);
    expect(listings.readyFor("zzz")).toBe(true);
    expect(listings.takeUpTo("a/sub").map((l) => [l.dir, l.entries.length])).toEqual([
      ["a", 2],
      ["a/sub", 1],
    ]);
    expect(listings.received).toBe(entries.length);
  });

  it("refuses a manifest out of walk order", () => {
    const entries = manifestFromTree(tree);
    const listings = new ManifestListings();
    // "b"'s listing before "a"'s.
    expect(() => listings.add([entries[0]!, ...entries.slice(1, 4), entries[7]!, entries[4]!], false)).toThrow(
      ManifestOrderError,
    );
  });

  it("forgets a directory's files, keeping its subdirectories", () => {
    const pruned = withoutFilesOf(tree, "a");
    expect([...(nodeAt(pruned, "a") as DirNode).children.keys()]).toEqual(["sub"]);
    expect(nodeAt(pruned, "a/sub/y")).toEqual(file(H2));
    expect(nodeAt(tree, "a/x")).toEqual(file(H1));
  });

  it("adopts the source's own children whole, or (files left out) only their directories and unknowns", () => {
    const own = new Map<string, TreeNode>([
      ["x", file(H1)],
      ["l", { kind: "symlink", target: "x" }],
      ["odd", { kind: "unknown" }],
      ["sub", dir({ y: file(H2) })],
    ]);
    const start = dir({ a: dir({}) });
    const listings = [{ dir: "a", entries: [], own }];
    const whole = adoptListings(start, listings);
    expect([...(nodeAt(whole.tree, "a") as DirNode).children.keys()]).toEqual(["x", "l", "odd", "sub"]);
    expect(whole.leftOut).toEqual([]);
    const lean = adoptListings(start, listings, { ownFilesLeftOut: true });
    expect([...(nodeAt(lean.tree, "a") as DirNode).children.keys()]).toEqual(["odd", "sub"]);
    // The subdirectory comes empty (its own listing fills it); what the target holds is still counted.
    expect((nodeAt(lean.tree, "a/sub") as DirNode).children.size).toBe(0);
    expect(lean.adopted).toEqual(whole.adopted);
    expect(lean.adopted.map((node) => node.kind)).toEqual(["file", "symlink", "unknown"]);
    expect(lean.leftOut).toEqual(["a"]);
    // A listing read whole keeps its files either way.
    const read = adoptListings(start, [{ dir: "a", entries: [manifestEntryOf(file(H1), "a/x")] }], {
      ownFilesLeftOut: true,
    });
    expect(nodeAt(read.tree, "a/x")).toEqual(file(H1));
    expect(read.leftOut).toEqual([]);
  });
});
