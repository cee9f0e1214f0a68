/** A failure the CLI reports as one line on stderr with a non-zero exit code (2 unless given). */
export class CliError extends Error {
  override readonly name = "CliError";
  constructor(
    message: string,
    readonly exitCode = 2,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * A state file (the source's or the target's) that cannot be used: the run stops at once with exit 2
 * and this one line (which names the file and what to do), and it is never retried as a lost connection.
 */
export class StateUnusableError extends CliError {}
