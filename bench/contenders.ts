// How each tool is invoked for a one-shot mirror, and the shared state of one benchmark run (temp
// directory, state directories, the throwaway sshd). Both tools get the same ssh command line, so
// the connection cost is the same on both sides.
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { posix } from "node:path";
import { fileURLToPath } from "node:url";
import { MIRRORLOG_BIN, NODE_FLAGS } from "../src/cli/nodeCommand.js";
import { quoteWord, type TestSshServer } from "../test/support/sshd.js";
import { type MemoryRow, readRss, rssWrapper, type TimedRun, timeCommand } from "./measurement.js";

/** The mirrorlog executable of this checkout (runs the compiled dist/, built by `npm run bench`). */
export { MIRRORLOG_BIN };

/**
 * mirrorlog as a user's `mirrorlog` runs it: this node with the flags of the bin's `#!` line; `nodeOptions`
 * (a profiler's) come first, `bin` may be another checkout's.
 */
export function mirrorlogCommand(bin: string = MIRRORLOG_BIN, nodeOptions: readonly string[] = []): string[] {
  return [process.execPath, ...nodeOptions, ...NODE_FLAGS, bin];
}
/** This checkout's mirrorlog, as a user's `mirrorlog` runs it. */
export const MIRRORLOG_COMMAND: readonly string[] = mirrorlogCommand();

/**
 * argv of `sync --json SRC localhost:DST` run by the command `local`, its far side running `remote` with
 * XDG_STATE_HOME at `stateHome`, behind `wrapper` (GNU time, for its peak RSS) when given.
 */
export function sshSyncArgv(
  local: readonly string[],
  remote: readonly string[],
  paths: { source: string; target: string; stateHome: string },
  wrapper: readonly string[] = [],
): string[] {
  const far = ["env", `XDG_STATE_HOME=${paths.stateHome}`, ...wrapper, ...remote].join(" ");
  return [...local, "sync", "--json", paths.source, `localhost:${paths.target}`, "--remote-command", far];
}

/** The shared state of one benchmark run. */
export interface BenchContext {
  /** The run's temp directory; everything the benchmark writes lives below it. */
  dir: string;
  /** sshd on 127.0.0.1 with throwaway keys (`localhost` in its client config). */
  ssh: TestSshServer;
  /** Environment of mirrorlog runs: XDG_STATE_HOME in the temp dir, MIRRORLOG_SSH the test sshd. */
  env: NodeJS.ProcessEnv;
  /** XDG_STATE_HOME of the serve side over ssh (sshd does not pass our environment on). */
  remoteStateHome: string;
  /** Peak RSS observations, appended by the scenarios. */
  memory: MemoryRow[];
  /** Progress lines on stderr. */
  log: (message: string) => void;
}

/** A target of a one-shot mirror: a local path or the same path reached over ssh to localhost. */
export interface MirrorTarget {
  path: string;
  overSsh: boolean;
}

let freshCounter = 0;

/** A path below the run's temp dir that has never been used: every timed trial writes somewhere new. */
export function freshPath(context: BenchContext, label: string): string {
  freshCounter += 1;
  return posix.join(context.dir, "runs", `${label}-${freshCounter}`);
}

/** A fresh file path for GNU time's output. */
function freshRssFile(context: BenchContext): string {
  mkdirSync(posix.join(context.dir, "rss"), { recursive: true });
  freshCounter += 1;
  return posix.join(context.dir, "rss", `${freshCounter}.txt`);
}

/** mirrorlog's `--json` summary (the fields the benchmark checks). */
export interface MirrorlogSummary {
  filesScanned: number;
  filesWritten: number;
  filesDeleted: number;
  problems: unknown[];
}

/** One timed `mirrorlog sync`, with the peak RSS of both processes when they could be measured. */
export interface MirrorlogRun extends TimedRun {
  summary: MirrorlogSummary;
  /** Peak RSS of the `serve` process on the target side (only over ssh, where it can be wrapped). */
  serveRssKiB: number | undefined;
}

/** `mirrorlog sync SRC DST` (or `SRC localhost:DST`), timed. */
export async function runMirrorlogSync(
  context: BenchContext,
  source: string,
  target: MirrorTarget,
): Promise<MirrorlogRun> {
  const serveRssFile = freshRssFile(context);
  // Over ssh, GNU time wraps the far side for the serve process's peak RSS.
  const argv = target.overSsh
    ? sshSyncArgv(
        MIRRORLOG_COMMAND,
        MIRRORLOG_COMMAND,
        { source, target: target.path, stateHome: context.remoteStateHome },
        rssWrapper(serveRssFile),
      )
    : [...MIRRORLOG_COMMAND, "sync", "--json", source, target.path];
  const run = await withSshDiagnosis(context, target, () =>
    timeCommand({ argv, env: context.env, rssFile: freshRssFile(context) }),
  );
  const summary = JSON.parse(run.stdout) as MirrorlogSummary;
  if (summary.problems.length > 0) {
    throw new Error(`mirrorlog reported problems: ${JSON.stringify(summary.problems.slice(0, 5))}`);
  }
  return { ...run, summary, serveRssKiB: target.overSsh ? readRss(serveRssFile) : undefined };
}

/** `rsync -a --delete SRC/ DST/` (with `-e <the same ssh>` and `localhost:DST/` over ssh), timed. */
export function runRsync(
  context: BenchContext,
  source: string,
  target: MirrorTarget,
  options: { fsync?: boolean; wholeFile?: boolean } = {},
): Promise<TimedRun> {
  // --fsync (rsync ≥ 3.2.6): fsync every written file, the durable peer of mirrorlog's flush.
  // --whole-file: no delta algorithm (the large-file copy's peer; rsync's default only locally).
  const argv = [
    "rsync",
    "-a",
    "--delete",
    ...(options.fsync ? ["--fsync"] : []),
    ...(options.wholeFile ? ["--whole-file"] : []),
  ];
  if (target.overSsh) argv.push("-e", context.ssh.sshCommandLine, `${source}/`, `localhost:${target.path}/`);
  else argv.push(`${source}/`, `${target.path}/`);
  return withSshDiagnosis(context, target, () => timeCommand({ argv, rssFile: freshRssFile(context) }));
}

/** `cp -a SRC DST` into a DST that does not exist yet (cp then creates it as the copy), timed: the floor. */
export function runCp(context: BenchContext, source: string, targetPath: string): Promise<TimedRun> {
  return timeCommand({ argv: ["cp", "-a", source, targetPath], rssFile: freshRssFile(context) });
}

/** runCopyAndFlush, as the floor table names it. */
export const COPY_AND_FLUSH = "`cp -a`, then `sync -f`";

/**
 * The durable floor of a local initial mirror, timed: `cp -a SRC DST`, then one syncfs of DST's file system
 * (`sync -f`): the least a copy that ends durable takes here (one process, no hash, no log, one flush).
 */
export function runCopyAndFlush(context: BenchContext, source: string, targetPath: string): Promise<TimedRun> {
  const argv = ["sh", "-c", 'cp -a "$1" "$2" && sync -f "$2"', "sh", source, targetPath];
  return timeCommand({ argv, rssFile: freshRssFile(context) });
}

/** runTarOverSsh, as the floor table names it. */
export const TAR_OVER_SSH = "`tar -c` \\| ssh `tar -x`, then `sync -f` there";

/**
 * The durable floor of an initial mirror over ssh, timed: `tar -c` of SRC streamed through the same ssh into
 * `tar -x` on the far side, then one `sync -f` there: a copy over one connection that ends durable, with
 * nothing compared, hashed or logged.
 */
export function runTarOverSsh(context: BenchContext, source: string, targetPath: string): Promise<TimedRun> {
  const far = shellLine(["sh", "-c", 'mkdir "$1" && tar -C "$1" -xf - && sync -f "$1"', "sh", targetPath]);
  const script = `${shellLine(["tar", "-C", source, "-cf", "-", "."])} | ${shellLine([...context.ssh.sshCommand, "localhost", far])}`;
  const target = { path: targetPath, overSsh: true };
  return withSshDiagnosis(context, target, () =>
    timeCommand({ argv: ["sh", "-c", script], rssFile: freshRssFile(context) }),
  );
}

/** bench/walkFloor.mjs: node's start and a bare walk of each tree it is given. */
const WALK_FLOOR_SCRIPT = fileURLToPath(new URL("./walkFloor.mjs", import.meta.url));

/** runWalkFloor, as the floor table names it. */
export const WALK_FLOOR_NAME = "node's start, a bare walk of both trees (`bench/walkFloor.mjs`)";

/**
 * The floor of a no-change run, timed: node's start and a bare walk of the source and of the target
 * (bench/walkFloor.mjs, run as mirrorlog runs). Locally one process walks both, as a local run does (its
 * target is served in process); over ssh the source's walk runs beside `ssh localhost` walking the target,
 * as mirrorlog walks its source during the handshake. Its stdout names each root with its entry count.
 */
export function runWalkFloor(context: BenchContext, source: string, target: MirrorTarget): Promise<TimedRun> {
  const walk = [process.execPath, ...NODE_FLAGS, WALK_FLOOR_SCRIPT];
  const rssFile = freshRssFile(context);
  if (!target.overSsh) return timeCommand({ argv: [...walk, source, target.path], rssFile });
  const far = shellLine([...context.ssh.sshCommand, "localhost", shellLine([...walk, target.path])]);
  const script = `${shellLine([...walk, source])} & ${far}; wait`;
  return withSshDiagnosis(context, target, () => timeCommand({ argv: ["sh", "-c", script], rssFile }));
}

/** `words` as one POSIX shell command line. */
function shellLine(words: readonly string[]): string {
  return words.map(quoteWord).join(" ");
}

/**
 * `sync`, untimed, before a timed local trial: no trial pays for flushing the dirty pages an earlier
 * trial of another tool left behind (mirrorlog's syncfs would, cp's and rsync's writeback would
 * compete with the next trial).
 */
export function flushDirtyPages(): void {
  const result = spawnSync("sync", { stdio: "ignore" });
  if (result.status !== 0) throw new Error(`sync failed: ${result.error?.message ?? `exit ${result.status}`}`);
}

/**
 * Runs `attempt`; when a run over ssh fails, adds the end of sshd's own log to the error (the
 * client only says "connection closed") and retries once, logging both, so one dropped connection
 * on a busy machine does not discard a long run. A second failure stops the benchmark.
 */
async function withSshDiagnosis<T>(context: BenchContext, target: MirrorTarget, attempt: () => Promise<T>): Promise<T> {
  if (!target.overSsh) return attempt();
  try {
    return await attempt();
  } catch (error) {
    context.log(`  ssh run failed, retrying once: ${(error as Error).message.slice(0, 600)}`);
    context.log(`  sshd log tail:\n${context.ssh.serverLog().slice(-1500)}`);
    try {
      return await attempt();
    } catch (second) {
      throw new Error(`${(second as Error).message}\nsshd log:\n${context.ssh.serverLog().slice(-3000)}`);
    }
  }
}

/** `ssh localhost true`: what one connection costs, part of every ssh run of both tools. */
export function runSshNoop(context: BenchContext): Promise<TimedRun> {
  return timeCommand({ argv: [...context.ssh.sshCommand, "localhost", "true"], rssFile: freshRssFile(context) });
}
