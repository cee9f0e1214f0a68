import { packagedFile } from "../fs/packagedFile.js";

/*
 * better-sqlite3 finds its native addon through the `bindings` package, which builds an Error to read
 * its caller's file from the stack and then tries a dozen candidate paths: a few milliseconds of every
 * start-up. Its addon sits where both a source build and prebuild-install put it, so it is named
 * directly; if it is not there (an unusual install), undefined leaves the default lookup to do its work.
 */

let resolved: { path: string | undefined } | undefined;

/** The better-sqlite3 addon's file, for the `nativeBinding` option of `new Database`; resolved once. */
export function sqliteNativeBinding(): string | undefined {
  resolved ??= { path: packagedFile("better-sqlite3", "build", "Release", "better_sqlite3.node") };
  return resolved.path;
}
