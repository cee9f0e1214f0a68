import ignore from "ignore";
import type { FileSystem } from "../fs/fileSystem.js";

/** Name of the ignore file read from the root of SRC (gitignore syntax). */
export const IGNORE_FILE = ".mirrorlogignore";

/**
 * The exclusion predicate: `--exclude` patterns plus the `.mirrorlogignore` file at the source root,
 * both in gitignore syntax. Excluded paths are neither sent nor deleted on the target.
 * Returns undefined when nothing is excluded.
 */
export function exclusionRules(
  fs: FileSystem,
  sourceRoot: string,
  patterns: readonly string[],
): ((path: string, isDir: boolean) => boolean) | undefined {
  const rules = ignore().add([...patterns]);
  const ignoreFile = `${sourceRoot}/${IGNORE_FILE}`;
  let fromFile = 0;
  if (fs.exists(ignoreFile) && fs.isFile(ignoreFile)) {
    const lines = new TextDecoder().decode(fs.readFile(ignoreFile)).split(/\r?\n/);
    rules.add(lines);
    fromFile = lines.filter((l) => l.trim() !== "" && !l.startsWith("#")).length;
  }
  if (patterns.length === 0 && fromFile === 0) return undefined;
  return (path, isDir) => rules.ignores(isDir ? `${path}/` : path);
}
