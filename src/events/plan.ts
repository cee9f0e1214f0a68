import type { Operation } from "./operation.js";
import { childOf } from "./paths.js";
import type { DirNode, FileNode, TreeNode } from "./tree.js";

/** mtimes closer than this are equal: file systems keep them at different precisions. */
export const MTIME_TOLERANCE_MS = 1;

/** How deep a plan goes. */
export interface PlanOptions {
  /**
   * False: plan a directory and its immediate children only; child directories are ensured but not
   * entered (the caller plans them next, so a huge tree streams out directory by directory).
   */
  recursive?: boolean;
}

/**
 * The operations that turn `expected` (what the target holds at `path`) into `observed` (what the
 * source holds there). Pure. Removals of a directory's extra children come before its new children,
 * parents before children; a directory that must go is one `remove` (the target removes recursively).
 */
export function planChanges(
  expected: TreeNode | undefined,
  observed: TreeNode | undefined,
  path: string,
  options: PlanOptions = {},
): Operation[] {
  const operations: Operation[] = [];
  planInto(operations, expected, observed, path, options.recursive === false ? 1 : Number.POSITIVE_INFINITY);
  return operations;
}

function planInto(
  out: Operation[],
  expected: TreeNode | undefined,
  observed: TreeNode | undefined,
  path: string,
  depth: number,
): void {
  if (observed === undefined) {
    if (expected !== undefined && path !== "") out.push({ type: "remove", path });
    return;
  }
  switch (observed.kind) {
    case "unknown":
      return; // unreadable at the source (reported there): leave the target's copy as it is
    case "file":
      if (!fileMatches(expected, observed)) out.push(writeFileOperation(path, observed));
      return;
    case "symlink":
      if (expected?.kind !== "symlink" || expected.target !== observed.target) {
        out.push({ type: "writeSymlink", path, target: observed.target });
      }
      return;
    case "dir":
      planDir(out, expected, observed, path, depth);
      return;
  }
}

function planDir(
  out: Operation[],
  expected: TreeNode | undefined,
  observed: DirNode,
  path: string,
  depth: number,
): void {
  const expectedDir = expected?.kind === "dir" ? expected : undefined;
  if (expectedDir === undefined || (observed.mode !== undefined && expectedDir.mode !== observed.mode)) {
    out.push(
      observed.mode === undefined ? { type: "ensureDir", path } : { type: "ensureDir", path, mode: observed.mode },
    );
  }
  if (depth === 0) return;
  const expectedChildren = expectedDir?.children ?? new Map<string, TreeNode>();
  for (const name of [...expectedChildren.keys()].sort()) {
    if (!observed.children.has(name)) out.push({ type: "remove", path: childOf(path, name) });
  }
  for (const name of [...observed.children.keys()].sort()) {
    planInto(out, expectedChildren.get(name), observed.children.get(name), childOf(path, name), depth - 1);
  }
}

function fileMatches(expected: TreeNode | undefined, observed: FileNode): boolean {
  if (expected?.kind !== "file") return false;
  if (expected.hash !== observed.hash || expected.size !== observed.size) return false;
  if (observed.mode !== undefined && expected.mode !== observed.mode) return false;
  if (observed.mtimeMs !== undefined) {
    if (expected.mtimeMs === undefined || Math.abs(expected.mtimeMs - observed.mtimeMs) >= MTIME_TOLERANCE_MS) {
      return false;
    }
  }
  return true;
}

function writeFileOperation(path: string, file: FileNode): Operation {
  return {
    type: "writeFile",
    path,
    hash: file.hash,
    size: file.size,
    ...(file.mode === undefined ? {} : { mode: file.mode }),
    ...(file.mtimeMs === undefined ? {} : { mtimeMs: file.mtimeMs }),
  };
}
