// Times as users type them for `log --since/--until`: an ISO 8601 date or date-time, or an age such as
// `30m` or `2d` (like journalctl's and git's "ago"), read relative to an injected now.
import { CliError } from "./cliError.js";

/** Milliseconds per unit of an age: s, m (minutes), h, d, w. */
const UNIT_MS: Record<string, number> = {
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/** `1h`, `30m`, `2d`, `1.5h`, `90s`; one unit, no sign (a time in the future is written as a date). */
const AGE = /^(\d+(?:\.\d+)?)\s*([smhdw])$/;

/**
 * A date (`2024-05-01`), a date-time (`2024-05-01T10:00`, `2024-05-01 10:00:00Z`, local time unless a
 * zone is given, like `date -d`): the strict ISO shapes only, so "yesterday" or "5" is refused, not
 * guessed by Date.parse.
 */
const ISO = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;

/**
 * Milliseconds since 1970 for `text` (see AGE and ISO), relative ages counted back from `now`. A value that
 * is neither is a usage error (exit 2) naming the option and the accepted forms, in one line.
 */
export function parseTimeSpec(text: string, option: string, now: number): number {
  const trimmed = text.trim();
  const age = AGE.exec(trimmed);
  if (age !== null) return now - Number(age[1]) * UNIT_MS[age[2]!]!;
  if (ISO.test(trimmed)) {
    // A date alone means its local midnight (Date.parse would take UTC midnight for a bare date).
    const at = Date.parse(trimmed.length === 10 ? `${trimmed}T00:00` : trimmed.replace(" ", "T"));
    if (!Number.isNaN(at)) return at;
  }
  throw new CliError(
    `${option} ${JSON.stringify(text)}: not a time; give an ISO date or date-time (2024-05-01, 2024-05-01T10:00Z) or an age (90s, 30m, 1h, 2d, 1w)`,
  );
}

/** A positive whole count for options like `-n`; anything else is a usage error (exit 2) in one line. */
export function parseCount(text: string, option: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n <= 0) {
    throw new CliError(`${option} ${JSON.stringify(text)}: not a positive whole number`);
  }
  return n;
}
