/**
 * Relative paths as they appear in operations and on the wire: the only spelling a target accepts.
 * Canonical form: POSIX separators, no leading or trailing slash, no empty, "." or ".." segment,
 * no NUL or backslash, each segment at most 255 bytes, the whole at most 4096 bytes, and no
 * segment using mirrorlog's reserved temp prefix. The empty string names the root itself.
 */

import { isReservedName } from "../fs/fileSystem.js";

export { RESERVED_PREFIX } from "../fs/fileSystem.js";

/** Longest file-name segment Linux file systems accept (NAME_MAX). */
export const MAX_SEGMENT_BYTES = 255;
/** Longest path the target accepts (PATH_MAX). */
export const MAX_PATH_BYTES = 4096;

const encoder = new TextEncoder();

/** Why `path` is not a canonical relative path, or null when it is. The root ("") is canonical. */
export function relativePathProblem(path: string): string | null {
  if (path === "") return null;
  if (path.includes("\0")) return "contains a NUL byte";
  if (path.includes("\\")) return "contains a backslash";
  if (path.startsWith("/")) return "is absolute";
  // UTF-8 takes at most 3 bytes per UTF-16 unit: short strings need no encoding to be measured.
  if (path.length * 3 > MAX_PATH_BYTES && encoder.encode(path).length > MAX_PATH_BYTES) {
    return `is longer than ${MAX_PATH_BYTES} bytes`;
  }
  for (const segment of path.split("/")) {
    if (segment === "") return "has an empty segment";
    if (segment === "." || segment === "..") return `has a "${segment}" segment`;
    if (isReservedName(segment)) return "uses mirrorlog's reserved temp prefix";
    if (segment.length * 3 > MAX_SEGMENT_BYTES && encoder.encode(segment).length > MAX_SEGMENT_BYTES) {
      return `has a segment over ${MAX_SEGMENT_BYTES} bytes`;
    }
    if (!segment.isWellFormed()) return "is not well-formed Unicode";
  }
  return null;
}

/** The parent of a relative path ("" for a top-level entry). */
export function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "" : path.slice(0, slash);
}

/** Joins a relative directory path and a child name. */
export function childOf(dir: string, name: string): string {
  return dir === "" ? name : `${dir}/${name}`;
}

/** Segments of a relative path ([] for the root). */
export function segmentsOf(path: string): string[] {
  return path === "" ? [] : path.split("/");
}

/** True when `path` is `ancestor` or lies below it. */
export function isAtOrBelow(ancestor: string, path: string): boolean {
  return ancestor === "" || path === ancestor || path.startsWith(`${ancestor}/`);
}

/** Renders a path for logs and error messages with control characters escaped. */
export function escapeForDisplay(path: string): string {
  return JSON.stringify(path).slice(1, -1);
}
