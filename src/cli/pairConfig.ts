// The remembered options of a source/target pair: `sync`/`watch` flags given once are kept in a small JSON
// file beside the pair's state file, so `mirrorlog watch SRC DST` (or a service restarting it) needs no
// repeated flags. A flag given on the command line replaces its remembered value and is remembered; the
// file is plain JSON a user may edit, and `watch` re-reads it on SIGHUP.
import { existsSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { posix } from "node:path";
import * as z from "zod";
import { CliError } from "./cliError.js";
import { quoteText } from "./terminalText.js";

/**
 * Options that belong to one run, never remembered: what a run prints (--json, -v, -i, -q, --progress),
 * checks once (--dry-run, -c), where its state is (the key of the pair itself), one-time overrides of a
 * safety refusal (--delete, --mkpath, --allow-empty-source, --rebuild-state), and rsync's no-ops.
 */
const PER_RUN_OPTIONS: ReadonlySet<string> = new Set([
  "dryRun",
  "json",
  "verbose",
  "quiet",
  "itemizeChanges",
  "progress",
  "checksum",
  "state",
  "rebuildState",
  "allowEmptySource",
  "delete",
  "mkpath",
  "archive",
  "recursive",
  "compress",
]);

const OptionValueSchema = z.union([z.string(), z.number(), z.boolean(), z.array(z.string())]);

const PairConfigSchema = z.object({
  version: z.literal(1),
  /** The pair, for a person reading the file (the file's name is what ties it to the pair). */
  source: z.string(),
  target: z.string(),
  /** Option values by commander attribute name, e.g. `exclude`, `hardLinks`, `rescanInterval`. */
  options: z.record(z.string(), OptionValueSchema),
});

/** A pair's remembered options, as stored. */
export type PairConfig = z.infer<typeof PairConfigSchema>;

/** The config file of the pair whose state file is `statePath`: beside it, `.json` for `.db`. */
export function pairConfigPath(statePath: string): string {
  return statePath.endsWith(".db") ? `${statePath.slice(0, -3)}.json` : `${statePath}.json`;
}

/** Reads a pair's config; none yet is undefined; a file that is not one is a usage error naming it (one line). */
export function readPairConfig(path: string): PairConfig | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CliError(`pair config ${quoteText(path)} cannot be read: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new CliError(`pair config ${quoteText(path)} is not JSON: ${(error as Error).message}`);
  }
  const result = PairConfigSchema.safeParse(parsed);
  if (!result.success) {
    const first = result.error.issues[0];
    const where = first === undefined || first.path.length === 0 ? "" : ` at ${first.path.join(".")}`;
    throw new CliError(
      `pair config ${quoteText(path)} is not a mirrorlog pair config${where}: ${first?.message ?? ""}`,
    );
  }
  return result.data;
}

/** Writes a pair's config atomically (temp, then rename), so a reload never reads half a file. */
export function writePairConfig(path: string, config: PairConfig): void {
  const temp = posix.join(posix.dirname(path), `.${posix.basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(temp, `${JSON.stringify(config, null, 2)}\n`);
    renameSync(temp, path);
  } catch (error) {
    if (existsSync(temp)) unlinkSync(temp);
    throw new CliError(`pair config ${quoteText(path)} cannot be written: ${(error as Error).message}`);
  }
}

/**
 * Merges remembered options under the command line's: an option given explicitly wins, else its remembered
 * value, else the default. Returns the merged options and what to remember from now on (the remembered
 * values with the explicit ones replacing theirs), undefined when that is unchanged. Pure.
 */
export function mergeRemembered<T extends object>(
  given: T,
  remembered: Readonly<Record<string, unknown>>,
  options: { isExplicit: (key: string) => boolean; knownKeys: readonly string[] },
): { merged: T; remember: Record<string, z.infer<typeof OptionValueSchema>> | undefined } {
  const merged: Record<string, unknown> = { ...(given as Record<string, unknown>) };
  const remember: Record<string, z.infer<typeof OptionValueSchema>> = {};
  let changed = false;
  for (const key of options.knownKeys) {
    if (PER_RUN_OPTIONS.has(key)) continue;
    const value = (given as Record<string, unknown>)[key];
    if (options.isExplicit(key) && OptionValueSchema.safeParse(value).success) {
      remember[key] = value as z.infer<typeof OptionValueSchema>;
      if (JSON.stringify(value) !== JSON.stringify(remembered[key])) changed = true;
    } else if (key in remembered) {
      merged[key] = remembered[key];
      remember[key] = remembered[key] as z.infer<typeof OptionValueSchema>;
    }
  }
  return { merged: merged as T, remember: changed ? remember : undefined };
}

/** What `applyPairConfig` needs to know of the parsed command line. */
export interface CommandLineOptions {
  /** True when the user gave this option (commander's value source "cli"), not its default. */
  isExplicit: (key: string) => boolean;
  /** Every option of the command, by attribute name. */
  knownKeys: readonly string[];
}

/**
 * `sync`/`watch` of SRC and DST with the pair's remembered options under the given ones; remembers the
 * explicit ones (not in a dry run, which changes nothing). Errors resolving the pair are left to the run.
 */
export async function applyPairConfig<T extends { state?: string; dryRun?: boolean }>(
  src: string,
  dst: string,
  given: T,
  commandLine: CommandLineOptions,
): Promise<T> {
  const { resolvePair } = await import("./mirror.js");
  let pair: { sourceRoot: string; targetKey: string; statePath: string };
  try {
    pair = resolvePair(src, dst, given.state);
  } catch {
    // The run resolves the pair again and reports what is wrong in its own words.
    return given;
  }
  const path = pairConfigPath(pair.statePath);
  const stored = readPairConfig(path);
  const { merged, remember } = mergeRemembered(given, stored?.options ?? {}, commandLine);
  if (remember !== undefined && given.dryRun !== true) {
    const { makeStateDirectory } = await import("./stateFiles.js");
    makeStateDirectory(pair.statePath);
    writePairConfig(path, { version: 1, source: pair.sourceRoot, target: pair.targetKey, options: remember });
  }
  return merged;
}
