import { setImmediate as nextTurn } from "node:timers/promises";
import type { DetectedBy } from "../events/operation.js";
import type { LogEntry } from "../events/operationLog.js";
import { childOf } from "../events/paths.js";
import type { ApplyRequest, Request, Response, UploadRequest } from "../events/protocol.js";
import type { TreeNode } from "../events/tree.js";
import { monotonicMs } from "../fs/clock.js";
import { type EntryStat, type FileSystemEvent, FileSystemEventType, pathUnder } from "../fs/fileSystem.js";
import type { ScanResult } from "./scan.js";
import { requestContentBytes, SessionRefusedError, type SourceSession } from "./sourceSession.js";

/** An asynchronous, pipelining request channel to a target (a stream client, or a wrapped rpcHandle). */
export interface TargetConnection {
  request(request: Request): Promise<Response>;
  /** Bytes handed to the wire so far (encoded frames), so each request's size can be logged. */
  bytesSent?(): number;
  /**
   * True when `request` has encoded the request (copied its bytes) by the time it returns: the buffers an
   * upload points at may then be read into again (see SourceSession.readDeferred). Unset: each is kept.
   */
  copiesRequests?: boolean;
}

/** What the driver reports while it ships. */
export interface ShipProgress {
  operationsShipped: number;
  operationsPlanned: number;
  contentBytesShipped: number;
}

/** Options of the streaming driver. */
export interface StreamingSourceOptions {
  /** Apply requests in flight at once during a whole-tree pass; bounds memory (each carries at most a few MiB). Default 8. */
  maxInFlight?: number;
  onProgress?: (progress: ShipProgress) => void;
  /** Told about failures of background work (watch-triggered shipping). */
  onError?: (error: unknown) => void;
  /**
   * Whether this pass must read the target's whole manifest before planning anything (the CLI's deletion
   * guard judges a first sync into a non-empty target from it). Otherwise listings are read as the walk
   * reaches them.
   */
  wholeManifestFirst?: () => boolean;
  /**
   * Watch bursts: a batch of at least `hints` hints waits until no hint has come for `quietMs` (at most
   * `maxWaitMs`) before it is planned, so the replication of a `git checkout` or an unpack runs after it
   * instead of beside it. Off when not given (each batch is planned at once).
   */
  burstQuiet?: { hints: number; quietMs: number; maxWaitMs: number };
}

/**
 * Requests and file bytes in flight at most (each request's content counted from sending until its
 * answer): enough that the target always has the next request queued while the source reads the one after.
 * 4 requests / 8 MiB once left both sides idle half the time against 8 / 24 MiB; since the target applies
 * faster, a smaller window (4 MiB of 1 MiB requests) is the faster one, and holds far less: interleaved
 * 20,000-file initial mirrors took 5.8–6.1 s instead of 6.7–6.8 s over ssh (peak RSS 141–146 MiB instead of
 * 214–221 on the source, 122–142 instead of 146–180 on the target), a 512 MiB file 5.3–6.0 s instead of
 * 6.1–7.1 s. Over ssh the wire never held more than OpenSSH's channel window (2 MiB) anyway.
 */
const DEFAULT_MAX_IN_FLIGHT = 8;
const MAX_IN_FLIGHT_BYTES = 4 * 1024 * 1024;
/**
 * ...and while shipping watch bursts, where what is in flight is what a stop must still finish (a
 * SIGTERM to a busy watch waits for it): fewer requests.
 */
const BURST_MAX_IN_FLIGHT = 4;
const MAX_RETRY_ROUNDS = 3;
const MAX_REESTABLISH = 2;
/** Planned operations are sent once this many are buffered (or BUFFER_CONTENT_BYTES of content)... */
const BUFFER_ENTRIES = 4096;
/** ...so that one request, and one flush on the target, covers many files... */
const BUFFER_CONTENT_BYTES = 1024 * 1024;
/**
 * ...or once the first of them has waited this long: a few changes found early in a long walk (100 files
 * modified in 20,000) apply while the walk goes on, instead of after it.
 */
const BUFFER_MAX_AGE_MS = 50;
/**
 * ...while watch hints are planned: fewer operations, since a burst is planned only once it has ended (see
 * `burstQuiet`), and its first part should be applying while the rest is read.
 */
const HINT_BATCH_ENTRIES = 256;
/** How long a watch batch takes in hints that come while it is planned before it drains (see flushHints). */
const BATCH_JOIN_MS = 2_000;
/** Directories read ahead while the handshake is answered (their small files' bytes are kept). */
const PRESCAN_LIMIT = 4096;
/** ...and at most this many bytes of file content held by them. */
const PRESCAN_BYTES = 4 * 1024 * 1024;
/** A response asked for ahead of need: whether it came (or failed; awaiting `answer` then throws), and what it said. */
interface AskedAhead {
  answer: Promise<Response>;
  settled: boolean;
  response?: Response;
}

function askedAhead(answer: Promise<Response>): AskedAhead {
  const entry: AskedAhead = { answer, settled: false };
  answer.then(
    (response) => {
      entry.settled = true;
      entry.response = response;
    },
    () => {
      entry.settled = true;
    },
  );
  return entry;
}

/** A directory level a walk read and has not planned yet. */
interface ScannedLevel {
  dir: string;
  scan: ScanResult;
  /** File bytes its scan keeps. */
  bytes: number;
}

/**
 * Drives a SourceSession over an asynchronous connection: the CLI's source. A whole-tree pass walks
 * the source directory by directory, so the target applies the first directories while later ones are
 * still being read. Requests are pipelined (no round trip per file) and settled in order. Watch hints
 * that arrive while a batch ships are coalesced and planned together once the current batch is out.
 */
export class StreamingSource {
  readonly progress: ShipProgress = { operationsShipped: 0, operationsPlanned: 0, contentBytesShipped: 0 };
  private readonly maxInFlight: number;
  /** Whether a whole-tree pass (establish) is shipping: it gets the larger window. */
  private wholeTree = false;
  private pendingHints = new Map<string, DetectedBy>();
  private running: Promise<void> = Promise.resolve();
  private flushScheduled = false;
  /** monotonicMs() of the latest hint (see `burstQuiet`). */
  private lastHintAt = 0;
  private buffer: LogEntry[] = [];
  private readonly inFlight: {
    request: ApplyRequest | UploadRequest;
    response: Promise<Response>;
    wireBytes: number;
    contentBytes: number;
  }[] = [];
  /** File bytes in the requests in flight: bounded, so a large file streams in constant memory. */
  private inFlightBytes = 0;
  private retryPaths: string[] = [];
  private refused: SessionRefusedError | undefined;
  /** When the oldest operation planned and not yet sent was seen by sendWhenPlanned. */
  private plannedSince: number | undefined;
  /** The next page of a streamed manifest, asked for ahead of need so the target lists while we plan. */
  private nextManifestPage: AskedAhead | undefined;
  /** Listings asked for whole ahead of planning (see prefetchListings), by directory. */
  private readonly listingReads = new Map<string, AskedAhead>();

  constructor(
    readonly session: SourceSession,
    private readonly connection: TargetConnection,
    private readonly options: StreamingSourceOptions = {},
  ) {
    this.maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  }

  /**
   * Opens the session (resuming the log's epoch when the target proves continuity, else a new epoch;
   * `newEpochReason` forces one), reads the target's manifest and mirrors the whole source onto it.
   * With `connected`, the connection is still being made: the walk reads the source meanwhile (up to its
   * prescan limit) and the session's first request waits for it (a failure to connect ends the pass).
   */
  async establish(newEpochReason?: string, connected?: Promise<unknown>): Promise<void> {
    this.wholeTree = true;
    try {
      await this.establishPass(newEpochReason, connected);
    } finally {
      this.wholeTree = false;
    }
  }

  private async establishPass(newEpochReason: string | undefined, connected?: Promise<unknown>): Promise<void> {
    // Whatever a broken connection left half-sent is re-derived by this pass.
    this.inFlight.length = 0;
    this.inFlightBytes = 0;
    this.buffer = [];
    this.retryPaths = [];
    this.refused = undefined;
    this.nextManifestPage = undefined;
    this.listingReads.clear();
    this.pendingHints.clear();
    // A log that has sessions behind it is resumed after a restart: what changed meanwhile is a restart scan.
    const detectedBy: DetectedBy = this.session.log.lastPosition().epoch === 0 ? "initial" : "restart";
    let why = newEpochReason;
    for (let attempt = 0; ; attempt++) {
      // The source is read while the handshake runs; each directory is planned once its listing is in.
      const handshake =
        attempt === 0 && connected !== undefined ? connected.then(() => this.handshake(why)) : this.handshake(why);
      await this.walk("", attempt === 0 ? detectedBy : "rescan", handshake);
      await this.drain(true);
      this.session.endManifestStream();
      this.nextManifestPage = undefined;
      this.listingReads.clear();
      // Set while the pass ran (a response may refuse it); the reset above does not hold across awaits.
      const refused = this.refused as SessionRefusedError | undefined;
      if (refused === undefined) break;
      if (attempt >= MAX_REESTABLISH) throw refused;
      // The target cannot continue this epoch (a gap, a restart): a new epoch re-establishes from its manifest.
      this.refused = undefined;
      why = `target refused: ${refused.message}`;
    }
    await this.retryFailures(true);
    // The last release (the flush that makes the pass durable) failed: the pass is not done.
    const refused = this.refused as SessionRefusedError | undefined;
    if (refused !== undefined) throw refused;
  }

  /** Queues a watch hint; hints arriving together are planned and shipped as one batch. */
  hint(event: FileSystemEvent, detectedBy: DetectedBy = "watch"): void {
    this.pendingHints.set(event.path, detectedBy);
    this.lastHintAt = monotonicMs();
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    this.running = this.running.then(() => this.flushHints()).catch((error) => this.options.onError?.(error));
  }

  /** Queues a full rescan of the source (periodic reconcile, overflow). */
  rescan(detectedBy: DetectedBy = "rescan"): void {
    this.hint({ path: this.session.root, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED }, detectedBy);
  }

  /** Runs `task` after whatever is queued (hint flushes), before anything queued later. */
  runExclusive(task: () => Promise<void>): Promise<void> {
    const run = this.running.then(task);
    this.running = run.catch((error) => this.options.onError?.(error));
    return run;
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
    // Still scheduled while it waits: hints that come meanwhile join this batch.
    await this.untilBurstQuiet();
    this.flushScheduled = false;
    // Taken in already by the batch before this one (see below).
    if (this.pendingHints.size === 0) return;
    // The batch's files are read through the same directory handles, across the turns it yields (as a
    // walk does): otherwise each turn closes them and the next file opens its path from the root again.
    const release = this.session.holdHandles();
    try {
      const started = monotonicMs();
      do {
        const hints = this.pendingHints;
        this.pendingHints = new Map();
        await this.planHints(hints);
        // Hints that came while the batch was planned join it (once quiet) before it drains: otherwise the
        // target waits for the batch's last answer, and the source for a round trip, before they are planned.
        // Planning is synchronous: the notifications that queued meanwhile are let in first.
        await nextTurn();
        await this.untilBurstQuiet();
      } while (this.pendingHints.size > 0 && monotonicMs() - started < BATCH_JOIN_MS);
    } finally {
      release();
    }
    // A burst is not flushed at its end: the target flushes on its own interval and when the session ends.
    await this.drain(false);
    const refused = this.refused;
    if (refused !== undefined) {
      this.refused = undefined;
      await this.establish(`target refused: ${refused.message}`);
      return;
    }
    await this.retryFailures(false);
  }

  /** Plans and ships one round of a watch batch's hints (its last part may wait for the next round). */
  private async planHints(hints: ReadonlyMap<string, DetectedBy>): Promise<void> {
    // Fresh each round: a change after a stat of this round raises a hint, planned in a later round.
    const forgetDirectoryStats = this.session.reuseDirectoryStats();
    try {
      for (const [path, detectedBy] of hints) {
        if (path === this.session.root) {
          await this.walk("", detectedBy);
        } else {
          this.session.planEventUnlogged({ path, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED }, detectedBy);
          // A large batch ships in parts, so the target applies the first files while the rest are read.
          await this.sendWhenPlanned(HINT_BATCH_ENTRIES, BUFFER_CONTENT_BYTES);
          // Planning is synchronous: while a part is on its way, let its frames through the pipe (and its
          // answers in) between files, or the target only gets it once the whole batch is planned.
          if (this.inFlight.length > 0) await nextTurn();
        }
      }
    } finally {
      forgetDirectoryStats();
    }
  }

  /** With `burstQuiet`: waits while a burst's hints keep coming (see StreamingSourceOptions). */
  private async untilBurstQuiet(): Promise<void> {
    const burst = this.options.burstQuiet;
    if (burst === undefined || this.pendingHints.size < burst.hints) return;
    const started = monotonicMs();
    for (;;) {
      const now = monotonicMs();
      const wait = Math.min(burst.quietMs - (now - this.lastHintAt), burst.maxWaitMs - (now - started));
      if (wait <= 0) return;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  /**
   * Opens the session: resumes the log's epoch if the target proves continuity (shipping what it has not
   * applied), else starts a new epoch (`reason` forces one); then reads the target's manifest.
   */
  private async handshake(reason: string | undefined): Promise<void> {
    let replay: LogEntry[] = [];
    if (reason === undefined) {
      const resumed = this.session.resume(await this.connection.request(this.session.openingHello()));
      if ("hello" in resumed) this.session.acceptHello(await this.connection.request(resumed.hello));
      else replay = resumed.replay;
    } else {
      this.session.acceptHello(await this.connection.request(this.session.beginEpoch(reason)));
    }
    // Replayed operations fold over the whole manifest; otherwise listings are read as the walk needs them.
    if (replay.length === 0 && this.options.wholeManifestFirst?.() !== true) {
      this.session.streamManifest();
      return;
    }
    while (!this.session.acceptManifest(await this.connection.request(this.session.manifestRequest()))) {}
    this.session.adoptReplay(replay);
    this.enqueue(replay);
  }

  /**
   * Reads the streamed manifest up to `dir` (walk order) and adopts those listings; keeps one page asked
   * for ahead, so the target lists the next directories while this side plans.
   */
  private async adoptListings(dir: string, scan: ScanResult): Promise<void> {
    await this.readManifestTo(dir);
    this.session.digestDiffers(dir, scan); // where the digests are equal, the source's listing stands in
    await this.readListings(this.session.listingsToRead(dir));
    this.session.adoptListingsUpTo(dir);
  }

  /**
   * Asks for the listings of scanned directories not planned yet whose digests differ from the source's
   * (see SourceSession.digestDiffers), so they are in by the time planning reaches them. `levels` before
   * `from` were compared already; returns how many are now.
   */
  private prefetchListings(levels: readonly ScannedLevel[], from: number): number {
    let compared = from;
    for (; compared < levels.length; compared++) {
      const level = levels[compared]!;
      if (!this.session.manifestReadyFor(level.dir)) break; // nor any later one (walk order)
      this.compareDigest(level);
    }
    return compared;
  }

  /** Compares the digest of a scanned level's listing, if it came; one that differs has its listing asked for. */
  private compareDigest(level: ScannedLevel): void {
    if (this.session.digestDiffers(level.dir, level.scan)) void this.requestListing(level.dir);
  }

  private requestListing(dir: string): Promise<Response> {
    let read = this.listingReads.get(dir);
    if (read === undefined) {
      // Awaited by readListings; a connection lost meanwhile surfaces there.
      read = askedAhead(this.connection.request({ type: "listing", dir }));
      this.listingReads.set(dir, read);
    }
    return read.answer;
  }

  /** Reads whole the listings of `dirs`, which came as digests (see SourceSession.listingsToRead). */
  private async readListings(dirs: readonly string[]): Promise<void> {
    const answers = dirs.map((dir) => this.requestListing(dir));
    for (const [i, answer] of answers.entries()) {
      const response = await answer;
      this.listingReads.delete(dirs[i]!);
      this.session.acceptListing(dirs[i]!, response);
    }
  }

  /** Reads the streamed manifest until the listings up to `dir` (walk order) are in. */
  private async readManifestTo(dir: string): Promise<void> {
    while (!this.manifestCameFor(dir)) await this.nextManifestPage!.answer;
  }

  /**
   * Takes the pages of a streamed manifest that have come, keeping the next one asked for (the target
   * lists it while we plan); true once the listings up to `dir` (walk order) are in.
   */
  private manifestCameFor(dir: string): boolean {
    while (!this.session.manifestReadyFor(dir)) {
      this.nextManifestPage ??= askedAhead(this.connection.request(this.session.manifestRequest()));
      const page = this.nextManifestPage.response;
      if (page === undefined) return false;
      this.nextManifestPage = undefined;
      if (this.session.acceptManifest(page)) return true;
      this.nextManifestPage = askedAhead(this.connection.request(this.session.manifestRequest()));
    }
    return true;
  }

  /**
   * True when a level can be planned without waiting: its listing is in (or came as a digest, matched).
   * A digest that came since the walk last compared (see prefetchListings) is compared here: one that
   * differs has its listing asked for now, and the walk reads on instead of waiting for it at the plan.
   */
  private canPlan(level: ScannedLevel): boolean {
    if (!this.manifestCameFor(level.dir)) return false;
    this.compareDigest(level);
    return this.listingReads.get(level.dir)?.settled !== false;
  }

  /** Plans one directory level the walk read, against its listing, and lets a one-shot run forget its files. */
  private async planLevel(dir: string, scan: ScanResult, detectedBy: DetectedBy): Promise<void> {
    await this.adoptListings(dir, scan);
    if (scan.deferred.length > 0) {
      // What is planned goes first: an upload is staged beside its final name, in a directory made so far.
      await this.sendBuffer();
      for (const upload of this.session.readDeferred(scan, this.connection.copiesRequests === true)) {
        if (this.refused !== undefined) break;
        await this.send(upload);
      }
      // Refused: the pass starts again, and this level, its files not all read, is not planned.
      if (this.refused !== undefined) return;
    }
    this.session.planScanned(dir, scan, detectedBy, false);
    this.session.forgetFilesOf(dir);
  }

  /**
   * Plans the tree below `root` one directory at a time, shipping as it goes (depth first: a short stack).
   * Until `ready` (the handshake) settles, directories are only read, up to PRESCAN_LIMIT of them; after it,
   * the walk reads on (within the same limits) while the next directory to plan waits for its listing.
   */
  private async walk(root: string, detectedBy: DetectedBy, ready: Promise<void> = Promise.resolve()): Promise<void> {
    const release = this.session.holdHandles();
    try {
      await this.walkHolding(root, detectedBy, ready);
    } finally {
      release();
    }
  }

  private async walkHolding(root: string, detectedBy: DetectedBy, ready: Promise<void>): Promise<void> {
    let handshakeDone = false;
    const handshake = ready.finally(() => {
      handshakeDone = true;
    });
    handshake.catch(() => {}); // awaited below; a rejection is handled there
    const scanned: ScannedLevel[] = [];
    let scannedBytes = 0;
    /** How many of `scanned` (from the first) had their digests compared (see prefetchListings). */
    let compared = 0;
    // Plans the levels scanned, in order; `ahead`, it stops at one whose listing is still on its way while
    // the prescan limits leave room, so the walk reads on meanwhile (and asks for the listings of what it
    // read whose digests differ) instead of waiting for the target to list.
    const planScanned = async (ahead: boolean) => {
      compared = this.prefetchListings(scanned, compared);
      let planned = 0;
      for (const level of scanned) {
        const room = scanned.length - planned < PRESCAN_LIMIT && scannedBytes < PRESCAN_BYTES;
        if (ahead && room && !this.canPlan(level)) break;
        planned++;
        scannedBytes -= level.bytes;
        await this.planLevel(level.dir, level.scan, detectedBy);
      }
      scanned.splice(0, planned);
      compared = Math.max(0, compared - planned);
    };
    // Each directory with its stat as its parent's listing gave it (the walk's root is stated).
    const stack: [string, EntryStat | undefined][] = [[root, undefined]];
    while (stack.length > 0 && this.refused === undefined) {
      const [dir, listed] = stack.pop()!;
      // Large files unknown so far are read when their level is planned: one the target lacks is uploaded
      // as it is read (see SourceSession.readDeferred), and the walk reads on past it meanwhile.
      const scan = this.session.scan(dir, false, listed, true);
      let bytes = 0;
      for (const content of scan.contents.values()) bytes += content.bytes.length;
      scanned.push({ dir, scan, bytes });
      scannedBytes += bytes;
      for (const child of childDirs(scan.node, dir).reverse()) stack.push([child, scan.listedDirs.get(child)]);
      if (handshakeDone || scanned.length >= PRESCAN_LIMIT || scannedBytes >= PRESCAN_BYTES) {
        await handshake;
        await planScanned(true);
        await this.sendWhenPlanned(BUFFER_ENTRIES, BUFFER_CONTENT_BYTES, BUFFER_MAX_AGE_MS);
      }
      // Let responses and pipe writes through between directories: scanning is synchronous. (Yielding only
      // every 10 ms saved directory-handle opens but starved the pipeline: a 20,000-file initial mirror took
      // 9.4–9.6 s instead of 7.7–8.3 s.)
      await nextTurn();
    }
    await handshake;
    await planScanned(false);
  }

  private enqueue(entries: readonly LogEntry[]): void {
    this.buffer.push(...entries);
    this.progress.operationsPlanned += entries.length;
  }

  /** Sends what is planned once it reaches `operations` or `contentBytes`, or its oldest has waited `maxAgeMs`. */
  private async sendWhenPlanned(operations: number, contentBytes: number, maxAgeMs = Infinity): Promise<void> {
    const planned = this.session.unloggedSize();
    if (planned.operations === 0) return;
    const now = monotonicMs();
    this.plannedSince ??= now;
    if (planned.operations >= operations || planned.contentBytes >= contentBytes || now - this.plannedSince >= maxAgeMs)
      await this.sendBuffer();
  }

  /** Logs what is planned and sends it with what is buffered, waiting for the oldest response whenever the window is full. */
  private async sendBuffer(): Promise<void> {
    // A directory removed before its listing came may hold what the planned writes carry (a rename).
    await this.readListings(this.session.listingsToRead());
    for (let upTo = this.session.manifestNeededBeforeShipping(); upTo !== undefined; ) {
      await this.readManifestTo(upTo);
      await this.readListings(this.session.listingsToRead());
      upTo = this.session.manifestNeededBeforeShipping();
    }
    this.enqueue(this.session.logPlanned());
    this.plannedSince = undefined;
    const entries = this.buffer;
    this.buffer = [];
    const chunks = this.session.chunksRequestFor(entries);
    if (chunks !== undefined) this.session.acceptChunks(await this.connection.request(chunks));
    const maxRequests = this.wholeTree ? this.maxInFlight : Math.min(this.maxInFlight, BURST_MAX_IN_FLIGHT);
    for (const request of this.session.requestsFor(entries)) {
      if (this.refused !== undefined) return;
      await this.send(request, maxRequests);
    }
  }

  /** Sends one request, then waits for the oldest responses while the window is full. */
  private async send(request: ApplyRequest | UploadRequest, maxRequests = this.maxInFlight): Promise<void> {
    const contentBytes = requestContentBytes(request);
    this.progress.contentBytesShipped += contentBytes;
    const before = this.connection.bytesSent?.() ?? 0;
    const response = this.connection.request(request);
    // Awaited in order by settleOldest; a connection lost meanwhile must not be an unhandled rejection.
    response.catch(() => {});
    this.inFlight.push({ request, response, wireBytes: (this.connection.bytesSent?.() ?? 0) - before, contentBytes });
    this.inFlightBytes += contentBytes;
    while (this.inFlight.length >= maxRequests || this.inFlightBytes >= MAX_IN_FLIGHT_BYTES) {
      await this.settleOldest();
    }
  }

  /**
   * Sends the rest, settles every response, and lets the target drop what it kept for reuse; `durable`
   * (the end of a whole-tree pass) has it make everything applied durable before it answers.
   */
  private async drain(durable: boolean): Promise<void> {
    await this.sendBuffer();
    while (this.inFlight.length > 0) await this.settleOldest();
    if (this.refused !== undefined) return;
    // A release tells the target the log is durable through everything shipped (see ApplyRequest's logDurableSeq).
    await this.session.log.whenDurable();
    const answer = await this.connection.request({ type: "release", durable });
    if (answer.type === "error") this.refused = new SessionRefusedError(answer.code, answer.message);
  }

  private async settleOldest(): Promise<void> {
    const { request, response, wireBytes, contentBytes } = this.inFlight.shift()!;
    this.inFlightBytes -= contentBytes;
    const answer = await response;
    if (answer.type === "error") {
      this.refused ??= new SessionRefusedError(answer.code, answer.message);
      return;
    }
    if (this.refused !== undefined) return;
    this.retryPaths.push(...this.session.settle(request, answer, wireBytes));
    if (request.type === "apply") this.progress.operationsShipped += request.entries.length;
    this.options.onProgress?.(this.progress);
  }

  /** Plans again the paths the target reported missing content for (it lacked what we assumed). */
  private async retryFailures(durable: boolean): Promise<void> {
    for (let round = 0; round < MAX_RETRY_ROUNDS && this.retryPaths.length > 0; round++) {
      const paths = this.retryPaths;
      this.retryPaths = [];
      // Through planEvent, not planPath: it plans from the nearest directory present on both sides, so a
      // path whose parent was deleted and re-created meanwhile gets its parent ensured too.
      for (const path of paths) {
        const absolute = pathUnder(this.session.root, path);
        this.enqueue(
          this.session.planEvent({ path: absolute, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED }, "retry"),
        );
      }
      await this.drain(durable);
    }
    this.retryPaths = [];
  }
}

/** The child directories of a one-level scan, by relative path. */
function childDirs(node: TreeNode | undefined, path: string): string[] {
  if (node?.kind !== "dir") return [];
  const dirs: string[] = [];
  for (const [name, child] of node.children) if (child.kind === "dir") dirs.push(childOf(path, name));
  return dirs.sort();
}
