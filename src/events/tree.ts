import { segmentsOf } from "./paths.js";

/** A directory and its children by name (a Map: names such as "__proto__" are ordinary names). */
export interface DirNode {
  kind: "dir";
  mode?: number;
  children: Map<string, TreeNode>;
}

/** A regular file, known by its content hash. */
export interface FileNode {
  kind: "file";
  hash: string;
  size: number;
  mode?: number;
  mtimeMs?: number;
}

/** A symlink, known by its stored target text. */
export interface SymlinkNode {
  kind: "symlink";
  target: string;
}

/** A path whose state on the target is not known (an apply failed there): it equals nothing. */
export interface UnknownNode {
  kind: "unknown";
}

/** The state of one path: what the source observes, or what the target is expected to hold. */
export type TreeNode = DirNode | FileNode | SymlinkNode | UnknownNode;

/** A new empty directory node. */
export function emptyDir(mode?: number): DirNode {
  return mode === undefined ? { kind: "dir", children: new Map() } : { kind: "dir", mode, children: new Map() };
}

/** The node at relative `path` below `root`, or undefined when nothing is there. */
export function nodeAt(root: TreeNode, path: string): TreeNode | undefined {
  let node: TreeNode | undefined = root;
  for (const segment of segmentsOf(path)) {
    if (node?.kind !== "dir") return undefined;
    node = node.children.get(segment);
  }
  return node;
}

/** Relative paths of every directory in a tree (the root as `prefix`), parents first. */
export function dirPaths(node: TreeNode | undefined, prefix = ""): string[] {
  if (node?.kind !== "dir") return [];
  const paths = [prefix];
  for (const [name, child] of node.children) paths.push(...dirPaths(child, prefix === "" ? name : `${prefix}/${name}`));
  return paths;
}

/** True when two nodes describe the same state (for directories: recursively). Unknown equals nothing. */
export function sameNode(a: TreeNode | undefined, b: TreeNode | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.kind === "unknown" || b.kind === "unknown") return false;
  switch (a.kind) {
    case "file":
      return b.kind === "file" && a.hash === b.hash && a.size === b.size;
    case "symlink":
      return b.kind === "symlink" && a.target === b.target;
    case "dir": {
      if (b.kind !== "dir" || a.children.size !== b.children.size) return false;
      for (const [name, child] of a.children) if (!sameNode(child, b.children.get(name))) return false;
      return true;
    }
  }
}
