// A sync of a known pair whose log is short, or whose last sync was small, serves its local target in its
// own process instead of a `serve` child (mirror.ts, targetInProcess): such a run is mostly start-up and
// walking, and a second node process would add its own start. What must not change with it: the mirror is exact, the target root is locked while the
// run holds it (a second source is refused, naming this run's pid), the lock is free once it ends, and a
// target state file that cannot be used ends the run with its one line and exit 2.
// (Interruption in every phase: interrupt.test.ts.)
import { mkdirSync, readdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import {
  makeWorkspace,
  pollUntil,
  processesMentioning,
  runMirrorlog,
  spawnMirrorlog,
  summaryOf,
  type Workspace,
} from "../support/cliRunner.js";
import { compareTrees, findTempFiles, formatDifferences } from "../support/treeOracle.js";

const created: string[] = [];
afterAll(() => {
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

/** A small tree mirrored once (the first sync has a serve child): from now on the pair is known. */
async function knownPair(label: string): Promise<Workspace> {
  const ws = makeWorkspace(label, created);
  mkdirSync(join(ws.src, "docs"));
  for (let i = 0; i < 5; i++) writeFileSync(join(ws.src, "docs", `note-${i}.txt`), `note ${i}\n`.repeat(30));
  writeFileSync(join(ws.src, "old.txt"), "to be deleted\n");
  const first = await runMirrorlog(["sync", ws.src, ws.dst], { env: ws.env });
  expect(first.code, first.stderr).toBe(0);
  return ws;
}

function expectMirrored(ws: Workspace): void {
  const differences = compareTrees(ws.src, ws.dst, { mtimes: true });
  expect(differences, formatDifferences(differences)).toEqual([]);
  expect(findTempFiles(ws.dst)).toEqual([]);
}

describe("a target served in process", () => {
  it("mirrors every kind of change of a known pair exactly", async () => {
    const ws = await knownPair("in-process-mirror");
    writeFileSync(join(ws.src, "docs", "note-0.txt"), "rewritten\n");
    mkdirSync(join(ws.src, "new", "deeper"), { recursive: true });
    writeFileSync(join(ws.src, "new", "deeper", "file.bin"), Buffer.alloc(200_000, 7));
    symlinkSync("docs/note-1.txt", join(ws.src, "link"));
    unlinkSync(join(ws.src, "old.txt"));

    const run = await runMirrorlog(["sync", "--json", ws.src, ws.dst], { env: ws.env });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toBe("");
    const summary = summaryOf(run);
    expect(summary.filesWritten, run.stdout).toBe(2);
    expect(summary.filesDeleted, run.stdout).toBe(1);
    expect(summary.problems).toEqual([]);
    expectMirrored(ws);
  });

  it("with a long log, serves in process once the last sync was small; a large last sync keeps the child", async () => {
    const ws = makeWorkspace("in-process-last-sync", created);
    // More files than a short epoch holds operations: the first sync alone makes the log long.
    for (let d = 0; d < 21; d++) {
      mkdirSync(join(ws.src, `d${d}`));
      for (let f = 0; f < 100; f++) writeFileSync(join(ws.src, `d${d}`, `f${f}`), `${d}/${f}\n`);
    }
    const first = await runMirrorlog(["sync", ws.src, ws.dst], { env: ws.env });
    expect(first.code, first.stderr).toBe(0);
    /** Whether a sync held in its manifest phase has a serve child for the target; the run is then stopped. */
    const servedByChild = async (): Promise<boolean> => {
      const env = { ...ws.env, MIRRORLOG_TEST_PHASES: "1", MIRRORLOG_TEST_HOLD: "manifest" };
      const run = spawnMirrorlog(["sync", ws.src, ws.dst], env);
      await pollUntil(() => run.stderr().includes("mirrorlog: phase manifest\n"), {
        deadlineMs: 30_000,
        describe: () => `no manifest phase; stderr:\n${run.stderr()}`,
      });
      const child = processesMentioning(`--root=${ws.dst}`).length > 0;
      run.child.kill("SIGTERM");
      expect((await run.exited).code, run.stderr()).toBe(20);
      return child;
    };
    // The last sync logged 2,100 operations and more: a child (an interrupted run records nothing).
    expect(await servedByChild()).toBe(true);
    const small = await runMirrorlog(["sync", ws.src, ws.dst], { env: ws.env });
    expect(small.code, small.stderr).toBe(0);
    // The last sync scanned 2,100 files and logged nothing: in process.
    expect(await servedByChild()).toBe(false);
    // As if the last sync had scanned a tree too large to walk twice on one thread: a child again.
    const statePath = join(
      ws.stateHome,
      "mirrorlog",
      readdirSync(join(ws.stateHome, "mirrorlog")).find((name) => name.startsWith("source-") && name.endsWith(".db"))!,
    );
    const db = new Database(statePath);
    db.prepare("UPDATE service SET value = ? WHERE key = 'last-sync-size'").run(
      JSON.stringify({ files: 30_000, operations: 0 }),
    );
    db.close();
    expect(await servedByChild()).toBe(true);
    const resumed = await runMirrorlog(["sync", ws.src, ws.dst], { env: ws.env });
    expect(resumed.code, resumed.stderr).toBe(0);
    expectMirrored(ws);
  });

  it("holds the target's lock while it runs (a second source is refused, naming it); SIGTERM frees it", async () => {
    const ws = await knownPair("in-process-lock");
    writeFileSync(join(ws.src, "docs", "note-2.txt"), "changed while another source waits\n");
    const env = { ...ws.env, MIRRORLOG_TEST_PHASES: "1", MIRRORLOG_TEST_HOLD: "manifest" };
    const run = spawnMirrorlog(["sync", ws.src, ws.dst], env);
    await pollUntil(() => run.stderr().includes("mirrorlog: phase manifest\n"), {
      deadlineMs: 30_000,
      describe: () => `no manifest phase; stderr:\n${run.stderr()}`,
    });
    // No process serves the target: this run does, and holds its lock.
    expect(processesMentioning(`--root=${ws.dst}`)).toEqual([]);
    const other = join(ws.base, "other-src");
    mkdirSync(other);
    writeFileSync(join(other, "x"), "another source\n");
    const refused = await runMirrorlog(["sync", "--delete", other, ws.dst], { env: ws.env });
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toContain(`being written by another mirrorlog (pid ${run.child.pid})`);

    run.child.kill("SIGTERM");
    const ended = await run.exited;
    expect(ended.code, run.stderr()).toBe(20);
    const resumed = await runMirrorlog(["sync", ws.src, ws.dst], { env: ws.env });
    expect(resumed.code, resumed.stderr).toBe(0);
    expectMirrored(ws);
  });

  it("a damaged target state file ends the run with its one line and exit 2, the lock free", async () => {
    const ws = await knownPair("in-process-state");
    const stateDir = join(ws.stateHome, "mirrorlog");
    const targetState = readdirSync(stateDir).find((name) => name.startsWith("target-") && name.endsWith(".db"));
    expect(targetState, readdirSync(stateDir).join(", ")).toBeDefined();
    const path = join(stateDir, targetState!);
    for (const suffix of ["", "-wal", "-shm"]) rmSync(`${path}${suffix}`, { force: true });
    writeFileSync(path, Buffer.alloc(8192, 0x5a)); // not a database at all

    const refused = await runMirrorlog(["sync", ws.src, ws.dst], { env: ws.env });
    expect(refused.code, refused.stderr).toBe(2);
    const lines = refused.stderr.trim().split("\n");
    expect(lines, refused.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^mirrorlog: target state file /);
    expect(lines[0]).toContain(path);
    expect(lines[0]).toContain("--rebuild-state");

    const rebuilt = await runMirrorlog(["sync", "--rebuild-state", ws.src, ws.dst], { env: ws.env });
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    expectMirrored(ws);
  });
});
