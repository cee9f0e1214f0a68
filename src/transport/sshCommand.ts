// Reaching a target process: parse a target spec (`[user@]host:path` or a local path), build the
// argv of the system ssh client, and spawn either ssh or a local child that serves the protocol
// on its stdin/stdout. No local shell is ever involved (argv arrays only); the remote command is
// one string for the remote shell, built from single-quoted words. Hosts and users are checked
// against an allowlist so that nothing reaching ssh can be read as an option (`-oProxyCommand=`)
// or expand inside a user's ProxyCommand/Match exec (`%h` with `;`, `$()`, backticks).
import { type ChildProcess, spawn } from "node:child_process";
import type { Readable, Writable } from "node:stream";

/** Environment variable holding the ssh command line to use, like rsync's `-e` (e.g. "ssh -F /tmp/cfg"). */
export const SSH_COMMAND_ENV = "MIRRORLOG_SSH";

/** ssh's exit status for its own failures (unreachable host, authentication, bad options). */
export const SSH_FAILURE_STATUS = 255;

/** How much of a child's stderr is kept for error messages. */
export const STDERR_TAIL_BYTES = 4096;

/** A target on this machine. */
export interface LocalTargetSpec {
  kind: "local";
  path: string;
}

/** A target reached through the system ssh client. */
export interface SshTargetSpec {
  kind: "ssh";
  user?: string;
  host: string;
  /** Path on the remote machine; "." (the remote home directory) when the spec gave none. */
  path: string;
}

/** Where a target lives, as parsed from the command line. */
export type TargetSpec = LocalTargetSpec | SshTargetSpec;

/** A target spec that cannot be used: bad host or user, empty spec, NUL in a path. */
export class TargetSpecError extends Error {
  override readonly name = "TargetSpecError";
}

// Host names, aliases from ~/.ssh/config and IPv4 addresses. Deliberately narrow: anything else
// (whitespace, quotes, `;`, `$`, `|`, `&`, backticks, `%`, `/`) is refused rather than escaped.
const HOST_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;
const IPV6_PATTERN = /^[0-9A-Fa-f:.]+$/;
const USER_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;
// A Windows drive letter ("C:/x", "c:\\x") is a local path, not host "C".
const DRIVE_LETTER_PATTERN = /^[A-Za-z]:[/\\]/;

/**
 * Parses `[user@]host:path` (ssh, like rsync: a colon before any slash; `[user@][v6addr]:path`
 * for IPv6) or anything else as a local path. An empty remote path means the remote home (".").
 */
export function parseTargetSpec(spec: string): TargetSpec {
  if (spec.length === 0) throw new TargetSpecError("empty target: give a directory or [user@]host:path");
  if (spec.includes("\0")) throw new TargetSpecError("invalid target: contains a NUL byte");

  const bracketed = /^(?:([^@/]*)@)?\[([^\]/]*)\]:(.*)$/s.exec(spec);
  if (bracketed) {
    const [, user, host = "", path = ""] = bracketed;
    if (!IPV6_PATTERN.test(host)) throw new TargetSpecError(`invalid host "[${host}]" in target "${spec}"`);
    return sshSpec(spec, user, host, path);
  }

  const colon = spec.indexOf(":");
  const slash = spec.indexOf("/");
  if (colon === -1 || (slash !== -1 && slash < colon) || DRIVE_LETTER_PATTERN.test(spec)) {
    return { kind: "local", path: spec };
  }
  const hostPart = spec.slice(0, colon);
  const at = hostPart.lastIndexOf("@");
  const user = at === -1 ? undefined : hostPart.slice(0, at);
  const host = hostPart.slice(at + 1);
  checkName("host", host, HOST_PATTERN, spec);
  return sshSpec(spec, user, host, spec.slice(colon + 1));
}

function sshSpec(spec: string, user: string | undefined, host: string, path: string): SshTargetSpec {
  if (user !== undefined) checkName("user", user, USER_PATTERN, spec);
  return user === undefined
    ? { kind: "ssh", host, path: path === "" ? "." : path }
    : { kind: "ssh", user, host, path: path === "" ? "." : path };
}

function checkName(what: "host" | "user", name: string, pattern: RegExp, spec: string): void {
  if (name.length === 0) throw new TargetSpecError(`empty ${what} in target "${spec}"`);
  if (name.startsWith("-")) {
    throw new TargetSpecError(`invalid ${what} "${name}" in target "${spec}": must not start with "-"`);
  }
  if (pattern.test(name)) return;
  const bad = [...name].find((char) => !/[A-Za-z0-9._-]/.test(char)) ?? "";
  throw new TargetSpecError(
    `invalid ${what} "${name}" in target "${spec}": character ${JSON.stringify(bad)} is not allowed ` +
      "(letters, digits, '.', '_' and '-' only)",
  );
}

/** A short human name for a target: "root@host:/dir" or "/dir". */
export function describeTarget(spec: TargetSpec): string {
  if (spec.kind === "local") return spec.path;
  const host = spec.host.includes(":") ? `[${spec.host}]` : spec.host;
  return `${spec.user ? `${spec.user}@` : ""}${host}:${spec.path}`;
}

// Words made only of these characters mean the same to every POSIX shell when left bare.
const BARE_WORD_PATTERN = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quotes one word for a POSIX remote shell: bare when harmless, else single-quoted with `'` as `'\''`. */
export function quoteForRemoteShell(word: string): string {
  if (BARE_WORD_PATTERN.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** Joins words into the one command string ssh hands to the remote shell. */
export function remoteShellCommand(words: readonly string[]): string {
  if (words.length === 0) throw new TypeError("remote command is empty");
  for (const word of words) {
    if (word.includes("\0")) throw new TypeError("remote command word contains a NUL byte");
  }
  return words.map(quoteForRemoteShell).join(" ");
}

/**
 * Splits a command line such as MIRRORLOG_SSH="ssh -F '/tmp/my dir/config'" into words: blanks
 * separate words, single and double quotes group, backslash escapes. Nothing is expanded.
 */
export function splitCommandWords(command: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < command.length; i++) {
    const char = command[i]!;
    if (quote === "'") {
      if (char === "'") quote = undefined;
      else word += char;
    } else if (quote === '"') {
      if (char === '"') quote = undefined;
      else if (char === "\\" && i + 1 < command.length && '"\\$`'.includes(command[i + 1]!)) word += command[++i];
      else word += char;
    } else if (char === "'" || char === '"') {
      quote = char;
      inWord = true;
    } else if (char === "\\" && i + 1 < command.length) {
      word += command[++i];
      inWord = true;
    } else if (/\s/.test(char)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      word += char;
      inWord = true;
    }
  }
  if (quote) throw new TargetSpecError(`unbalanced ${quote} in ssh command: ${command}`);
  if (inWord) words.push(word);
  return words;
}

/** Options of sshArgv. */
export interface SshArgvOptions {
  /** The ssh command line (split into words); defaults to $MIRRORLOG_SSH, then "ssh". */
  sshCommand?: string;
  /** Extra ssh arguments placed before the host, e.g. ["-p", "2222"]. */
  sshOptions?: string[];
  /** Where MIRRORLOG_SSH is read from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** An executable and its arguments, for child_process.spawn without a shell. */
export interface CommandArgv {
  file: string;
  args: string[];
}

/**
 * Builds `ssh [options] -T [-l user] -- host '<quoted remote command>'`. Authentication, host
 * keys, ports and proxies are left to the user's ssh configuration, as rsync does. `-T` because
 * a pseudo-terminal would rewrite the binary stream (a config with RequestTTY would otherwise win).
 */
export function sshArgv(
  spec: string | SshTargetSpec,
  remoteCommand: readonly string[],
  options: SshArgvOptions = {},
): CommandArgv {
  const target = typeof spec === "string" ? parseTargetSpec(spec) : spec;
  if (target.kind !== "ssh") throw new TargetSpecError(`not a remote target: ${describeTarget(target)}`);
  const commandLine = options.sshCommand || (options.env ?? process.env)[SSH_COMMAND_ENV] || "ssh";
  const [file, ...args] = splitCommandWords(commandLine);
  if (!file) throw new TargetSpecError(`empty ssh command: ${JSON.stringify(commandLine)}`);
  args.push(...(options.sshOptions ?? []), "-T");
  if (target.user !== undefined) args.push("-l", target.user);
  args.push("--", target.host, remoteShellCommand(remoteCommand));
  return { file, args };
}

/** Options of spawnTarget. */
export interface SpawnTargetOptions {
  /** Arguments for `localExecutable` that serve the protocol for a local root, e.g. root => [script, "serve", "--stdio", `--root=${root}`]. */
  localCommand: readonly string[] | ((root: string) => string[]);
  /** Executable of the local child (default process.execPath, i.e. this node). */
  localExecutable?: string;
  /** Words run by the remote shell for a remote root, e.g. root => ["mirrorlog", "serve", "--stdio", `--root=${root}`]. */
  remoteCommand: readonly string[] | ((root: string) => string[]);
  sshCommand?: string;
  sshOptions?: string[];
  /** Environment of the child (default process.env); MIRRORLOG_SSH is read from it too. */
  env?: NodeJS.ProcessEnv;
  /** Where to copy the child's stderr as it arrives (e.g. process.stderr); the tail is kept regardless. */
  forwardStderr?: Writable;
}

/** How a target child ended. */
export interface TargetExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the child could not be started at all (e.g. ssh not installed). */
  error?: Error;
}

/** A running target, whatever runs it (a local child, ssh, or this process): its streams and how it ends. */
export interface RunningTarget {
  /** What the target writes: frames only. */
  input: Readable;
  /** What we write to the target. */
  output: Writable;
  /** "ssh root@host" or "local target": for messages. */
  description: string;
  /** Settles when the target has ended (or failed to start); never rejects. */
  exited: Promise<TargetExit>;
  /** The last STDERR_TAIL_BYTES of what the target said on stderr, trimmed. */
  stderrTail(): string;
  /** Waits briefly for the target to end, then explains how it ended (for TransportError messages). */
  diagnose(): Promise<string | undefined>;
  /** Asks it to stop (SIGTERM for a process): it finishes the request at hand, cleans up, releases the target. */
  kill(): void;
  /** Ends it without waiting for its cleanup (SIGKILL for a process), when asking was not enough. */
  forceKill(): void;
  /** True until it has ended. */
  running(): boolean;
}

/** A target run by a child process (a local `mirrorlog serve`, or ssh). */
export interface SpawnedTarget extends RunningTarget {
  child: ChildProcess;
}

/**
 * What a target says on stderr: copied on to `forward` as it arrives, and its last STDERR_TAIL_BYTES
 * kept for error messages.
 */
export class StderrTail {
  private readonly chunks: Buffer[] = [];
  private bytes = 0;

  constructor(private readonly forward?: Writable) {}

  /** Takes the next piece of the target's stderr. */
  write(chunk: Buffer): void {
    this.forward?.write(chunk);
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    while (this.chunks.length > 1 && this.bytes - this.chunks[0]!.length >= STDERR_TAIL_BYTES) {
      this.bytes -= this.chunks.shift()!.length;
    }
  }

  /** The last STDERR_TAIL_BYTES said, trimmed. */
  text(): string {
    const all = Buffer.concat(this.chunks);
    return all
      .subarray(Math.max(0, all.length - STDERR_TAIL_BYTES))
      .toString("utf8")
      .trim();
  }
}

/** How long a diagnosis waits for the target to end. */
const EXIT_WAIT_MS = 1_500;

/**
 * A target's `diagnose`: waits up to EXIT_WAIT_MS for it to end, then explains how it ended (or that it
 * is still running) in the words of describeTargetExit.
 */
export function diagnoseTarget(facts: {
  target: TargetSpec;
  description: string;
  command: string;
  exited: Promise<TargetExit>;
  stderr: StderrTail;
}): () => Promise<string | undefined> {
  return async () => {
    const ended = await exitWithin(facts.exited, EXIT_WAIT_MS);
    return describeTargetExit({ ...facts, exit: ended, stderr: facts.stderr.text() });
  };
}

/** How the target ended, if it does within `ms` milliseconds; undefined while it still runs. */
export async function exitWithin(exited: Promise<TargetExit>, ms: number): Promise<TargetExit | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const ended = await Promise.race([
    exited,
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    }),
  ]);
  clearTimeout(timer);
  return ended;
}

/** Spawns the process serving a target: a local child, or ssh running the remote command. */
export function spawnTarget(spec: string | TargetSpec, options: SpawnTargetOptions): SpawnedTarget {
  const target = typeof spec === "string" ? parseTargetSpec(spec) : spec;
  const env = options.env ?? process.env;
  let argv: CommandArgv;
  let description: string;
  if (target.kind === "ssh") {
    const words =
      typeof options.remoteCommand === "function" ? options.remoteCommand(target.path) : options.remoteCommand;
    argv = sshArgv(target, words, { sshCommand: options.sshCommand, sshOptions: options.sshOptions, env });
    description = `ssh ${target.user ? `${target.user}@` : ""}${target.host}`;
  } else {
    const args = typeof options.localCommand === "function" ? options.localCommand(target.path) : options.localCommand;
    argv = { file: options.localExecutable ?? process.execPath, args: [...args] };
    description = "local target";
  }

  const child = spawn(argv.file, argv.args, { stdio: ["pipe", "pipe", "pipe"], env, shell: false });
  const stderr = new StderrTail(options.forwardStderr);
  child.stderr!.on("data", (chunk: Buffer) => stderr.write(chunk));

  let exit: TargetExit | undefined;
  const exited = new Promise<TargetExit>((resolve) => {
    child.once("error", (error) => {
      exit ??= { code: null, signal: null, error };
      resolve(exit);
    });
    // 'close' (not 'exit'): stderr is fully read by then, so the tail is complete.
    child.once("close", (code, signal) => {
      exit ??= { code, signal };
      resolve(exit);
    });
  });
  // The streams are the client's to watch; these only stop an EPIPE after the client left from crashing us.
  child.stdin!.on("error", () => {});
  child.stdout!.on("error", () => {});
  const running = () => child.exitCode === null && child.signalCode === null;

  return {
    child,
    input: child.stdout!,
    output: child.stdin!,
    description,
    exited,
    stderrTail: () => stderr.text(),
    diagnose: diagnoseTarget({ target, description, command: argv.file, exited, stderr }),
    kill: () => {
      if (running()) child.kill("SIGTERM");
    },
    forceKill: () => {
      if (running()) child.kill("SIGKILL");
    },
    running,
  };
}

/** Explains how a target child ended, naming the host for ssh failures and quoting its stderr. */
export function describeTargetExit(facts: {
  target: TargetSpec;
  description: string;
  command: string;
  exit: TargetExit | undefined;
  stderr: string;
}): string | undefined {
  const { target, description, command, exit, stderr } = facts;
  const said = stderr ? `; stderr: ${stderr}` : "";
  if (!exit) return stderr ? `${description} is still running${said}` : undefined;
  if (exit.error) return `could not start ${command} for ${description}: ${exit.error.message}`;
  if (target.kind === "ssh" && exit.code === SSH_FAILURE_STATUS) {
    return (
      `ssh could not reach or log in to host "${target.host}" (exit status ${SSH_FAILURE_STATUS}: ` +
      `unreachable host, authentication or configuration failure)${said}`
    );
  }
  if (exit.signal) return `${description} was killed by ${exit.signal}${said}`;
  if (exit.code !== 0) return `${description} exited with status ${exit.code}${said}`;
  return stderr ? `${description} exited${said}` : undefined;
}
