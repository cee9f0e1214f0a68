// `watch` runs nicer than its shell (--nice, default 10), and so does its local serve child, so that the
// user's own work gets the CPU first on a busy machine. `--nice 0` keeps the shell's priority; a value
// outside 0-19 is a usage error.
import { rmSync, writeFileSync } from "node:fs";
import { getPriority } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { makeWorkspace, pollUntil, processesMentioning, runMirrorlog, startWatch } from "../support/cliRunner.js";

const created: string[] = [];
afterAll(() => {
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

/** Starts a watch with `args`, returns the nice values of it and of its serve child, then stops it. */
async function nicenessOf(label: string, args: string[]): Promise<{ watch: number; serve: number }> {
  const ws = makeWorkspace(label, created);
  writeFileSync(join(ws.src, "a.txt"), "a\n");
  const watch = await startWatch(ws.src, ws.dst, { env: ws.env, args });
  try {
    const serves = () => processesMentioning(`--root=${ws.dst}`);
    await pollUntil(() => serves().length === 1, {
      deadlineMs: 10_000,
      describe: () => `serve children of the watch: ${serves().join(", ")}`,
    });
    return { watch: getPriority(watch.child.pid!), serve: getPriority(serves()[0]!) };
  } finally {
    const stopped = await watch.stop(10_000);
    expect(stopped.code, stopped.stderr).toBe(0);
  }
}

describe("watch --nice", () => {
  const shell = getPriority();

  it("by default runs 10 steps nicer than its shell, and its serve child too", async () => {
    const expected = Math.min(19, shell + 10);
    expect(await nicenessOf("nice-default", [])).toEqual({ watch: expected, serve: expected });
  });

  it("--nice 0 keeps the shell's priority", async () => {
    expect(await nicenessOf("nice-zero", ["--nice", "0"])).toEqual({ watch: shell, serve: shell });
  });

  it.each([["20"], ["-1"], ["1.5"], ["high"]])(
    "--nice %s is a usage error: exit 2, the reason first",
    async (value) => {
      const ws = makeWorkspace("nice-bad", created);
      const result = await runMirrorlog(["watch", "--nice", value, ws.src, ws.dst], { env: ws.env });
      expect(result.code).toBe(2);
      expect(result.stdout).toBe("");
      expect(result.stderr.split("\n")[0]).toBe(
        `error: option '--nice <N>' argument '${value}' is invalid. must be an integer from 0 to 19`,
      );
      expect(processesMentioning(`--root=${ws.dst}`)).toEqual([]);
    },
  );
});
