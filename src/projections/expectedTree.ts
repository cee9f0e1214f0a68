import { enableMapSet, produce } from "immer";
import type { Operation } from "../events/operation.js";
import { segmentsOf } from "../events/paths.js";
import type { ManifestEntry } from "../events/protocol.js";
import { type DirNode, emptyDir, type TreeNode } from "../events/tree.js";

enableMapSet();

/** A change to the expected tree: an operation the target confirmed, or a path whose state is now unknown. */
export type TreeChange = Operation | { type: "unknown"; path: string };

/**
 * Folds confirmed operations into the expected target tree: what the target holds, content hashes
 * included. One `produce` per batch (immer drafts are costly per call, cheap per change).
 */
export function foldExpectedTree(tree: DirNode, changes: readonly TreeChange[]): DirNode {
  if (changes.length === 0) return tree;
  return produce(tree, (draft) => {
    for (const change of changes) applyChange(draft as DirNode, change);
  });
}

function applyChange(root: DirNode, change: TreeChange): void {
  const segments = segmentsOf(change.path);
  const name = segments.pop();
  if (name === undefined) {
    // The root itself: only ensureDir can name it (its mode).
    if (change.type === "ensureDir" && change.mode !== undefined) root.mode = change.mode;
    return;
  }
  let parent: DirNode = root;
  for (const segment of segments) {
    let next = parent.children.get(segment);
    if (next?.kind !== "dir") {
      if (change.type === "remove") return; // nothing stands at a path below a non-directory: already removed
      // Only reached for an unknown change below a path that is no longer a directory.
      next = emptyDir();
      parent.children.set(segment, next);
    }
    parent = next;
  }
  switch (change.type) {
    case "ensureDir": {
      const existing = parent.children.get(name);
      if (existing?.kind === "dir") {
        if (change.mode !== undefined) existing.mode = change.mode;
      } else {
        parent.children.set(name, emptyDir(change.mode));
      }
      return;
    }
    case "writeFile":
      parent.children.set(name, {
        kind: "file",
        hash: change.hash,
        size: change.size,
        ...(change.mode === undefined ? {} : { mode: change.mode }),
        ...(change.mtimeMs === undefined ? {} : { mtimeMs: change.mtimeMs }),
      });
      return;
    case "writeSymlink":
      parent.children.set(name, { kind: "symlink", target: change.target });
      return;
    case "remove":
      parent.children.delete(name);
      return;
    case "unknown":
      parent.children.set(name, { kind: "unknown" });
      return;
  }
}

/** The tree a manifest describes (entries parents first; the root entry "" may carry the root's mode). */
export function treeFromManifest(entries: readonly ManifestEntry[]): DirNode {
  const root = emptyDir();
  for (const entry of entries) {
    const segments = segmentsOf(entry.path);
    const name = segments.pop();
    if (name === undefined) {
      if (entry.kind === "dir" && entry.mode !== undefined) root.mode = entry.mode;
      continue;
    }
    let parent: TreeNode | undefined = root;
    for (const segment of segments) parent = parent?.kind === "dir" ? parent.children.get(segment) : undefined;
    if (parent?.kind !== "dir") throw new Error(`manifest lists ${JSON.stringify(entry.path)} before its parent`);
    parent.children.set(name, manifestNode(entry));
  }
  return root;
}

/** The manifest of a tree: every entry, parents first, children by name (the inverse of treeFromManifest). */
export function manifestFromTree(root: DirNode): ManifestEntry[] {
  const entries: ManifestEntry[] = [
    root.mode === undefined ? { kind: "dir", path: "" } : { kind: "dir", path: "", mode: root.mode },
  ];
  const visit = (dir: DirNode, prefix: string): void => {
    for (const name of [...dir.children.keys()].sort()) {
      const node = dir.children.get(name)!;
      const path = prefix === "" ? name : `${prefix}/${name}`;
      entries.push(manifestEntryOf(node, path));
      if (node.kind === "dir") visit(node, path);
    }
  };
  visit(root, "");
  return entries;
}

function manifestEntryOf(node: TreeNode, path: string): ManifestEntry {
  switch (node.kind) {
    case "dir":
      return node.mode === undefined ? { kind: "dir", path } : { kind: "dir", path, mode: node.mode };
    case "file":
      return {
        kind: "file",
        path,
        hash: node.hash,
        size: node.size,
        ...(node.mode === undefined ? {} : { mode: node.mode }),
        ...(node.mtimeMs === undefined ? {} : { mtimeMs: node.mtimeMs }),
      };
    case "symlink":
      return { kind: "symlink", path, target: node.target };
    case "unknown":
      return { kind: "unknown", path };
  }
}

function manifestNode(entry: ManifestEntry): TreeNode {
  switch (entry.kind) {
    case "dir":
      return emptyDir(entry.mode);
    case "file":
      return {
        kind: "file",
        hash: entry.hash,
        size: entry.size,
        ...(entry.mode === undefined ? {} : { mode: entry.mode }),
        ...(entry.mtimeMs === undefined ? {} : { mtimeMs: entry.mtimeMs }),
      };
    case "symlink":
      return { kind: "symlink", target: entry.target };
    case "unknown":
      return { kind: "unknown" };
  }
}
