// Bundles the compiled CLI (dist/cli/main.js and the command modules it imports lazily) into a few files
// under dist/bundle/, which bin/mirrorlog runs: node then reads a handful of files instead of hundreds
// (zod alone is hundreds of modules), the largest share of a small job's start-up. Native packages stay
// outside the bundle and are loaded from node_modules as usual.
//
// Modules import zod as `import * as z from "zod"`: esbuild tree-shakes that namespace (~200 KB of zod
// bundled), where `import { z } from "zod"` hands it zod's `z` object whole (every locale, JSON Schema:
// ~750 KB parsed at each start, ~50 ms here).
import { rmSync } from "node:fs";
import { build } from "esbuild";

// Chunk names change with their content: start empty, or every build leaves the previous chunks behind.
rmSync("dist/bundle", { recursive: true, force: true });
await build({
  entryPoints: { main: "dist/cli/main.js" },
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  outdir: "dist/bundle",
  external: ["better-sqlite3", "koffi", "zstd-napi", "msgpackr-extract"],
  // Packages written as CommonJS call require(); an ES module bundle has none of its own.
  banner: { js: "import { createRequire as __bundleRequire } from 'node:module'; const require = __bundleRequire(import.meta.url);" },
  sourcemap: "linked",
  logLevel: "warning",
});
