// rsync's --itemize-changes (`-i`) and --verbose (`-v`) lines for what a run changes on the target,
// judged against what the target held (its manifest, folded forward with each applied operation).
import type { Operation } from "../events/operation.js";
import { childOf, escapeForDisplay } from "../events/paths.js";
import type { ApplyRequest, ManifestPageEntry, Request, Response } from "../events/protocol.js";
import { type DirNode, emptyDir, nodeAt, type TreeNode } from "../events/tree.js";
import { changeOfEntry, foldExpectedTree, type TreeChange } from "../projections/expectedTree.js";

/** How changes are listed: rsync's `-i` format, or `-v` (names only). */
export type ChangeListing = "itemize" | "names";

/** What the display side of a path looks like: directories end in "/", the root is "./". */
function shown(path: string, kind: TreeNode["kind"] | "dir"): string {
  if (path === "") return "./";
  return `${escapeForDisplay(path)}${kind === "dir" ? "/" : ""}`;
}

/** rsync's 9 attribute letters `cstpoguax` of a change from `before` to the after-state `operation` states. */
function attributeLetters(before: TreeNode | undefined, operation: Operation): string {
  if (before === undefined || before.kind === "unknown" || operation.type === "remove") return "+++++++++";
  const differs = (key: "mode" | "uid" | "gid"): boolean =>
    key in operation &&
    operation[key as keyof Operation] !== undefined &&
    before[key as keyof TreeNode] !== operation[key as keyof Operation];
  const content =
    (operation.type === "writeFile" && before.kind === "file" && before.hash !== operation.hash) ||
    (operation.type === "writeSymlink" && before.kind === "symlink" && before.target !== operation.target);
  const size = operation.type === "writeFile" && before.kind === "file" && before.size !== operation.size;
  const mtime =
    operation.mtime !== undefined &&
    ("mtime" in before
      ? before.mtime?.sec !== operation.mtime.sec || before.mtime?.nsec !== operation.mtime.nsec
      : true);
  return [
    content ? "c" : ".",
    size ? "s" : ".",
    mtime ? "t" : ".",
    differs("mode") ? "p" : ".",
    differs("uid") ? "o" : ".",
    differs("gid") ? "g" : ".",
    ".",
    ".",
    ".",
  ].join("");
}

/** The `*deleting` lines of everything below and at `path` (deepest first, as rsync prints them). */
function deletionLines(node: TreeNode, path: string, listing: ChangeListing): string[] {
  const lines: string[] = [];
  if (node.kind === "dir") {
    const names = [...node.children.keys()].sort().reverse();
    for (const name of names) lines.push(...deletionLines(node.children.get(name)!, childOf(path, name), listing));
  }
  const name = shown(path, node.kind);
  lines.push(listing === "itemize" ? `*deleting   ${name}` : `deleting ${name}`);
  return lines;
}

/**
 * The lines for one applied operation given what stood at its path before (none when nothing changed).
 * A replaced entry of another kind is deleted first, as rsync shows it.
 */
export function changeLines(before: TreeNode | undefined, operation: Operation, listing: ChangeListing): string[] {
  if (operation.type === "remove") return before === undefined ? [] : deletionLines(before, operation.path, listing);
  const kind = operation.type === "ensureDir" ? "dir" : operation.type === "writeFile" ? "file" : "symlink";
  const replaced = before !== undefined && before.kind !== "unknown" && before.kind !== kind;
  const lines = replaced ? deletionLines(before, operation.path, listing) : [];
  const previous = replaced ? undefined : before;
  const letters = attributeLetters(previous, operation);
  let name = shown(operation.path, kind);
  if (operation.type === "writeSymlink") name += ` -> ${escapeForDisplay(operation.target)}`;
  if (operation.type === "writeFile" && operation.linkTo !== undefined)
    name += ` => ${escapeForDisplay(operation.linkTo)}`;
  if (listing === "names") {
    lines.push(name);
    return lines;
  }
  const type = kind === "dir" ? "d" : kind === "file" ? "f" : "L";
  let update: string;
  if (operation.type === "writeFile" && operation.linkTo !== undefined) update = "h";
  else if (operation.type === "writeFile")
    update = previous?.kind === "file" && previous.hash === operation.hash ? "." : ">";
  else update = previous === undefined || letters[0] === "c" ? "c" : ".";
  lines.push(`${update}${type}${letters} ${name}`);
  return lines;
}

/**
 * Follows a run on the wire and lists each change the target applied: the manifest gives what the target
 * held, each apply answer says which operations changed it, and those are folded in for the next ones.
 * Memory: a tree of the target (only kept when changes are listed).
 */
export class ChangeTracker {
  private tree: DirNode = emptyDir();

  constructor(
    private readonly listing: ChangeListing,
    private readonly print: (line: string) => void,
  ) {}

  /** Takes the answer to `request` (manifest pages and apply results); returns it unchanged. */
  observe(request: Request, response: Response): Response {
    if (request.type === "manifest" && response.type === "manifest") {
      this.tree = withEntries(request.offset === 0 ? emptyDir() : this.tree, response.entries);
    } else if (request.type === "listing" && response.type === "listing") {
      this.tree = withEntries(this.tree, response.entries);
    } else if (request.type === "apply" && response.type === "applied") this.takeApplied(request, response);
    return response;
  }

  /** Lists planned operations (a dry run) against the tree the target holds, as if each were applied. */
  listPlanned(held: DirNode, operations: readonly Operation[]): void {
    this.tree = held;
    this.fold(this.list(operations));
  }

  private takeApplied(request: ApplyRequest, response: Extract<Response, { type: "applied" }>): void {
    const operations = new Map(request.entries.map((entry) => [entry.seq, entry.operation]));
    const changed: Operation[] = [];
    const changes: TreeChange[] = [];
    for (const result of response.results) {
      const operation = operations.get(result.seq);
      if (operation === undefined) continue;
      if (result.outcome === "applied") changed.push(operation);
      changes.push(result.outcome === "failed" ? { type: "unknown", path: operation.path } : operation);
    }
    this.list(changed);
    this.fold(changes);
  }

  /**
   * Prints the lines of a batch of operations. Each is judged against what the batch left at its path
   * before it, else the tree: the tree is folded once per batch (one immer produce per operation would
   * copy a large directory's map each time).
   */
  private list(operations: readonly Operation[]): Operation[] {
    const within = new Map<string, TreeNode | undefined>();
    for (const operation of operations) {
      const before = within.has(operation.path) ? within.get(operation.path) : nodeAt(this.tree, operation.path);
      for (const line of changeLines(before, operation, this.listing)) this.print(line);
      within.set(operation.path, afterNode(before, operation));
    }
    return [...operations];
  }

  private fold(changes: readonly TreeChange[]): void {
    if (changes.length > 0) this.tree = foldExpectedTree(this.tree, changes);
  }
}

/**
 * The tree with manifest entries (a page, or a listing read whole) folded in as they come: a directory keeps
 * the children it has, one whose listing came as a digest is made when a listing below it is read. A digest
 * places nothing: nothing is applied in a directory whose digest matched.
 */
function withEntries(tree: DirNode, entries: readonly ManifestPageEntry[]): DirNode {
  const changes: TreeChange[] = [];
  for (const entry of entries) if (entry.kind !== "digest") changes.push(changeOfEntry(entry));
  return foldExpectedTree(tree, changes);
}

/** What stands at an operation's path once it is applied (a directory keeps its children). */
function afterNode(before: TreeNode | undefined, operation: Operation): TreeNode | undefined {
  const { type: _type, path: _path, ...state } = operation;
  switch (operation.type) {
    case "remove":
      return undefined;
    case "ensureDir":
      return { ...emptyDir(state), children: before?.kind === "dir" ? before.children : new Map() };
    case "writeFile":
      return { kind: "file", ...(state as Omit<typeof operation, "type" | "path">) };
    case "writeSymlink":
      return { kind: "symlink", ...(state as Omit<typeof operation, "type" | "path">) };
  }
}

/** A local timestamp `YYYY/MM/DD HH:MM:SS` (rsync's log format) for watch-mode lines. */
export function timestampOf(date: Date): string {
  const two = (n: number) => String(n).padStart(2, "0");
  return (
    `${date.getFullYear()}/${two(date.getMonth() + 1)}/${two(date.getDate())} ` +
    `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`
  );
}
