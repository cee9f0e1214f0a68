// How a command that failed ends: shared by main (the process's own ending) and a target served in this
// process (whose ending its source reads as it would read a child's stderr and exit status).
import { CliError } from "./cliError.js";
import { EXIT } from "./exitCodes.js";

/** A failed command's last word: the line for stderr and the exit code. */
export interface FailureLine {
  line: string;
  exitCode: number;
}

/**
 * A CliError is one line, always (a message quoting a child's stderr may span several), with its exit
 * code; anything else is an internal error, reported with its stack (exit 70).
 */
export function failureLine(error: unknown): FailureLine {
  if (error instanceof CliError) {
    return { line: `mirrorlog: ${error.message.trim().replace(/\s*\n\s*/g, "; ")}\n`, exitCode: error.exitCode };
  }
  return { line: `mirrorlog: ${(error as Error).stack ?? String(error)}\n`, exitCode: EXIT.internal };
}
