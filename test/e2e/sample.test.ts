// The README's main job (`npm start` runs scripts/sample.mjs) must keep working as the CLI changes:
// it mirrors a sample tree onto a non-empty target, changes it, syncs twice more and prints both trees.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SAMPLE = fileURLToPath(new URL("../../scripts/sample.mjs", import.meta.url));

describe("npm start (scripts/sample.mjs)", () => {
  it("runs to the end: three syncs, the last one changing nothing", async () => {
    const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [SAMPLE], { encoding: "utf8", timeout: 120_000 }, (error, stdout, stderr) =>
        resolve({ code: error === null ? 0 : ((error as { code?: number }).code ?? null), stdout, stderr }),
      );
    });
    expect(result.code, result.stderr).toBe(0);
    const syncs = result.stdout.split("\n$ mirrorlog sync ").slice(1);
    expect(syncs).toHaveLength(3);
    expect(syncs[0]).toMatch(/Number of files deleted: 1\n/);
    expect(syncs[2]).toMatch(/Number of files written: 0 /);
  });
});
