// The composition root of the `mirrorlog` command: argument parsing only; each command lives in its own file.
import { createRequire } from "node:module";
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { parseBandwidth } from "./bandwidthLimit.js";
import { DEFAULT_TIMEOUT_SECONDS, DEFAULT_WATCH_NICENESS } from "./defaults.js";
import { EXIT, EXIT_CODES_HELP } from "./exitCodes.js";
import { failureLine } from "./failureLine.js";
import type { LogOptions } from "./log.js";
import type { ServeOptions } from "./serve.js";
import type { VerifyOptions } from "./verify.js";

// Each command's module is imported inside its action, so `--version`, `--help` and a usage error load
// commander alone, and each command loads only what it uses (start-up is most of a small job's time).

/** Exit code of a command line that cannot be run as given (rsync uses 1; the README documents 2). */
const USAGE_EXIT_CODE = EXIT.usage;

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("must be a positive number");
  return n;
}

function niceness(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 19) throw new InvalidArgumentError("must be an integer from 0 to 19");
  return n;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function increase(_value: string, previous: number): number {
  return previous + 1;
}

/** What `sync --help` and `watch --help` end with: examples, the trailing-slash rule, the exit codes. */
function mirrorHelp(mode: "sync" | "watch"): string {
  const examples =
    mode === "sync"
      ? `Examples:
  mirrorlog sync ~/photos /mnt/backup/photos        # /mnt/backup/photos becomes the mirror of ~/photos
  mirrorlog sync -n -i ~/photos /mnt/backup/photos  # what would change, one itemized line per change
  mirrorlog sync --delete ~/site host:/srv/www      # first sync into a non-empty DST: delete what SRC lacks
  mirrorlog sync --backup-dir=.trash ~/docs /mnt/docs  # keep deleted and replaced files in /mnt/docs/.trash
  mirrorlog sync notes.txt /mnt/backup/             # a file: copied to /mnt/backup/notes.txt`
      : `Examples:
  mirrorlog watch ~/project host:project            # initial sync, then live until Ctrl-C or SIGTERM
  mirrorlog watch -i --exclude node_modules ~/app /srv/app  # itemized changes with a timestamp each`;
  return `
${examples}

SRC and DST are directories: DST becomes an exact mirror of SRC, with or without trailing slashes
("src" and "src/" mean the same, unlike rsync, where "src" copies into DST/src). A file as SRC is
copied to DST/NAME when DST is a directory, else to DST itself. The first sync into a DST that holds
entries SRC lacks, and no state of this pair, lists them and refuses unless --delete is given.

EXIT_CODES`;
}

function mirrorCommand(program: Command, mode: "sync" | "watch", description: string): void {
  const command = program.command(`${mode} <SRC> <DST>`);
  command
    .description(description)
    .option("-n, --dry-run", "print the planned operations and change nothing", false)
    .option("--exclude <PATTERN>", "exclude paths matching PATTERN (gitignore syntax, repeatable)", collect, [])
    .option("--exclude-from <FILE>", "read exclude patterns from FILE, one per line (repeatable)", collect, [])
    .option(
      "--include <PATTERN>",
      "never exclude paths matching PATTERN (wins over every exclude; repeatable)",
      collect,
      [],
    )
    .option("--delete", "let the first sync of a pair delete what DST holds beyond SRC (later syncs always do)", false)
    .option(
      "--backup-dir <DIR>",
      "move deleted and replaced files into DIR (relative to DST, or absolute; same file system)",
    )
    .option("--mkpath", "create DST's missing parent directories (otherwise a missing parent is refused)", false)
    .option("-i, --itemize-changes", "list each change in rsync's itemize format (>f+++++++++ path)", false)
    .option("-v, --verbose", "list each changed path (repeatable)", increase, 0)
    .option("-q, --quiet", "print nothing but errors (no summary)", false)
    .option("-c, --checksum", "hash every file on both sides instead of trusting size and mtime", false)
    .addOption(
      new Option("--bwlimit <RATE>", "write at most RATE KiB/s to the target (suffixes k, m, g)").argParser(
        parseBandwidth,
      ),
    )
    .option("--state <PATH>", "the SQLite state file of this source/target pair")
    .option("--json", "print one JSON summary object on stdout", false)
    .option("--progress", "show progress on stderr: a scan count, then a bar (default: only on a terminal)")
    .option("--no-progress", "show no progress, not even on a terminal")
    .option("--allow-empty-source", "mirror an empty SRC onto a non-empty DST (deleting everything there)", false)
    .option("-H, --hard-links", "keep hard-linked files linked on the target (like rsync -H)", false)
    .option("--no-owner", "do not replicate owners (by default they are, by numeric id, when the target runs as root)")
    .option("--no-group", "do not replicate groups (by default they are, by numeric id, when the target runs as root)")
    .option("-a, --archive", "accepted for rsync habits: mirrorlog always does what -a does", false)
    .option("-r, --recursive", "accepted for rsync habits: directories are always mirrored whole", false)
    .option("-z, --compress", "accepted for rsync habits: content is always compressed when that shrinks it", false)
    .option(
      "--rebuild-state",
      "a damaged state file (either side) is moved aside as FILE.corrupt-TIME and the state rebuilt from a scan",
      false,
    )
    .addOption(new Option("--remote-command <CMD>", "mirrorlog's command on the far side of ssh").default("mirrorlog"))
    .addOption(
      new Option("--rescan-interval <SECONDS>", "watch: seconds between reconcile scans")
        .default(300)
        .argParser(positiveNumber),
    )
    .addOption(
      new Option("--timeout <SECONDS>", "seconds the target may stay silent before the connection counts as lost")
        .default(DEFAULT_TIMEOUT_SECONDS)
        .argParser(positiveNumber),
    )
    .addHelpText("after", mirrorHelp(mode).replace("EXIT_CODES", EXIT_CODES_HELP))
    .action(async (src: string, dst: string, options) => {
      // A known pair's remembered options apply under the given ones; given ones are remembered (pairConfig.ts).
      const { applyPairConfig } = await import("./pairConfig.js");
      const merged = await applyPairConfig(src, dst, options, {
        isExplicit: (key) => command.getOptionValueSource(key) === "cli",
        knownKeys: command.options.map((option) => option.attributeName()),
      });
      // SIGINT/SIGTERM/SIGHUP: the target stopped, one line, exit 20, nothing left running (interrupt.ts).
      const [{ runMirror }, { runInterruptible }] = await Promise.all([
        import("./mirror.js"),
        import("./interrupt.js"),
      ]);
      process.exitCode = await runInterruptible({ target: dst }, () => runMirror(mode, src, dst, merged));
    });
  if (mode === "watch") {
    command.addOption(
      new Option(
        "--nice <N>",
        "run N steps nicer than the shell (0-19; 0: as nice), so the user's own work gets the CPU first; a local target's serve inherits it",
      )
        .default(DEFAULT_WATCH_NICENESS)
        .argParser(niceness),
    );
  }
}

/** `log`, `status` and `verify`: read-only views of a replication (see log.ts, status.ts, verify.ts). */
function auditCommands(program: Command): void {
  const stdout = (text: string) => process.stdout.write(text);
  program
    .command("log <PATH>")
    .description(
      "the logged operations on PATH (a file or directory in a replicated source) and below it, newest first",
    )
    .option("--state <FILE>", "read this state file instead of searching the state directory")
    .option("--json", "print a JSON array of entries", false)
    .option("-n, --max-count <N>", "show only the newest N entries")
    .option("--since <TIME>", "only entries logged at or after TIME: an ISO date or date-time, or an age (30m, 2h, 1d)")
    .option("--until <TIME>", "only entries logged at or before TIME (same forms as --since)")
    .addHelpText(
      "after",
      `
Each line: position (epoch:seq), time logged, operation, path, old → new content hash, size, bytes on
the wire, how the change was detected, and what the target did.

Examples:
  mirrorlog log ~/photos/2024/img.jpg          # the history of one file
  mirrorlog log -n 20 ~/photos                 # the 20 newest operations below a directory
  mirrorlog log --since 2h ~/photos            # what changed in the last two hours
  mirrorlog log --since 2024-05-01 --until 2024-05-02T12:00 --json ~/photos | jq .
  mirrorlog log ~/photos | head                # stops quietly when the pager or head is done`,
    )
    .action(async (path: string, options: LogOptions) => {
      const { runLog } = await import("./log.js");
      process.exitCode = runLog(path, options, stdout);
    });
  program
    .command("status [SRC] [DST]")
    .description(
      "where each replication stands (or those of SRC, and DST): watch live or stopped, epoch, positions, lag, throughput, problems",
    )
    .option("--state <FILE>", "read this state file instead of searching the state directory")
    .option("--json", "print a JSON array, one object per replication", false)
    .option("--forget", "remove the state of the pair SRC DST (or of the pair whose id is SRC) instead", false)
    .option("--prune", "remove the state of every pair whose source or local target no longer exists", false)
    .option("--creds <FILE>", "nats://…/NAME: NATS credentials file")
    .option("--tls-ca <FILE>", "nats://…/NAME: CA bundle to verify the server with (turns TLS on)")
    .addHelpText(
      "after",
      `
A pair is "live (pid N, since T, lag N operations)" while a watch of it runs (its heartbeat is fresh and
its process exists), else "stopped (last seen T)". Problems count failed applies and skipped paths.

Examples:
  mirrorlog status                             # every pair in the state directory
  mirrorlog status ~/photos                    # the pairs whose source is ~/photos
  mirrorlog status --json | jq '.[] | {id, watch, lag}'
  mirrorlog status --forget ~/photos /mnt/backup/photos   # forget a pair (its log, index and config)
  mirrorlog status --forget photos-1a2b3c4d5e6f7a8b       # the same, by the id status shows
  mirrorlog status --prune                     # forget pairs whose SRC or DST is gone`,
    )
    .action(
      async (
        src: string | undefined,
        dst: string | undefined,
        options: { state?: string; json: boolean; forget: boolean; prune: boolean; creds?: string; tlsCa?: string },
      ) => {
        if (src !== undefined && /^(nats|tls):\/\//.test(src)) {
          const { runFanoutStatus } = await import("../fanout/status.js");
          process.exitCode = await runFanoutStatus(src, options);
          return;
        }
        const { runStatus } = await import("./status.js");
        process.exitCode = runStatus(src, dst, options, stdout);
      },
    );
  program
    .command("verify <SRC> <DST>")
    .description("compare DST with SRC and change nothing; exit 0 identical, 1 drift, 2 trouble")
    .option("--exclude <PATTERN>", "exclude paths matching PATTERN (gitignore syntax, repeatable)", collect, [])
    .option("--json", "print one JSON object: identical, filesCompared, drift, problems", false)
    .option("-H, --hard-links", "also compare hard-link groups", false)
    .option("--no-owner", "do not compare owners (compared by default when the target runs as root)")
    .option("--no-group", "do not compare groups (compared by default when the target runs as root)")
    .addOption(new Option("--remote-command <CMD>", "mirrorlog's command on the far side of ssh").default("mirrorlog"))
    .action(async (src: string, dst: string, options: VerifyOptions) => {
      const { runVerify } = await import("./verify.js");
      process.exitCode = await runVerify(src, dst, options, stdout);
    });
}

/** NATS options of `publish` and `subscribe`: credentials and TLS files, passed through to the client. */
function natsOptions(command: Command): Command {
  return command
    .option("--creds <FILE>", "NATS credentials file (JWT and nkey seed); never put passwords on the command line")
    .option("--tls-ca <FILE>", "CA bundle to verify the server with (turns TLS on)")
    .option("--tls-cert <FILE>", "client certificate for mutual TLS")
    .option("--tls-key <FILE>", "client key for mutual TLS")
    .option("--json", "print one JSON summary object on stdout", false);
}

/** `publish` and `subscribe`: one source, many targets, through a NATS JetStream fan-out (src/fanout). */
function fanoutCommands(program: Command): void {
  natsOptions(
    program
      .command("publish <SRC> <URL>")
      .description("publish SRC to the fan-out nats://HOST:PORT/NAME (operations to a stream, chunks to a bucket)")
      .option("--watch", "keep publishing changes until interrupted", false)
      .option("--exclude <PATTERN>", "exclude paths matching PATTERN (gitignore syntax, repeatable)", collect, [])
      .option("--state <PATH>", "the publisher's SQLite state file")
      .option("--allow-empty-source", "publish an empty SRC over a non-empty fan-out", false)
      .option("-H, --hard-links", "keep hard-linked files linked on the targets", false)
      .option("--no-owner", "do not replicate owners")
      .option("--no-group", "do not replicate groups")
      .addOption(
        new Option("--replicas <N>", "stream and bucket copies in a cluster (on creation)")
          .default(1)
          .argParser(positiveNumber),
      )
      .addOption(
        new Option("--max-age <SECONDS>", "operations older than this leave the stream (0: none)")
          .default(0)
          .argParser(Number),
      )
      .addOption(
        new Option("--max-bytes <BYTES>", "the stream keeps at most this many bytes (0: no limit)")
          .default(0)
          .argParser(Number),
      )
      .addOption(
        new Option("--snapshot-every <N>", "watch: a snapshot after N operations")
          .default(10_000)
          .argParser(positiveNumber),
      )
      .addOption(
        new Option("--rescan-interval <SECONDS>", "watch: seconds between reconcile scans")
          .default(300)
          .argParser(positiveNumber),
      ),
  ).action(async (src: string, url: string, options) => {
    const { runPublish } = await import("../fanout/publish.js");
    process.exitCode = await runPublish(src, url, options);
  });
  natsOptions(
    program
      .command("subscribe <URL> <DST>")
      .description("keep DST a mirror of the fan-out nats://HOST:PORT/NAME (a durable consumer named after DST)")
      .option("--watch", "keep applying until interrupted", false)
      .option("--name <NAME>", "the durable consumer's name (default: host, DST's name and a hash of its path)")
      .option("--state <PATH>", "the target's state file"),
  ).action(async (url: string, dst: string, options) => {
    const { runSubscribe } = await import("../fanout/subscribe.js");
    process.exitCode = await runSubscribe(url, dst, options);
  });
}

/** `completion` and `man`: generated from the command definitions of `program` (completion.ts, manPage.ts). */
function docsCommands(program: Command): void {
  program
    .command("completion")
    .description("print a shell completion script generated from the command definitions")
    .addArgument(new Argument("<SHELL>", "bash or zsh").choices(["bash", "zsh"]))
    .addHelpText(
      "after",
      `
Examples:
  source <(mirrorlog completion bash)                     # in ~/.bashrc
  mirrorlog completion zsh > ~/.zfunc/_mirrorlog          # with ~/.zfunc on $fpath`,
    )
    .action(async (shell: "bash" | "zsh") => {
      const { bashCompletion, zshCompletion } = await import("./completion.js");
      process.stdout.write(shell === "bash" ? bashCompletion(program) : zshCompletion(program));
    });
  program
    .command("man")
    .description("print the man page (roff) generated from the command definitions")
    .addHelpText(
      "after",
      `
Examples:
  mirrorlog man | man -l -                                # read it
  mirrorlog man > ~/.local/share/man/man1/mirrorlog.1     # then: man mirrorlog`,
    )
    .action(async () => {
      const { manPage } = await import("./manPage.js");
      process.stdout.write(manPage(program));
    });
}

/** `service install`: a systemd user unit running `watch` for a pair (see service.ts). */
function serviceCommands(program: Command): void {
  const service = program
    .command("service")
    .description("run a pair's watch as a systemd user service, restarted when it fails")
    .addHelpText(
      "after",
      `
Examples:
  mirrorlog sync ~/photos /mnt/backup/photos --exclude '*.tmp'   # once: the pair and its options are remembered
  mirrorlog service install ~/photos /mnt/backup/photos          # writes ~/.config/systemd/user/mirrorlog-ID.service
  systemctl --user enable --now mirrorlog-ID.service             # (the line install prints)
  mirrorlog status ~/photos                                      # live (pid N, since T, lag 0 operations)
  mirrorlog service install --print ~/photos /mnt/backup/photos  # only print the unit

contrib/mirrorlog@.service is a template unit for the same job without generating one.`,
    );
  service
    .command("install <SRC> <DST>")
    .description("write the systemd user unit that runs `mirrorlog watch SRC DST` (Restart=on-failure)")
    .option("--print", "print the unit on stdout instead of writing it", false)
    .option("--name <NAME>", "name the unit mirrorlog-NAME.service (default: the pair's id, as status shows it)")
    .addHelpText(
      "after",
      `
The unit runs this mirrorlog with this node, carries XDG_STATE_HOME and MIRRORLOG_SSH when set, reloads
with SIGHUP (systemctl --user reload), and restarts a failed watch after 2 s.

Examples:
  mirrorlog service install ~/photos /mnt/backup/photos
  mirrorlog service install --print ~/site host:/srv/www > ~/.config/systemd/user/site.service`,
    )
    .action(async (src: string, dst: string, options: { print: boolean; name?: string }) => {
      const { runServiceInstall } = await import("./service.js");
      process.exitCode = await runServiceInstall(src, dst, options, (text) => process.stdout.write(text));
    });
}

/** Builds the command-line program. */
export function buildProgram(): Command {
  const program = new Command("mirrorlog")
    .description("Keep a directory an exact, live mirror of another, locally or over ssh.")
    // package.json's, as bin/mirrorlog answers `--version` alone with (dist/bundle/ and src/cli/ are both two
    // levels down).
    .version((createRequire(import.meta.url)("../../package.json") as { version: string }).version)
    .showHelpAfterError()
    // Usage errors end as a CommanderError (exit 2, see main) instead of commander's own exit(1).
    .exitOverride();
  mirrorCommand(program, "sync", "mirror SRC onto DST once; exit 0 only when DST equals SRC");
  mirrorCommand(program, "watch", "mirror SRC onto DST, then keep it mirrored until interrupted");
  program
    .command("serve")
    .description("run a target on stdin/stdout (what sync and watch start, locally or through ssh)")
    .requiredOption("--stdio", "speak the protocol on stdin/stdout")
    .requiredOption("--root <DIR>", "the target directory")
    .option("--state <PATH>", "the target's state file")
    .option("--dry-run", "serve read-only: create and change nothing (what `sync --dry-run` starts)", false)
    .option("--rebuild-state", "move a damaged state file aside and start a new one (the source rescans)", false)
    .option("--no-mkpath", "refuse a root whose parent is missing (sync and watch pass it unless given --mkpath)")
    .option("--backup-dir <DIR>", "keep removed and replaced entries in DIR (relative to the root, or absolute)")
    .option("--checksum", "hash every file for the manifest instead of trusting the index", false)
    .action(async (options: ServeOptions) => {
      const { serve } = await import("./serve.js");
      await serve(options);
    });
  auditCommands(program);
  fanoutCommands(program);
  serviceCommands(program);
  docsCommands(program);
  program
    .command("demo")
    .description("the seed demo: mirror a sample tree between two in-memory file systems")
    .action(async () => {
      const { runSeedDemo } = await import("./demo.js");
      process.stdout.write(`${runSeedDemo()}\n`);
    });
  return program;
}

/**
 * A reader that went away (`mirrorlog log PATH | head -1`) ends the command at once, quietly, with exit 0,
 * as `git log | head` does: nothing is left to say to anyone, and a stack trace would be noise.
 */
function endQuietlyOnBrokenPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EPIPE") process.exit(0);
      throw error;
    });
  }
}

/** Runs the program; a CliError becomes one line on stderr and its exit code (failureLine.ts). */
export async function main(argv: string[]): Promise<void> {
  endQuietlyOnBrokenPipe();
  try {
    await buildProgram().parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander already printed the message (and the help); --help and --version end here with 0.
      process.exitCode = error.exitCode === 0 ? 0 : USAGE_EXIT_CODE;
      return;
    }
    const { line, exitCode } = failureLine(error);
    process.stderr.write(line);
    process.exitCode = exitCode;
  }
}
