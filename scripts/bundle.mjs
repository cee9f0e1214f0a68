// Bundles the compiled CLI (dist/cli/main.js and the command modules it imports lazily) into one CommonJS
// file, dist/bundle/main.cjs, and records V8's code cache for it, which bin/mirrorlog hands back to V8:
// a start then reads two files instead of hundreds of modules (zod alone is hundreds) and deserializes
// compiled bytecode instead of parsing and compiling ~1 MB of JavaScript — most of a small job's start-up
// (a one-file no-change sync: ~355 -> ~295 ms beside `node -e 0` at ~110 ms). Packages with native addons
// stay outside the bundle and are loaded from node_modules as usual, except better-sqlite3's JavaScript,
// which every command loads: bundled, it is in the code cache too (its addon is named by nativeBinding,
// src/events/sqliteBinding.ts). Lazily imported modules stay lazy: esbuild wraps each in an init function
// that runs at its first `import()`.
//
// Modules import zod as `import * as z from "zod"`: esbuild tree-shakes that namespace (~200 KB of zod
// bundled), where `import { z } from "zod"` hands it zod's `z` object whole (every locale, JSON Schema).
//
// The code cache holds bytecode for the functions a run compiled, so it is taken from a real run: a
// one-file sync into a fresh local target (the source and its serve child). V8 refuses a cache made
// by another V8 version or with other V8 flags (the bundle is then compiled as usual; the recording run
// starts with mirrorlog's own, src/cli/nodeCommand.ts), and bin/mirrorlog
// only offers one whose name carries the bundle's current size and mtime, so a bundle changed after the
// build never meets a stale cache.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
// tsc has run: the flags every mirrorlog process starts with, which the cache must be recorded under.
import { mirrorlogArgs } from "../dist/cli/nodeCommand.js";
import { build } from "esbuild";

const BUNDLE = "dist/bundle/main.cjs";

// One build's files only: a previous build's cache must not outlive its bundle.
rmSync("dist/bundle", { recursive: true, force: true });
await build({
  entryPoints: ["dist/cli/main.js"],
  bundle: true,
  format: "cjs",
  platform: "node",
  target: "node20",
  outfile: BUNDLE,
  external: ["koffi", "zstd-napi", "msgpackr-extract"],
  // The modules locate files (bin/mirrorlog, native packages) from import.meta.url; a CommonJS bundle has
  // __filename instead, and dist/bundle/ is as deep as dist/cli/, so relative paths still resolve alike.
  define: { "import.meta.url": "__bundleUrl" },
  banner: { js: "const __bundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  // Less to read and hash at every start; names are kept, so stack traces still say where.
  minifyWhitespace: true,
  minifySyntax: true,
  charset: "ascii",
  legalComments: "external",
  sourcemap: "linked",
  logLevel: "warning",
});

// bin/mirrorlog reads the bundle as latin1 (a plain copy, no UTF-8 decoding): that is only the same text
// when every byte is ASCII, which charset "ascii" promises; check rather than trust.
const bytes = readFileSync(BUNDLE);
const nonAscii = bytes.findIndex((byte) => byte > 0x7f);
if (nonAscii !== -1) throw new Error(`${BUNDLE}: byte ${nonAscii} is not ASCII; bin/mirrorlog reads it as latin1`);

// Best effort: without a cache the CLI works as well, only starts slower. A run that fails here fails the
// same way in the tests, which say more.
const scratch = mkdtempSync(join(tmpdir(), "mirrorlog-code-cache-"));
try {
  mkdirSync(join(scratch, "source"));
  writeFileSync(join(scratch, "source", "note.txt"), "one small file\n");
  execFileSync(
    process.execPath,
    mirrorlogArgs(["sync", "--json", join(scratch, "source"), join(scratch, "target")]),
    {
      env: { ...process.env, XDG_STATE_HOME: join(scratch, "state"), MIRRORLOG_WRITE_CODE_CACHE: "1" },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
} catch (error) {
  const said = String(error.stderr ?? "").trim() || error.message;
  process.stderr.write(`scripts/bundle.mjs: no code cache recorded (the CLI starts slower): ${said}\n`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
