/**
 * Relative paths as they appear in operations and on the wire: the only spelling a target accepts.
 * Canonical form: POSIX separators, no leading or trailing slash, no empty, "." or ".." segment, no NUL,
 * each segment at most 255 bytes, the whole at most 4096 bytes, and the one canonical string of the bytes
 * it names (names are bytes; see fs/byteNames.ts). A backslash is an ordinary character of a Linux name.
 * The empty string names the root itself.
 */

import { byteLengthOfName, isCanonicalName } from "../fs/byteNames.js";
import { isDotSegment } from "../fs/fileSystem.js";

export { RESERVED_PREFIX } from "../fs/fileSystem.js";

/** Longest file-name segment Linux file systems accept (NAME_MAX). */
export const MAX_SEGMENT_BYTES = 255;
/** Longest path the target accepts (PATH_MAX). */
export const MAX_PATH_BYTES = 4096;
/** Longest symlink target Linux stores. */
export const MAX_SYMLINK_BYTES = 4095;

/** Why `path` is not a canonical relative path, or null when it is. The root ("") is canonical. */
export function relativePathProblem(path: string): string | null {
  if (path === "") return null;
  if (path.includes("\0")) return "contains a NUL byte";
  if (path.startsWith("/")) return "is absolute";
  if (!isCanonicalName(path)) return "is not the canonical spelling of its bytes";
  // A UTF-16 unit takes at most 3 bytes: short strings need no encoding to be measured.
  if (path.length * 3 > MAX_PATH_BYTES && byteLengthOfName(path) > MAX_PATH_BYTES) {
    return `is longer than ${MAX_PATH_BYTES} bytes`;
  }
  // Segment by segment without splitting: every operation's path is checked here, on both sides.
  for (let start = 0; start <= path.length; ) {
    const slash = path.indexOf("/", start);
    const end = slash === -1 ? path.length : slash;
    const length = end - start;
    if (length === 0) return "has an empty segment";
    if (isDotSegment(path, start, length)) return `has a "${path.slice(start, end)}" segment`;
    if (length * 3 > MAX_SEGMENT_BYTES && byteLengthOfName(path.slice(start, end)) > MAX_SEGMENT_BYTES) {
      return `has a segment over ${MAX_SEGMENT_BYTES} bytes`;
    }
    start = end + 1;
  }
  return null;
}

/**
 * `relativePathProblem(childOf(dir, name))` for a `dir` that has none and a `name` a directory listing gave
 * (no slash or NUL, never empty, "." or "..", at most NAME_MAX bytes): only the name's spelling and the
 * whole path's length are left to check. A walk checks each entry so, not each of its parent's segments again.
 */
export function listedChildProblem(dir: string, name: string): string | null {
  if (!isCanonicalName(name)) return "is not the canonical spelling of its bytes";
  const length = dir.length + 1 + name.length;
  if (length * 3 > MAX_PATH_BYTES && byteLengthOfName(childOf(dir, name)) > MAX_PATH_BYTES) {
    return `is longer than ${MAX_PATH_BYTES} bytes`;
  }
  return null;
}

/** Why `target` cannot be stored as a symlink target, or null. */
export function symlinkTargetProblem(target: string): string | null {
  if (target === "") return "is empty";
  if (target.includes("\0")) return "contains a NUL byte";
  if (!isCanonicalName(target)) return "is not the canonical spelling of its bytes";
  if (target.length * 3 > MAX_SYMLINK_BYTES && byteLengthOfName(target) > MAX_SYMLINK_BYTES) {
    return `is longer than ${MAX_SYMLINK_BYTES} bytes`;
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

/**
 * Orders paths as a depth-first walk with children by name meets them (segment by segment, so "a/b"
 * comes before "a-c"). The first name of a hard-link group in this order leads the group.
 */
export function compareWalkOrder(a: string, b: string): number {
  // Character by character, without splitting: at the first difference a segment that ends ("/") comes
  // first (it is a prefix of the other's segment), else the characters decide; a path that is a prefix of
  // the other (an ancestor, or a shorter last name) comes first.
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x === SLASH) return -1;
    if (y === SLASH) return 1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

const SLASH = 0x2f;

/**
 * Characters JSON.stringify leaves alone that still act on a terminal or reorder what is shown:
 * DEL, the C1 controls (0x9b is CSI on some terminals), line/paragraph separators and bidi controls.
 */
const UNSAFE_AFTER_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/g;

/** JSON text with the characters above escaped as \uXXXX: still valid JSON, safe on a terminal. */
export function escapeUnsafeJson(json: string): string {
  return json.replace(UNSAFE_AFTER_JSON, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** Renders a path for people: control and bidi characters escaped, a byte that is not UTF-8 as \xNN. */
export function escapeForDisplay(path: string): string {
  return escapeUnsafeJson(JSON.stringify(path).slice(1, -1)).replace(
    /[\uef80-\uefff]/g,
    (char) => `\\x${(char.charCodeAt(0) - 0xef00).toString(16)}`,
  );
}
