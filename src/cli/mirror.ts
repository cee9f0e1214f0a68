import { existsSync, lstatSync, realpathSync } from "node:fs";
import { getPriority, setPriority } from "node:os";
import { posix } from "node:path";
import { Writable } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import type { Position } from "../events/operation.js";
import { OperationLog, recordClosedStateFile, StateFileError } from "../events/operationLog.js";
import { PROTOCOL_VERSION, type Request, type Response, ResponseSchema } from "../events/protocol.js";
import { SOURCE_WRITE_AHEAD, StateStore } from "../events/stateStore.js";
import { monotonicMs } from "../fs/clock.js";
import { isWithin } from "../fs/fileSystem.js";
import { keepFreedBuffersForReuse } from "../fs/nativeCalls.js";
import { NodeFileSystem } from "../fs/nodeFileSystem.js";
import { requestContentBytes, SourceSession, type SyncStats } from "../replicator/sourceSession.js";
import { StreamingSource } from "../replicator/streamingSource.js";
import {
  exitWithin,
  parseTargetSpec,
  type RunningTarget,
  spawnTarget,
  splitCommandWords,
  type TargetSpec,
  TargetSpecError,
} from "../transport/sshCommand.js";
import { StreamClient, TransportError } from "../transport/streamConnection.js";
import { paced } from "./bandwidthLimit.js";
import { rehashingIndex } from "./checksumIndex.js";
import { CliError, StateUnusableError } from "./cliError.js";
import { DEFAULT_TIMEOUT_SECONDS } from "./defaults.js";
import { DeletionGuard, DeletionRefusedError } from "./deletionSafety.js";
import { EXIT } from "./exitCodes.js";
import { exclusionRules, readPatternFile } from "./ignoreRules.js";
import { interruptedBy, onOrderlyStop, phase, requestPhase, trackTarget } from "./interrupt.js";
import { ChangeTracker, timestampOf } from "./itemize.js";
import { mirrorlogArgs } from "./nodeCommand.js";
import { progressDisplay } from "./progress.js";
import { formatSummary, type RunSummary, summarize } from "./report.js";
import type { ServeOptions } from "./serve.js";
import { makeStateDirectory, openStateFile, REBUILD_FLAG, STATE_UNUSABLE_EXIT, stateFileAdvice } from "./stateFiles.js";
import { defaultSourceStatePath, statePathProblem } from "./statePaths.js";
import { PairService } from "./watchService.js";

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
  /** Move a damaged state file aside (either side) and rebuild the state from a scan, in a new epoch. */
  rebuildState?: boolean;
  /** Allow the first sync of a pair to delete what DST holds beyond SRC (deletion safety, see deletionSafety.ts). */
  delete?: boolean;
  /** Keep what the target removes or replaces in this directory (relative to DST, or absolute on the target). */
  backupDir?: string;
  /** Create DST's missing parents (otherwise a missing parent is refused: a typo'd DST). */
  mkpath?: boolean;
  /** -v: list each change by name (rsync -v); repeatable. */
  verbose?: number;
  /** -q: print nothing but errors (no summary, no change lines). */
  quiet?: boolean;
  /** -i: list each change in rsync's itemize format. */
  itemizeChanges?: boolean;
  /** -c: hash every file on both sides instead of trusting size, mtime, inode and ctime. */
  checksum?: boolean;
  /** Files of exclude patterns (one per line), like rsync --exclude-from. */
  excludeFrom?: string[];
  /** Patterns that are never excluded (they win over every exclude). */
  include?: string[];
  /** Bytes per second this side writes to the transport at most (--bwlimit, given in KiB/s). */
  bwlimit?: number;
  /** --progress / --no-progress; undefined: a progress display only when stderr is a terminal. */
  progress?: boolean;
  /** watch --nice: steps nicer than the shell this process (and a local serve child) runs. */
  nice?: number;
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

/** The StateFileError behind `error` (itself or along its causes), if any. */
function stateFileErrorIn(error: unknown): StateFileError | undefined {
  for (let at = error, depth = 0; at instanceof Error && depth < 8; at = at.cause, depth++) {
    if (at instanceof StateFileError) return at;
  }
  return undefined;
}

/** `error` as the one-line failure it stops the run with, when it is about a state file (either side). */
function stateFailureOf(error: unknown): StateUnusableError | undefined {
  if (error instanceof StateUnusableError) return error;
  const cause = stateFileErrorIn(error);
  return cause === undefined ? undefined : new StateUnusableError(`source ${stateFileAdvice(cause)}`, 2, { cause });
}

/** How a target reports that its state file cannot be used (see serve.ts): the line it ends with. */
const TARGET_STATE_LINE = "mirrorlog: target state file ";

/**
 * How long to wait for a target whose connection failed to exit, to learn whether its state failed.
 * Short: by then the connection's own diagnosis has already waited for the exit (see spawnTarget).
 */
const TARGET_STATE_EXIT_WAIT_MS = 300;

/**
 * When the target process ended because its state file cannot be used (exit STATE_UNUSABLE_EXIT), the
 * line it said so with, as the run's failure; undefined for any other ending (a lost connection).
 */
async function targetStateFailure(child: RunningTarget): Promise<StateUnusableError | undefined> {
  const exit = await exitWithin(child.exited, TARGET_STATE_EXIT_WAIT_MS);
  if (exit?.code !== STATE_UNUSABLE_EXIT) return undefined;
  const said = child
    .stderrTail()
    .split("\n")
    .reverse()
    .find((line) => line.startsWith(TARGET_STATE_LINE));
  return new StateUnusableError(
    said === undefined
      ? `the target's state file cannot be used (${child.description} exited with status ${exit.code})`
      : said.slice("mirrorlog: ".length),
  );
}

/** How long a target may take to exit after the connection closes before it is killed. */
const TARGET_EXIT_GRACE_MS = 5_000;

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
  const started = monotonicMs();
  const file = singleFileSource(src);
  if (file !== undefined) {
    if (mode === "watch")
      throw new CliError(`source ${file} is a file; watch mirrors a directory (watch its directory)`);
    const { copySingleFile } = await import("./singleFile.js");
    return copySingleFile(file, dst, options, output);
  }
  const { sourceRoot, spec, targetKey, statePath } = resolvePair(src, dst, options.state, options.mkpath === true);
  if (!options.dryRun) makeStateDirectory(statePath);

  // Before the target starts: a local serve child inherits it, and an in-process target shares it.
  if (mode === "watch") beNicer(options.nice ?? 0, output);
  // The target starts first and boots while the state file is checked (quick_check reads all of it) and
  // the source is read: the first pass's walk scans meanwhile (its prescan) and its first request waits
  // for the connection, so neither ssh's handshake nor the serve's start-up idles us.
  let connection: TargetProcess | undefined;
  let connectFailure: unknown;
  const connecting = connectTarget(spec, dst, {
    ...options,
    mkpath: options.mkpath === true,
    inProcess: targetInProcess(mode, spec, () => (options.dryRun ? undefined : peekLog(statePath))),
  }).then(
    (made) => {
      connection = made;
    },
    (error: unknown) => {
      connectFailure = error;
      throw error;
    },
  );
  // Reading, packing and sending content frees megabytes at a time (its serve does the same for itself).
  keepFreedBuffersForReuse();
  connecting.catch(() => {}); // awaited by the first pass (or the dry run); a failure is thrown there
  /** Lets the target go, once it has started (a run may end while it is still starting). */
  const letTargetGo = async (): Promise<void> => {
    await connecting.catch(() => {});
    if (connection !== undefined) await disconnectTarget(connection);
  };

  // A dry run keeps its log and index in memory: it changes nothing, not even our own state. A state
  // file that cannot be used stops the run here, before anything is sent (or, with --rebuild-state and
  // damage, is moved aside: the new epoch below records why); the target started meanwhile is let go.
  let opened: ReturnType<typeof openSourceState>;
  try {
    opened = openSourceState(statePath, { sourceRoot, targetKey }, options);
  } catch (error) {
    await letTargetGo();
    throw error;
  }
  const { log, state, rebuilt } = opened;
  const fs = new NodeFileSystem({
    root: sourceRoot,
    onProblem: (problem) => session.reportProblem(problem),
  });
  const fatal = new FatalFailure();
  // The pair as a service: heartbeat, problems recorded for `status`, SIGHUP reloads the excludes (watchService.ts).
  const service = new PairService(mode, {
    log,
    statePath,
    runOptions: options,
    rules: (o) => exclusionRules(fs, sourceRoot, excludePatterns(o, spec), o.include ?? []),
    dryRun: options.dryRun,
    stderr: output.stderr,
  });
  const isExcluded = service.isExcluded;
  const progress = progressDisplay({ progress: options.progress, json: options.json, root: sourceRoot, isExcluded });
  // Lines printed while the bar or the watch's status line shows erase it first and redraw it after.
  output = progress.guard(output);
  const changes = changeTracker(mode, options, output);
  // The first sync of a pair must not delete what DST holds beyond SRC without --delete (a wrong DST).
  const guard =
    options.delete || options.dryRun
      ? undefined
      : new DeletionGuard({
          logId: log.logId,
          sourceReplicated: log.hasReplicated(),
          accepted: () => log.recordTargetAccepted(),
          fs,
          sourceRoot,
          isExcluded,
          target: spec.kind === "local" ? spec.path : dst,
        });
  const session: SourceSession = new SourceSession({
    fs,
    root: sourceRoot,
    log,
    index: options.checksum ? rehashingIndex(state) : state,
    ...(options.checksum || options.hardLinks || isExcluded !== undefined ? {} : { digestCache: state }),
    chunkLists: state.chunkLists,
    refuseEmptySource: !options.allowEmptySource,
    preserveOwner: options.owner ?? true,
    preserveGroup: options.group ?? true,
    hardLinks: options.hardLinks ?? false,
    oneShot: mode !== "watch",
    ...(isExcluded === undefined ? {} : { isExcluded }),
    onFileScanned: (size) => {
      void phase("scan");
      progress.fileChecked(size);
    },
    ...(mode === "watch" ? { onWatchEvent: (event) => driver.hint(event) } : {}),
  });

  /** The connection, once made (requests are only sent after it is). */
  const connected = (): TargetProcess => connection!;
  // Bytes of earlier connections (a lost connection is replaced, and the counts carry on).
  const earlier = { bytesSent: 0, bytesReceived: 0 };
  const wire = () => ({
    bytesSent: earlier.bytesSent + (connection?.client.stats.bytesSent ?? 0),
    bytesReceived: earlier.bytesReceived + (connection?.client.stats.bytesReceived ?? 0),
  });
  /** Replaces a lost connection (with backoff) and re-establishes the session on the new one. */
  const reconnect = async (cause: unknown): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      // After SIGINT/SIGTERM/SIGHUP the connection is gone on purpose: nothing to reconnect (see interrupt.ts).
      if (interruptedBy() !== undefined) throw cause;
      // A target that stopped because its state file failed is not a lost connection: that is the answer.
      const lost = connected();
      const broken = await targetStateFailure(lost.child);
      if (broken !== undefined) throw broken;
      output.stderr(`mirrorlog: connection to ${dst} lost (${(cause as Error).message}); reconnecting (${attempt})\n`);
      earlier.bytesSent += lost.client.stats.bytesSent;
      earlier.bytesReceived += lost.client.stats.bytesReceived;
      lost.child.kill();
      await new Promise((resolve) => setTimeout(resolve, Math.min(RECONNECT_MAX_DELAY_MS, 100 * 2 ** attempt)));
      try {
        connection = await connectTarget(spec, dst, { ...options, mkpath: options.mkpath === true });
        await driver.establish();
        return;
      } catch (error) {
        if (attempt >= MAX_RECONNECTS || !isConnectionLoss(error)) throw error;
        cause = error;
      }
    }
  };
  // Every request: a test's phase marker (interrupt.ts), and the content bytes answered for (progress).
  let settledContentBytes = 0;
  const send = (request: Request): Promise<Response> => {
    const held = phase(requestPhase(request.type));
    const answer =
      held === undefined ? connected().client.request(request) : held.then(() => connected().client.request(request));
    if (request.type === "manifest") {
      answer
        // Planning starts with the first page when listings are adopted as the walk reaches them.
        .then(
          (response) =>
            response.type === "manifest" && (response.complete || guard?.judging !== true) && progress.targetListed(),
        )
        .catch(() => {});
    } else if (request.type === "apply" || request.type === "upload") {
      const contentBytes = requestContentBytes(request);
      answer.then(() => (settledContentBytes += contentBytes)).catch(() => {});
    }
    return answer;
  };
  const driver: StreamingSource = new StreamingSource(
    session,
    {
      request: (request) =>
        send(request).then((response) => {
          guard?.inspect(request, response);
          return changes?.observe(request, response) ?? response;
        }),
      bytesSent: () =>
        connection === undefined ? 0 : connection.client.stats.bytesSent + connection.client.queuedBytes,
      // StreamClient.request encodes at once (a test's phase hold never sends at all).
      copiesRequests: true,
    },
    {
      wholeManifestFirst: () => guard?.judging === true,
      ...(mode === "watch" ? { burstQuiet: WATCH_BURST_QUIET } : {}),
      onProgress: (p) => progress.settled(p.operationsShipped),
      onError: (error) => {
        // After an interruption every failure is its consequence: the run ends with one line (interrupt.ts).
        if (interruptedBy() !== undefined) return;
        const stateFailure = stateFailureOf(error);
        if (stateFailure !== undefined) {
          // Nothing can be recorded any more: watching must stop, and the run fails with this line.
          fatal.fail(stateFailure);
          return;
        }
        if (mode === "watch" && isConnectionLoss(error)) {
          driver.runExclusive(() => reconnect(error));
          return;
        }
        output.stderr(`mirrorlog: ${(error as Error).message}\n`);
      },
    },
  );

  // Planned or in flight but not answered: the bar's "done" never runs ahead of the target.
  progress.trackPending(() => {
    const unlogged = session.unloggedSize();
    return {
      operations: unlogged.operations + driver.progress.operationsPlanned - driver.progress.operationsShipped,
      bytes: unlogged.contentBytes + driver.progress.contentBytesShipped - settledContentBytes,
    };
  });
  service.start(() => session.stats.problems);
  let finished: Promise<RunSummary> | undefined;
  const finish = (): Promise<RunSummary> => {
    finished ??= closeAll();
    return finished;
  };
  // Every step runs whatever the one before it did (a full disk fails the flush): the target must be
  // let go, or it and this process would stay alive holding the target.
  const closeAll = async (): Promise<RunSummary> => {
    progress.stop();
    session.releaseWatches();
    // A target never reached: nothing was mirrored, so there is no run to record for `status`.
    if (connectFailure === undefined) service.stop(session.stats.problems);
    let failure: unknown;
    try {
      state.flush();
    } catch (error) {
      failure = error;
    }
    await letTargetGo();
    const summary = summarize(session.stats, wire(), monotonicMs() - started);
    failure ??= closeQuietly(log, state, fs);
    if (failure !== undefined) throw failure;
    if (!options.dryRun) recordClosedStateFile(statePath);
    return summary;
  };

  try {
    if (options.dryRun) {
      await connecting;
      const { held, entries } = await planDryRun(session, connected().client);
      const summary = await finish();
      if (changes !== undefined) changes.listPlanned(held, entries);
      if (options.json) output.stdout(`${JSON.stringify({ ...summary, plannedOperations: entries })}\n`);
      else if (changes === undefined && !options.quiet)
        output.stdout(`${entries.map(describeOperation).join("\n")}${entries.length > 0 ? "\n" : ""}`);
      return EXIT.ok;
    }
    try {
      // A rebuilt state (either side) begins a new epoch that says why; without one, the log resumes.
      await driver.establish(
        rebuilt !== undefined
          ? `state rebuilt: source ${rebuilt}`
          : options.rebuildState
            ? `state rebuilt where damaged (${REBUILD_FLAG})`
            : undefined,
        connecting,
      );
    } catch (error) {
      // The first connection is never retried: a target that cannot be reached fails the run at once.
      if (!isConnectionLoss(error) || connectFailure !== undefined) throw error;
      await reconnect(error);
    }
    progress.passDone();
    await phase("final");
    if (mode === "sync") {
      recordSyncSize(log, session.stats);
      return report(await finish(), options, output);
    }
    service.watching(() => driver.rescan("rescan"));
    await followChanges(driver, options, output, fatal.stopped, () =>
      summarize(session.stats, wire(), monotonicMs() - started),
    );
    if (fatal.error !== undefined) throw fatal.error;
    return report(await finish(), options, output);
  } catch (error) {
    await finish().catch(() => {});
    if (connectFailure !== undefined) throw connectFailure;
    if (error instanceof DeletionRefusedError) {
      if (options.json)
        output.stdout(
          `${JSON.stringify({ refused: error.message, wouldDelete: error.listed, wouldDeleteCount: error.total })}\n`,
        );
      else output.stdout(`${error.listing().join("\n")}\n`);
      throw error;
    }
    const stateFailure =
      stateFailureOf(error) ?? (connection === undefined ? undefined : await targetStateFailure(connection.child));
    if (stateFailure !== undefined) throw stateFailure;
    throw new CliError(`mirroring ${sourceRoot} to ${dst} failed: ${(error as Error).message}`, EXIT.drift);
  }
}

/** A failure that stops a watch from the background (a state file that cannot be used). */
class FatalFailure {
  error: StateUnusableError | undefined;
  private wake!: () => void;
  /** Settles when `fail` is called. */
  readonly stopped = new Promise<void>((resolve) => {
    this.wake = resolve;
  });

  /** Records the first failure and stops the watch. */
  fail(error: StateUnusableError): void {
    this.error ??= error;
    this.wake();
  }
}

/**
 * Opens the source's state file (the log and the content index share it), checked with quick_check.
 * One that cannot be used is a StateUnusableError (exit 2, one line naming it and what to do); with
 * --rebuild-state a damaged one is moved aside first and `rebuilt` says so. A dry run stays in memory.
 */
function openSourceState(
  statePath: string,
  pair: { sourceRoot: string; targetKey: string },
  options: MirrorOptions,
): { log: OperationLog; state: StateStore; rebuilt: string | undefined } {
  if (options.dryRun) return { log: new OperationLog(), state: new StateStore(), rebuilt: undefined };
  try {
    const opened = openStateFile(statePath, options.rebuildState === true, () => {
      // Appends reach the disk while their operations are shipped (the target is told how far they have).
      const log = new OperationLog(statePath, { verify: true, deferDurability: true });
      try {
        return { log, state: new StateStore(statePath, { writeAheadAfter: SOURCE_WRITE_AHEAD }) };
      } catch (error) {
        log.close();
        throw error;
      }
    });
    const { log, state } = opened.value;
    try {
      log.describePair(pair.sourceRoot, pair.targetKey);
    } catch (error) {
      closeQuietly(log, state);
      throw error;
    }
    return { log, state, rebuilt: opened.rebuilt };
  } catch (error) {
    throw stateFailureOf(error) ?? error;
  }
}

/** Operations in the log's current epoch, or logged by the pair's last sync, up to which a run is small. */
const IN_PROCESS_MAX_OPERATIONS = 2_000;
/**
 * Files a small run's tree holds at most. A no-change run of 20,000 files served in process took
 * 0.91–0.92 s against 0.96–0.97 s with a child (100 modified files: 1.21 against 1.28 s in one series, no
 * difference in another); of 100,000 files 2.8 against 2.3 s (5–10 interleaved runs each): two walks on
 * one thread cost more than a second process's start somewhere between.
 */
const IN_PROCESS_MAX_FILES = 25_000;
/** The service record of a sync's size, for the next run's choice (see targetInProcess). */
const LAST_SYNC_KEY = "last-sync-size";

/** What the pair's last completed sync scanned and logged. */
interface SyncSize {
  files: number;
  operations: number;
}

/**
 * Whether a run serves its local target in this process rather than in a child: a sync of a known pair
 * whose log's current epoch is short (a small tree, few changes since), or whose last sync was small (a
 * tree of at most IN_PROCESS_MAX_FILES files, at most IN_PROCESS_MAX_OPERATIONS operations). Such a run is
 * mostly start-up and walking, and a child would add a second node process that loads every module again.
 * A large or first sync, one after a large change, and a watch keep the child: it works beside the source
 * on another core, which pays once there is work.
 */
function targetInProcess(
  mode: "sync" | "watch",
  spec: TargetSpec,
  peek: () => { head: Position; lastSync: SyncSize | undefined } | undefined,
): boolean {
  // MIRRORLOG_LOCAL_TARGET=child keeps the child always (the fault suite kills the target alone through it).
  if (mode !== "sync" || spec.kind !== "local" || process.env.MIRRORLOG_LOCAL_TARGET === "child") return false;
  // Read only here: an ssh target (or a watch) starts without opening the log first.
  const peeked = peek();
  if (peeked === undefined || peeked.head.epoch === 0) return false;
  if (peeked.head.seq <= IN_PROCESS_MAX_OPERATIONS) return true;
  const last = peeked.lastSync;
  return last !== undefined && last.files <= IN_PROCESS_MAX_FILES && last.operations <= IN_PROCESS_MAX_OPERATIONS;
}

/**
 * The head of the pair's log and its last sync's size, read without checking the file (that comes next,
 * while the target starts); undefined when there is no log yet or it cannot be read (the check then says why).
 */
function peekLog(statePath: string): { head: Position; lastSync: SyncSize | undefined } | undefined {
  if (!existsSync(statePath)) return undefined;
  try {
    const log = new OperationLog(statePath, { readOnly: true });
    try {
      return { head: log.lastPosition(), lastSync: syncSizeOf(log.serviceRecord(LAST_SYNC_KEY)) };
    } finally {
      log.close();
    }
  } catch {
    return undefined;
  }
}

/** A recorded sync size, or undefined when there is none or it is not one. */
function syncSizeOf(text: string | undefined): SyncSize | undefined {
  try {
    const value = text === undefined ? undefined : (JSON.parse(text) as Partial<SyncSize>);
    return Number.isSafeInteger(value?.files) && Number.isSafeInteger(value?.operations)
      ? { files: value!.files!, operations: value!.operations! }
      : undefined;
  } catch {
    return undefined;
  }
}

/** Records what a completed sync scanned and logged, for the next run's choice (see targetInProcess). */
function recordSyncSize(log: OperationLog, stats: SyncStats): void {
  try {
    const size: SyncSize = { files: stats.filesScanned, operations: stats.operationsLogged };
    log.putServiceRecord(LAST_SYNC_KEY, JSON.stringify(size));
  } catch {
    // The next run decides from its log's head alone.
  }
}

/**
 * A watch batch of 64 hints or more (a `git checkout`, an unpack, a build) is planned once no hint has
 * come for 30 ms, or after 2 s of hints at the latest: the user's command then writes alone instead of
 * beside our reads and the target's writes on the same disk (bench `checkout`: 1.40–1.60× -> 1.13–1.25×
 * as long as without watch; with the watch stopped outright during the checkout, 1.04×). A single
 * change is planned at once (live latency).
 */
const WATCH_BURST_QUIET = { hints: 64, quietMs: 30, maxWaitMs: 2_000 };

/**
 * Raises this process's nice value by `steps` (at most to 19), so a live mirror yields the CPU to the
 * user's own work; the kernel's I/O schedulers that honour priorities derive one from it too. A refusal
 * (a seccomp sandbox) is said once and changes nothing else.
 */
function beNicer(steps: number, output: MirrorOutput): void {
  if (steps === 0) return;
  try {
    setPriority(Math.min(19, getPriority() + steps));
  } catch (error) {
    output.stderr(`mirrorlog: cannot lower this process's priority (--nice ${steps}): ${(error as Error).message}\n`);
  }
}

/** Closes each (a failure does not stop the others) and returns the first failure, if any. */
function closeQuietly(...closables: { close(): void }[]): unknown {
  let first: unknown;
  for (const closable of closables) {
    try {
      closable.close();
    } catch (error) {
      first ??= error;
    }
  }
  return first;
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
export function resolvePair(src: string, dst: string, stateOption: string | undefined, mkpath = true): ResolvedPair {
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
    // A typo'd DST is not created with all its parents (rsync --mkpath): its parent must exist.
    if (!mkpath && !existsSync(targetRoot) && !existsSync(posix.dirname(targetRoot))) {
      throw new CliError(
        `target ${targetRoot}: parent ${posix.dirname(targetRoot)} does not exist (use --mkpath to create it)`,
      );
    }
    spec = { kind: "local", path: targetRoot };
  }
  const targetKey = spec.kind === "local" ? spec.path : dst;
  const statePath = stateOption ? posix.resolve(stateOption) : defaultSourceStatePath(sourceRoot, targetKey);
  const stateProblem = statePathProblem(statePath, spec.kind === "local" ? [sourceRoot, spec.path] : [sourceRoot]);
  if (stateProblem !== null) throw new CliError(stateProblem);
  return { sourceRoot, spec, targetKey, statePath };
}

/** A target (a local child, ssh, or served in this process) and the protocol client connected to it. */
export interface TargetProcess {
  child: RunningTarget;
  client: StreamClient<Request, Response>;
}

/**
 * Starts the target for `spec` (read-only when `dryRun`): `mirrorlog serve` locally or through ssh, or, for
 * a local `inProcess` target, served by this process (see serveInProcess). Then completes the handshake.
 * The target's stderr is forwarded once connected; an unreachable target is a CliError.
 */
export async function connectTarget(
  spec: TargetSpec,
  dst: string,
  options: {
    dryRun: boolean;
    remoteCommand: string;
    timeout?: number;
    rebuildState?: boolean;
    /** false: the target refuses a root whose parent is missing (sync and watch without --mkpath). */
    mkpath?: boolean;
    backupDir?: string;
    checksum?: boolean;
    /** Bytes per second written to the target at most. */
    bwlimit?: number;
    /** Serve a local target in this process instead of a child (see targetInProcess). */
    inProcess?: boolean;
  },
): Promise<TargetProcess> {
  // A dry run's target serves read-only: it creates neither the target directory nor its state file.
  const serveOptions = (root: string): ServeOptions => ({
    root,
    dryRun: options.dryRun,
    rebuildState: options.rebuildState === true,
    mkpath: options.mkpath !== false,
    ...(options.backupDir === undefined ? {} : { backupDir: options.backupDir }),
    checksum: options.checksum === true,
  });
  // Interrupted meanwhile (a reconnect racing with SIGINT): no new target.
  const interrupted = interruptedBy();
  if (interrupted !== undefined) throw new CliError(`interrupted by ${interrupted}`, EXIT.interrupted);
  const targetStderr = new HeldStderr();
  let child: RunningTarget;
  if (options.inProcess && spec.kind === "local") {
    const { serveInProcess } = await import("./serve.js");
    child = serveInProcess(serveOptions(spec.path), targetStderr);
  } else {
    const serveArgs = (root: string) => serveArgv(serveOptions(root));
    child = spawnTarget(spec, {
      localCommand: (root) => mirrorlogArgs(serveArgs(root)),
      remoteCommand: (root) => [...splitCommandWords(options.remoteCommand), ...serveArgs(root)],
      forwardStderr: targetStderr,
    });
  }
  // SIGINT/SIGTERM/SIGHUP stop it (it cleans up and releases the lock): see interrupt.ts.
  trackTarget(child);
  let client: StreamClient<Request, Response>;
  try {
    await phase("start");
    client = await StreamClient.connect<Request, Response>({
      input: child.input,
      output: options.bwlimit === undefined ? child.output : paced(child.output, options.bwlimit),
      version: PROTOCOL_VERSION,
      validateResponse: (value) => ResponseSchema.parse(value),
      diagnose: () => child.diagnose(),
      // serve answers in order: a skipped answer is a lost frame, detected at once; silence is bounded.
      answersInOrder: true,
      idleTimeoutMs: (options.timeout ?? DEFAULT_TIMEOUT_SECONDS) * 1000,
    });
  } catch (error) {
    const broken = await targetStateFailure(child);
    child.kill();
    if (broken !== undefined) throw broken;
    throw new CliError(`cannot reach target ${dst}: ${(error as Error).message}`);
  }
  targetStderr.release();
  return { child, client };
}

/** The command line of `mirrorlog serve` (after the executable) that serves with `options`. */
function serveArgv(options: ServeOptions): string[] {
  return [
    "serve",
    "--stdio",
    `--root=${options.root}`,
    ...(options.dryRun ? ["--dry-run"] : []),
    ...(options.rebuildState ? [REBUILD_FLAG] : []),
    ...(options.mkpath === false ? ["--no-mkpath"] : []),
    ...(options.backupDir === undefined ? [] : [`--backup-dir=${options.backupDir}`]),
    ...(options.checksum ? ["--checksum"] : []),
  ];
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
 * would break the one-line error. For the same reason the line a target ends with when its state file
 * cannot be used is never forwarded: the run ends with that line as its own error.
 */
class HeldStderr extends Writable {
  private held: Buffer[] | undefined = [];
  /** The start of a line not yet complete. */
  private partial = "";
  private readonly decoder = new StringDecoder("utf8");
  /** The start of the current line was forwarded already (it could not be the state line). */
  private continuing = false;

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    if (this.held === undefined) this.forward(chunk);
    else this.held.push(chunk);
    callback();
  }

  /** Writes what was held and forwards everything from now on. */
  release(): void {
    for (const chunk of this.held ?? []) this.forward(chunk);
    this.held = undefined;
  }

  private forward(chunk: Buffer): void {
    let text = this.decoder.write(chunk);
    if (this.continuing) {
      // The rest of a line whose start was already forwarded.
      const end = text.indexOf("\n");
      process.stderr.write(end === -1 ? text : text.slice(0, end + 1));
      if (end === -1) return;
      this.continuing = false;
      text = text.slice(end + 1);
    }
    const lines = (this.partial + text).split("\n");
    this.partial = lines.pop() ?? "";
    const shown = lines.filter((line) => !line.startsWith(TARGET_STATE_LINE));
    if (shown.length > 0) process.stderr.write(`${shown.join("\n")}\n`);
    // A line start that cannot become the state line is forwarded now: the stream may never end it.
    const undecided = TARGET_STATE_LINE.startsWith(this.partial) || this.partial.startsWith(TARGET_STATE_LINE);
    if (!undecided) {
      process.stderr.write(this.partial);
      this.partial = "";
      this.continuing = true;
    }
  }
}

/** Watch mode: keeps replicating until SIGINT/SIGTERM or `stopped`; SIGUSR1 prints the summary so far. */
async function followChanges(
  driver: StreamingSource,
  options: MirrorOptions,
  output: MirrorOutput,
  stopped: Promise<void>,
  summarySoFar: () => RunSummary,
): Promise<void> {
  output.stderr(`mirrorlog: watching ${driver.session.root} (Ctrl-C to stop)\n`);
  const reconcile = setInterval(() => driver.rescan("rescan"), options.rescanInterval * 1000);
  const onSummary = (): void => output.stderr(`${formatSummary(summarySoFar())}\n`);
  process.on("SIGUSR1", onSummary);
  // SIGINT/SIGTERM stop the watch in order: what is in flight is finished and the summary printed. A
  // second signal, or a stop that takes too long, interrupts (exit 20; see interrupt.ts). SIGHUP: `onReload`.
  let removeStop = (): void => {};
  try {
    await new Promise<void>((resolve) => {
      removeStop = onOrderlyStop(resolve);
      void stopped.then(resolve);
    });
  } finally {
    removeStop();
    clearInterval(reconcile);
    process.off("SIGUSR1", onSummary);
  }
  // Stop taking hints first: under continuous activity new hints would keep idle() from ever resolving.
  driver.session.releaseWatches();
  // Finish what is in flight: the log and the target stay consistent.
  await driver.idle();
}

/** A dry run's plan: what the target holds (its manifest) and the operations that would make it mirror SRC. */
async function planDryRun(session: SourceSession, client: StreamClient<Request, Response>) {
  while (!session.acceptManifest(await client.request(session.manifestRequest()))) {}
  session.log.startEpoch("dry run", Date.now());
  const held = session.expectedTree();
  return { held, entries: session.planPath("", "initial").map((e) => e.operation) };
}

function describeOperation(operation: { type: string; path: string; size?: number }): string {
  const size = operation.size === undefined ? "" : ` (${operation.size} bytes)`;
  return `${operation.type} ${JSON.stringify(operation.path)}${size}`;
}

/** Prints the run's summary (none with -q, unless --json) and returns its exit code: 23 when paths failed. */
function report(summary: RunSummary, options: MirrorOptions, output: MirrorOutput): number {
  if (options.json) output.stdout(`${JSON.stringify(summary)}\n`);
  else if (!options.quiet) output.stdout(`${formatSummary(summary)}\n`);
  return summary.problems.length === 0 ? EXIT.ok : EXIT.partial;
}

/**
 * What `-i` / `-v` list, and where: each change on stdout (on stderr with --json, which owns stdout), in
 * watch prefixed with the time. Undefined when nothing is listed (or with -q).
 */
function changeTracker(
  mode: "sync" | "watch",
  options: MirrorOptions,
  output: MirrorOutput,
): ChangeTracker | undefined {
  const listing = options.itemizeChanges ? "itemize" : (options.verbose ?? 0) > 0 ? "names" : undefined;
  if (listing === undefined || options.quiet) return undefined;
  const write = options.json ? output.stderr : output.stdout;
  return new ChangeTracker(listing, (line) =>
    write(mode === "watch" ? `${timestampOf(new Date())} ${line}\n` : `${line}\n`),
  );
}

/**
 * Every exclude pattern of a run: --exclude, the lines of each --exclude-from file, and a --backup-dir that
 * lies inside DST (anchored to the root: the backups are not part of the mirror, and never deleted).
 */
function excludePatterns(options: MirrorOptions, spec: TargetSpec): string[] {
  const patterns = [...options.exclude, ...(options.excludeFrom ?? []).flatMap(readPatternFile)];
  const inside = backupDirInside(options.backupDir, spec);
  if (inside !== undefined) patterns.push(`/${inside.replace(/[\\*?[\]!# ]/g, (c) => `\\${c}`)}`);
  return patterns;
}

/** The path of the backup directory relative to DST when it lies inside DST, else undefined. */
function backupDirInside(backupDir: string | undefined, spec: TargetSpec): string | undefined {
  if (backupDir === undefined) return undefined;
  const targetPath = spec.path;
  const relative = posix.isAbsolute(backupDir)
    ? posix.isAbsolute(targetPath) && isWithin(targetPath, backupDir)
      ? posix.relative(targetPath, backupDir)
      : undefined
    : posix.normalize(backupDir);
  if (relative === undefined || relative === "" || relative === "." || relative.startsWith("../") || relative === "..")
    return undefined;
  return relative.replace(/\/+$/, "");
}

/** The real path of SRC when it is a regular file (rsync copies it), else undefined (a directory, or a failure resolveSourceRoot words). */
function singleFileSource(src: string): string | undefined {
  try {
    const real = realpathSync(posix.resolve(src));
    return lstatSync(real).isFile() ? real : undefined;
  } catch {
    return undefined;
  }
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
