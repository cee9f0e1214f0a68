// What makes `watch` run well as a service, kept out of mirror.ts: the heartbeat in the pair's state
// (so `status` can tell live from stopped), the run's problems recorded for `status`, and SIGHUP, which
// re-reads the pair config and the .mirrorlogignore file and applies their excludes without a restart.
import type { OperationLog } from "../events/operationLog.js";
import type { Problem } from "../replicator/scan.js";
import { HeartbeatWriter, recordRunProblems } from "./heartbeat.js";
import { onReload } from "./interrupt.js";
import { pairConfigPath, readPairConfig } from "./pairConfig.js";
import { quoteText } from "./terminalText.js";

/** An exclusion predicate (see ignoreRules.ts). */
type Exclusion = (path: string, isDir: boolean) => boolean;

/** What a pair service needs of the run it serves; `O` is the run's options (given or remembered). */
export interface PairServiceOptions<O extends object> {
  log: OperationLog;
  statePath: string;
  /** The run's options: the exclusion rules are built from them, and from them updated by a reload. */
  runOptions: O;
  /** Builds the exclusion predicate from options (the run's; on SIGHUP, the run's updated by the pair config). */
  rules: (options: O) => Exclusion | undefined;
  /** A dry run records nothing (its log is in memory anyway). */
  dryRun: boolean;
  /** Where SIGHUP and heartbeat messages go (one line each). */
  stderr: (text: string) => void;
}

/**
 * The service side of a `sync` (problems recorded at the end) or `watch` (heartbeat and SIGHUP reload
 * besides). `isExcluded` is the session's predicate: in watch, one that follows reloads.
 */
export class PairService<O extends object> {
  /** The predicate to give the session; undefined when nothing is excluded (sync only: watch may reload). */
  readonly isExcluded: Exclusion | undefined;
  private current: Exclusion | undefined;
  private heartbeat: HeartbeatWriter | undefined;
  private removeReload: (() => void) | undefined;

  constructor(
    private readonly mode: "sync" | "watch",
    private readonly options: PairServiceOptions<O>,
  ) {
    this.current = options.rules(options.runOptions);
    this.isExcluded = mode === "watch" ? (path, isDir) => this.current?.(path, isDir) ?? false : this.current;
  }

  /**
   * Watch: starts the heartbeat, so `status` shows the pair live from the initial pass on; `problems` are
   * the run's as they stand. Sync: nothing (its problems are recorded by `stop`).
   */
  start(problems: () => readonly Problem[]): void {
    if (this.mode !== "watch" || this.options.dryRun) return;
    this.heartbeat = new HeartbeatWriter({
      log: this.options.log,
      mode: "watch",
      problems,
      onError: (error) => this.options.stderr(`mirrorlog: heartbeat not written: ${(error as Error).message}\n`),
    });
    this.heartbeat.start();
  }

  /**
   * Watch, once the initial pass is done: SIGHUP reloads the config and queues `rescan`. Not before: until
   * then SIGHUP interrupts like SIGINT (interrupt.ts), as a hang-up during a first sync should.
   */
  watching(rescan: () => void): void {
    if (this.mode !== "watch" || this.options.dryRun) return;
    this.removeReload = onReload(() => this.reload(rescan));
  }

  /**
   * Re-reads the pair config (and, through `rules`, the ignore file): its options replace the run's, and
   * the new exclusion rules apply from the rescan queued now. Other options take effect at the next start.
   */
  reload(rescan: () => void): void {
    const path = pairConfigPath(this.options.statePath);
    try {
      const remembered = readPairConfig(path)?.options ?? {};
      // A pattern list emptied in the config must empty the rules too: absent lists count as empty.
      const options = { ...this.options.runOptions, exclude: [], include: [], ...remembered } as O;
      this.current = this.options.rules(options);
      this.options.stderr(`mirrorlog: reloaded ${quoteText(path)}; rescanning\n`);
      rescan();
    } catch (error) {
      // A broken edit must not stop a running service: the old config stays in force, and the user is told.
      this.options.stderr(`mirrorlog: config not reloaded, keeping the current one: ${(error as Error).message}\n`);
    }
  }

  /**
   * Records the run's final problems for `status` and, in watch, the stopped heartbeat. Never throws: the
   * run is ending and its own failure, if any, is the one to report.
   */
  stop(problems: readonly Problem[]): void {
    this.removeReload?.();
    this.removeReload = undefined;
    if (this.options.dryRun) return;
    try {
      if (this.heartbeat !== undefined) this.heartbeat.stop();
      else recordRunProblems(this.options.log, this.mode, problems, Date.now());
    } catch (error) {
      this.options.stderr(`mirrorlog: problems not recorded for status: ${(error as Error).message}\n`);
    }
    this.heartbeat = undefined;
  }
}
