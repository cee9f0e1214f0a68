// The progress display through the real binary on a real pseudo-terminal (util-linux `script`), 80
// columns wide: a scanning phase, then a bar whose total is the source's file count, no line wider than
// the terminal, the cursor shown again at the end (also after Ctrl-C); off on a pipe unless --progress;
// in watch, the "watching" line and a SIGUSR1 summary on lines of their own.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { MIRRORLOG_BIN, makeWorkspace, pollUntil, runMirrorlog, type Workspace } from "../support/cliRunner.js";
import { compareTrees } from "../support/treeOracle.js";

const created: string[] = [];
afterAll(() => {
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

const HIDE_CURSOR = "\x1b[?25l";
const SHOW_CURSOR = "\x1b[?25h";
/** CSI and other escape sequences, as a terminal would consume them. */
/** The escape character (a regular expression literal may not hold it). */
const ESC = String.fromCharCode(27);
const ANSI = new RegExp(`${ESC}(?:\\[[0-?]*[ -/]*[@-~]|[78])`, "g");
/** Moving the cursor to a column (cli-progress returns to the line's start this way) starts a new rendering. */
const CURSOR_TO_COLUMN = new RegExp(`${ESC}\\[\\d*G`, "g");
/** The terminal's own echo of Ctrl-C (not the program's output). */
const ECHOED_CTRL_C = "^C";
/** The source's regular files: one large, the rest small in five directories. */
const FILES = 301;

function populate(ws: Workspace): void {
  writeFileSync(join(ws.src, "large.bin"), randomBytes(3 * 1024 * 1024));
  for (let d = 0; d < 5; d++) {
    mkdirSync(join(ws.src, `dir-${d}`));
    for (let f = 0; f < (FILES - 1) / 5; f++) writeFileSync(join(ws.src, `dir-${d}`, `f-${f}`), randomBytes(2048));
  }
}

/** A command run on a pseudo-terminal of 80 columns; `input` goes to the terminal (e.g. "\x03" is Ctrl-C). */
interface PtyRun {
  child: ChildProcess;
  output(): string;
  input(data: string): void;
  exited: Promise<number | null>;
}

function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

function runInPty(args: string[], env: NodeJS.ProcessEnv): PtyRun {
  const command = `stty cols 80 rows 24; exec ${[process.execPath, MIRRORLOG_BIN, ...args].map(shellQuote).join(" ")}`;
  const child = spawn("script", ["-qfec", command, "/dev/null"], {
    env: { ...env, COLUMNS: "80", TERM: "xterm" },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    out += chunk;
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    out += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  return { child, output: () => out, input: (data) => child.stdin!.write(data), exited };
}

/** What a terminal shows, line by line: escapes stripped, each \r or \n starting a new rendering. */
function renderedLines(output: string): string[] {
  return output
    .replace(CURSOR_TO_COLUMN, "\r")
    .replaceAll(ECHOED_CTRL_C, "")
    .replace(ANSI, "")
    .split(/[\r\n]/);
}

/** What the display draws: the scanning count, the bar, the watch's status line. */
const DRAWN = /^(scanning: |\[[#-]+\] \d+% |watching: \d)/;

/**
 * Every line the display draws fits the 80 columns and holds nothing else (no message glued onto it);
 * the cursor, once hidden, is shown again after the last hiding.
 */
function expectTerminalRestored(output: string): void {
  const drawn = renderedLines(output).filter((line) => DRAWN.test(line));
  expect(
    drawn.filter((line) => line.length > 80 || line.includes("mirrorlog:")),
    output,
  ).toEqual([]);
  expect(output.lastIndexOf(SHOW_CURSOR), output).toBeGreaterThan(output.lastIndexOf(HIDE_CURSOR));
}

async function exitOf(run: PtyRun, deadlineMs = 60_000): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    run.exited,
    new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), deadlineMs);
    }),
  ]);
  clearTimeout(timer);
  if (code === "timeout") {
    run.child.kill("SIGKILL");
    throw new Error(`no exit within ${deadlineMs} ms; output:\n${run.output()}`);
  }
  return code;
}

describe("progress on a terminal", () => {
  const ws = makeWorkspace("progress", created);
  populate(ws);

  it("sync: scanning, then a bar of the source's files; 80 columns; the cursor shown at the end", async () => {
    const dst = join(ws.base, "dst-sync");
    const run = runInPty(["sync", ws.src, dst], ws.env);
    const code = await exitOf(run);
    const output = run.output();
    expect(code, output).toBe(0);
    expect(output).toContain(HIDE_CURSOR);
    expectTerminalRestored(output);
    const lines = renderedLines(output);
    const scanning = lines.findIndex((line) => /^scanning: [\d,]+ entries$/.test(line));
    const firstBar = lines.findIndex((line) => /^\[[#-]+\] \d+% /.test(line));
    expect(scanning, output).toBeGreaterThanOrEqual(0);
    expect(firstBar, output).toBeGreaterThan(scanning);
    const bars = lines.filter((line) => /^\[[#-]+\] \d+% /.test(line));
    for (const bar of bars) expect(bar).toMatch(new RegExp(` [\\d,]+/${FILES} files `));
    expect(bars[bars.length - 1]).toMatch(new RegExp(`^\\[#+\\] 100% ${FILES}/${FILES} files `));
    expect(compareTrees(ws.src, dst)).toEqual([]);
  });

  it("sync: Ctrl-C during the transfer ends with exit 20, one line, and the cursor shown again", async () => {
    const dst = join(ws.base, "dst-interrupted");
    // The first transfer request is held until the interruption (interrupt.ts): the bar is up meanwhile.
    const env = { ...ws.env, MIRRORLOG_TEST_PHASES: "1", MIRRORLOG_TEST_HOLD: "transfer" };
    const run = runInPty(["sync", ws.src, dst], env);
    await pollUntil(() => /mirrorlog: phase transfer/.test(run.output()) && / files /.test(run.output()), {
      deadlineMs: 30_000,
      describe: () => `no bar during the transfer; output:\n${run.output()}`,
    });
    run.input("\x03");
    const code = await exitOf(run, 15_000);
    const output = run.output();
    expect(code, output).toBe(20);
    expectTerminalRestored(output);
    expect(renderedLines(output).filter((line) => line.startsWith("mirrorlog: interrupted by SIGINT"))).toHaveLength(1);
  });

  it("watch: the watching line and a SIGUSR1 summary stand on lines of their own", async () => {
    // A source of its own: this test changes it.
    const ws = makeWorkspace("progress-watch", created);
    populate(ws);
    const dst = join(ws.base, "dst-watch");
    const run = runInPty(["watch", ws.src, dst], ws.env);
    await pollUntil(() => run.output().includes("mirrorlog: watching "), {
      deadlineMs: 30_000,
      describe: () => `never watching; output:\n${run.output()}`,
    });
    // The bar ended with a newline: the watching line starts a line of its own.
    expect(run.output(), run.output()).toMatch(new RegExp(`\n(${ESC}\\[[0-?]*[ -/]*[@-~])*mirrorlog: watching `));
    writeFileSync(join(ws.src, "changed-while-watching"), "new");
    await pollUntil(() => /watching: \d+ operations applied/.test(run.output()), {
      deadlineMs: 20_000,
      describe: () => `no status line after a change; output:\n${run.output()}`,
    });
    // The watch is the session leader of the terminal `script` made (exec): its pid is script's child's.
    const watchPid = Number(
      readFileSync(`/proc/${run.child.pid}/task/${run.child.pid}/children`, "utf8").trim().split(/\s+/)[0],
    );
    expect(watchPid).toBeGreaterThan(0);
    process.kill(watchPid, "SIGUSR1");
    await pollUntil(() => /Duration: [^\r\n]*\r?\n/.test(run.output()), {
      deadlineMs: 10_000,
      describe: () => `no summary after SIGUSR1; output:\n${run.output()}`,
    });
    writeFileSync(join(ws.src, "changed-after-the-summary"), "newer");
    await pollUntil(() => compareTrees(ws.src, dst).length === 0, { deadlineMs: 20_000 });
    run.input("\x03");
    expect(await exitOf(run, 15_000), run.output()).toBe(0);
    const output = run.output();
    expectTerminalRestored(output);
    // Each summary line ends with a newline before anything draws again: nothing overwrote it.
    const summary = output.slice(output.indexOf("Number of files scanned"));
    expect(summary).toMatch(/^Number of files scanned: [\d,]+\r?\n/);
    expect(summary).toMatch(/Duration: [^\r\n]*\r?\n/);
    expect(renderedLines(output)).toContain(renderedLines(summary)[0]);
  });

  it("off on a pipe unless --progress; --no-progress keeps a terminal quiet", async () => {
    const piped = await runMirrorlog(["sync", ws.src, join(ws.base, "dst-piped")], { env: ws.env });
    expect(piped.code, piped.stderr).toBe(0);
    expect(piped.stderr).toBe("");
    const asked = await runMirrorlog(["sync", "--progress", ws.src, join(ws.base, "dst-asked")], { env: ws.env });
    expect(asked.code, asked.stderr).toBe(0);
    expect(asked.stderr).toMatch(new RegExp(`100% ${FILES}/${FILES} files`));
    const quiet = runInPty(["sync", "--no-progress", ws.src, join(ws.base, "dst-quiet")], ws.env);
    expect(await exitOf(quiet), quiet.output()).toBe(0);
    expect(quiet.output()).not.toContain(HIDE_CURSOR);
    expect(quiet.output()).not.toMatch(/\d+% [\d,]+\/[\d,]+ files/);
  });
});
