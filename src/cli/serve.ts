import { existsSync, lstatSync, mkdirSync } from "node:fs";
import { posix } from "node:path";
import { PROTOCOL_VERSION } from "../events/protocol.js";
import { StateStore } from "../events/stateStore.js";
import { NodeFileSystem } from "../fs/nodeFileSystem.js";
import { ReplicatorTarget } from "../replicator/target.js";
import { serveStream } from "../transport/streamConnection.js";
import { CliError } from "./cliError.js";
import { defaultTargetStatePath } from "./statePaths.js";

/** Options of `mirrorlog serve`. */
export interface ServeOptions {
  root: string;
  state?: string;
}

/**
 * `mirrorlog serve --stdio --root DIR`: a target on stdin/stdout. stdout carries frames only;
 * anything human goes to stderr. Returns when the source closes the stream.
 */
export async function serve(options: ServeOptions): Promise<void> {
  const root = posix.resolve(options.root);
  if (existsSync(root) && !lstatSync(root).isDirectory()) {
    throw new CliError(`target ${root} exists and is not a directory`);
  }
  try {
    mkdirSync(root, { recursive: true });
  } catch (error) {
    throw new CliError(`cannot create target ${root}: ${(error as Error).message}`);
  }
  const statePath = options.state ?? defaultTargetStatePath(root);
  mkdirSync(posix.dirname(statePath), { recursive: true });
  const state = new StateStore(statePath);
  const fs = new NodeFileSystem({
    root,
    onProblem: (problem) => process.stderr.write(`mirrorlog serve: ${problem.path}: ${problem.reason}\n`),
  });
  const target = new ReplicatorTarget(fs, root, { positionStore: state, index: state });
  try {
    await serveStream(process.stdin, process.stdout, {
      validateRequest: (value) => value, // the target validates every request with zod itself
      handle: (request) => target.handleRequest(request),
      version: PROTOCOL_VERSION,
      onError: (error) => process.stderr.write(`mirrorlog serve: ${(error as Error).message ?? String(error)}\n`),
    });
  } finally {
    state.close();
    fs.close();
  }
}
