// SIGINT, SIGTERM and SIGHUP stop `sync` and `watch` promptly in every phase, through the real binary:
// exit 20 with one line, the local serve child gone, no temp files in DST, the target lock free (the
// next sync succeeds and DST then equals SRC). The run prints a marker as it reaches each phase
// (MIRRORLOG_TEST_PHASES); a short phase is held until the signal (MIRRORLOG_TEST_HOLD), see interrupt.ts.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  makeWorkspace,
  pollUntil,
  processesMentioning,
  type RunningMirrorlog,
  runMirrorlog,
  spawnMirrorlog,
  type Workspace,
} from "../support/cliRunner.js";
import { compareTrees, findTempFiles, formatDifferences } from "../support/treeOracle.js";

const created: string[] = [];
afterAll(() => {
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

/** How long a signalled run may take to exit (generous: the suite shares two cores). */
const EXIT_DEADLINE_MS = 10_000;
const PHASE_MARKER = /^mirrorlog: phase \S+$/;
const INTERRUPTED_LINE =
  /^mirrorlog: interrupted by (SIGINT|SIGTERM|SIGHUP); ".*" is partly updated, run again to finish$/;

/**
 * A source big enough that each phase lasts: a few hundred small files, and large ones sent as uploads.
 * Again on a populated source: every file gets new content.
 */
function populate(ws: Workspace): void {
  for (let i = 0; i < 2; i++) writeFileSync(join(ws.src, `large-${i}.bin`), randomBytes(6 * 1024 * 1024));
  for (let d = 0; d < 6; d++) {
    const dir = join(ws.src, `dir-${d}`);
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 80; f++) writeFileSync(join(dir, `file-${f}`), randomBytes(4096));
  }
}

async function exitWithin(
  run: RunningMirrorlog,
  deadlineMs: number,
): Promise<{ code: number | null; elapsedMs: number }> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const ended = await Promise.race([
    run.exited,
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), deadlineMs);
    }),
  ]);
  clearTimeout(timer);
  if (ended === undefined) {
    run.child.kill("SIGKILL");
    await run.exited;
    throw new Error(`no exit within ${deadlineMs} ms of the signal; stderr:\n${run.stderr()}`);
  }
  return { code: ended.code, elapsedMs: Date.now() - started };
}

/** What the interrupted run left: no serve, no temps, a free lock (a new sync mirrors DST exactly). */
async function expectCleanlyInterrupted(ws: Workspace, dst: string, servePids: number[], context: string) {
  await pollUntil(() => servePids.every((pid) => !processesMentioning(`--root=${dst}`).includes(pid)), {
    deadlineMs: 2_000,
    describe: () => `the serve child outlived its run: ${processesMentioning(`--root=${dst}`).join(", ")}; ${context}`,
  });
  // A target stopped while starting may not have created DST yet.
  if (existsSync(dst)) expect(findTempFiles(dst), context).toEqual([]);
  const resumed = await runMirrorlog(["sync", ws.src, dst], { env: ws.env, timeoutMs: 60_000 });
  expect(resumed.code, `${context}\nresumed sync: ${resumed.stderr}`).toBe(0);
  const differences = compareTrees(ws.src, dst, { mtimes: true });
  expect(differences, formatDifferences(differences)).toEqual([]);
}

/** The phases of a sync, each with the signal sent there and whether the run is held at it. */
const SYNC_PHASES: { phase: string; hold: boolean; signal: NodeJS.Signals }[] = [
  { phase: "start", hold: true, signal: "SIGINT" }, // the target process starting, before the handshake
  { phase: "handshake", hold: true, signal: "SIGTERM" }, // connected; the session's hello not yet sent
  { phase: "scan", hold: false, signal: "SIGHUP" }, // reading the source
  { phase: "manifest", hold: true, signal: "SIGINT" }, // asking for the target's listing
  { phase: "transfer", hold: false, signal: "SIGTERM" }, // files and uploads in flight
  { phase: "final", hold: true, signal: "SIGHUP" }, // everything sent; the target's last flush and exit
];

/**
 * Runs `sync SRC DST` until it reaches `phase` (held there when `hold`), checks where its target runs (a
 * serve child, or this process: none), sends `signal`, and checks the ending: exit 20 with one line, no
 * serve, no temps, the lock free.
 */
async function interruptSync(
  ws: Workspace,
  dst: string,
  { phase, hold, signal }: (typeof SYNC_PHASES)[number],
  target: "child" | "in process",
): Promise<void> {
  const env = { ...ws.env, MIRRORLOG_TEST_PHASES: "1", ...(hold ? { MIRRORLOG_TEST_HOLD: phase } : {}) };
  const run = spawnMirrorlog(["sync", ws.src, dst], env);
  await pollUntil(() => run.stderr().includes(`mirrorlog: phase ${phase}\n`), {
    deadlineMs: 30_000,
    describe: () => `phase ${phase} never came; stderr:\n${run.stderr()}`,
  });
  // Every phase from "start" on has its target (held phases wait with it running): a serve child, or none.
  const servePids = processesMentioning(`--root=${dst}`);
  if (target === "child") expect(servePids.length, run.stderr()).toBeGreaterThan(0);
  else expect(servePids, run.stderr()).toEqual([]);
  run.child.kill(signal);
  const ended = await exitWithin(run, EXIT_DEADLINE_MS);
  const context = `phase ${phase}, ${signal}, target ${target}: exit ${ended.code} after ${ended.elapsedMs} ms; stderr:\n${run.stderr()}`;
  expect(ended.code, context).toBe(20);
  const lines = run
    .stderr()
    .split("\n")
    .filter((line) => line !== "" && !PHASE_MARKER.test(line));
  expect(lines, context).toHaveLength(1);
  expect(lines[0], context).toMatch(INTERRUPTED_LINE);
  expect(lines[0], context).toContain(signal);
  await expectCleanlyInterrupted(ws, dst, servePids, context);
}

describe("interruption", () => {
  const ws = makeWorkspace("interrupt", created);
  populate(ws);

  for (const syncPhase of SYNC_PHASES) {
    it(`sync: ${syncPhase.signal} in phase ${syncPhase.phase} exits 20 with one line, no serve, no temps, lock free`, async () => {
      await interruptSync(ws, join(ws.base, `dst-${syncPhase.phase}`), syncPhase, "child");
    });
  }

  it("reads the source while its target is still starting (held there), and still stops cleanly", async () => {
    const dst = join(ws.base, "dst-overlap");
    const env = { ...ws.env, MIRRORLOG_TEST_PHASES: "1", MIRRORLOG_TEST_HOLD: "start" };
    const run = spawnMirrorlog(["sync", ws.src, dst], env);
    // The target never gets past "start"; the walk scans files meanwhile (mirror.ts: connecting).
    await pollUntil(() => run.stderr().includes("mirrorlog: phase scan\n"), {
      deadlineMs: 30_000,
      describe: () => `no scan while the target started; stderr:\n${run.stderr()}`,
    });
    expect(run.stderr()).toContain("mirrorlog: phase start\n");
    expect(run.stderr()).not.toContain("mirrorlog: phase handshake\n");
    const servePids = processesMentioning(`--root=${dst}`);
    run.child.kill("SIGINT");
    const ended = await exitWithin(run, EXIT_DEADLINE_MS);
    const context = `exit ${ended.code}; stderr:\n${run.stderr()}`;
    expect(ended.code, context).toBe(20);
    await expectCleanlyInterrupted(ws, dst, servePids, context);
  });

  it("watch: SIGINT during the initial sync exits 20; SIGTERM to an idle watch stops it in order (exit 0)", async () => {
    const dst = join(ws.base, "dst-watch");
    const env = { ...ws.env, MIRRORLOG_TEST_PHASES: "1" };
    const first = spawnMirrorlog(["watch", "--json", ws.src, dst], env);
    await pollUntil(() => first.stderr().includes("mirrorlog: phase transfer\n"), {
      deadlineMs: 30_000,
      describe: () => `no transfer; stderr:\n${first.stderr()}`,
    });
    const firstPids = processesMentioning(`--root=${dst}`);
    first.child.kill("SIGINT");
    const interrupted = await exitWithin(first, EXIT_DEADLINE_MS);
    const context = `initial sync of watch: exit ${interrupted.code}; stderr:\n${first.stderr()}`;
    expect(interrupted.code, context).toBe(20);
    expect(first.stderr(), context).toMatch(/^mirrorlog: interrupted by SIGINT; /m);
    expect(findTempFiles(dst), context).toEqual([]);
    await pollUntil(() => firstPids.every((pid) => !processesMentioning(`--root=${dst}`).includes(pid)), {
      deadlineMs: 2_000,
      describe: () => `serve outlived the watch; ${context}`,
    });

    // The next watch resumes, finishes the initial sync and idles; SIGTERM then ends it at once, in order.
    const second = spawnMirrorlog(["watch", "--json", ws.src, dst], env);
    await pollUntil(() => second.stderr().includes("mirrorlog: watching "), {
      deadlineMs: 30_000,
      describe: () => `the second watch never watched; stderr:\n${second.stderr()}`,
    });
    const secondPids = processesMentioning(`--root=${dst}`);
    second.child.kill("SIGTERM");
    const stopped = await exitWithin(second, EXIT_DEADLINE_MS);
    const idle = `idle watch: exit ${stopped.code} after ${stopped.elapsedMs} ms; stderr:\n${second.stderr()}`;
    expect(stopped.code, idle).toBe(0);
    expect(stopped.elapsedMs, idle).toBeLessThan(5_000);
    expect(JSON.parse(second.stdout()).problems, idle).toEqual([]);
    await expectCleanlyInterrupted(ws, dst, secondPids, idle);
  });
});

// A sync of a known pair with a short log serves its target in this process (mirror.ts, targetInProcess):
// the same endings hold without a serve child. Each case mirrors the tree first (a first sync has a
// child), then gives every file new content, so that the interrupted re-sync has a whole transfer to do.
describe("interruption, target served in process", () => {
  const ws = makeWorkspace("interrupt-in-process", created);
  populate(ws);

  for (const syncPhase of SYNC_PHASES) {
    it(`sync: ${syncPhase.signal} in phase ${syncPhase.phase} exits 20 with one line, no temps, lock free`, async () => {
      const dst = join(ws.base, `dst-${syncPhase.phase}`);
      const first = await runMirrorlog(["sync", ws.src, dst], { env: ws.env, timeoutMs: 60_000 });
      expect(first.code, first.stderr).toBe(0);
      populate(ws);
      await interruptSync(ws, dst, syncPhase, "in process");
    });
  }
});
