// End-to-end tests of `watch` as a service, through the real binary on temp directories: remembered pair
// options, SIGHUP reloading them in a running watch, the heartbeat `status` reads (live / stopped), and
// the unit `service install` writes, run by a small supervisor with systemd's Restart=on-failure rules
// (systemd itself is absent here): a watch killed with SIGKILL is started again and keeps mirroring.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  type CliResult,
  describeProcessesMentioning,
  makeWorkspace,
  mirrorlogArgs,
  pollUntil,
  runMirrorlog,
  startWatch,
  testEnvironment,
  type Workspace,
  waitForMirror,
} from "../support/cliRunner.js";

const workspaces: string[] = [];
const children: ChildProcess[] = [];

afterAll(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  for (const dir of workspaces) rmSync(dir, { recursive: true, force: true });
});

interface WatchStatus {
  state: "live" | "stopped";
  pid: number | null;
  since: string | null;
  lastSeen: string | null;
}

interface Status {
  id: string;
  sourceRoot: string;
  target: string;
  lag: number;
  watch: WatchStatus;
}

function json<T>(result: CliResult): T {
  try {
    return JSON.parse(result.stdout) as T;
  } catch {
    throw new Error(`stdout is not JSON (exit ${result.code}):\n${result.stdout}\nstderr:\n${result.stderr}`);
  }
}

/** The status of the workspace's pair, read with the real binary. */
async function pairStatus(w: Workspace): Promise<Status> {
  const result = await runMirrorlog(["status", "--json", w.src, w.dst], { env: w.env });
  expect(result.code, result.stderr).toBe(0);
  const statuses = json<Status[]>(result);
  expect(statuses).toHaveLength(1);
  return statuses[0]!;
}

/** The pair config file of the workspace's only pair. */
async function configPath(w: Workspace): Promise<string> {
  const { id } = await pairStatus(w);
  return join(w.stateHome, "mirrorlog", `source-${id}.json`);
}

describe("remembered pair options", () => {
  it("a later sync without flags uses the remembered excludes; given flags replace theirs and are remembered", async () => {
    const w = makeWorkspace("service", workspaces);
    writeFileSync(join(w.src, "a"), "a");
    writeFileSync(join(w.src, "x.tmp"), "x");
    const run = (args: string[]) => runMirrorlog(args, { env: w.env });

    expect((await run(["sync", "-q", "--exclude", "*.tmp", "-H", w.src, w.dst])).code).toBe(0);
    expect(existsSync(join(w.dst, "x.tmp"))).toBe(false);

    writeFileSync(join(w.src, "y.tmp"), "y");
    const plain = await run(["sync", "--json", w.src, w.dst]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(existsSync(join(w.dst, "y.tmp")), "the remembered --exclude applies").toBe(false);
    const config = await configPath(w);
    // --json and -q belong to one run: not remembered.
    expect(JSON.parse(readFileSync(config, "utf8")).options).toEqual({ exclude: ["*.tmp"], hardLinks: true });

    const replaced = await run(["sync", "-q", "--exclude", "*.log", w.src, w.dst]);
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(readFileSync(join(w.dst, "y.tmp"), "utf8")).toBe("y");
    expect(JSON.parse(readFileSync(config, "utf8")).options).toEqual({ exclude: ["*.log"], hardLinks: true });

    // A config that is not one stops the run with one line naming it (exit 2), before anything is sent.
    writeFileSync(config, "{ broken");
    const broken = await run(["sync", w.src, w.dst]);
    expect(broken.code).toBe(2);
    expect(broken.stderr.trimEnd().split("\n")).toEqual([expect.stringMatching(/pair config ".*\.json" is not JSON/)]);
  });
});

describe("watch as a service", () => {
  it("shows live with its pid in status, reloads its excludes on SIGHUP without a restart, and stopped after it ends", async () => {
    const w = makeWorkspace("service", workspaces);
    writeFileSync(join(w.src, "a"), "a");
    writeFileSync(join(w.src, "b.tmp"), "b");
    const watch = await startWatch(w.src, w.dst, { env: w.env, args: ["--exclude", "*.tmp"] });
    children.push(watch.child);
    await pollUntil(() => existsSync(join(w.dst, "a")), { deadlineMs: 20_000 });
    expect(existsSync(join(w.dst, "b.tmp"))).toBe(false);

    const live = await pairStatus(w);
    expect(live.watch).toMatchObject({ state: "live", pid: watch.child.pid });
    const text = await runMirrorlog(["status", w.src], { env: w.env });
    expect(text.stdout).toMatch(
      new RegExp(`watch +live \\(pid ${watch.child.pid}, since \\S+Z, lag \\d+ operations?\\)`),
    );

    // Edit the remembered excludes (the file is plain JSON) and send SIGHUP.
    const config = await configPath(w);
    const edited = JSON.parse(readFileSync(config, "utf8"));
    expect(edited.options.exclude).toEqual(["*.tmp"]);
    edited.options.exclude = ["*.log"];
    writeFileSync(config, JSON.stringify(edited));
    watch.child.kill("SIGHUP");
    await pollUntil(() => existsSync(join(w.dst, "b.tmp")), {
      deadlineMs: 20_000,
      describe: () => `b.tmp never arrived after SIGHUP; stderr:\n${watch.stderr()}`,
    });
    expect(watch.stderr()).toMatch(/reloaded ".*\.json"; rescanning/);
    // Written before d.txt: once d.txt is there, c.log has been seen and excluded by the new rules.
    writeFileSync(join(w.src, "c.log"), "c");
    writeFileSync(join(w.src, "d.txt"), "d");
    await pollUntil(() => existsSync(join(w.dst, "d.txt")), { deadlineMs: 20_000 });
    expect(existsSync(join(w.dst, "c.log"))).toBe(false);
    expect(watch.child.exitCode).toBeNull();
    expect((await pairStatus(w)).watch).toMatchObject({ state: "live", pid: watch.child.pid });

    const stopped = await watch.stop();
    expect(stopped.code, stopped.stderr).toBe(0);
    const after = await pairStatus(w);
    expect(after.watch.state).toBe("stopped");
    expect(Date.parse(after.watch.lastSeen ?? "")).toBeGreaterThan(Date.parse(live.watch.since ?? ""));
    expect((await runMirrorlog(["status", w.src], { env: w.env })).stdout).toMatch(/watch +stopped \(last seen \S+Z\)/);
  });

  it("refuses to forget a pair while its watch runs", async () => {
    const w = makeWorkspace("service", workspaces);
    writeFileSync(join(w.src, "a"), "a");
    const watch = await startWatch(w.src, w.dst, { env: w.env });
    children.push(watch.child);
    const refused = await runMirrorlog(["status", "--forget", w.src, w.dst], { env: w.env });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(new RegExp(`is being watched by pid ${watch.child.pid}; stop that watch first`));
    expect((await pairStatus(w)).watch.state).toBe("live");
    expect((await watch.stop()).code).toBe(0);
    const forgotten = await runMirrorlog(["status", "--forget", w.src, w.dst], { env: w.env });
    expect(forgotten.code, forgotten.stderr).toBe(0);
  });
});

/** What a supervisor reads from a unit's [Service] section. */
interface ServiceUnit {
  execStart: string[];
  environment: Record<string, string>;
  restart: string;
  restartSec: number;
  successExitStatus: number[];
}

/** Splits a unit's command line into words as systemd does for the quoting mirrorlog writes. */
function unitWords(line: string): string[] {
  const words: string[] = [];
  for (const match of line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)) {
    const word = match[1] === undefined ? match[2]! : match[1].replace(/\\(.)/g, "$1");
    words.push(word.replaceAll("%%", "%").replaceAll("$$", "$"));
  }
  return words;
}

function parseUnit(text: string): ServiceUnit {
  const unit: ServiceUnit = { execStart: [], environment: {}, restart: "no", restartSec: 0.1, successExitStatus: [] };
  let section = "";
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    if (line.startsWith("[")) {
      section = line;
      continue;
    }
    if (section !== "[Service]") continue;
    const at = line.indexOf("=");
    const key = line.slice(0, at);
    const value = line.slice(at + 1);
    if (key === "ExecStart") unit.execStart = unitWords(value);
    if (key === "Restart") unit.restart = value;
    if (key === "RestartSec") unit.restartSec = Number(value);
    if (key === "SuccessExitStatus") unit.successExitStatus = value.split(/\s+/).map(Number);
    if (key === "Environment") {
      for (const assignment of unitWords(value)) {
        const eq = assignment.indexOf("=");
        unit.environment[assignment.slice(0, eq)] = assignment.slice(eq + 1);
      }
    }
  }
  return unit;
}

/**
 * systemd's Restart=on-failure, for one unit: a run that exits with a status other than 0 (or one of
 * SuccessExitStatus) or dies of a signal other than SIGHUP, SIGINT, SIGTERM or SIGPIPE is started again
 * after RestartSec; a clean exit is not.
 */
class Supervisor {
  readonly pids: number[] = [];
  readonly decisions: string[] = [];
  current: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  stderr = "";

  constructor(
    private readonly unit: ServiceUnit,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  start(): void {
    const [command, ...args] = this.unit.execStart;
    const child = spawn(command!, args, {
      env: { ...this.env, ...this.unit.environment },
      stdio: ["ignore", "ignore", "pipe"],
    });
    children.push(child);
    this.current = child;
    this.pids.push(child.pid!);
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.onExit(code, signal);
        resolve();
      });
    });
  }

  /** Resolves when the current run has exited (and the restart decision is made). */
  waitForExit(): Promise<void> {
    return this.exited;
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    const clean =
      signal === null
        ? code === 0 || this.unit.successExitStatus.includes(code ?? -1)
        : ["SIGHUP", "SIGINT", "SIGTERM", "SIGPIPE"].includes(signal);
    const how = signal ?? `status ${code}`;
    if (this.unit.restart === "on-failure" && !clean) {
      this.decisions.push(`restart after ${how}`);
      setTimeout(() => this.start(), this.unit.restartSec * 1000);
    } else {
      this.decisions.push(`stay stopped after ${how}`);
    }
  }
}

describe("service install and Restart=on-failure", () => {
  it("writes the unit; a supervisor following it restarts a watch killed with SIGKILL, which keeps mirroring", async () => {
    const w = makeWorkspace("service", workspaces);
    const config = join(w.base, "config");
    const env = testEnvironment(w.stateHome, { XDG_CONFIG_HOME: config });
    writeFileSync(join(w.src, "a"), "a");
    writeFileSync(join(w.src, "keep.tmp"), "remembered exclude");
    // Known pair first (its first sync is where deletion safety asks), with an exclude to remember.
    expect((await runMirrorlog(["sync", "-q", "--exclude", "*.tmp", w.src, w.dst], { env })).code).toBe(0);

    const printed = await runMirrorlog(["service", "install", "--print", w.src, w.dst], { env });
    expect(printed.code, printed.stderr).toBe(0);
    const installed = await runMirrorlog(["service", "install", w.src, w.dst], { env });
    expect(installed.code, installed.stderr).toBe(0);
    const unitPath = /^wrote (\S+\.service)$/m.exec(installed.stdout)?.[1];
    expect(unitPath, installed.stdout).toMatch(new RegExp(`^${config}/systemd/user/mirrorlog-.*\\.service$`));
    const name = unitPath!.split("/").at(-1)!;
    expect(installed.stdout).toContain(`systemctl --user enable --now ${name}`);
    const unitText = readFileSync(unitPath!, "utf8");
    expect(unitText).toBe(printed.stdout);
    const unit = parseUnit(unitText);
    expect(unit.restart).toBe("on-failure");
    // This node, with mirrorlog's V8 flags, as a `mirrorlog` started by name would run.
    expect(unit.execStart).toEqual([process.execPath, ...mirrorlogArgs(["watch", "--mkpath", w.src, w.dst])]);
    expect(unit.environment).toEqual({ XDG_STATE_HOME: w.stateHome });

    // systemd's user manager passes little of the login environment: PATH and HOME, then the unit's own.
    const supervisor = new Supervisor(unit, { PATH: process.env.PATH, HOME: process.env.HOME });
    supervisor.start();
    const liveAs = async (pid: number) => {
      const status = await pairStatus(w);
      return status.watch.state === "live" && status.watch.pid === pid;
    };
    const first = supervisor.pids[0]!;
    await pollUntil(() => liveAs(first), {
      deadlineMs: 30_000,
      describe: () => `never live as pid ${first}; supervisor stderr:\n${supervisor.stderr}`,
    });
    const excludeTmp = { exclude: (path: string) => path.endsWith(".tmp") };
    await waitForMirror(w.src, w.dst, excludeTmp);
    expect(existsSync(join(w.dst, "keep.tmp")), "the service's watch uses the remembered --exclude").toBe(false);

    process.kill(first, "SIGKILL");
    await supervisor.waitForExit();
    expect(supervisor.decisions[0]).toBe("restart after SIGKILL");
    // Started again (more than once if the killed watch's target still held its lock for a moment).
    await pollUntil(async () => supervisor.pids.length >= 2 && (await liveAs(supervisor.pids.at(-1)!)), {
      deadlineMs: 60_000,
      describe: () => `not live again: ${supervisor.decisions.join(", ")}; stderr:\n${supervisor.stderr}`,
    });
    const second = supervisor.pids.at(-1)!;
    expect(second).not.toBe(first);

    writeFileSync(join(w.src, "after-restart"), "a change made after the restart");
    await waitForMirror(w.src, w.dst, {
      ...excludeTmp,
      deadlineMs: 30_000,
      // What the restarted watch was doing, should it never catch up (it failed so once in CI, not reproduced).
      context: () =>
        `${supervisor.decisions.join(", ")}; pids ${supervisor.pids.join(", ")}\n${describeProcessesMentioning(w.dst)}\n${supervisor.stderr}`,
    });
    expect(readFileSync(join(w.dst, "after-restart"), "utf8")).toBe("a change made after the restart");
    expect(await liveAs(second)).toBe(true);

    // `systemctl stop` is SIGTERM: the watch ends cleanly and on-failure does not start it again.
    const restartsSoFar = supervisor.decisions.length;
    supervisor.current!.kill("SIGTERM");
    await supervisor.waitForExit();
    expect(supervisor.decisions.slice(restartsSoFar)).toEqual([expect.stringMatching(/^stay stopped after /)]);
    const stopped = await pairStatus(w);
    expect(stopped.watch).toMatchObject({ state: "stopped", pid: second });
  });
});
