import { existsSync, lstatSync, mkdirSync, realpathSync } from "node:fs";
import { posix } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { OperationLog } from "../events/operationLog.js";
import { PROTOCOL_VERSION, type Request, type Response, ResponseSchema } from "../events/protocol.js";
import { StateStore } from "../events/stateStore.js";
import { isWithin } from "../fs/fileSystem.js";
import { NodeFileSystem } from "../fs/nodeFileSystem.js";
import { SourceSession } from "../replicator/sourceSession.js";
import { StreamingSource } from "../replicator/streamingSource.js";
import {
  parseTargetSpec,
  type SpawnedTarget,
  spawnTarget,
  splitCommandWords,
  type TargetSpec,
  TargetSpecError,
} from "../transport/sshCommand.js";
import { StreamClient, TransportError } from "../transport/streamConnection.js";
import { CliError } from "./cliError.js";
import { exclusionRules } from "./ignoreRules.js";
import { progressDisplay } from "./progress.js";
import { formatSummary, type RunSummary, summarize } from "./report.js";
import { defaultSourceStatePath, statePathProblem } from "./statePaths.js";

/** Options shared by `sync` and `watch`. */
export interface MirrorOptions {
  dryRun: boolean;
  exclude: string[];
  state?: string;
  json: boolean;
  /** The command that runs mirrorlog on the far side of ssh (like rsync's --rsync-path). */
  remoteCommand: string;
  /** Seconds between reconcile scans in watch mode (the safety net under the watches). */
  rescanInterval: number;
  /** Mirror an empty source root onto a non-empty target (otherwise refused as a likely unmounted source). */
  allowEmptySource?: boolean;
  /** Seconds the target may stay silent while requests wait before the connection counts as lost (like rsync's --timeout). */
  timeout: number;
  /** Replicate owners / groups by numeric id when the target runs as root (default true; --no-owner, --no-group). */
  owner?: boolean;
  group?: boolean;
  /** Keep hard-link groups as links on the target (-H, --hard-links). */
  hardLinks?: boolean;
}

/** Where a run's output goes; injectable so tests can capture it. */
export interface MirrorOutput {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

const defaultOutput: MirrorOutput = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

/** The executable this process runs as; a local target is a child running `serve` from it. */
const MIRRORLOG_BIN = fileURLToPath(new URL("../../bin/mirrorlog", import.meta.url));

/** Seconds a target may stay silent while requests wait (a manifest of a huge tree takes a while). */
export const DEFAULT_TIMEOUT_SECONDS = 120;

/** Times a lost connection is replaced before the run fails... */
const MAX_RECONNECTS = 5;
/** ...waiting 200 ms, 400 ms, ... up to this between attempts. */
const RECONNECT_MAX_DELAY_MS = 5_000;

/** True for a lost or broken connection (worth reconnecting), as opposed to a refusal or a local failure. */
function isConnectionLoss(error: unknown): boolean {
  return (
    error instanceof TransportError || (error instanceof CliError && error.message.startsWith("cannot reach target"))
  );
}

/** How long a target may take to exit after the connection closes before it is killed. */
const TARGET_EXIT_GRACE_MS = 5_000;

/** How often the transfer bar and watch-mode counters refresh, in files scanned. */
const SCAN_PROGRESS_EVERY = 500;

/**
 * `mirrorlog sync SRC DST` (mode "sync") and `mirrorlog watch SRC DST` (mode "watch"): mirror SRC onto
 * DST through a target process (local child or ssh), then, for watch, follow changes until SIGINT or
 * SIGTERM. Returns the exit code: 0 only when DST ended equal to SRC with no problem.
 */
export async function runMirror(
  mode: "sync" | "watch",
  src: string,
  dst: string,
  options: MirrorOptions,
  output: MirrorOutput = defaultOutput,
): Promise<number> {
  const started = performance.now();
  const { sourceRoot, spec, targetKey, statePath } = resolvePair(src, dst, options.state);
  if (!options.dryRun) mkdirSync(posix.dirname(statePath), { recursive: true });

  const progress = progressDisplay(!options.json);
  const fs = new NodeFileSystem({
    root: sourceRoot,
    onProblem: (problem) => session.reportProblem(problem),
  });
  // A dry run keeps its log and index in memory: it changes nothing, not even our own state.
  const log = options.dryRun ? new OperationLog() : new OperationLog(statePath);
  if (!options.dryRun) log.describePair(sourceRoot, targetKey);
  const state = options.dryRun ? new StateStore() : new StateStore(statePath);
  let scanned = 0;
  const isExcluded = exclusionRules(fs, sourceRoot, options.exclude);
  const session: SourceSession = new SourceSession({
    fs,
    root: sourceRoot,
    log,
    index: state,
    chunkLists: state.chunkLists,
    refuseEmptySource: !options.allowEmptySource,
    preserveOwner: options.owner ?? true,
    preserveGroup: options.group ?? true,
    hardLinks: options.hardLinks ?? false,
    ...(isExcluded === undefined ? {} : { isExcluded }),
    onFileScanned: () => {
      if (++scanned % SCAN_PROGRESS_EVERY === 0) progress.scanned(scanned);
    },
    ...(mode === "watch" ? { onWatchEvent: (event) => driver.hint(event) } : {}),
  });

  let connection: TargetProcess;
  try {
    connection = await connectTarget(spec, dst, options);
  } catch (error) {
    log.close();
    state.close();
    fs.close();
    throw error;
  }
  // Bytes of earlier connections (a lost connection is replaced, and the counts carry on).
  const earlier = { bytesSent: 0, bytesReceived: 0 };
  const wire = () => ({
    bytesSent: earlier.bytesSent + connection.client.stats.bytesSent,
    bytesReceived: earlier.bytesReceived + connection.client.stats.bytesReceived,
  });
  /** Replaces a lost connection (with backoff) and re-establishes the session on the new one. */
  const reconnect = async (cause: unknown): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      output.stderr(`mirrorlog: connection to ${dst} lost (${(cause as Error).message}); reconnecting (${attempt})\n`);
      earlier.bytesSent += connection.client.stats.bytesSent;
      earlier.bytesReceived += connection.client.stats.bytesReceived;
      connection.child.kill();
      await new Promise((resolve) => setTimeout(resolve, Math.min(RECONNECT_MAX_DELAY_MS, 100 * 2 ** attempt)));
      try {
        connection = await connectTarget(spec, dst, options);
        await driver.establish();
        return;
      } catch (error) {
        if (attempt >= MAX_RECONNECTS || !isConnectionLoss(error)) throw error;
        cause = error;
      }
    }
  };
  const driver: StreamingSource = new StreamingSource(
    session,
    {
      request: (request) => connection.client.request(request),
      bytesSent: () => connection.client.stats.bytesSent + connection.client.queuedBytes,
    },
    {
      onProgress: (p) => progress.transferred(p.operationsShipped, p.operationsPlanned, p.contentBytesShipped),
      onError: (error) => {
        if (mode === "watch" && isConnectionLoss(error)) {
          driver.runExclusive(() => reconnect(error));
          return;
        }
        output.stderr(`mirrorlog: ${(error as Error).message}\n`);
      },
    },
  );

  let finished: Promise<RunSummary> | undefined;
  const finish = (): Promise<RunSummary> => {
    finished ??= closeAll();
    return finished;
  };
  const closeAll = async (): Promise<RunSummary> => {
    progress.stop();
    session.releaseWatches();
    state.flush();
    await disconnectTarget(connection);
    const summary = summarize(session.stats, wire(), performance.now() - started);
    log.close();
    state.close();
    fs.close();
    return summary;
  };

  try {
    if (options.dryRun) {
      const entries = await planDryRun(session, connection.client);
      const summary = await finish();
      if (options.json) output.stdout(`${JSON.stringify({ ...summary, plannedOperations: entries })}\n`);
      else output.stdout(`${entries.map(describeOperation).join("\n")}${entries.length > 0 ? "\n" : ""}`);
      return 0;
    }
    try {
      await driver.establish();
    } catch (error) {
      if (!isConnectionLoss(error)) throw error;
      await reconnect(error);
    }
    if (mode === "sync") return report(await finish(), options, output);
    await followChanges(driver, options, output, () => summarize(session.stats, wire(), performance.now() - started));
    return report(await finish(), options, output);
  } catch (error) {
    await finish().catch(() => {});
    throw new CliError(`mirroring ${sourceRoot} to ${dst} failed: ${(error as Error).message}`, 1);
  }
}

/** Both ends of a replication as the command line named them, resolved, and the pair's state file. */
export interface ResolvedPair {
  /** The source root with symlinks resolved. */
  sourceRoot: string;
  spec: TargetSpec;
  /** How the target is recorded and keyed: a local target's absolute path, a remote one as given. */
  targetKey: string;
  statePath: string;
}

/**
 * Resolves SRC and DST as `sync` does: the source must be a directory, a local target must not overlap
 * it or be a non-directory, and the state file (`--state` or the default) must lie outside both trees.
 */
export function resolvePair(src: string, dst: string, stateOption: string | undefined): ResolvedPair {
  const sourceRoot = resolveSourceRoot(src);
  let spec: TargetSpec;
  try {
    spec = parseTargetSpec(dst);
  } catch (error) {
    throw new CliError(error instanceof TargetSpecError ? error.message : String(error));
  }
  if (spec.kind === "local") {
    const targetRoot = posix.resolve(spec.path);
    if (isWithin(sourceRoot, targetRoot) || isWithin(targetRoot, sourceRoot)) {
      throw new CliError(`target ${targetRoot} and source ${sourceRoot} overlap; they must be separate trees`);
    }
    if (existsSync(targetRoot) && !lstatSync(targetRoot).isDirectory()) {
      throw new CliError(`target ${targetRoot} exists and is not a directory`);
    }
    spec = { kind: "local", path: targetRoot };
  }
  const targetKey = spec.kind === "local" ? spec.path : dst;
  const statePath = stateOption ? posix.resolve(stateOption) : defaultSourceStatePath(sourceRoot, targetKey);
  const stateProblem = statePathProblem(statePath, spec.kind === "local" ? [sourceRoot, spec.path] : [sourceRoot]);
  if (stateProblem !== null) throw new CliError(stateProblem);
  return { sourceRoot, spec, targetKey, statePath };
}

/** A target process (local child or ssh) and the protocol client connected to it. */
export interface TargetProcess {
  child: SpawnedTarget;
  client: StreamClient<Request, Response>;
}

/**
 * Starts `mirrorlog serve` for `spec` (locally or through ssh; read-only when `dryRun`) and completes
 * the handshake. The target's stderr is forwarded once connected; an unreachable target is a CliError.
 */
export async function connectTarget(
  spec: TargetSpec,
  dst: string,
  options: { dryRun: boolean; remoteCommand: string; timeout?: number },
): Promise<TargetProcess> {
  // A dry run's target serves read-only: it creates neither the target directory nor its state file.
  const serveArgs = (root: string) => ["serve", "--stdio", `--root=${root}`, ...(options.dryRun ? ["--dry-run"] : [])];
  const targetStderr = new HeldStderr();
  const child = spawnTarget(spec, {
    localCommand: (root) => [MIRRORLOG_BIN, ...serveArgs(root)],
    remoteCommand: (root) => [...splitCommandWords(options.remoteCommand), ...serveArgs(root)],
    forwardStderr: targetStderr,
  });
  let client: StreamClient<Request, Response>;
  try {
    client = await StreamClient.connect<Request, Response>({
      input: child.input,
      output: child.output,
      version: PROTOCOL_VERSION,
      validateResponse: (value) => ResponseSchema.parse(value),
      diagnose: () => child.diagnose(),
      // serve answers in order: a skipped answer is a lost frame, detected at once; silence is bounded.
      answersInOrder: true,
      idleTimeoutMs: (options.timeout ?? DEFAULT_TIMEOUT_SECONDS) * 1000,
    });
  } catch (error) {
    child.kill();
    throw new CliError(`cannot reach target ${dst}: ${(error as Error).message}`);
  }
  targetStderr.release();
  return { child, client };
}

/** Closes the connection and lets the target exit by itself; only a stuck one is killed. */
export async function disconnectTarget({ child, client }: TargetProcess): Promise<void> {
  await client.close().catch(() => {});
  // The target ends by itself once its input closes (after saving its state).
  await Promise.race([child.exited, new Promise((resolve) => setTimeout(resolve, TARGET_EXIT_GRACE_MS).unref())]);
  child.kill();
}

/**
 * The target child's stderr on its way to ours, held back until the handshake succeeds: when the
 * target cannot be reached, the error message already quotes that stderr, and saying it twice
 * would break the one-line error.
 */
class HeldStderr extends Writable {
  private held: Buffer[] | undefined = [];

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    if (this.held === undefined) process.stderr.write(chunk);
    else this.held.push(chunk);
    callback();
  }

  /** Writes what was held and forwards everything from now on. */
  release(): void {
    for (const chunk of this.held ?? []) process.stderr.write(chunk);
    this.held = undefined;
  }
}

/** Watch mode: keeps replicating until SIGINT/SIGTERM; SIGUSR1 prints the summary so far. */
async function followChanges(
  driver: StreamingSource,
  options: MirrorOptions,
  output: MirrorOutput,
  summarySoFar: () => RunSummary,
): Promise<void> {
  output.stderr(`mirrorlog: watching ${driver.session.root} (Ctrl-C to stop)\n`);
  const reconcile = setInterval(() => driver.rescan("rescan"), options.rescanInterval * 1000);
  const onSummary = (): void => output.stderr(`${formatSummary(summarySoFar())}\n`);
  process.on("SIGUSR1", onSummary);
  try {
    await new Promise<void>((resolve) => {
      const stop = (): void => {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        resolve();
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    });
  } finally {
    clearInterval(reconcile);
    process.off("SIGUSR1", onSummary);
  }
  // Stop taking hints first: under continuous activity new hints would keep idle() from ever resolving.
  driver.session.releaseWatches();
  // Finish what is in flight: the log and the target stay consistent.
  await driver.idle();
}

async function planDryRun(session: SourceSession, client: StreamClient<Request, Response>) {
  while (!session.acceptManifest(await client.request(session.manifestRequest()))) {}
  session.log.startEpoch("dry run", Date.now());
  return session.planPath("", "initial").map((e) => e.operation);
}

function describeOperation(operation: { type: string; path: string; size?: number }): string {
  const size = operation.size === undefined ? "" : ` (${operation.size} bytes)`;
  return `${operation.type} ${JSON.stringify(operation.path)}${size}`;
}

function report(summary: RunSummary, options: MirrorOptions, output: MirrorOutput): number {
  if (options.json) output.stdout(`${JSON.stringify(summary)}\n`);
  else output.stdout(`${formatSummary(summary)}\n`);
  return summary.problems.length === 0 ? 0 : 1;
}

function resolveSourceRoot(src: string): string {
  const absolute = posix.resolve(src);
  let stat: ReturnType<typeof lstatSync>;
  try {
    // The root itself may be reached through a symlink (like rsync's "src/"); nothing below it is followed.
    stat = lstatSync(realpathSync(absolute));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new CliError(`source ${absolute}: no such directory`);
    if (code === "EACCES") throw new CliError(`source ${absolute}: permission denied`);
    throw new CliError(`source ${absolute}: ${(error as Error).message}`);
  }
  if (!stat.isDirectory()) throw new CliError(`source ${absolute} is not a directory`);
  return realpathSync(absolute);
}
