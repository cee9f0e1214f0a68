// Defaults shared by the argument parser (main.ts) and the commands; kept apart so main.ts loads nothing else.

/** Seconds a target may stay silent while requests wait (a manifest of a huge tree takes a while). */
export const DEFAULT_TIMEOUT_SECONDS = 120;

/**
 * How much nicer than its shell `watch` runs (`--nice`): a live mirror works while the user does, and on a
 * busy machine the user's own work should get the CPU first (Syncthing lowers its priority by default for
 * the same reason). On an otherwise idle 2-core machine it changes nothing measurable (bench `checkout`:
 * 1.44× at +0, 1.48× at +10): there the checkout's slowdown is not CPU contention.
 */
export const DEFAULT_WATCH_NICENESS = 10;
