// keepFreedBuffersForReuse (src/fs/nativeCalls.ts): sync, watch and serve free megabytes of buffers at a
// time, and by default glibc hands the top of its heap back to the kernel past a few MiB, so the next
// buffers fault every page in again. A child process frees 32 MiB of 1 MiB blocks and allocates them
// again, ten times, with malloc itself (garbage collection would make the moment of each free a guess);
// with the thresholds set the pages stay mapped and the rounds after the first fault almost nothing in.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

const NATIVE_CALLS = fileURLToPath(new URL("../../src/fs/nativeCalls.ts", import.meta.url));
const REPOSITORY = fileURLToPath(new URL("../..", import.meta.url));

/** Minor page faults of 10 rounds of 32 × 1 MiB malloc, touch, free (after 2 rounds to warm up). */
function faultsOfRounds(tuned: boolean): number {
  const script = `
    import { createRequire } from "node:module";
    if (${tuned}) (await import(${JSON.stringify(NATIVE_CALLS)})).keepFreedBuffersForReuse();
    const libc = createRequire(import.meta.url)("koffi").load("libc.so.6");
    const malloc = libc.func("malloc", "void *", ["size_t"]);
    const free = libc.func("free", "void", ["void *"]);
    const memset = libc.func("memset", "void *", ["void *", "int", "size_t"]);
    const round = () => {
      const blocks = [];
      for (let i = 0; i < 32; i++) blocks.push(memset(malloc(1 << 20), 1, 1 << 20));
      for (const block of blocks) free(block);
    };
    round();
    round();
    const before = process.resourceUsage().minorPageFault;
    for (let r = 0; r < 10; r++) round();
    console.log(process.resourceUsage().minorPageFault - before);
  `;
  const output = execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    cwd: REPOSITORY,
    encoding: "utf8",
    // glibc's initial thresholds (128 KiB), held: left to themselves they adapt to what the process frees
    // first, and whether the untuned child then hands its blocks back depended on what else it had allocated
    // (a loaded machine's run saw 14 faults). The tuned child sets its own.
    env: { ...process.env, GLIBC_TUNABLES: "glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072" },
  });
  return Number(output.trim());
}

it("freed buffers stay mapped for the next ones: 320 MiB allocated again faults in a fraction of its pages", () => {
  const pages = (10 * 32 * 2 ** 20) / 4096;
  const tuned = faultsOfRounds(true);
  const untuned = faultsOfRounds(false);
  // Untuned, every round's 32 MiB is handed back and faulted in again (81,920 pages in all).
  expect(untuned).toBeGreaterThan(pages / 2);
  expect(tuned).toBeLessThan(pages / 20);
});
