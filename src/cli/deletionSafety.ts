// Deletion safety (issue 11): the first sync of a pair into a directory that already holds entries the
// source lacks would delete them. That is refused unless --delete is given; a pair that has replicated
// together before (both states agree) mirrors exactly, as the seed requires.
import { posix } from "node:path";
import { escapeForDisplay } from "../events/paths.js";
import type { ManifestEntry, Request, Response } from "../events/protocol.js";
import { type MirrorFileSystem, pathUnder, RESERVED_PREFIX } from "../fs/fileSystem.js";
import { CliError } from "./cliError.js";
import { EXIT } from "./exitCodes.js";
import { type ExclusionPredicate, isExcludedPath } from "./ignoreRules.js";

/** Paths a refusal lists before it says "and N more". */
export const LISTED_DELETIONS = 20;

/** The first sync of an unknown pair would delete entries of DST: refused (exit 2) without --delete. */
export class DeletionRefusedError extends CliError {
  constructor(
    readonly target: string,
    /** The first LISTED_DELETIONS paths (display form, directories with a trailing slash). */
    readonly listed: readonly string[],
    readonly total: number,
  ) {
    super(
      `refusing to delete ${total} ${total === 1 ? "entry" : "entries"} in ${target}, which holds no state of this ` +
        "pair (a wrong DST?); add --delete to mirror SRC exactly, deleting them",
      EXIT.usage,
    );
  }

  /** The lines listing what would be deleted (at most LISTED_DELETIONS, then "and N more"). */
  listing(): string[] {
    const lines = this.listed.map((path) => `would delete ${path}`);
    if (this.total > this.listed.length) lines.push(`... and ${this.total - this.listed.length} more`);
    return lines;
  }
}

/** What the guard needs to judge the target's first manifest. */
export interface DeletionGuardOptions {
  /** The source's log: a target whose applied position names it has replicated from it. */
  logId: string;
  /**
   * Whether this source's log has replicated to the target before (OperationLog.hasReplicated): a run that got
   * as far as planning, or whose judged manifest held nothing to delete, passed this guard.
   */
  sourceReplicated: boolean;
  /** Called when an unknown pair's whole manifest held nothing to delete (OperationLog.recordTargetAccepted). */
  accepted: () => void;
  /** The source tree, read by name (lstat), to tell which target entries it lacks. */
  fs: MirrorFileSystem;
  sourceRoot: string;
  isExcluded: ExclusionPredicate | undefined;
  /** How the target is named in messages. */
  target: string;
}

/**
 * Watches the first handshake of a run on the wire. The target's answer to the first hello says where it
 * stood: a pair is known when the source's log (one per source root and target) has replicated to it and
 * the target does not follow another log. For an unknown pair every manifest entry is checked against the source (one lstat each, no
 * reading); when any would be deleted (missing from SRC, or of another kind there), the last manifest
 * page is answered with a DeletionRefusedError instead, before anything was planned or applied.
 */
export class DeletionGuard {
  private known: boolean | undefined;
  private done = false;
  private readonly listed: string[] = [];
  private total = 0;

  constructor(private readonly options: DeletionGuardOptions) {}

  /** True while the target's whole manifest must be read before anything is planned: an unknown pair. */
  get judging(): boolean {
    return this.known === false && !this.done;
  }

  /** Passes `response` (the answer to `request`) through, or throws the refusal on the last manifest page. */
  inspect(request: Request, response: Response): Response {
    if (this.done) return response;
    if (request.type === "hello" && response.type === "hello" && this.known === undefined) {
      // A target with no position at all may have lost it (killed before its first flush): the source's word
      // that it shipped to this very target is enough then. One that follows another log is another pair's.
      const applied = response.applied;
      this.known = this.options.sourceReplicated && (applied === null || applied.logId === this.options.logId);
      if (this.known) this.done = true;
    } else if (response.type === "manifest" && this.known === false) {
      // An unknown pair's manifest is read whole first (`judging`), and asked for without digests.
      for (const entry of response.entries) if (entry.kind !== "digest") this.check(entry);
      if (response.complete) {
        this.done = true;
        if (this.total > 0) throw new DeletionRefusedError(this.options.target, this.listed, this.total);
        this.options.accepted();
      }
    }
    return response;
  }

  private check(entry: ManifestEntry): void {
    // Leftover temps of a crashed run are mirrorlog's own, not the user's: the source removes them anyway.
    if (entry.path === "" || posix.basename(entry.path).startsWith(RESERVED_PREFIX)) return;
    const isDir = entry.kind === "dir";
    const { isExcluded, fs, sourceRoot } = this.options;
    if (isExcluded !== undefined && isExcludedPath(isExcluded, entry.path, isDir)) return;
    let present: string | undefined;
    try {
      present = fs.lstatIfExists(pathUnder(sourceRoot, entry.path))?.kind;
    } catch {
      present = undefined; // below a source file (ENOTDIR) or unreadable: the planner removes it too
    }
    if (present === entry.kind) return;
    this.total++;
    if (this.listed.length < LISTED_DELETIONS) this.listed.push(`${escapeForDisplay(entry.path)}${isDir ? "/" : ""}`);
  }
}
