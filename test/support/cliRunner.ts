// Runs the real `mirrorlog` binary (bin/mirrorlog over the bundled dist/bundle/main.cjs) in child processes for
// end-to-end tests, and waits for conditions by polling with a deadline (never a fixed sleep).
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { MIRRORLOG_BIN, mirrorlogArgs } from "../../src/cli/nodeCommand.js";
import type { RunSummary } from "../../src/cli/report.js";
import { type CompareOptions, compareTrees, formatDifferences, type TreeDifference } from "./treeOracle.js";

/** This checkout's bin/mirrorlog, and the argv after node that runs it with mirrorlog's own V8 flags. */
export { MIRRORLOG_BIN, mirrorlogArgs };

/** How a finished run of the binary ended. */
export interface CliResult {
  /** Exit status, or null when killed by a signal (or the timeout). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Options of runMirrorlog. */
export interface RunOptions {
  /** The child's whole environment; must set XDG_STATE_HOME to a temp dir (see testEnvironment). */
  env: NodeJS.ProcessEnv;
  /** Kill the child after this long (default 30 s). */
  timeoutMs?: number;
  cwd?: string;
  /** Run as this user/group (root only): lets permission tests run while the suite runs as root. */
  uid?: number;
  gid?: number;
}

/** The test process's environment with mirrorlog's state redirected to `stateHome` (never the real home). */
export function testEnvironment(stateHome: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_STATE_HOME: stateHome, ...extra };
  // An ssh command line inherited from the developer's shell would change which host tests reach.
  if (extra.MIRRORLOG_SSH === undefined) delete env.MIRRORLOG_SSH;
  return env;
}

/** A fresh end-to-end workspace: src/ (created), dst (not created), and a private XDG_STATE_HOME. */
export interface Workspace {
  base: string;
  src: string;
  dst: string;
  stateHome: string;
  env: NodeJS.ProcessEnv;
}

/** Makes a workspace under the temp dir named after `label`; its base is pushed onto `created` for cleanup. */
export function makeWorkspace(label: string, created: string[]): Workspace {
  const base = mkdtempSync(join(tmpdir(), `mirrorlog-e2e-${label}-`));
  created.push(base);
  const src = join(base, "src");
  mkdirSync(src);
  const stateHome = join(base, "state");
  return { base, src, dst: join(base, "dst"), stateHome, env: testEnvironment(stateHome) };
}

/** The `--json` summary of a run; fails naming the run's output when stdout is not one JSON object. */
export function summaryOf(result: CliResult): RunSummary {
  try {
    return JSON.parse(result.stdout) as RunSummary;
  } catch {
    throw new Error(
      `stdout is not one JSON object (exit ${result.code}):\n${result.stdout}\nstderr:\n${result.stderr}`,
    );
  }
}

function assertBuilt(): void {
  const compiled = fileURLToPath(new URL("../../dist/bundle/main.cjs", import.meta.url));
  if (!existsSync(compiled)) throw new Error(`${compiled} is missing: run \`npm run build\` first`);
}

/** Runs `node bin/mirrorlog ...args` to completion. */
export function runMirrorlog(args: readonly string[], options: RunOptions): Promise<CliResult> {
  assertBuilt();
  if (options.env.XDG_STATE_HOME === undefined) throw new Error("runMirrorlog: set XDG_STATE_HOME in env");
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      mirrorlogArgs(args),
      {
        env: options.env,
        timeout: options.timeoutMs ?? 30_000,
        killSignal: "SIGKILL",
        maxBuffer: 64 * 1024 * 1024,
        ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
        ...(options.uid === undefined ? {} : { uid: options.uid }),
        ...(options.gid === undefined ? {} : { gid: options.gid }),
      },
      (error, stdout, stderr) => {
        const failure = error as (Error & { code?: number | string; signal?: NodeJS.Signals | null }) | null;
        resolve({
          code: failure === null ? 0 : typeof failure.code === "number" ? failure.code : null,
          signal: failure?.signal ?? null,
          stdout,
          stderr,
        });
      },
    );
  });
}

/** A `mirrorlog` child still running, what it has printed so far, and how it ended. */
export interface RunningMirrorlog {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns `node bin/mirrorlog ...args` without waiting for it, collecting its output. */
export function spawnMirrorlog(args: readonly string[], env: NodeJS.ProcessEnv): RunningMirrorlog {
  assertBuilt();
  const child = spawn(process.execPath, mirrorlogArgs(args), { env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    out += chunk;
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    err += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("close", (code, signal) => resolve({ code, signal }));
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** A running `mirrorlog watch`. */
export interface WatchProcess {
  child: ChildProcess;
  /** Output so far. */
  stdout(): string;
  stderr(): string;
  /** Sends SIGTERM and waits for the exit; rejects when it has not exited by the deadline (then SIGKILLs). */
  stop(deadlineMs?: number): Promise<CliResult & { elapsedMs: number }>;
}

/** Options of startWatch. */
export interface WatchOptions {
  env: NodeJS.ProcessEnv;
  /** Extra arguments placed before SRC and DST (e.g. --remote-command ...). */
  args?: readonly string[];
  /** How long the initial sync may take before "watching" must appear on stderr (default 20 s). */
  readyDeadlineMs?: number;
}

/**
 * Spawns `mirrorlog watch [args] SRC DST` and resolves once it reports that it is watching (the
 * initial sync is done and the watches are in place), so changes made afterwards must be seen.
 */
export async function startWatch(src: string, dst: string, options: WatchOptions): Promise<WatchProcess> {
  if (options.env.XDG_STATE_HOME === undefined) throw new Error("startWatch: set XDG_STATE_HOME in env");
  const running = spawnMirrorlog(["watch", ...(options.args ?? []), src, dst], options.env);
  const { child, exited } = running;
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void exited.then((value) => {
    exit = value;
  });

  const watch: WatchProcess = {
    child,
    stdout: running.stdout,
    stderr: running.stderr,
    stop: async (deadlineMs = 10_000) => {
      const started = Date.now();
      if (exit === undefined) child.kill("SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      const result = await Promise.race([
        exited,
        new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), deadlineMs);
        }),
      ]);
      clearTimeout(timer);
      if (result === undefined) {
        child.kill("SIGKILL");
        await exited;
        throw new Error(
          `mirrorlog watch did not exit within ${deadlineMs} ms of SIGTERM; stderr:\n${running.stderr()}`,
        );
      }
      return { ...result, stdout: running.stdout(), stderr: running.stderr(), elapsedMs: Date.now() - started };
    },
  };
  try {
    await pollUntil(() => exit !== undefined || running.stderr().includes("mirrorlog: watching "), {
      deadlineMs: options.readyDeadlineMs ?? 20_000,
      describe: () => `mirrorlog watch did not report "watching"; stderr so far:\n${running.stderr()}`,
    });
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  if (exit !== undefined) {
    throw new Error(
      `mirrorlog watch exited early (${exit.signal ?? `status ${exit.code}`}); stderr:\n${running.stderr()}`,
    );
  }
  return watch;
}

/** Options of pollUntil. */
export interface PollOptions {
  deadlineMs: number;
  /** Time between checks (default 20 ms). */
  intervalMs?: number;
  /** Explains the failure when the deadline passes. */
  describe?: () => string;
}

/** Checks `condition` every intervalMs until it holds; throws with `describe()` when the deadline passes. */
export async function pollUntil(condition: () => boolean | Promise<boolean>, options: PollOptions): Promise<void> {
  const started = Date.now();
  for (;;) {
    if (await condition()) return;
    if (Date.now() - started > options.deadlineMs) {
      throw new Error(`condition not met within ${options.deadlineMs} ms: ${options.describe?.() ?? ""}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 20));
  }
}

/**
 * Polls the oracle until the target mirrors the source; on timeout throws with the remaining
 * differences. Returns how long convergence took. Unreadable mid-change trees count as "not yet".
 */
export async function waitForMirror(
  src: string,
  dst: string,
  options: CompareOptions & { deadlineMs?: number; context?: () => string } = {},
): Promise<number> {
  const started = Date.now();
  let last: TreeDifference[] | string = [];
  await pollUntil(
    () => {
      try {
        last = compareTrees(src, dst, options);
        return last.length === 0;
      } catch (error) {
        // A path vanished between readdir and lstat while the replicator is still applying: retry.
        last = `oracle walk failed: ${(error as Error).message}`;
        return false;
      }
    },
    {
      deadlineMs: options.deadlineMs ?? 20_000,
      describe: () =>
        `target does not mirror source:\n${typeof last === "string" ? last : formatDifferences(last)}${
          options.context ? `\n${options.context()}` : ""
        }`,
    },
  );
  return Date.now() - started;
}

/** Each live process whose command line contains `text`: pid, state and where it sleeps, command line (diagnostics). */
export function describeProcessesMentioning(text: string): string {
  return processesMentioning(text)
    .map((pid) => {
      const read = (file: string) => {
        try {
          return readFileSync(`/proc/${pid}/${file}`, "utf8").replaceAll("\0", " ").trim();
        } catch {
          return "?";
        }
      };
      const state = read("stat").split(") ").at(-1)?.split(" ")[0] ?? "?";
      return `${pid} ${state} ${read("wchan")} ${read("cmdline").slice(-160)}`;
    })
    .join("\n");
}

/** Pids of live processes whose command line contains `text` (read from /proc; excludes this process). */
export function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let commandLine: string;
    try {
      commandLine = readFileSync(`/proc/${name}/cmdline`, "utf8").replaceAll("\0", " ");
    } catch {
      continue; // the process ended while we looked
    }
    if (commandLine.includes(text)) pids.push(Number(name));
  }
  return pids;
}
