import type { Timestamp } from "../fs/fileSystem.js";
import { ATTRIBUTE_KEYS, type AttributeKey, type Attributes } from "./operation.js";
import { segmentsOf } from "./paths.js";

/** A directory and its children by name (a Map: names such as "__proto__" are ordinary names). */
export interface DirNode extends Attributes {
  kind: "dir";
  children: Map<string, TreeNode>;
}

/** A regular file, known by its content hash; `linkTo` names the leader of its hard-link group, if any. */
export interface FileNode extends Attributes {
  kind: "file";
  hash: string;
  size: number;
  linkTo?: string;
}

/** A symlink, known by its stored target text (its attributes never include a mode). */
export interface SymlinkNode extends Omit<Attributes, "mode"> {
  kind: "symlink";
  target: string;
}

/** A path whose state on the target is not known (an apply failed there): it equals nothing. */
export interface UnknownNode {
  kind: "unknown";
}

/** The state of one path: what the source observes, or what the target is expected to hold. */
export type TreeNode = DirNode | FileNode | SymlinkNode | UnknownNode;

/** A new empty directory node with the given attributes. */
export function emptyDir(attributes: Attributes = {}): DirNode {
  return { kind: "dir", ...definedAttributes(attributes), children: new Map() };
}

/** The attribute fields of `value` that are defined, among `keys` (a copy; other fields left out). */
export function definedAttributes(value: Attributes, keys: readonly AttributeKey[] = ATTRIBUTE_KEYS): Attributes {
  const out: Attributes = {};
  for (const key of keys) {
    const field = value[key];
    if (field !== undefined) (out as Record<string, unknown>)[key] = key === "mtime" ? { ...(field as object) } : field;
  }
  return out;
}

/**
 * True when every attribute among `keys` that `wanted` states is what `actual` holds (fields `wanted` leaves
 * out, and keys not listed, are not compared).
 */
export function attributesMatch(
  actual: Attributes,
  wanted: Attributes,
  keys: readonly AttributeKey[] = ATTRIBUTE_KEYS,
): boolean {
  for (const key of keys) {
    const want = wanted[key];
    if (want === undefined) continue;
    const have = actual[key];
    if (key === "mtime") {
      const a = have as Timestamp | undefined;
      const b = want as Timestamp;
      if (a === undefined || a.sec !== b.sec || a.nsec !== b.nsec) return false;
    } else if (have !== want) {
      return false;
    }
  }
  return true;
}

/** The attributes `wanted` states that `actual` does not hold (see attributesMatch): what is left to set. */
export function attributesDiffering(actual: Attributes, wanted: Attributes): Attributes {
  const out: Attributes = {};
  for (const key of ATTRIBUTE_KEYS) {
    if (wanted[key] !== undefined && !attributesMatch(actual, wanted, [key])) {
      (out as Record<string, unknown>)[key] = wanted[key];
    }
  }
  return out;
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
