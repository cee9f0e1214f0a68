import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/**
 * The file at `segments` inside the installed package `name` (found as `require` would find it from here),
 * or undefined when the package or the file is not there. Native addons are loaded by this path instead
 * of through their packages' own lookups, which cost milliseconds of every start (see nativeCalls.ts and
 * events/sqliteBinding.ts); undefined leaves that lookup to do its work.
 */
export function packagedFile(name: string, ...segments: string[]): string | undefined {
  try {
    const file = join(dirname(createRequire(import.meta.url).resolve(`${name}/package.json`)), ...segments);
    return existsSync(file) ? file : undefined;
  } catch {
    return undefined;
  }
}
