import { posix } from "node:path";
import type { LogEntry, OperationLog } from "../events/operationLog.js";
import { type Request, type Response, ResponseSchema } from "../events/protocol.js";
import type { FileSystem, FileSystemEvent } from "../fs/fileSystem.js";
import { SessionRefusedError, SourceSession, type SyncStats } from "./sourceSession.js";

/** The seed's RPC handle: one request in, one response out, synchronously. */
export type RpcHandle = (request: Request) => Response;

/** Options of a source beyond the seed's constructor. */
export interface ReplicatorSourceOptions {
  /** The operation log (a file for durability); a fresh in-memory log when not given. */
  log?: OperationLog;
  now?: () => number;
  isExcluded?: (path: string, isDir: boolean) => boolean;
}

/** Rounds of re-planning paths the target reported missing before giving up until the next event. */
const MAX_RETRY_ROUNDS = 3;
/** Times a session is re-established after the target refused a request, per call. */
const MAX_REESTABLISH = 2;

/**
 * The source side of the seed's contract. The constructor returns once the target equals the source;
 * `handleEvent` (the callback given to `watchDir`) returns once it does again. Every change passes
 * through the operation log: scan, plan, append, ship, settle.
 */
export class ReplicatorSource {
  private readonly session: SourceSession;

  private readonly rpcHandle: RpcHandle;

  constructor(fs: FileSystem, dirPath: string, rpcHandle: RpcHandle, options: ReplicatorSourceOptions = {}) {
    // Whatever the handle is, its answers are validated here, at the edge.
    this.rpcHandle = (request) => ResponseSchema.parse(rpcHandle(request));
    this.session = new SourceSession({
      fs,
      root: posix.normalize(dirPath),
      onWatchEvent: (event) => this.handleEvent(event),
      ...options,
    });
    this.establish();
  }

  /** Replicates what the event hints at; returns when the target matches the source again. */
  handleEvent(event: FileSystemEvent): void {
    this.ship(this.session.planEvent(event), 0);
  }

  /** The operation log behind this source. */
  get log(): OperationLog {
    return this.session.log;
  }

  /** Totals since construction. */
  get stats(): SyncStats {
    return this.session.stats;
  }

  /** Releases every watch (the seed's sources live forever; tests and the CLI may not). */
  close(): void {
    this.session.releaseWatches();
  }

  /**
   * Opens the session (resuming the log's epoch when the target proves continuity, else a new epoch;
   * `newEpochReason` forces one), learns what the target holds, and mirrors the whole tree onto it.
   */
  private establish(newEpochReason?: string, reestablished = 0): void {
    const detectedBy =
      this.session.log.lastPosition().epoch === 0 ? "initial" : reestablished > 0 ? "rescan" : "restart";
    let replay: LogEntry[] = [];
    if (newEpochReason === undefined) {
      const resumed = this.session.resume(this.rpcHandle(this.session.openingHello()));
      if ("hello" in resumed) this.session.acceptHello(this.rpcHandle(resumed.hello));
      else replay = resumed.replay;
    } else {
      this.session.acceptHello(this.rpcHandle(this.session.beginEpoch(newEpochReason)));
    }
    while (!this.session.acceptManifest(this.rpcHandle(this.session.manifestRequest()))) {}
    this.session.adoptReplay(replay);
    this.ship([...replay, ...this.session.planPath("", detectedBy)], 0, reestablished);
  }

  private ship(entries: readonly LogEntry[], round: number, reestablished = 0): void {
    const retry: string[] = [];
    const chunks = this.session.chunksRequestFor(entries);
    if (chunks !== undefined) this.session.acceptChunks(this.rpcHandle(chunks));
    for (const request of this.session.requestsFor(entries)) {
      const response = this.rpcHandle(request);
      if (response.type === "error" && reestablished < MAX_REESTABLISH) {
        // The target cannot continue this epoch (a gap, a restart): a new epoch re-establishes from its manifest.
        this.establish(`target refused: ${response.message}`, reestablished + 1);
        return;
      }
      if (response.type === "error") throw new SessionRefusedError(response.code, response.message);
      retry.push(...this.session.settle(request, response));
    }
    // No release after a call: with the seed's one-event-per-call, a rename arrives as two calls and the
    // removed file kept by the target is what the second one reuses (the target bounds what it keeps).
    if (retry.length === 0 || round >= MAX_RETRY_ROUNDS) return;
    this.ship(
      retry.flatMap((path) => this.session.planPath(path, "retry")),
      round + 1,
      reestablished,
    );
  }
}
