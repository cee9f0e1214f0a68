// Findings 3 and 4 of issue 10 (catalogue C7, E2): broken state is a clear, recoverable condition. A
// state file on a full file system, or one whose bytes were damaged, on either side, gives one line
// naming the file and what to do, exit 2 within seconds, and no serve left holding the target; with
// the documented recovery (`--rebuild-state`, or freeing space) the next run converges to an exact mirror.
import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, readdirSync, statfsSync, statSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { closedAsRecorded } from "../../src/events/operationLog.js";
import { pollUntil, runMirrorlog } from "../support/cliRunner.js";
import { compareTrees, findTempFiles, formatDifferences } from "../support/treeOracle.js";
import {
  makeWorkspace,
  randomBytesOf,
  removeWorkspace,
  seededRandom,
  servePids,
  type Workspace,
} from "./faultScenarios.js";

const workspaces: Workspace[] = [];
const mounts: string[] = [];
afterAll(() => {
  for (const mount of mounts.reverse()) execFileSync("umount", ["-l", mount]);
  for (const ws of workspaces) removeWorkspace(ws);
});

function populate(root: string, dirs: number, files: number): void {
  for (let d = 0; d < dirs; d++) {
    mkdirSync(join(root, `d${d}`), { recursive: true });
    for (let f = 0; f < files; f++) writeFileSync(join(root, `d${d}`, `f${f}`), `${d}/${f} `.repeat(50));
  }
}

/** The state file of `kind` ("source" or "target") in the workspace's state directory. */
function stateFile(ws: Workspace, kind: "source" | "target"): string {
  const dir = join(ws.stateHome, "mirrorlog");
  const name = readdirSync(dir).find((n) => n.startsWith(`${kind}-`) && n.endsWith(".db"));
  if (name === undefined) throw new Error(`no ${kind} state file in ${dir}: ${readdirSync(dir).join(", ")}`);
  return join(dir, name);
}

/** Overwrites 64 KiB in the middle of `path` with seeded garbage (as a failing disk or a stray write would). */
function damageMiddle(path: string, seed: number): void {
  const size = statSync(path).size;
  const garbage = randomBytesOf(seededRandom(seed), Math.min(64 * 1024, Math.floor(size / 2)));
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, garbage, 0, garbage.length, Math.floor(size / 2 / 4096) * 4096);
  } finally {
    closeSync(fd);
  }
}

const escaped = (text: string) => text.replaceAll(/[.*+?^${}()|[\]\\]/g, "\\$&");

function expectOneLine(stderr: string): void {
  expect(stderr.trim().split("\n"), stderr).toHaveLength(1);
  expect(stderr).not.toMatch(/\n\s+at /);
}

describe("broken state is a clear, recoverable condition", () => {
  it.each(["source", "target"] as const)(
    "a damaged %s state file: one line, exit 2; --rebuild-state converges",
    async (kind) => {
      const ws = makeWorkspace(`state-damaged-${kind}`);
      workspaces.push(ws);
      populate(ws.src, 10, 60);
      const first = await runMirrorlog(["sync", ws.src, ws.dst], { env: ws.env });
      expect(first.code, first.stderr).toBe(0);
      const damaged = stateFile(ws, kind);
      // The clean run recorded how it left the file (the next open would not read it whole)...
      expect(closedAsRecorded(damaged)).toBe(true);
      damageMiddle(damaged, 7);
      // ...which the damage no longer matches: it is read whole, and refused below.
      expect(closedAsRecorded(damaged)).toBe(false);
      writeFileSync(join(ws.src, "d0", "changed"), "a change after the damage");

      const refused = await runMirrorlog(["sync", ws.src, ws.dst], { env: ws.env, timeoutMs: 30_000 });
      expect(refused.code, refused.stderr).toBe(2);
      expectOneLine(refused.stderr);
      expect(refused.stderr).toMatch(new RegExp(escaped(damaged)));
      expect(refused.stderr).toContain("--rebuild-state");
      await pollUntil(() => servePids(ws.dst).length === 0, { deadlineMs: 5_000 });

      if (kind === "source") {
        for (const command of [["status"], ["status", ws.src], ["log", join(ws.src, "d0")]]) {
          const audit = await runMirrorlog(command, { env: ws.env });
          expect(audit.code, `${command.join(" ")}: ${audit.stderr}`).toBe(2);
          expect(audit.stdout + audit.stderr).not.toMatch(/no replication state/);
          expect(audit.stderr).toMatch(new RegExp(`${escaped(damaged)}.*damaged`));
          expectOneLine(audit.stderr);
        }
      }

      const rebuilt = await runMirrorlog(["sync", "--rebuild-state", ws.src, ws.dst], {
        env: ws.env,
        timeoutMs: 30_000,
      });
      expect(rebuilt.code, rebuilt.stderr).toBe(0);
      const differences = compareTrees(ws.src, ws.dst);
      expect(differences, formatDifferences(differences)).toEqual([]);
      expect(findTempFiles(ws.dst)).toEqual([]);
      const names = readdirSync(join(ws.stateHome, "mirrorlog"));
      expect(
        names.some((n) => n.startsWith(`${damaged.split("/").at(-1)}.corrupt-`)),
        names.join(", "),
      ).toBe(true);
      const status = await runMirrorlog(["status", "--json", ws.src], { env: ws.env });
      expect(status.code, status.stderr).toBe(0);
      expect(JSON.parse(status.stdout)[0].epoch.reason).toMatch(/rebuil/);
      const again = await runMirrorlog(["sync", ws.src, ws.dst], { env: ws.env });
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toBe("");
    },
  );

  it("a state directory on a full file system: exit 2 within 30 s, one line, no serve left; converges once freed", async () => {
    const ws = makeWorkspace("state-full");
    workspaces.push(ws);
    populate(ws.src, 20, 150);
    mkdirSync(ws.stateHome);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", ws.stateHome]);
    mounts.push(ws.stateHome);
    mkdirSync(join(ws.stateHome, "mirrorlog"));
    // Leaves about 200 KiB: enough to open both state files, not enough for the log of 3,000 files.
    const free = statfsSync(ws.stateHome);
    writeFileSync(join(ws.stateHome, "filler"), Buffer.alloc(Math.max(0, free.bavail * free.bsize - 200 * 1024)));

    const started = Date.now();
    const full = await runMirrorlog(["sync", ws.src, ws.dst], { env: ws.env, timeoutMs: 40_000 });
    expect(full.signal, `killed after ${Date.now() - started} ms: ${full.stderr}`).toBeNull();
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(full.code, full.stderr).toBe(2);
    expectOneLine(full.stderr);
    expect(full.stderr).toMatch(new RegExp(`state file ${escaped(join(ws.stateHome, "mirrorlog"))}/[^ ]+\\.db`));
    await pollUntil(() => servePids(ws.dst).length === 0, { deadlineMs: 5_000 });

    // Entirely full from the start: the same, before anything is written.
    writeFileSync(join(ws.stateHome, "filler2"), Buffer.alloc(0));
    const rest = statfsSync(ws.stateHome);
    try {
      writeFileSync(join(ws.stateHome, "filler2"), Buffer.alloc(rest.bavail * rest.bsize));
    } catch {
      // filled to the last byte
    }
    const fuller = await runMirrorlog(["sync", ws.src, ws.dst], { env: ws.env, timeoutMs: 40_000 });
    expect(fuller.code, fuller.stderr).toBe(2);
    expectOneLine(fuller.stderr);
    expect(fuller.stderr).toMatch(/state file .*\.db/);
    await pollUntil(() => servePids(ws.dst).length === 0, { deadlineMs: 5_000 });

    execFileSync("mount", ["-o", "remount,size=64m", ws.stateHome]);
    const freed = await runMirrorlog(["sync", ws.src, ws.dst], { env: ws.env, timeoutMs: 60_000 });
    expect(freed.code, freed.stderr).toBe(0);
    const differences = compareTrees(ws.src, ws.dst);
    expect(differences, formatDifferences(differences)).toEqual([]);
  });
});
