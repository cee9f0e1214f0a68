// Finding 4 of issue 10: a concurrent rename inside the target's stash (where removed files wait for
// reuse) crashed serve with a stack trace, leaving the stash behind. It must stay a per-path problem:
// no stack trace, no serve left behind, and the next run converges with nothing of ours left in the root.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { pollUntil, runMirrorlog } from "../support/cliRunner.js";
import { compareTrees, findTempFiles, formatDifferences } from "../support/treeOracle.js";
import { makeWorkspace, removeWorkspace, servePids, type Workspace } from "./faultScenarios.js";

const RACER = fileURLToPath(new URL("./stashRacer.mjs", import.meta.url));
const workspaces: Workspace[] = [];
const racers: ChildProcess[] = [];
afterAll(() => {
  for (const racer of racers) racer.kill("SIGKILL");
  for (const ws of workspaces) removeWorkspace(ws);
});

describe("a rename racing inside the target's stash", () => {
  it("does not crash serve; the next run converges and leaves no stash", async () => {
    const ws = makeWorkspace("stash-race");
    workspaces.push(ws);
    for (let d = 0; d < 10; d++) {
      mkdirSync(join(ws.src, `d${d}`));
      for (let f = 0; f < 300; f++) writeFileSync(join(ws.src, `d${d}`, `f${f}`), `${d}/${f} `.repeat(40));
    }
    const first = await runMirrorlog(["sync", ws.src, ws.dst], { env: ws.env });
    expect(first.code, first.stderr).toBe(0);
    // Every file removed goes to the stash: 3,000 entries at its top, renamed under serve's feet.
    for (let d = 0; d < 10; d++) {
      rmSync(join(ws.src, `d${d}`), { recursive: true });
      mkdirSync(join(ws.src, `d${d}`));
      writeFileSync(join(ws.src, `d${d}`, "kept"), "kept");
    }
    const racer = spawn(process.execPath, [RACER, ws.dst], { stdio: ["ignore", "pipe", "inherit"] });
    racers.push(racer);
    let raced = "";
    racer.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      raced += chunk;
    });

    const raced1 = await runMirrorlog(["sync", ws.src, ws.dst], { env: ws.env, timeoutMs: 60_000 });
    racer.kill("SIGKILL");
    expect(raced, "the racer never found the stash").toMatch(/renamed/);
    expect(raced1.signal, raced1.stderr).toBeNull();
    expect([0, 23], raced1.stderr).toContain(raced1.code);
    expect(raced1.stderr).not.toMatch(/\n\s+at /);
    await pollUntil(() => servePids(ws.dst).length === 0, { deadlineMs: 10_000 });

    const after = await runMirrorlog(["sync", ws.src, ws.dst], { env: ws.env, timeoutMs: 60_000 });
    expect(after.code, after.stderr).toBe(0);
    const differences = compareTrees(ws.src, ws.dst);
    expect(differences, formatDifferences(differences.slice(0, 20))).toEqual([]);
    expect(findTempFiles(ws.dst)).toEqual([]);
  });
});
