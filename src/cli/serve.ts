import { existsSync, lstatSync, mkdirSync } from "node:fs";
import { posix } from "node:path";
import { PassThrough, type Readable, type Writable } from "node:stream";
import { recordClosedStateFile, StateFileError } from "../events/operationLog.js";
import { escapeForDisplay } from "../events/paths.js";
import { type AppliedPosition, PROTOCOL_VERSION } from "../events/protocol.js";
import { StateStore } from "../events/stateStore.js";
import type { FileSystem } from "../fs/fileSystem.js";
import { MemoryFileSystem } from "../fs/memoryFileSystem.js";
import { keepFreedBuffersForReuse, loadNativeCalls } from "../fs/nativeCalls.js";
import { NodeFileSystem } from "../fs/nodeFileSystem.js";
import { BackupDir, backupDirProblem } from "../replicator/backupDir.js";
import { ReplicatorTarget } from "../replicator/target.js";
import { diagnoseTarget, type RunningTarget, StderrTail, type TargetExit } from "../transport/sshCommand.js";
import { serveStream, TransportError } from "../transport/streamConnection.js";
import { rehashingIndex } from "./checksumIndex.js";
import { CliError } from "./cliError.js";
import { EXIT } from "./exitCodes.js";
import { failureLine } from "./failureLine.js";
import { onStopSignals } from "./interrupt.js";
import { makeStateDirectory, openStateFile, STATE_UNUSABLE_EXIT, stateFileAdvice } from "./stateFiles.js";
import { defaultTargetStatePath } from "./statePaths.js";
import { lockTarget, type TargetLock } from "./targetLock.js";

/** Options of `mirrorlog serve`. */
export interface ServeOptions {
  root: string;
  state?: string;
  /** Serve read-only for a dry run: create nothing (not the root, not the state file) and refuse applies. */
  dryRun?: boolean;
  /** A damaged state file is moved aside and a new one started (the source then begins a new epoch). */
  rebuildState?: boolean;
  /** Create the root's missing parents (default true; `sync` passes --no-mkpath unless it was given --mkpath). */
  mkpath?: boolean;
  /** Keep removed and replaced entries here (relative to the root, or absolute), like rsync --backup-dir. */
  backupDir?: string;
  /** Hash every file for the manifest instead of trusting the index (sync --checksum). */
  checksum?: boolean;
}

/** The one line a target state file that cannot be used ends serve with (exit STATE_UNUSABLE_EXIT). */
function targetStateError(error: StateFileError): CliError {
  return new CliError(`target ${stateFileAdvice(error)}`, STATE_UNUSABLE_EXIT);
}

/** Where a target talks and what it says: the streams carrying frames, and its human lines. */
interface TargetIo {
  /** Requests arrive here. */
  input: Readable;
  /** Frames only. */
  output: Writable;
  /** Problems and notices, line by line (the source forwards them). */
  stderr: (text: string) => void;
}

/**
 * `mirrorlog serve --stdio --root DIR`: a target on stdin/stdout. stdout carries frames only;
 * anything human goes to stderr. Returns when the source closes the stream.
 */
export async function serve(options: ServeOptions): Promise<void> {
  // When the source dies, our stdout and stderr lead nowhere: a write error there must not kill us
  // before the state is saved and the lock released.
  process.stdout.on("error", () => {});
  process.stderr.on("error", () => {});
  enlargeInputPipe();
  keepFreedBuffersForReuse();
  const io: TargetIo = {
    input: process.stdin,
    output: process.stdout,
    stderr: (text) => process.stderr.write(text),
  };
  // SIGINT, SIGTERM, SIGHUP: stop between requests (each is applied whole), then end as at the end of the
  // input. Quietly: the source says why.
  if (await serveUntilStopped(options, io, onStopSignals)) process.exitCode = EXIT.interrupted;
}

/** What serve asks its input pipe to hold: the default pipe-max-size, what any process may ask for. */
const INPUT_PIPE_BYTES = 1024 * 1024;

/**
 * Lets the sender run ahead while a request is applied. Each request is applied whole on the one thread,
 * and nothing is read meanwhile: over ssh, sshd can then hand over only what the input pipe holds (64 KiB
 * by default) before it waits, and the next 2 MiB upload arrives in 64 KiB steps once the apply is over.
 * A 1 MiB pipe took a 512 MiB copy over ssh from 7.2 to 6.7 s. Best effort: a socket (a local target's
 * stdin) or a refusal (EPERM past a lowered pipe-max-size) leaves the input as it is.
 */
function enlargeInputPipe(): void {
  try {
    loadNativeCalls()?.setPipeSize(0, INPUT_PIPE_BYTES);
  } catch {
    // Not a pipe, or not allowed: the default size works, only slower.
  }
}

/**
 * Serves the root on `io` until the input ends, or until asked to stop (through `onStop`: the streams are
 * cut, the request at hand is finished, then everything ends as at the end of the input: unfinished
 * uploads and the stash removed, state saved, lock released). Resolves true when it was stopped; a
 * failure that is not the consequence of a stop is thrown.
 */
async function serveUntilStopped(
  options: ServeOptions,
  io: TargetIo,
  onStop: (stop: () => void) => () => void,
): Promise<boolean> {
  let stopped = false;
  const removeStop = onStop(() => {
    stopped = true;
    io.input.destroy();
    io.output.destroy();
  });
  try {
    await serveRoot(options, io);
  } catch (error) {
    if (!stopped) throw error;
  } finally {
    removeStop();
  }
  return stopped;
}

/**
 * A local target served by this process, on its event loop, over in-memory streams carrying the same
 * frames as a child's stdin/stdout. For a small job, where starting a second node process and loading
 * every module again would be most of the run; the source decides (see mirror.ts). It ends like a child:
 * `exited` carries the exit code serve would have (EXIT.interrupted once stopped), and a failure's one
 * line is in its stderr (state-file failures are read from there).
 */
export function serveInProcess(options: ServeOptions, forwardStderr?: Writable): RunningTarget {
  const toTarget = new PassThrough();
  const fromTarget = new PassThrough();
  const stderr = new StderrTail(forwardStderr);
  const say = (text: string) => stderr.write(Buffer.from(text));
  let stop: (() => void) | undefined;
  let ended = false;
  const exited = serveUntilStopped(options, { input: toTarget, output: fromTarget, stderr: say }, (stopNow) => {
    stop = stopNow;
    return () => {
      stop = undefined;
    };
  }).then(
    (stopped): TargetExit => ({ code: stopped ? EXIT.interrupted : EXIT.ok, signal: null }),
    (error: unknown): TargetExit => {
      const { line, exitCode } = failureLine(error);
      say(line);
      return { code: exitCode, signal: null };
    },
  );
  // Ended as a process ends: what it wrote can still be read, then the client sees the end (a target that
  // failed before its hello leaves the client nothing to wait for); what is written to it goes nowhere.
  void exited.then(() => {
    ended = true;
    toTarget.destroy();
    if (!fromTarget.destroyed && !fromTarget.writableEnded) fromTarget.end();
  });
  const description = "local target";
  // Its whole life is on our event loop: asking it to stop is all there is (the lock goes with the process).
  const kill = () => stop?.();
  return {
    input: fromTarget,
    output: toTarget,
    description,
    exited,
    stderrTail: () => stderr.text(),
    diagnose: diagnoseTarget({
      target: { kind: "local", path: options.root },
      description,
      command: "serve (in process)",
      exited,
      stderr,
    }),
    kill,
    forceKill: kill,
    running: () => !ended,
  };
}

/** `serve` once its stop is handled: lock the root and serve it. */
async function serveRoot(options: ServeOptions, io: TargetIo): Promise<void> {
  const root = posix.resolve(options.root);
  if (existsSync(root) && !lstatSync(root).isDirectory()) {
    throw new CliError(`target ${root} exists and is not a directory`);
  }
  if (options.mkpath === false && !existsSync(root) && !existsSync(posix.dirname(root))) {
    throw new CliError(`target ${root}: parent ${posix.dirname(root)} does not exist (use --mkpath to create it)`);
  }
  const backupDir = options.backupDir === undefined ? undefined : posix.resolve(root, options.backupDir);
  const backupProblem = backupDir === undefined || options.dryRun ? null : backupDirProblem(backupDir, root);
  if (backupProblem !== null) throw new CliError(backupProblem);
  if (!options.dryRun) {
    try {
      mkdirSync(root, { recursive: true });
    } catch (error) {
      throw new CliError(`cannot create target ${root}: ${(error as Error).message}`);
    }
  }
  const statePath = options.state ?? defaultTargetStatePath(root);
  // A dry run keeps its position and index in memory; a target that does not exist yet is planned
  // against as an empty in-memory directory, so that nothing appears on disk. Otherwise the root is
  // locked before anything is written: one source per target, however its path is spelled.
  const lock = options.dryRun ? undefined : lockTarget(root);
  try {
    await serveLocked(options, io, { root, statePath, lock });
  } finally {
    lock?.release();
  }
}

/**
 * Milliseconds between the target's flushes: requests are answered once applied, and made durable together
 * this long after the last flush once requests pause (at most twice as long while they do not), at the end
 * of each sync pass and when the session ends (see ReplicatorTarget.flushIfDue).
 * MIRRORLOG_FLUSH_INTERVAL_MS overrides it (tests use a long one to catch a target between answer and flush).
 */
const FLUSH_INTERVAL_MS = Number(process.env.MIRRORLOG_FLUSH_INTERVAL_MS) || 2000;

async function serveLocked(
  options: ServeOptions,
  io: TargetIo,
  { root, statePath, lock }: { root: string; statePath: string; lock: TargetLock | undefined },
): Promise<void> {
  let state: StateStore;
  if (options.dryRun) state = new StateStore();
  else {
    makeStateDirectory(statePath);
    lock?.recordOwner(`${statePath}.lock`);
    try {
      const opened = openStateFile(
        statePath,
        options.rebuildState === true,
        () => new StateStore(statePath, { verify: true }),
      );
      state = opened.value;
      if (opened.rebuilt !== undefined)
        io.stderr(`mirrorlog serve: target ${opened.rebuilt}; rebuilding it from a scan\n`);
    } catch (error) {
      if (error instanceof StateFileError) throw targetStateError(error);
      throw error;
    }
  }
  // A state file that fails while serving (a full disk, damage found late) stops serving at once: the
  // position can no longer be recorded, so nothing more may be applied and answered.
  let stateFailure: StateFileError | undefined;
  const failed = (error: unknown): never => {
    if (error instanceof StateFileError && stateFailure === undefined) {
      stateFailure = error;
      io.input.destroy(error);
    }
    throw error;
  };
  const positionStore = {
    load: (): AppliedPosition | null => state.load(),
    save: (position: AppliedPosition): void => {
      try {
        state.save(position);
      } catch (error) {
        failed(error);
      }
    },
  };
  const onProblem = (problem: { path: string; reason: string }) =>
    io.stderr(`mirrorlog serve: ${escapeForDisplay(problem.path)}: ${escapeForDisplay(problem.reason)}\n`);
  let fs: (FileSystem & { close?: () => void }) | undefined;
  let target: ReplicatorTarget | undefined;
  let failure: { error: unknown } | undefined;
  let stopFlushing = () => {};
  try {
    fs =
      options.dryRun && !existsSync(root)
        ? new MemoryFileSystem()
        : // Nothing is made durable until the target flushes (its durable position advances only then). Temps
          // left by a crashed run are ordinary entries to this instance: its manifest lists them and the source removes them.
          new NodeFileSystem({ root, onProblem, durability: "batched" });
    const serving = new ReplicatorTarget(fs, root, {
      positionStore,
      index: options.checksum ? rehashingIndex(state) : state,
      // -c trusts no recorded hash: nor a digest computed from them.
      ...(options.checksum ? {} : { digestCache: state }),
      flushIntervalMs: FLUSH_INTERVAL_MS,
      ...(options.backupDir === undefined ? {} : { backup: new BackupDir(posix.resolve(root, options.backupDir)) }),
    });
    target = serving;
    // Between requests (and while idle in a watch): what was applied becomes durable once the interval has
    // passed and requests pause; asked four times an interval, so a pause is taken soon after it begins.
    const flushTimer = setInterval(() => {
      try {
        serving.flushIfDue();
      } catch (error) {
        // The target refuses every later request; the source re-establishes with a new target.
        io.stderr(`mirrorlog serve: ${describe(error)}\n`);
      }
    }, FLUSH_INTERVAL_MS / 4);
    flushTimer.unref();
    stopFlushing = () => clearInterval(flushTimer);
    const handle = (request: unknown) =>
      options.dryRun && (request as { type?: unknown } | null)?.type === "apply"
        ? { type: "error" as const, code: "invalid-request" as const, message: "this target serves a dry run" }
        : serving.handleRequest(request);
    await serveStream(io.input, io.output, {
      validateRequest: (value) => value, // the target validates every request with zod itself
      handle,
      version: PROTOCOL_VERSION,
      onError: (error) => io.stderr(`mirrorlog serve: ${(error as Error).message ?? String(error)}\n`),
    });
  } catch (error) {
    failure = { error };
  }
  // Each step runs whatever the one before it did: a failed cleanup must not keep the state open or
  // the process alive (the lock is released by the caller, and by the kernel in any case).
  stopFlushing();
  try {
    target?.close();
  } catch (error) {
    // Not flushed: the durable position stays where it was and the source replays from it. Leftover temps
    // are ordinary entries to the next session: its manifest lists them and the source removes them.
    io.stderr(`mirrorlog serve: could not end the session cleanly: ${describe(error)}\n`);
  }
  let closeFailure: unknown;
  try {
    state.close();
    if (!options.dryRun && stateFailure === undefined) recordClosedStateFile(statePath);
  } catch (error) {
    closeFailure = error;
  }
  fs?.close?.();
  // A state file that failed is what the source must hear, rather than the lost connection it led to.
  if (stateFailure !== undefined) throw targetStateError(stateFailure);
  if (failure?.error instanceof StateFileError) throw targetStateError(failure.error);
  if (closeFailure instanceof StateFileError) throw targetStateError(closeFailure);
  if (failure === undefined) return;
  // The source went away mid-session: what was applied is saved above; say so in one line.
  if (failure.error instanceof TransportError) throw new CliError(`connection lost: ${failure.error.message}`, 1);
  throw failure.error;
}

function describe(error: unknown): string {
  return escapeForDisplay(error instanceof Error ? error.message : String(error));
}
