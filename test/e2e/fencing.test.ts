// A17: one source per target at a time. A second source reaching a root that another mirrorlog is
// writing is refused (one line, non-zero exit, nothing written); once the first is gone, it may sync.
// The lock is an flock on the root directory itself; the holder's pid comes from the kernel's lock
// table. Other spellings of the path and other state directories: test/faults/targetFencing.test.ts.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runMirrorlog, startWatch, testEnvironment } from "../support/cliRunner.js";
import { compareTrees } from "../support/treeOracle.js";

const bases: string[] = [];
afterAll(() => {
  for (const base of bases) rmSync(base, { recursive: true, force: true });
});

describe("fencing", () => {
  it("refuses a second source while a watch serves the target, and lets it in afterwards", async () => {
    const base = mkdtempSync(join(tmpdir(), "mirrorlog-fence-"));
    bases.push(base);
    const first = join(base, "first");
    const second = join(base, "second");
    const dst = join(base, "dst");
    mkdirSync(first);
    mkdirSync(second);
    writeFileSync(join(first, "a"), "from the first source");
    writeFileSync(join(second, "b"), "from the second source");
    const env = testEnvironment(join(base, "state"));
    const watch = await startWatch(first, dst, { env });
    const refused = await runMirrorlog(["sync", second, dst], { env });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/another mirrorlog \(pid \d+\)/);
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);
    expect(compareTrees(first, dst)).toEqual([]);
    const stopped = await watch.stop();
    expect(stopped.code).toBe(0);
    // DST now mirrors the first source: taking it over is a first sync of another pair (--delete).
    const later = await runMirrorlog(["sync", "--delete", second, dst], { env });
    expect(later.code, later.stderr).toBe(0);
    expect(compareTrees(second, dst)).toEqual([]);
  });
});
