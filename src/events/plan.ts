import { ATTRIBUTE_KEYS, type AttributeKey, type Operation } from "./operation.js";
import { childOf } from "./paths.js";
import { attributesMatch, type DirNode, definedAttributes, type FileNode, type TreeNode } from "./tree.js";

/** How deep a plan goes. */
export interface PlanOptions {
  /**
   * False: plan a directory and its immediate children only; child directories are ensured but not
   * entered (the caller plans them next, so a huge tree streams out directory by directory).
   */
  recursive?: boolean;
  /** The attributes compared and stated (default all): owners only where the target can set them. */
  attributes?: readonly AttributeKey[];
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
  const keys = options.attributes ?? ATTRIBUTE_KEYS;
  const depth = options.recursive === false ? 1 : Number.POSITIVE_INFINITY;
  planInto({ out: operations, keys }, expected, observed, path, depth);
  return operations;
}

/** What one plan collects into and compares by. */
interface Planning {
  out: Operation[];
  keys: readonly AttributeKey[];
}

function planInto(
  planning: Planning,
  expected: TreeNode | undefined,
  observed: TreeNode | undefined,
  path: string,
  depth: number,
): void {
  const { out, keys } = planning;
  if (observed === undefined) {
    if (expected !== undefined && path !== "") out.push({ type: "remove", path });
    return;
  }
  switch (observed.kind) {
    case "unknown":
      return; // unreadable at the source (reported there): leave the target's copy as it is
    case "file":
      if (!fileMatches(expected, observed, keys)) out.push(operationOf(path, observed, keys));
      return;
    case "symlink":
      if (
        expected?.kind !== "symlink" ||
        expected.target !== observed.target ||
        !attributesMatch(expected, observed, keys)
      ) {
        out.push(operationOf(path, observed, keys));
      }
      return;
    case "dir":
      planDir(planning, expected, observed, path, depth);
      return;
  }
}

function planDir(
  planning: Planning,
  expected: TreeNode | undefined,
  observed: DirNode,
  path: string,
  depth: number,
): void {
  const { out, keys } = planning;
  const expectedDir = expected?.kind === "dir" ? expected : undefined;
  // Stated before the children (it creates the directory); the target sets mode and mtime once they are in.
  if (expectedDir === undefined || !attributesMatch(expectedDir, observed, keys)) {
    out.push(operationOf(path, observed, keys));
  }
  if (depth === 0) return;
  const expectedChildren = expectedDir?.children ?? new Map<string, TreeNode>();
  for (const name of [...expectedChildren.keys()].sort()) {
    if (!observed.children.has(name)) out.push({ type: "remove", path: childOf(path, name) });
  }
  for (const name of [...observed.children.keys()].sort()) {
    planInto(planning, expectedChildren.get(name), observed.children.get(name), childOf(path, name), depth - 1);
  }
}

function fileMatches(expected: TreeNode | undefined, observed: FileNode, keys: readonly AttributeKey[]): boolean {
  return (
    expected?.kind === "file" &&
    expected.hash === observed.hash &&
    expected.size === observed.size &&
    // A link the source does not state is the target's business (rsync -H leaves such links alone too).
    (observed.linkTo === undefined || expected.linkTo === observed.linkTo) &&
    attributesMatch(expected, observed, keys)
  );
}

/** The operation stating `node` at `path` (a directory without its children), with the attributes among `keys`. */
export function operationOf(
  path: string,
  node: Exclude<TreeNode, { kind: "unknown" }>,
  keys: readonly AttributeKey[] = ATTRIBUTE_KEYS,
): Operation {
  switch (node.kind) {
    case "dir":
      return { type: "ensureDir", path, ...definedAttributes(node, keys) };
    case "file":
      return {
        type: "writeFile",
        path,
        hash: node.hash,
        size: node.size,
        ...(node.linkTo === undefined ? {} : { linkTo: node.linkTo }),
        ...definedAttributes(node, keys),
      };
    case "symlink": {
      const { mode: _mode, ...attributes } = definedAttributes(node, keys);
      return { type: "writeSymlink", path, target: node.target, ...attributes };
    }
  }
}
