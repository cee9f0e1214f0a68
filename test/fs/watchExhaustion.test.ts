// Issue 10, finding 6: running out of inotify watches. Before the fix each directory without a kernel watch
// was reported as its own problem (nothing reached stderr) and hinted as a full rescan every 2 s, which on
// 5,201 unwatched directories of 20,201 kept a core at 100 % and the initial pass from ever finishing.
// These tests cap the kernel watches in-process (cappedWatchFactory, the same code the
// MIRRORLOG_MAX_KERNEL_WATCHES variable enables) instead of lowering the machine-wide sysctl.
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  cappedWatchFactory,
  DiskWatcher,
  type DiskWatcherOptions,
  defaultWatchFactory,
  type FileSystemProblem,
  kernelWatchFactory,
  MAX_KERNEL_WATCHES_ENV,
  watchLimitMessage,
} from "../../src/fs/diskWatcher.js";
import { type FileSystemEvent, FileSystemEventType } from "../../src/fs/fileSystem.js";
import { makeWorkspace, pollUntil, startWatch, waitForMirror } from "../support/cliRunner.js";

const { FILE_OR_SUBDIR_ADDED: ADDED, FILE_MODIFIED: MODIFIED } = FileSystemEventType;

/** Polls `condition` until it holds; fails with `what` after the deadline. Never a fixed sleep. */
async function waitFor(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

let root: string;
let watchers: DiskWatcher[];
let problems: FileSystemProblem[];
let notices: string[];

beforeEach(() => {
  root = mkdtempSync(`${tmpdir()}/mirrorlog-watchlimit-`);
  watchers = [];
  problems = [];
  notices = [];
});

afterEach(() => {
  for (const watcher of watchers) watcher.close();
  rmSync(root, { recursive: true, force: true });
});

/** A clock that counts how often it was read (a polling round reads it once to start, then once per directory). */
class CountingClock {
  reads = 0;
  readonly now = (): number => {
    this.reads += 1;
    return this.reads;
  };
}

/** A watcher on the real kernel, capped at `cap` watches, with `dirs` fresh directories d0.. watched in order. */
function watchedTree(
  dirs: number,
  cap: number,
  options: Partial<DiskWatcherOptions> = {},
): { watcher: DiskWatcher; events: FileSystemEvent[]; groups: number[] } {
  const watcher = new DiskWatcher({
    onProblem: (problem) => problems.push(problem),
    onNotice: (message) => notices.push(message),
    rescanIntervalMs: 10,
    pollBudgetMs: 1000,
    overflowThreshold: 16384,
    watchFactory: cappedWatchFactory(kernelWatchFactory, cap),
    isInternalName: () => false,
    ...options,
  });
  watchers.push(watcher);
  const events: FileSystemEvent[] = [];
  // Hints delivered in the same synchronous run (one polling round) form one group; `groups` holds their sizes.
  const groups: number[] = [];
  let open = false;
  const callback = (event: FileSystemEvent): void => {
    events.push(event);
    if (!open) {
      open = true;
      groups.push(0);
      queueMicrotask(() => {
        open = false;
      });
    }
    groups[groups.length - 1]! += 1;
  };
  for (let i = 0; i < dirs; i++) {
    mkdirSync(`${root}/d${i}`);
    writeFileSync(`${root}/d${i}/f`, "x");
    watcher.watch(`${root}/d${i}`, 0, callback);
  }
  return { watcher, events, groups };
}

describe("running out of kernel watches", () => {
  it("says it once, in one line with the directories needed, the unwatched count and the limit", async () => {
    const clock = new CountingClock();
    const { watcher } = watchedTree(40, 10, { clock: clock.now });
    expect(watcher.size).toBe(40);
    expect(watcher.polledCount).toBe(30);
    await waitFor("the watch-limit line", () => notices.length > 0);
    // Many more rounds: the line is not repeated, and no per-directory problem appears.
    const readsAtNotice = clock.reads;
    await waitFor("more polling rounds", () => clock.reads > readsAtNotice + 300);
    expect(notices).toHaveLength(1);
    expect(notices[0]).toContain("needs 40 watches");
    expect(notices[0]).toContain("fs.inotify.max_user_watches (10)");
    expect(notices[0]).toContain("left 30 directories unwatched");
    expect(notices[0]).toContain("sysctl fs.inotify.max_user_watches=40");
    expect(problems).toEqual([{ path: `${root}/d0`, reason: notices[0] }]);
  });

  it("a polled directory hints only when its listing or an entry changed, and a quiet one costs no hint", async () => {
    const clock = new CountingClock();
    const { events } = watchedTree(12, 4, { clock: clock.now });
    // d4..d11 are polled. Many rounds over a quiet tree: not a single hint.
    await waitFor("several polling rounds", () => clock.reads > 200);
    expect(events).toEqual([]);
    // Same size, new mtime: a content change a listing alone would miss.
    writeFileSync(`${root}/d7/f`, "y");
    utimesSync(`${root}/d7/f`, 1, 1);
    await waitFor("a hint for d7", () => events.length > 0);
    expect(events).toEqual([{ path: `${root}/d7`, eventType: ADDED }]);
    // A kernel-watched directory still reports through the kernel, per file.
    writeFileSync(`${root}/d1/f`, "changed");
    await waitFor("a kernel event in d1", () => events.some((event) => event.path === `${root}/d1/f`));
    expect(events.find((event) => event.path === `${root}/d1/f`)?.eventType).toBe(MODIFIED);
  });

  it("a round looks at no more directories than its budget allows (at least one), round-robin", async () => {
    // The clock advances one unit per read: a budget of 3 units lets a round look at 3 directories.
    const clock = new CountingClock();
    const { events, groups } = watchedTree(25, 5, { clock: clock.now, pollBudgetMs: 3 });
    await waitFor("the watch-limit line", () => notices.length > 0);
    for (let i = 5; i < 25; i++) writeFileSync(`${root}/d${i}/new`, "x");
    await waitFor("a hint for every polled directory", () => new Set(events.map((event) => event.path)).size === 20);
    expect(Math.max(...groups)).toBeLessThanOrEqual(3);
    expect(groups.length).toBeGreaterThanOrEqual(7);
  });

  it("a budget of zero still polls one directory per round, so every change is seen", async () => {
    const { events, groups } = watchedTree(8, 2, { pollBudgetMs: 0 });
    for (let i = 2; i < 8; i++) writeFileSync(`${root}/d${i}/new`, "x");
    await waitFor("a hint for every polled directory", () => new Set(events.map((event) => event.path)).size === 6);
    expect(Math.max(...groups)).toBe(1);
  });

  it("kernel watches released later go to polled directories, which then report through the kernel", async () => {
    const { watcher, events } = watchedTree(6, 3);
    expect(watcher.polledCount).toBe(3);
    for (const dir of ["d0", "d1", "d2"]) watcher.unwatch(`${root}/${dir}`);
    await waitFor("polled directories to get kernel watches", () => watcher.polledCount === 0);
    writeFileSync(`${root}/d4/f`, "changed");
    await waitFor("a kernel event in d4", () => events.some((event) => event.path === `${root}/d4/f`));
  });
});

describe("the test cap on kernel watches", () => {
  it("is off without the variable, and refuses a value that is not a count", () => {
    expect(defaultWatchFactory({})).toBe(kernelWatchFactory);
    expect(defaultWatchFactory({ [MAX_KERNEL_WATCHES_ENV]: "7" }).limit).toBe(7);
    expect(() => defaultWatchFactory({ [MAX_KERNEL_WATCHES_ENV]: "lots" })).toThrow(MAX_KERNEL_WATCHES_ENV);
  });

  it("fails with ENOSPC past the cap and frees a slot when a watch closes", () => {
    mkdirSync(`${root}/a`);
    const factory = cappedWatchFactory(kernelWatchFactory, 1);
    const first = factory(`${root}/a`, () => {});
    let code: string | undefined;
    try {
      factory(root, () => {});
    } catch (error) {
      code = (error as NodeJS.ErrnoException).code;
    }
    expect(code).toBe("ENOSPC");
    first.close();
    return new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      factory(root, () => {}).close();
    });
  });

  it("the message suggests enough for the tree beyond what the limit already allows", () => {
    const message = watchLimitMessage({ watched: 100, polled: 30, limit: 8192, roundSeconds: 4 });
    expect(message).toContain("sysctl fs.inotify.max_user_watches=8222");
    expect(message).toContain("needs 100 watches");
  });
});

describe("mirrorlog watch with too few kernel watches (the real binary)", () => {
  const created: string[] = [];
  afterAll(() => {
    for (const base of created) rmSync(base, { recursive: true, force: true });
  });

  it("finishes the initial pass, says so in one stderr line, and still mirrors changes in polled directories", async () => {
    const ws = makeWorkspace("watchlimit", created);
    // 300 directories (+ the root) for 100 watches: the last 201 in walk order are polled.
    for (let a = 0; a < 10; a++) {
      for (let b = 0; b < 29; b++) {
        mkdirSync(join(ws.src, `a${a}`, `b${String(b).padStart(2, "0")}`), { recursive: true });
        writeFileSync(join(ws.src, `a${a}`, `b${String(b).padStart(2, "0")}`, "f"), `${a}/${b}\n`);
      }
    }
    const env = { ...ws.env, [MAX_KERNEL_WATCHES_ENV]: "100" };
    const watch = await startWatch(ws.src, ws.dst, { env, args: ["--json"], readyDeadlineMs: 60_000 });
    const context = () => `watch stderr:\n${watch.stderr()}`;
    try {
      await pollUntil(() => watch.stderr().includes("max_user_watches"), { deadlineMs: 30_000, describe: context });
      const lines = watch
        .stderr()
        .split("\n")
        .filter((line) => line.includes("max_user_watches"));
      expect(lines, context()).toHaveLength(1);
      expect(lines[0]).toContain("needs 301 watches");
      expect(lines[0]).toContain("left 201 directories unwatched");
      // Polled directories (late in the walk) and a kernel-watched one (early) both replicate.
      writeFileSync(join(ws.src, "a9", "b28", "new"), "polled\n");
      writeFileSync(join(ws.src, "a9", "b27", "f"), "rewritten in a polled directory\n");
      writeFileSync(join(ws.src, "a0", "b00", "new"), "watched\n");
      await waitForMirror(ws.src, ws.dst, { deadlineMs: 60_000, context });
    } finally {
      const stopped = await watch.stop();
      const summary = JSON.parse(stopped.stdout) as { problems: { reason: string }[] };
      expect(summary.problems.filter((problem) => problem.reason.includes("max_user_watches"))).toHaveLength(1);
    }
  }, 150_000);
});
