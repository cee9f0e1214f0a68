import type { DetectedBy } from "../events/operation.js";
import type { LogEntry } from "../events/operationLog.js";
import type { ApplyRequest, Request, Response } from "../events/protocol.js";
import { type FileSystemEvent, FileSystemEventType } from "../fs/fileSystem.js";
import { SessionRefusedError, type SourceSession } from "./sourceSession.js";

/** An asynchronous, pipelining request channel to a target (a stream client, or a wrapped rpcHandle). */
export interface TargetConnection {
  request(request: Request): Promise<Response>;
}

/** What the driver reports while it ships. */
export interface ShipProgress {
  operationsShipped: number;
  operationsPlanned: number;
  contentBytesShipped: number;
}

/** Options of the streaming driver. */
export interface StreamingSourceOptions {
  /** Apply requests in flight at once; bounds memory (each carries at most a few MiB). Default 8. */
  maxInFlight?: number;
  onProgress?: (progress: ShipProgress) => void;
  /** Told about failures of background work (watch-triggered shipping). */
  onError?: (error: unknown) => void;
}

const DEFAULT_MAX_IN_FLIGHT = 8;
const MAX_RETRY_ROUNDS = 3;
const MAX_REESTABLISH = 2;

/**
 * Drives a SourceSession over an asynchronous connection: the CLI's source. Requests are pipelined
 * (no round trip per file); responses come back in order and are settled in order. Watch hints that
 * arrive while a batch ships are coalesced and planned together once the current batch is out.
 */
export class StreamingSource {
  readonly progress: ShipProgress = { operationsShipped: 0, operationsPlanned: 0, contentBytesShipped: 0 };
  private readonly maxInFlight: number;
  private pendingHints = new Map<string, DetectedBy>();
  private running: Promise<void> = Promise.resolve();
  private flushScheduled = false;

  constructor(
    readonly session: SourceSession,
    private readonly connection: TargetConnection,
    private readonly options: StreamingSourceOptions = {},
  ) {
    this.maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  }

  /** Starts an epoch, reads the target's manifest and mirrors the whole source onto it. */
  async establish(reason: string, detectedBy: DetectedBy = "initial"): Promise<void> {
    await this.handshake(reason);
    await this.ship(this.session.planPath("", detectedBy), 0, 0);
  }

  /** Queues a watch hint; hints arriving together are planned and shipped as one batch. */
  hint(event: FileSystemEvent, detectedBy: DetectedBy = "watch"): void {
    this.pendingHints.set(event.path, detectedBy);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    this.running = this.running.then(() => this.flushHints()).catch((error) => this.options.onError?.(error));
  }

  /** Queues a full rescan of the source (periodic reconcile, overflow). */
  rescan(detectedBy: DetectedBy = "rescan"): void {
    this.hint({ path: this.session.root, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED }, detectedBy);
  }

  /** Resolves once every queued hint has been shipped and settled. */
  async idle(): Promise<void> {
    let current: Promise<void>;
    do {
      current = this.running;
      await current;
    } while (current !== this.running);
  }

  private async flushHints(): Promise<void> {
    this.flushScheduled = false;
    const hints = this.pendingHints;
    this.pendingHints = new Map();
    const entries: LogEntry[] = [];
    for (const [path, detectedBy] of hints) {
      entries.push(
        ...this.session.planEvent({ path, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED }, detectedBy),
      );
    }
    await this.ship(entries, 0, 0);
  }

  private async handshake(reason: string): Promise<void> {
    this.session.acceptHello(await this.connection.request(this.session.beginEpoch(reason)));
    while (!this.session.acceptManifest(await this.connection.request(this.session.manifestRequest()))) {}
  }

  /** Ships entries with up to `maxInFlight` requests outstanding, settling responses in order. */
  private async ship(entries: readonly LogEntry[], round: number, reestablished: number): Promise<void> {
    if (entries.length === 0) return;
    this.progress.operationsPlanned += entries.length;
    const inFlight: { request: ApplyRequest; response: Promise<Response> }[] = [];
    const retry: string[] = [];
    let refused: SessionRefusedError | undefined;
    const settleOldest = async (): Promise<void> => {
      const { request, response } = inFlight.shift()!;
      const answer = await response;
      if (answer.type === "error") {
        refused ??= new SessionRefusedError(answer.code, answer.message);
        return;
      }
      if (refused !== undefined) return;
      retry.push(...this.session.settle(request, answer));
      this.progress.operationsShipped += request.entries.length;
      this.options.onProgress?.(this.progress);
    };
    for (const request of this.session.requestsFor(entries)) {
      if (refused !== undefined) break;
      this.progress.contentBytesShipped += request.entries.reduce((n, e) => n + (e.content?.data.length ?? 0), 0);
      inFlight.push({ request, response: this.connection.request(request) });
      if (inFlight.length >= this.maxInFlight) await settleOldest();
    }
    while (inFlight.length > 0) await settleOldest();
    if (refused !== undefined) {
      if (reestablished >= MAX_REESTABLISH) throw refused;
      // The target cannot continue this epoch (a gap, a restart): a new epoch re-establishes from its manifest.
      await this.handshake(`target refused: ${refused.message}`);
      await this.ship(this.session.planPath("", "rescan"), 0, reestablished + 1);
      return;
    }
    if (retry.length > 0 && round < MAX_RETRY_ROUNDS) {
      await this.ship(
        retry.flatMap((path) => this.session.planPath(path, "retry")),
        round + 1,
        reestablished,
      );
    }
  }
}
