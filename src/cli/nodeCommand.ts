// How mirrorlog starts itself as another process (a local target's `serve`, a systemd unit's `watch`):
// this node, the V8 flags below, then bin/mirrorlog. A `mirrorlog` started by name gets the same flags from
// the bin's `#!` line, and the build records the V8 code cache under them (V8 refuses a cache recorded under
// other flags, and the start then compiles the bundle afresh); test/e2e/codeCache.test.ts checks all three agree.
import { fileURLToPath } from "node:url";

/** The executable this process runs as. */
export const MIRRORLOG_BIN = fileURLToPath(new URL("../../bin/mirrorlog", import.meta.url));

/**
 * V8 flags of every mirrorlog process: a young generation of 2 MiB semi-spaces instead of V8's up to 16.
 * Each side's peak RSS of a 20,000-file initial mirror came down by ≈ 25 MiB, and a no-change run took
 * 1.09–1.11 s instead of 1.19–1.26 s (5 interleaved runs each, local target): the objects a walk makes per
 * entry die young either way, and a small young generation is scavenged while it is still in the CPU's caches.
 */
export const NODE_FLAGS: readonly string[] = ["--max-semi-space-size=2"];

/** The argv (after node itself) that runs mirrorlog with `args`. */
export function mirrorlogArgs(args: readonly string[]): string[] {
  return [...NODE_FLAGS, MIRRORLOG_BIN, ...args];
}
