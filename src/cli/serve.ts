import { existsSync, lstatSync, mkdirSync } from "node:fs";
import { posix } from "node:path";
import { escapeForDisplay } from "../events/paths.js";
import { PROTOCOL_VERSION } from "../events/protocol.js";
import { StateStore } from "../events/stateStore.js";
import type { FileSystem } from "../fs/fileSystem.js";
import { MemoryFileSystem } from "../fs/memoryFileSystem.js";
import { NodeFileSystem } from "../fs/nodeFileSystem.js";
import { ReplicatorTarget } from "../replicator/target.js";
import { serveStream, TransportError } from "../transport/streamConnection.js";
import { CliError } from "./cliError.js";
import { defaultTargetStatePath } from "./statePaths.js";
import { lockTarget } from "./targetLock.js";

/** Options of `mirrorlog serve`. */
export interface ServeOptions {
  root: string;
  state?: string;
  /** Serve read-only for a dry run: create nothing (not the root, not the state file) and refuse applies. */
  dryRun?: boolean;
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
  const root = posix.resolve(options.root);
  if (existsSync(root) && !lstatSync(root).isDirectory()) {
    throw new CliError(`target ${root} exists and is not a directory`);
  }
  if (!options.dryRun) {
    try {
      mkdirSync(root, { recursive: true });
    } catch (error) {
      throw new CliError(`cannot create target ${root}: ${(error as Error).message}`);
    }
  }
  const statePath = options.state ?? defaultTargetStatePath(root);
  if (!options.dryRun) mkdirSync(posix.dirname(statePath), { recursive: true });
  // A dry run keeps its position and index in memory; a target that does not exist yet is planned
  // against as an empty in-memory directory, so that nothing appears on disk.
  // One source per target at a time: a second one is refused while the first is connected.
  const lock = options.dryRun ? undefined : lockTarget(`${statePath}.lock`, root);
  const state = options.dryRun ? new StateStore() : new StateStore(statePath);
  const onProblem = (problem: { path: string; reason: string }) =>
    process.stderr.write(`mirrorlog serve: ${escapeForDisplay(problem.path)}: ${escapeForDisplay(problem.reason)}\n`);
  const fs: FileSystem & { close?: () => void } =
    options.dryRun && !existsSync(root)
      ? new MemoryFileSystem()
      : // Each apply request ends with one flush, before its position is saved and answered. Temps left by
        // a crashed run are ordinary entries to this instance: its manifest lists them and the source removes them.
        new NodeFileSystem({ root, onProblem, durability: "batched" });
  const target = new ReplicatorTarget(fs, root, { positionStore: state, index: state });
  const handle = (request: unknown) =>
    options.dryRun && (request as { type?: unknown } | null)?.type === "apply"
      ? { type: "error" as const, code: "invalid-request" as const, message: "this target serves a dry run" }
      : target.handleRequest(request);
  try {
    try {
      await serveStream(process.stdin, process.stdout, {
        validateRequest: (value) => value, // the target validates every request with zod itself
        handle,
        version: PROTOCOL_VERSION,
        onError: (error) => process.stderr.write(`mirrorlog serve: ${(error as Error).message ?? String(error)}\n`),
      });
    } catch (error) {
      // The source went away mid-session: what was applied is saved below; say so in one line.
      if (error instanceof TransportError) throw new CliError(`connection lost: ${error.message}`, 1);
      throw error;
    }
  } finally {
    target.close();
    state.close();
    lock?.release();
    fs.close?.();
  }
}
