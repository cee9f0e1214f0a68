// Text the audit commands print comes from the file system (names, symlink targets) and from the
// target (reasons): a name can hold anything but "/" and NUL, so nothing of it reaches the terminal raw.

/**
 * Characters JSON.stringify leaves alone that still act on a terminal or reorder what is shown:
 * DEL, the C1 controls (0x9b is CSI on some terminals), line/paragraph separators and bidi controls.
 */
const UNSAFE_AFTER_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/g;

function unicodeEscape(char: string): string {
  return `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

/** `text` as a double-quoted JSON string literal with every control or bidi character escaped. */
export function quoteText(text: string): string {
  return JSON.stringify(text).replace(UNSAFE_AFTER_JSON, unicodeEscape);
}

/** JSON of `value` (one line) with the characters above escaped too: still valid JSON, safe on a terminal. */
export function terminalSafeJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(UNSAFE_AFTER_JSON, unicodeEscape);
}
