// Text the audit commands print comes from the file system (names, symlink targets) and from the
// target (reasons): a name can hold anything but "/" and NUL, so nothing of it reaches the terminal raw.
import { escapeForDisplay, escapeUnsafeJson } from "../events/paths.js";

/** `text` in double quotes with every control or bidi character escaped, and bytes that are not UTF-8 as \xNN. */
export function quoteText(text: string): string {
  return `"${escapeForDisplay(text)}"`;
}

/** JSON of `value` (one line) with terminal-unsafe characters escaped too: still valid JSON, safe on a terminal. */
export function terminalSafeJson(value: unknown, indent?: number): string {
  return escapeUnsafeJson(JSON.stringify(value, null, indent));
}
