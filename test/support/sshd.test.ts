import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sshEnvironment, startSshd, type TestSshServer } from "./sshd.js";

const execFileAsync = promisify(execFile);

describe("test sshd harness", () => {
  let server: TestSshServer;

  beforeAll(async () => {
    server = await startSshd();
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("lets ssh with the generated config run a command on localhost", async () => {
    const [ssh, ...args] = server.sshCommand;
    const { stdout } = await execFileAsync(ssh!, [...args, "localhost", "echo", "ok"]);
    expect(stdout).toBe("ok\n");
  });

  it("reaches the same server through 127.0.0.1", async () => {
    const [ssh, ...args] = server.sshCommand;
    const { stdout } = await execFileAsync(ssh!, [...args, "127.0.0.1", "id", "-un"]);
    expect(stdout.trim()).toBe(server.user);
  });

  it("has node on the remote PATH, the same version as ours", async () => {
    const [ssh, ...args] = server.sshCommand;
    const { stdout } = await execFileAsync(ssh!, [...args, "localhost", "node -e 'console.log(process.version)'"]);
    expect(stdout.trim()).toBe(process.version);
  });

  it("exports a MIRRORLOG_SSH command line equivalent to sshCommand", () => {
    expect(sshEnvironment(server).MIRRORLOG_SSH).toBe(server.sshCommand.join(" "));
  });

  it("stops: sessions work before stop() and are refused after it, and the temp dir is gone", async () => {
    const second = await startSshd();
    const [ssh, ...args] = second.sshCommand;
    const before = await execFileAsync(ssh!, [...args, "localhost", "echo", "up"]);
    expect(before.stdout).toBe("up\n");
    await second.stop();
    const failure = (await execFileAsync(ssh!, [...args, "-o", "LogLevel=INFO", "localhost", "true"]).catch(
      (e: unknown) => e,
    )) as { code?: number; stderr?: string };
    expect(failure.code).toBe(255);
    expect(existsSync(second.dir)).toBe(false);
  });

  it("gives sessions the PATH set by SetEnv (the running node's directory first; rc files may prepend)", async () => {
    const [ssh, ...args] = server.sshCommand;
    const { stdout } = await execFileAsync(ssh!, [...args, "localhost", "echo $PATH"]);
    expect(stdout.trim().endsWith([dirname(process.execPath), "/usr/local/bin", "/usr/bin", "/bin"].join(":"))).toBe(
      true,
    );
  });
});
