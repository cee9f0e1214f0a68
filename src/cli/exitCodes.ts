// The exit codes of every mirrorlog command, in one place (README "Exit codes" and `--help` list them).
// They follow rsync where rsync has one (23 partial transfer, 20 interrupted) and `diff` for verify (1 drift).

/** How a mirrorlog command ended, as its exit status. */
export const EXIT = Object.freeze({
  /** Done: DST equals SRC (verify: identical). */
  ok: 0,
  /** DST does not equal SRC: verify found drift, or a sync/watch failed as a whole (connection lost for good). */
  drift: 1,
  /** Usage error or refusal: bad arguments, an unusable source/target/state file, a deletion or path refused. */
  usage: 2,
  /** Interrupted by SIGINT, SIGTERM or SIGHUP (rsync's 20). */
  interrupted: 20,
  /** Partial transfer: the run finished but some paths failed (listed in the summary; rsync's 23). */
  partial: 23,
  /** An internal error: a bug (the message carries the stack). */
  internal: 70,
});

/** One of the exit codes above. */
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The exit codes as `--help` and the README list them. */
export const EXIT_CODES_HELP = `Exit codes:
  0   done: DST mirrors SRC
  1   DST does not mirror SRC (verify: drift; sync/watch: the run failed as a whole)
  2   usage error or refusal (bad arguments, a deletion or missing parent refused, an unusable state file)
  20  interrupted (SIGINT, SIGTERM, SIGHUP)
  23  partial transfer: some paths failed (listed in the summary)
  70  internal error`;
