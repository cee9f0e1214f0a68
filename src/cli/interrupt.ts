// How `sync` and `watch` end on SIGINT, SIGTERM and SIGHUP: promptly, in every phase, with the target
// process stopped (it removes its temps and releases the target lock itself, see serve.ts), the terminal
// restored, one line on stderr and exit status 20 (rsync's "received SIGINT, SIGTERM, or SIGHUP").
//
// Signals are process-wide, so this module keeps process-wide state: the signal received, the target
// processes to stop, and what restores the terminal. Nothing here decides how a run goes on; a run asks
// `interruptedBy()` where it would otherwise retry or report (a lost connection after an interruption is
// the interruption, not something to reconnect from).
import { escapeForDisplay } from "../events/paths.js";
import { CliError } from "./cliError.js";
import { EXIT } from "./exitCodes.js";

/** The signals that stop a run. In `watch`, SIGHUP goes to the `onReload` handler once one is registered. */
export const INTERRUPT_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const satisfies readonly NodeJS.Signals[];

/** How long a target process may take to clean up after SIGTERM before it is killed outright. */
const TARGET_STOP_MS = 4_000;
/** How long the run may take to unwind once its target is gone before the process exits regardless. */
const UNWIND_GRACE_MS = 500;
/** How long an asked-for orderly stop of a watch (finish what is in flight) may take before it is cut short. */
const ORDERLY_STOP_MS = 10_000;
/** Shows the cursor again (a progress bar hides it). */
const SHOW_CURSOR = "\x1b[?25h";

/** A run that was interrupted: one line, exit status 20; the target is partly updated and the next run finishes it. */
export class InterruptedError extends CliError {
  constructor(
    readonly signal: NodeJS.Signals,
    target: string,
  ) {
    super(
      `interrupted by ${signal}; "${escapeForDisplay(target)}" is partly updated, run again to finish`,
      EXIT.interrupted,
    );
  }
}

/** A target being served (by a child process, or in this process): stopped on interruption. */
export interface StoppableTarget {
  /** Asks it to stop (SIGTERM to a process): serve removes its temps and releases the lock. */
  kill(): void;
  /** The last resort (SIGKILL to a process). */
  forceKill(): void;
  /** True until it has ended. */
  running(): boolean;
  /** Settles when it has ended. */
  exited: Promise<unknown>;
}

let received: NodeJS.Signals | undefined;
const targets = new Set<StoppableTarget>();
const terminalRestorers = new Set<() => void>();
let orderlyStop: (() => void) | undefined;
let reloadHandler: (() => void) | undefined;

/** The signal that interrupted this process's run, or undefined while it has not been interrupted. */
export function interruptedBy(): NodeJS.Signals | undefined {
  return received;
}

/**
 * Registers a target to stop on interruption, until it ends. A target started after the
 * interruption (a reconnect racing with it) is stopped at once.
 */
export function trackTarget(target: StoppableTarget): void {
  if (received !== undefined) {
    target.kill();
    return;
  }
  targets.add(target);
  void target.exited.then(() => targets.delete(target));
}

/** Registers what puts the terminal back (a progress bar's stop); returns the unregistration. */
export function onTerminalRestore(restore: () => void): () => void {
  terminalRestorers.add(restore);
  return () => terminalRestorers.delete(restore);
}

/**
 * While registered (a watch following changes), the first SIGINT or SIGTERM asks for an orderly stop
 * (`stop`: finish what is in flight, print the summary) instead of interrupting; a second signal, or a
 * stop that takes longer than ORDERLY_STOP_MS, interrupts. Returns the unregistration.
 */
export function onOrderlyStop(stop: () => void): () => void {
  orderlyStop = stop;
  return () => {
    if (orderlyStop === stop) orderlyStop = undefined;
  };
}

/**
 * The hook for SIGHUP in `watch`: while a handler is registered, SIGHUP calls it (reload the pair's
 * configuration) and does not interrupt. Without one, SIGHUP interrupts like SIGINT. Returns the unregistration.
 */
export function onReload(handler: () => void): () => void {
  reloadHandler = handler;
  return () => {
    if (reloadHandler === handler) reloadHandler = undefined;
  };
}

/** Options of runInterruptible. */
export interface InterruptibleOptions {
  /** The target as the user named it, for the one line. */
  target: string;
  /** Where the line goes when the process must exit before the run unwinds (default process.stderr). */
  stderr?: (text: string) => void;
}

/**
 * Runs `run` (a sync or watch) with SIGINT, SIGTERM and SIGHUP handled: on the first one the target
 * processes are told to stop and the terminal is restored; once they are gone, the run's own ending
 * (its failures are consequences of the interruption) becomes an InterruptedError. A run that does not
 * unwind soon after (it is reading a large tree, say) is not waited for: the process exits with the
 * same line and status, which is safe (the logs are crash-safe, the target cleaned up). A second
 * signal exits at once.
 */
export async function runInterruptible<T>(options: InterruptibleOptions, run: () => Promise<T>): Promise<T> {
  const stderr = options.stderr ?? ((text: string) => process.stderr.write(text));
  let stopped: Promise<void> | undefined;
  let orderlyTimer: NodeJS.Timeout | undefined;
  // Set once the run's ending became the InterruptedError (main prints its line): exiting says nothing more.
  let delivered = false;
  const exitNow = (signal: NodeJS.Signals): never => {
    for (const target of targets) if (target.running()) target.kill();
    restoreTerminal();
    if (!delivered) stderr(`mirrorlog: ${new InterruptedError(signal, options.target).message}\n`);
    process.exit(EXIT.interrupted);
  };
  const interrupt = (signal: NodeJS.Signals): void => {
    clearTimeout(orderlyTimer);
    if (received !== undefined) exitNow(received);
    received = signal;
    restoreTerminal();
    for (const release of holds) release();
    holds.clear();
    stopped = stopTargets().then(() => {
      // The run normally ends within moments (its connection is gone); one busy elsewhere is not waited for.
      setTimeout(() => exitNow(signal), UNWIND_GRACE_MS).unref();
    });
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signal === "SIGHUP" && reloadHandler !== undefined && received === undefined) {
      reloadHandler();
      return;
    }
    if (orderlyStop !== undefined && received === undefined && orderlyTimer === undefined && signal !== "SIGHUP") {
      const stop = orderlyStop;
      orderlyTimer = setTimeout(() => interrupt(signal), ORDERLY_STOP_MS);
      orderlyTimer.unref();
      stop();
      return;
    }
    interrupt(signal);
  };
  for (const signal of INTERRUPT_SIGNALS) process.on(signal, onSignal);
  try {
    let result: T;
    try {
      result = await run();
    } catch (error) {
      if (received === undefined) throw error;
      result = undefined as T;
    }
    if (received !== undefined) {
      await stopped;
      delivered = true;
      throw new InterruptedError(received, options.target);
    }
    return result;
  } finally {
    clearTimeout(orderlyTimer);
    for (const signal of INTERRUPT_SIGNALS) process.off(signal, onSignal);
  }
}

/**
 * For `serve`: the first SIGINT, SIGTERM or SIGHUP calls `stop` (stop serving, then clean up as at the
 * end of the input). Later ones are ignored: Ctrl-C reaches a local serve from the terminal and again from
 * its source, and the cleanup they would cut short is quick (a serve that hangs is killed by its source).
 * Returns the removal of the handlers.
 */
export function onStopSignals(stop: (signal: NodeJS.Signals) => void): () => void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    stop(signal);
  };
  for (const signal of INTERRUPT_SIGNALS) process.on(signal, onSignal);
  return () => {
    for (const signal of INTERRUPT_SIGNALS) process.off(signal, onSignal);
  };
}

/** Stops every tracked target: SIGTERM, then SIGKILL for one still there after TARGET_STOP_MS. */
async function stopTargets(): Promise<void> {
  const running = [...targets];
  for (const target of running) target.kill();
  let timer: NodeJS.Timeout | undefined;
  const exited = Promise.all(running.map((target) => target.exited)).then(() => true);
  const inTime = await Promise.race([
    exited,
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), TARGET_STOP_MS);
    }),
  ]);
  clearTimeout(timer);
  if (inTime) return;
  for (const target of running) target.forceKill();
  await exited;
}

/** Runs every terminal restorer once, then shows the cursor whatever they did. */
function restoreTerminal(): void {
  for (const restore of [...terminalRestorers]) {
    terminalRestorers.delete(restore);
    try {
      restore();
    } catch {
      // Best effort: the cursor is shown below in any case.
    }
  }
  if (process.stderr.isTTY) process.stderr.write(SHOW_CURSOR);
}

/**
 * The test hook for interruption tests: with MIRRORLOG_TEST_PHASES set, `phase(name)` prints
 * `mirrorlog: phase NAME` on stderr the first time a run reaches NAME, so a test can send its signal in
 * that phase. With MIRRORLOG_TEST_HOLD=NAME the run also waits there (where it is asynchronous) until it
 * is interrupted, so a short phase can be hit every time. Without the variables it does nothing.
 */
export function phase(name: string | undefined): Promise<void> | undefined {
  if (name === undefined || !process.env.MIRRORLOG_TEST_PHASES || reached.has(name)) return undefined;
  reached.add(name);
  // On its own line, also over a progress bar (which draws itself again).
  process.stderr.write(`${process.stderr.isTTY ? "\r\x1b[K" : ""}mirrorlog: phase ${name}\n`);
  if (process.env.MIRRORLOG_TEST_HOLD !== name) return undefined;
  // Waits for the signal, then fails as the step it stands in for would (its connection is gone). The timer
  // keeps the process alive meanwhile: a target served in this process holds no handle that would.
  return new Promise<void>((_resolve, reject) => {
    const alive = setInterval(() => {}, 60_000);
    holds.add(() => {
      clearInterval(alive);
      reject(new Error(`interrupted in phase ${name}`));
    });
  });
}

/** The phase a request of this type belongs to, for `phase`: the session handshake, the manifest, the transfer. */
export function requestPhase(type: string): string | undefined {
  if (type === "hello") return "handshake";
  if (type === "manifest") return "manifest";
  if (type === "apply" || type === "upload") return "transfer";
  return undefined;
}

const reached = new Set<string>();
const holds = new Set<() => void>();
