// Defaults shared by the argument parser (main.ts) and the commands; kept apart so main.ts loads nothing else.

/** Seconds a target may stay silent while requests wait (a manifest of a huge tree takes a while). */
export const DEFAULT_TIMEOUT_SECONDS = 120;

/**
 * How much nicer than its shell `watch` runs (`--nice`): a live mirror works while the user does, and a
 * `git checkout` of 3,000 paths under watch took 1.54× as long as without at the shell's priority, 1.30× at
 * +10 (bench `checkout`). Syncthing lowers its priority by default for the same reason.
 */
export const DEFAULT_WATCH_NICENESS = 10;
