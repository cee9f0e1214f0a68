// Finding 2 of issue 10 (catalogue A17): one writer per target, whatever the path. Two syncs started
// together into one target, through another spelling of its path (a symlinked parent) or with another
// state directory, must not both write: the target is locked by what it is (flock on the root
// directory itself), so exactly one runs, the other is refused with exit 2 and one line, and the
// mirror equals exactly the source that ran.
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type CliResult, pollUntil, testEnvironment } from "../support/cliRunner.js";
import { compareTrees, formatDifferences } from "../support/treeOracle.js";
import { makeWorkspace, removeWorkspace, servePids, spawnMirrorlog, type Workspace } from "./faultScenarios.js";

const workspaces: Workspace[] = [];
afterAll(() => {
  for (const ws of workspaces) removeWorkspace(ws);
});

/** A source big enough that its sync runs for seconds (so two started together overlap). */
function populate(root: string, label: string): void {
  for (let d = 0; d < 12; d++) {
    mkdirSync(join(root, `d${d}`), { recursive: true });
    for (let f = 0; f < 150; f++) writeFileSync(join(root, `d${d}`, `f${f}`), `${label} ${d}/${f} `.repeat(100));
  }
}

/** Starts both syncs at once and returns their results, first then second. */
async function raceTwo(
  first: { src: string; dst: string; env: NodeJS.ProcessEnv },
  second: { src: string; dst: string; env: NodeJS.ProcessEnv },
): Promise<[CliResult, CliResult]> {
  const a = spawnMirrorlog(["sync", first.src, first.dst], first.env);
  const b = spawnMirrorlog(["sync", second.src, second.dst], second.env);
  return Promise.all([a.done, b.done]);
}

function checkOneRefused(results: [CliResult, CliResult], sources: [string, string], dst: string): void {
  const codes = results.map((r) => r.code);
  const winner = codes.indexOf(0);
  const loser = 1 - winner;
  expect(codes.sort(), results.map((r) => r.stderr).join("\n---\n")).toEqual([0, 2]);
  const refused = results[loser]!;
  expect(refused.stderr).toMatch(/another mirrorlog/);
  expect(refused.stderr.trim().split("\n"), refused.stderr).toHaveLength(1);
  const differences = compareTrees(sources[winner]!, dst);
  expect(differences, formatDifferences(differences)).toEqual([]);
}

describe("one writer per target, whatever the path", () => {
  it("refuses the second of two syncs into one target through a symlinked spelling of its path", async () => {
    const ws = makeWorkspace("fence-alias");
    workspaces.push(ws);
    const other = join(ws.base, "src2");
    populate(ws.src, "first");
    populate(other, "second");
    symlinkSync(ws.base, join(ws.base, "alias"));
    const results = await raceTwo(
      { src: ws.src, dst: ws.dst, env: ws.env },
      { src: other, dst: join(ws.base, "alias", "dst"), env: ws.env },
    );
    checkOneRefused(results, [ws.src, other], ws.dst);
    await pollUntil(() => servePids(ws.dst).length === 0, { deadlineMs: 10_000 });
  });

  it("refuses the second of two syncs into one target with another state directory", async () => {
    const ws = makeWorkspace("fence-state");
    workspaces.push(ws);
    const other = join(ws.base, "src2");
    populate(ws.src, "first");
    populate(other, "second");
    const otherEnv = testEnvironment(join(ws.base, "state2"));
    const results = await raceTwo(
      { src: ws.src, dst: ws.dst, env: ws.env },
      { src: other, dst: ws.dst, env: otherEnv },
    );
    checkOneRefused(results, [ws.src, other], ws.dst);
    rmSync(join(ws.base, "state2"), { recursive: true, force: true });
  });
});
