// B8: an unmounted or wiped source looks like an empty directory. Mirroring it would delete the whole
// target, so sync refuses unless told that an empty source is meant.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runMirrorlog, testEnvironment } from "../support/cliRunner.js";
import { compareTrees } from "../support/treeOracle.js";

const bases: string[] = [];
afterAll(() => {
  for (const base of bases) rmSync(base, { recursive: true, force: true });
});

describe("an empty source root", () => {
  it("is refused against a non-empty target, and mirrored with --allow-empty-source", async () => {
    const base = mkdtempSync(join(tmpdir(), "mirrorlog-empty-"));
    bases.push(base);
    const src = join(base, "src");
    const dst = join(base, "dst");
    mkdirSync(join(src, "d"), { recursive: true });
    writeFileSync(join(src, "d/f"), "data");
    const env = testEnvironment(join(base, "state"));
    expect((await runMirrorlog(["sync", src, dst], { env })).code).toBe(0);
    rmSync(join(src, "d"), { recursive: true });

    const refused = await runMirrorlog(["sync", src, dst], { env });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/source root .* is empty but the target holds 1 entries/);
    expect(readFileSync(join(dst, "d/f"), "utf8")).toBe("data");

    const allowed = await runMirrorlog(["sync", "--allow-empty-source", src, dst], { env });
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(compareTrees(src, dst)).toEqual([]);
  });
});
