import { readFileSync } from "node:fs";
import ignore from "ignore";
import { segmentsOf } from "../events/paths.js";
import type { FileSystem } from "../fs/fileSystem.js";
import { CliError } from "./cliError.js";

/** Name of the ignore file read from the root of SRC (gitignore syntax). */
export const IGNORE_FILE = ".mirrorlogignore";

/** Whether a relative path (a directory when `isDir`) is excluded from the mirror. */
export type ExclusionPredicate = (path: string, isDir: boolean) => boolean;

/**
 * The exclusion predicate: the `.mirrorlogignore` file at the source root, then `--exclude` patterns,
 * both in gitignore syntax, then each `--include` pattern as a negation (`!PATTERN`), so an include wins
 * over every exclude, as rsync users expect when they put `--include` first. As in gitignore, a path
 * below an excluded directory cannot be included again. Excluded paths are neither sent nor deleted on
 * the target. Returns undefined when nothing is excluded.
 */
export function exclusionRules(
  fs: FileSystem,
  sourceRoot: string,
  patterns: readonly string[],
  includes: readonly string[] = [],
): ExclusionPredicate | undefined {
  const rules = ignore();
  const ignoreFile = `${sourceRoot}/${IGNORE_FILE}`;
  let fromFile = 0;
  if (fs.exists(ignoreFile) && fs.isFile(ignoreFile)) {
    const lines = new TextDecoder().decode(fs.readFile(ignoreFile)).split(/\r?\n/);
    rules.add(lines);
    fromFile = lines.filter((l) => l.trim() !== "" && !l.startsWith("#")).length;
  }
  rules.add([...patterns]);
  // gitignore lets the last matching rule win: includes go last.
  rules.add(includes.map((pattern) => `!${pattern}`));
  if (patterns.length === 0 && fromFile === 0) return undefined;
  return (path, isDir) => rules.ignores(isDir ? `${path}/` : path);
}

/** True when `path` or any of its ancestors is excluded (what the source and the target listing both skip). */
export function isExcludedPath(isExcluded: ExclusionPredicate, path: string, isDir: boolean): boolean {
  const segments = segmentsOf(path);
  for (let i = 1; i <= segments.length; i++) {
    if (isExcluded(segments.slice(0, i).join("/"), i < segments.length || isDir)) return true;
  }
  return false;
}

/** The patterns of an `--exclude-from FILE` (one per line; blank lines and `#` comments skipped); `-` is stdin. */
export function readPatternFile(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code;
    throw new CliError(`--exclude-from ${file}: ${reason ?? (error as Error).message}`);
  }
  return text.split(/\r?\n/).filter((line) => line.trim() !== "" && !line.startsWith("#"));
}
