// An independent tree-compare oracle for end-to-end tests, in the spirit of rsync's testsuite:
// plain node:fs only (never the project's NodeFileSystem or scan code), so a bug shared by the
// replicator and its own scanner cannot hide itself. Symlinks are never followed (lstat, readlink).
import { createHash } from "node:crypto";
import { lstatSync, readdirSync, readFileSync, readlinkSync, type Stats } from "node:fs";
import { join } from "node:path";

/** The reserved prefix of mirrorlog's atomic-write temp files (spelled out here on purpose, not imported). */
export const TEMP_PREFIX = ".mirrorlog-tmp-";

/** What kind of entry a path holds, as lstat sees it. */
export type OracleKind = "file" | "dir" | "symlink" | "special";

/** One entry of a described tree; `path` is relative to the root, "" for the root itself. */
export interface OracleEntry {
  path: string;
  kind: OracleKind;
  /** Permission bits (mode & 0o777). */
  mode: number;
  /** Files only: size and sha256 of the bytes. */
  size?: number;
  sha256?: string;
  /** Files only: modification time in milliseconds (with the sub-millisecond part lstat reports). */
  mtimeMs?: number;
  /** Symlinks only: the link's own text (readlink). */
  target?: string;
}

/** One way two trees differ, naming the relative path. */
export interface TreeDifference {
  path: string;
  /** What differs: "missing on target", "extra on target", "kind", "bytes", "mode", "mtime", "link target". */
  what: string;
  expected?: string;
  actual?: string;
}

/** How to compare two trees; by default names, kinds, bytes, modes and link targets count. */
export interface CompareOptions {
  /** Also compare file mtimes to the millisecond (default false). */
  mtimes?: boolean;
  /** Compare permission bits (default true). */
  modes?: boolean;
  /** Leave out names starting with `.mirrorlog-tmp-` on both sides (default false: a leftover temp file is a difference). */
  ignoreTempFiles?: boolean;
  /** True for relative paths to leave out on both sides (a directory's whole subtree goes with it). */
  exclude?: (path: string, kind: OracleKind) => boolean;
}

/** Walks the tree at `root` with lstat, parents before children, names in byte order. */
export function describeTree(root: string, options: CompareOptions = {}): Map<string, OracleEntry> {
  const entries = new Map<string, OracleEntry>();
  const visit = (path: string): void => {
    const absolute = path === "" ? root : join(root, path);
    const entry = describeEntry(path, absolute, lstatSync(absolute));
    entries.set(path, entry);
    if (entry.kind !== "dir") return;
    for (const name of readdirSync(absolute).sort()) {
      if (options.ignoreTempFiles && name.startsWith(TEMP_PREFIX)) continue;
      const child = path === "" ? name : `${path}/${name}`;
      const kind = kindOf(lstatSync(join(absolute, name)));
      if (options.exclude?.(child, kind)) continue;
      visit(child);
    }
  };
  visit("");
  return entries;
}

/** Differences between the tree at `expectedRoot` (the source) and the one at `actualRoot` (the target). */
export function compareTrees(expectedRoot: string, actualRoot: string, options: CompareOptions = {}): TreeDifference[] {
  return compareDescriptions(describeTree(expectedRoot, options), describeTree(actualRoot, options), options);
}

/** Differences between two descriptions (e.g. a target before and after a dry run). */
export function compareDescriptions(
  expected: ReadonlyMap<string, OracleEntry>,
  actual: ReadonlyMap<string, OracleEntry>,
  options: CompareOptions = {},
): TreeDifference[] {
  const differences: TreeDifference[] = [];
  for (const [path, want] of expected) {
    const have = actual.get(path);
    if (have === undefined) {
      differences.push({ path, what: "missing on target", expected: want.kind });
      continue;
    }
    if (want.kind !== have.kind) {
      differences.push({ path, what: "kind", expected: want.kind, actual: have.kind });
      continue;
    }
    // A symlink's own mode is meaningless on Linux (always 0777), so only files and directories count.
    if ((options.modes ?? true) && want.kind !== "symlink" && want.mode !== have.mode) {
      differences.push({ path, what: "mode", expected: octal(want.mode), actual: octal(have.mode) });
    }
    if (want.kind === "file") {
      if (want.size !== have.size || want.sha256 !== have.sha256) {
        differences.push({
          path,
          what: "bytes",
          expected: `${want.size} B ${want.sha256?.slice(0, 12)}`,
          actual: `${have.size} B ${have.sha256?.slice(0, 12)}`,
        });
      }
      // To the millisecond: times travel as float seconds, so the sub-millisecond digits may round.
      if (options.mtimes && Math.abs((want.mtimeMs ?? 0) - (have.mtimeMs ?? 0)) >= 1) {
        differences.push({ path, what: "mtime", expected: String(want.mtimeMs), actual: String(have.mtimeMs) });
      }
    }
    if (want.kind === "symlink" && want.target !== have.target) {
      differences.push({ path, what: "link target", expected: want.target, actual: have.target });
    }
  }
  for (const [path, have] of actual) {
    if (!expected.has(path)) differences.push({ path, what: "extra on target", actual: have.kind });
  }
  return differences;
}

/** Relative paths of every `.mirrorlog-tmp-` entry below `root` (leftovers of an interrupted write). */
export function findTempFiles(root: string): string[] {
  return [...describeTree(root).keys()].filter((path) => path.split("/").some((name) => name.startsWith(TEMP_PREFIX)));
}

/** One line per difference, for assertion messages. */
export function formatDifferences(differences: readonly TreeDifference[]): string {
  if (differences.length === 0) return "(trees are equal)";
  return differences
    .map((d) => {
      const detail = [
        d.expected === undefined ? "" : `expected ${d.expected}`,
        d.actual === undefined ? "" : `got ${d.actual}`,
      ]
        .filter((s) => s !== "")
        .join(", ");
      return `${JSON.stringify(d.path)}: ${d.what}${detail === "" ? "" : ` (${detail})`}`;
    })
    .join("\n");
}

/** An indented listing of a tree, for failure messages. */
export function listTree(root: string): string {
  const lines: string[] = [];
  for (const entry of describeTree(root).values()) {
    const name = entry.path === "" ? "." : entry.path;
    const detail =
      entry.kind === "file"
        ? `${entry.size} B ${octal(entry.mode)}`
        : entry.kind === "symlink"
          ? `-> ${entry.target}`
          : `${entry.kind} ${octal(entry.mode)}`;
    lines.push(`${name} ${detail}`);
  }
  return lines.join("\n");
}

function describeEntry(path: string, absolute: string, stat: Stats): OracleEntry {
  const kind = kindOf(stat);
  const entry: OracleEntry = { path, kind, mode: stat.mode & 0o777 };
  if (kind === "file") {
    const bytes = readFileSync(absolute);
    entry.size = bytes.length;
    entry.sha256 = createHash("sha256").update(bytes).digest("hex");
    entry.mtimeMs = stat.mtimeMs;
  } else if (kind === "symlink") {
    entry.target = readlinkSync(absolute);
  }
  return entry;
}

function kindOf(stat: Stats): OracleKind {
  if (stat.isSymbolicLink()) return "symlink";
  if (stat.isDirectory()) return "dir";
  if (stat.isFile()) return "file";
  return "special";
}

function octal(mode: number): string {
  return `0${mode.toString(8)}`;
}
