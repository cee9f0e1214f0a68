// A throwaway OpenSSH server on 127.0.0.1 for end-to-end tests of the ssh transport.
// Everything it needs (host key, user key, authorized_keys, sshd_config, client ssh_config)
// lives in one temp directory removed by stop(). The client config is self-contained: `ssh -F`
// ignores ~/.ssh/config and /etc/ssh/ssh_config, so tests never depend on the machine's setup.
// Needs the Debian package openssh-server (and openssh-client for ssh and ssh-keygen).
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Where Debian's openssh-server puts the daemon (sshd must be started by absolute path to re-exec itself). */
export const SSHD_CANDIDATES = ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"];

/** A running test sshd and how to reach it. */
export interface TestSshServer {
  host: "127.0.0.1";
  port: number;
  /** The user the server lets in (the user running the tests). */
  user: string;
  /** The temp directory holding keys and configs. */
  dir: string;
  /** Client config with `Host localhost 127.0.0.1` pointing at this server. */
  sshConfigPath: string;
  /** The private key whose public half is authorized. */
  identityPath: string;
  /** argv prefix for ssh, e.g. ["ssh", "-F", "/tmp/.../ssh_config"]; append a host and a command. */
  sshCommand: string[];
  /** The same as one command line, for MIRRORLOG_SSH. */
  sshCommandLine: string;
  /** The daemon's own log (it runs with -e), for failure messages. */
  serverLog(): string;
  /** Stops the daemon and removes the temp directory. */
  stop(): Promise<void>;
}

/** The absolute path of sshd, or undefined when openssh-server is not installed. */
export function findSshd(): string | undefined {
  return SSHD_CANDIDATES.find((path) => existsSync(path));
}

/** Environment that makes mirrorlog's ssh transport use this server: `mirrorlog sync SRC localhost:DST`. */
export function sshEnvironment(server: TestSshServer): { MIRRORLOG_SSH: string } {
  return { MIRRORLOG_SSH: server.sshCommandLine };
}

/** Binds port 0 on 127.0.0.1 to learn a free port, then releases it for sshd. */
export async function pickFreePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("could not learn a free port");
  return address.port;
}

/** Options of startSshd. */
export interface StartSshdOptions {
  /** How long to wait for the port to accept connections (default 15 s). */
  readyDeadlineMs?: number;
}

/** Starts sshd on a free port of 127.0.0.1 and waits until it accepts connections. */
export async function startSshd(options: StartSshdOptions = {}): Promise<TestSshServer> {
  const sshd = findSshd();
  if (!sshd) {
    throw new Error(
      `sshd not found (looked in ${SSHD_CANDIDATES.join(", ")}): apt-get install -y openssh-server openssh-client`,
    );
  }
  // The privilege-separation directory sshd insists on when run as root.
  await mkdir("/run/sshd", { recursive: true, mode: 0o755 });

  const dir = await mkdtemp(join(tmpdir(), "mirrorlog-sshd-"));
  const hostKey = join(dir, "host_ed25519");
  const identityPath = join(dir, "user_ed25519");
  const authorizedKeys = join(dir, "authorized_keys");
  const serverConfig = join(dir, "sshd_config");
  const sshConfigPath = join(dir, "ssh_config");
  const user = userInfo().username;
  let child: ChildProcess | undefined;
  try {
    await execFileAsync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "mirrorlog-test-host", "-f", hostKey]);
    await execFileAsync("ssh-keygen", [
      "-q",
      "-t",
      "ed25519",
      "-N",
      "",
      "-C",
      "mirrorlog-test-user",
      "-f",
      identityPath,
    ]);
    await writeFile(authorizedKeys, await readFile(`${identityPath}.pub`));
    await chmod(authorizedKeys, 0o600);
    const port = await pickFreePort();
    // sshd gives sessions a compiled-in PATH; SetEnv puts the running node's directory first so
    // `node` on the far side is the same binary the tests run with.
    const remotePath = [dirname(process.execPath), "/usr/local/bin", "/usr/bin", "/bin"].join(":");
    await writeFile(
      serverConfig,
      [
        "ListenAddress 127.0.0.1",
        `Port ${port}`,
        `HostKey ${hostKey}`,
        `AuthorizedKeysFile ${authorizedKeys}`,
        `PidFile ${join(dir, "sshd.pid")}`,
        `AllowUsers ${user}`,
        "StrictModes no",
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin yes",
        "PrintMotd no",
        "PrintLastLog no",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        `SetEnv PATH=${remotePath}`,
        "LogLevel VERBOSE",
        "",
      ].join("\n"),
    );
    await writeFile(
      sshConfigPath,
      [
        "Host localhost 127.0.0.1",
        "  HostName 127.0.0.1",
        `  Port ${port}`,
        `  User ${user}`,
        `  IdentityFile ${identityPath}`,
        "  IdentitiesOnly yes",
        "  IdentityAgent none",
        "  UserKnownHostsFile /dev/null",
        "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking no",
        "  LogLevel ERROR",
        "  BatchMode yes",
        "  ConnectTimeout 10",
        "",
      ].join("\n"),
    );

    const log: Buffer[] = [];
    child = spawn(sshd, ["-D", "-e", "-f", serverConfig], { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr!.on("data", (chunk: Buffer) => {
      log.push(chunk);
      if (log.length > 200) log.splice(0, log.length - 200);
    });
    const serverLog = () => Buffer.concat(log).toString("utf8");
    const exited = new Promise<string>((resolve) => {
      child!.once("error", (error) => resolve(`could not start ${sshd}: ${error.message}`));
      child!.once("exit", (code, signal) => resolve(`sshd exited (${signal ?? `status ${code}`})`));
    });
    await waitForPort(port, options.readyDeadlineMs ?? 15_000, exited, serverLog);

    const running = child;
    const sshCommand = ["ssh", "-F", sshConfigPath];
    return {
      host: "127.0.0.1",
      port,
      user,
      dir,
      sshConfigPath,
      identityPath,
      sshCommand,
      sshCommandLine: sshCommand.map(quoteWord).join(" "),
      serverLog,
      stop: async () => {
        if (running.exitCode === null && running.signalCode === null) {
          running.kill("SIGTERM");
          await exited;
        }
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    child?.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** Polls until 127.0.0.1:port accepts a TCP connection, the daemon dies, or the deadline passes. */
async function waitForPort(
  port: number,
  deadlineMs: number,
  exited: Promise<string>,
  serverLog: () => string,
): Promise<void> {
  let exitReason: string | undefined;
  void exited.then((reason) => {
    exitReason = reason;
  });
  const started = Date.now();
  for (;;) {
    if (exitReason) throw new Error(`${exitReason} before accepting connections:\n${serverLog()}`);
    if (await canConnect(port)) return;
    if (Date.now() - started > deadlineMs) {
      throw new Error(`sshd did not accept connections on port ${port} within ${deadlineMs} ms:\n${serverLog()}`);
    }
    // Give the daemon a moment between probes; the deadline above bounds the loop.
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Single-quotes a word for a command line read by splitCommandWords or a POSIX shell. */
export function quoteWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}
