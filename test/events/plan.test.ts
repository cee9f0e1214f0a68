// plan(expected, observed) with metadata: each attribute the observed node states is compared, and a
// difference restates the entry with the observed values; a directory is restated before its children;
// hard links are compared only when the observed node states one.
import { describe, expect, it } from "vitest";
import { type Attributes, type Operation, OperationSchema } from "../../src/events/operation.js";
import { operationOf, planChanges } from "../../src/events/plan.js";
import { type DirNode, emptyDir, type FileNode, type SymlinkNode, type TreeNode } from "../../src/events/tree.js";

const H1 = "1".repeat(64);
const H2 = "2".repeat(64);
const T1 = { sec: 1_700_000_000, nsec: 123_456_789 };

function dir(children: Record<string, TreeNode>, attributes: Attributes = {}): DirNode {
  const node = emptyDir(attributes);
  for (const [name, child] of Object.entries(children)) node.children.set(name, child);
  return node;
}

function file(attributes: Attributes & { hash?: string; linkTo?: string } = {}): FileNode {
  const { hash = H1, ...rest } = attributes;
  return { kind: "file", hash, size: 1, ...rest };
}

function symlink(target: string, attributes: Omit<Attributes, "mode"> = {}): SymlinkNode {
  return { kind: "symlink", target, ...attributes };
}

/** Plans and checks that every planned operation is valid for the log (strict schemas: no stray keys). */
function plan(expected: TreeNode | undefined, observed: TreeNode | undefined, path = ""): Operation[] {
  const operations = planChanges(expected, observed, path);
  for (const operation of operations) expect(OperationSchema.parse(operation)).toEqual(operation);
  return operations;
}

const FILE_BASE = { mode: 0o644, mtime: T1, uid: 1000, gid: 100 };

describe("a file's attributes", () => {
  it.each<[string, Attributes]>([
    ["mode", { mode: 0o600 }],
    ["setuid bit", { mode: 0o4644 }],
    ["mtime seconds", { mtime: { ...T1, sec: T1.sec + 1 } }],
    ["mtime nanoseconds only", { mtime: { ...T1, nsec: T1.nsec + 1 } }],
    ["mtime before 1970", { mtime: { sec: -1, nsec: 999_999_999 } }],
    ["uid", { uid: 0 }],
    ["gid", { gid: 0 }],
  ])("a different %s restates the file with the new values", (_label, change) => {
    const observed = file({ ...FILE_BASE, ...change });
    expect(plan(dir({ f: file(FILE_BASE) }), dir({ f: observed }))).toEqual([
      { type: "writeFile", path: "f", hash: H1, size: 1, ...FILE_BASE, ...change },
    ]);
  });

  it("the same content and attributes plan nothing", () => {
    expect(plan(dir({ f: file(FILE_BASE) }), dir({ f: file({ ...FILE_BASE, mtime: { ...T1 } }) }))).toEqual([]);
  });

  it("only the attributes the observed node states are compared (owners not preserved)", () => {
    const observed = dir({ f: file({ mode: 0o644, mtime: T1 }) });
    expect(plan(dir({ f: file(FILE_BASE) }), observed)).toEqual([]);
    expect(plan(dir({ f: file({ ...FILE_BASE, uid: 0, gid: 0 }) }), observed)).toEqual([]);
  });

  it("an attribute the expected tree does not know is stated", () => {
    expect(plan(dir({ f: file({ mode: 0o644 }) }), dir({ f: file({ mode: 0o644, mtime: T1 }) }))).toEqual([
      { type: "writeFile", path: "f", hash: H1, size: 1, mode: 0o644, mtime: T1 },
    ]);
  });

  it("new content carries the observed attributes", () => {
    expect(plan(dir({ f: file(FILE_BASE) }), dir({ f: file({ ...FILE_BASE, hash: H2 }) }))).toEqual([
      { type: "writeFile", path: "f", hash: H2, size: 1, ...FILE_BASE },
    ]);
  });
});

describe("a symlink's attributes", () => {
  it.each<[string, Omit<Attributes, "mode">]>([
    ["mtime", { mtime: { ...T1, nsec: 0 } }],
    ["uid", { uid: 7 }],
    ["gid", { gid: 7 }],
  ])("a different %s restates the link (no mode)", (_label, change) => {
    const base = { mtime: T1, uid: 1000, gid: 100 };
    expect(plan(dir({ l: symlink("t", base) }), dir({ l: symlink("t", { ...base, ...change }) }))).toEqual([
      { type: "writeSymlink", path: "l", target: "t", ...base, ...change },
    ]);
  });

  it("a mode on a symlink node never reaches the operation", () => {
    const node = { kind: "symlink", target: "t", mode: 0o777, mtime: T1 } as SymlinkNode;
    expect(operationOf("l", node)).toEqual({ type: "writeSymlink", path: "l", target: "t", mtime: T1 });
  });
});

describe("a directory's attributes", () => {
  it.each<[string, Attributes]>([
    ["mode", { mode: 0o700 }],
    ["sticky bit", { mode: 0o1777 }],
    ["mtime", { mtime: { sec: 5, nsec: 6 } }],
    ["uid", { uid: 0 }],
    ["gid", { gid: 0 }],
  ])("a different %s yields one ensureDir with the new values; children stay", (_label, change) => {
    const base = { mode: 0o755, mtime: T1, uid: 1000, gid: 100 };
    const children = { f: file(FILE_BASE) };
    expect(plan(dir({ d: dir(children, base) }), dir({ d: dir(children, { ...base, ...change }) }))).toEqual([
      { type: "ensureDir", path: "d", ...base, ...change },
    ]);
  });

  it("a directory whose mtime differs is restated before its children's operations", () => {
    const expected = dir({ d: dir({ old: file(), keep: file() }, { mode: 0o755, mtime: T1 }) });
    const observed = dir({
      d: dir({ keep: file({ hash: H2 }), new: file() }, { mode: 0o755, mtime: { sec: T1.sec + 60, nsec: 0 } }),
    });
    expect(plan(expected, observed)).toEqual([
      { type: "ensureDir", path: "d", mode: 0o755, mtime: { sec: T1.sec + 60, nsec: 0 } },
      { type: "remove", path: "d/old" },
      { type: "writeFile", path: "d/keep", hash: H2, size: 1 },
      { type: "writeFile", path: "d/new", hash: H1, size: 1 },
    ]);
  });

  it('the root\'s attributes are restated at path ""', () => {
    const expected = dir({ f: file() }, { mode: 0o755, mtime: T1 });
    const observed = dir({ f: file() }, { mode: 0o755, mtime: { sec: 9, nsec: 9 } });
    expect(plan(expected, observed)).toEqual([
      { type: "ensureDir", path: "", mode: 0o755, mtime: { sec: 9, nsec: 9 } },
    ]);
  });

  it("a new directory is ensured with its attributes before its children", () => {
    const observed = dir({ d: dir({ f: file({ mode: 0o600 }) }, { mode: 0o555, mtime: T1 }) });
    expect(plan(dir({}), observed)).toEqual([
      { type: "ensureDir", path: "d", mode: 0o555, mtime: T1 },
      { type: "writeFile", path: "d/f", hash: H1, size: 1, mode: 0o600 },
    ]);
  });

  it("a one-level plan restates a child directory's attributes without entering it", () => {
    const expected = dir({ d: dir({ f: file() }, { mode: 0o755 }) });
    const observed = dir({ d: dir({ f: file({ hash: H2 }) }, { mode: 0o700 }) });
    expect(planChanges(expected, observed, "", { recursive: false })).toEqual([
      { type: "ensureDir", path: "d", mode: 0o700 },
    ]);
  });
});

describe("hard links", () => {
  it("an observed linkTo the expected tree lacks yields a writeFile with linkTo", () => {
    const expected = dir({ a: file(FILE_BASE), b: file(FILE_BASE) });
    const observed = dir({ a: file(FILE_BASE), b: file({ ...FILE_BASE, linkTo: "a" }) });
    expect(plan(expected, observed)).toEqual([
      { type: "writeFile", path: "b", hash: H1, size: 1, linkTo: "a", ...FILE_BASE },
    ]);
  });

  it("an observed linkTo naming another leader restates the link", () => {
    const expected = dir({ a: file(), b: file(), c: file({ linkTo: "b" }) });
    const observed = dir({ a: file(), b: file(), c: file({ linkTo: "a" }) });
    expect(plan(expected, observed)).toEqual([{ type: "writeFile", path: "c", hash: H1, size: 1, linkTo: "a" }]);
  });

  it("the same linkTo plans nothing", () => {
    const tree = () => dir({ a: file(), b: file({ linkTo: "a" }) });
    expect(plan(tree(), tree())).toEqual([]);
  });

  it("an observed file without linkTo never compares the expected linkTo (hard links not preserved)", () => {
    // The target's manifest states its links; a source that does not preserve them states none.
    const expected = dir({ a: file(FILE_BASE), b: file({ ...FILE_BASE, linkTo: "a" }) });
    const observed = dir({ a: file(FILE_BASE), b: file(FILE_BASE) });
    expect(plan(expected, observed)).toEqual([]);
  });
});
