// The composition root of the `mirrorlog` command: argument parsing only; each command lives in its own file.
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { CliError } from "./cliError.js";
import { DEFAULT_TIMEOUT_SECONDS } from "./defaults.js";
import type { VerifyOptions } from "./verify.js";

// Each command's module is imported inside its action, so `--version`, `--help` and a usage error load
// commander alone, and each command loads only what it uses (start-up is most of a small job's time).

/** Exit code of a command line that cannot be run as given (rsync uses 1; the README documents 2). */
const USAGE_EXIT_CODE = 2;

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("must be a positive number");
  return n;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function mirrorCommand(program: Command, mode: "sync" | "watch", description: string): void {
  program
    .command(`${mode} <SRC> <DST>`)
    .description(description)
    .option("--dry-run", "print the planned operations and change nothing", false)
    .option("--exclude <PATTERN>", "exclude paths matching PATTERN (gitignore syntax, repeatable)", collect, [])
    .option("--state <PATH>", "the SQLite state file of this source/target pair")
    .option("--json", "print one JSON summary object on stdout", false)
    .option("--allow-empty-source", "mirror an empty SRC onto a non-empty DST (deleting everything there)", false)
    .option("-H, --hard-links", "keep hard-linked files linked on the target (like rsync -H)", false)
    .option("--no-owner", "do not replicate owners (by default they are, by numeric id, when the target runs as root)")
    .option("--no-group", "do not replicate groups (by default they are, by numeric id, when the target runs as root)")
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
    .action(async (src: string, dst: string, options) => {
      const { runMirror } = await import("./mirror.js");
      process.exitCode = await runMirror(mode, src, dst, options);
    });
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
    .action(async (path: string, options: { state?: string; json: boolean }) => {
      const { runLog } = await import("./log.js");
      process.exitCode = runLog(path, options, stdout);
    });
  program
    .command("status [SRC]")
    .description("where each replication stands (or those of source SRC): epoch, positions, lag, throughput, problems")
    .option("--state <FILE>", "read this state file instead of searching the state directory")
    .option("--json", "print a JSON array, one object per replication", false)
    .action(async (src: string | undefined, options: { state?: string; json: boolean }) => {
      const { runStatus } = await import("./status.js");
      process.exitCode = runStatus(src, options, stdout);
    });
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

/** Builds the command-line program. */
export function buildProgram(): Command {
  const program = new Command("mirrorlog")
    .description("Keep a directory an exact, live mirror of another, locally or over ssh.")
    .version("0.1.0")
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
    .action(async (options: { root: string; state?: string; dryRun: boolean; rebuildState: boolean }) => {
      const { serve } = await import("./serve.js");
      await serve(options);
    });
  auditCommands(program);
  program
    .command("demo")
    .description("the seed demo: mirror a sample tree between two in-memory file systems")
    .action(async () => {
      const { runSeedDemo } = await import("./demo.js");
      process.stdout.write(`${runSeedDemo()}\n`);
    });
  return program;
}

/** Runs the program; a CliError becomes one line on stderr and its exit code. */
export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander already printed the message (and the help); --help and --version end here with 0.
      process.exitCode = error.exitCode === 0 ? 0 : USAGE_EXIT_CODE;
      return;
    }
    if (error instanceof CliError) {
      // One line, always: a message quoting a child's stderr may span several.
      process.stderr.write(`mirrorlog: ${error.message.trim().replace(/\s*\n\s*/g, "; ")}\n`);
      process.exitCode = error.exitCode;
      return;
    }
    process.stderr.write(`mirrorlog: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 70;
  }
}
