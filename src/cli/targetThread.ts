// A local target served on a worker thread: the source's half (start it, talk to it, stop it). Kept apart from
// serve.ts so a source starts the thread without loading the target's own modules first; the thread's half
// is serveAsThread in serve.ts.
import type { Writable } from "node:stream";
import { Worker } from "node:worker_threads";
import { diagnoseTarget, type RunningTarget, StderrTail, type TargetExit } from "../transport/sshCommand.js";
import { failureLine } from "./failureLine.js";
import { MIRRORLOG_BIN } from "./nodeCommand.js";
import type { ServeOptions } from "./serve.js";

/** The key of workerData under which a target's worker thread finds its ServeOptions (see serveInThread). */
export const THREAD_OPTIONS = "mirrorlogServe";
/** What the source posts to a target's worker thread to stop it (as SIGTERM stops a child). */
export const THREAD_STOP = "stop";

/**
 * A local target served on a worker thread of this process: beside the source on another core like a
 * child, without a second process to start (a child's exec and node's boot took ≈ 110 ms before it
 * loaded anything, on a core the source was using). The thread runs bin/mirrorlog, which loads the bundle
 * and calls serveAsThread (serve.ts); frames travel over the thread's stdin and stdout, its stderr is the target's.
 * It ends like a child: `exited` carries serve's exit code, a failure's line is in its stderr.
 */
export function serveInThread(options: ServeOptions, forwardStderr?: Writable): RunningTarget {
  const worker = new Worker(MIRRORLOG_BIN, {
    workerData: { [THREAD_OPTIONS]: options },
    stdin: true,
    stdout: true,
    stderr: true,
    // Its files are opened through koffi (openat) as well as Node's fs: tracked, each close of the former
    // would warn. The thread ends with the process anyway (or, stopped, closes its handles itself).
    trackUnmanagedFds: false,
  });
  const stderr = new StderrTail(forwardStderr);
  worker.stderr.on("data", (chunk: Buffer) => stderr.write(chunk));
  let ended = false;
  // Once the thread has ended and its stderr is read to the end (the tail is then complete).
  const exited = Promise.all([
    new Promise<number>((resolve) => {
      worker.on("error", (error) => stderr.write(Buffer.from(failureLine(error).line)));
      worker.on("exit", resolve);
    }),
    new Promise<void>((resolve) => worker.stderr.on("close", resolve).on("end", resolve)),
  ]).then(([code]): TargetExit => {
    ended = true;
    return { code, signal: null };
  });
  const description = "local target";
  return {
    input: worker.stdout,
    output: worker.stdin!,
    description,
    exited,
    stderrTail: () => stderr.text(),
    diagnose: diagnoseTarget({
      target: { kind: "local", path: options.root },
      description,
      command: "serve (worker thread)",
      exited,
      stderr,
    }),
    kill: () => {
      if (!ended) worker.postMessage(THREAD_STOP);
    },
    forceKill: () => void worker.terminate(),
    running: () => !ended,
  };
}
