// Defaults shared by the argument parser (main.ts) and the commands; kept apart so main.ts loads nothing else.

/** Seconds a target may stay silent while requests wait (a manifest of a huge tree takes a while). */
export const DEFAULT_TIMEOUT_SECONDS = 120;
