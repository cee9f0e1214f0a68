import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type SpawnedTarget, spawnTarget } from "../../src/transport/sshCommand.js";
import { StreamClient, TransportError } from "../../src/transport/streamConnection.js";
import { sshEnvironment, startSshd, type TestSshServer } from "../support/sshd.js";

// A stand-in for `mirrorlog serve --stdio --root=DIR`: serveStream on stdin/stdout, logs on stderr.
const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
const connectionModule = pathToFileURL(
  fileURLToPath(new URL("../../src/transport/streamConnection.ts", import.meta.url)),
).href;
const serverCode = `
const { serveStream } = await import(${JSON.stringify(connectionModule)});
const root = process.argv.find((arg) => arg.startsWith("--root="))?.slice("--root=".length);
process.stderr.write("serving " + root + "\\n");
await serveStream(process.stdin, process.stdout, {
  version: 1,
  validateRequest: (v) => {
    if (typeof v?.n !== "number") throw new Error("n must be a number");
    return v;
  },
  handle: (req) => ({ doubled: req.n * 2, root }),
});
`;
const serveArgs = (root: string) => [
  "--import",
  tsxLoader,
  "--input-type=module",
  "-e",
  serverCode,
  "--",
  `--root=${root}`,
];

type Req = { n: number };
type Res = { doubled: number; root: string };
const validateResponse = (value: unknown): Res => {
  const v = value as Res;
  if (typeof v?.doubled !== "number" || typeof v.root !== "string") throw new Error("bad response");
  return v;
};

function connect(target: SpawnedTarget, handshakeTimeoutMs = 20_000) {
  return StreamClient.connect<Req, Res>({
    input: target.input,
    output: target.output,
    version: 1,
    validateResponse,
    handshakeTimeoutMs,
    diagnose: target.diagnose,
  });
}

const unused = () => {
  throw new Error("this test must not build that command");
};

describe("spawnTarget: local child", () => {
  it("serves a local root through a child process on stdin/stdout", async () => {
    const target = spawnTarget("/tmp/local root", { localCommand: serveArgs, remoteCommand: unused });
    const client = await connect(target);
    expect(await client.request({ n: 4 })).toEqual({ doubled: 8, root: "/tmp/local root" });
    await client.close();
    expect(await target.exited).toEqual({ code: 0, signal: null });
    expect(target.stderrTail()).toBe("serving /tmp/local root");
    expect(target.description).toBe("local target");
  });

  it("explains a child that dies before the handshake with its status and stderr", async () => {
    const target = spawnTarget("/tmp/x", {
      localCommand: ["-e", 'process.stderr.write("cannot open root\\n"); process.exit(3)'],
      remoteCommand: unused,
    });
    await expect(connect(target)).rejects.toThrow(
      "peer closed the connection before the handshake\nlocal target exited with status 3; stderr: cannot open root",
    );
  });

  it("kill() stops the child and fails what was pending", async () => {
    const target = spawnTarget("/tmp/x", { localCommand: serveArgs, remoteCommand: unused });
    const client = await connect(target);
    target.kill();
    expect((await target.exited).signal).toBe("SIGTERM");
    await expect(client.request({ n: 1 })).rejects.toBeInstanceOf(TransportError);
  });

  it("keeps only the last 4 KiB of stderr", async () => {
    const target = spawnTarget("/tmp/x", {
      localCommand: ["-e", 'process.stderr.write("a".repeat(10000) + "END")'],
      remoteCommand: unused,
    });
    await target.exited;
    expect(target.stderrTail().length).toBe(4096);
    expect(target.stderrTail().endsWith("END")).toBe(true);
  });
});

describe("spawnTarget: over a real sshd", () => {
  let server: TestSshServer;

  beforeAll(async () => {
    server = await startSshd();
  });

  afterAll(async () => {
    await server?.stop();
  });

  const remoteServe = (root: string) => [process.execPath, ...serveArgs(root)];

  it("runs the remote command through the remote shell with the path intact, using MIRRORLOG_SSH", async () => {
    const root = "/srv/it's a $(dir) `x`";
    const target = spawnTarget(`localhost:${root}`, {
      localCommand: unused,
      remoteCommand: remoteServe,
      env: { ...process.env, ...sshEnvironment(server) },
    });
    expect(target.description).toBe("ssh localhost");
    const client = await connect(target);
    const responses = await Promise.all(Array.from({ length: 50 }, (_, n) => client.request({ n })));
    expect(responses).toEqual(Array.from({ length: 50 }, (_, n) => ({ doubled: n * 2, root })));
    await client.close();
    expect((await target.exited).code).toBe(0);
  });

  it("maps an empty remote path to the remote home directory", async () => {
    const target = spawnTarget(`${server.user}@127.0.0.1:`, {
      localCommand: unused,
      remoteCommand: remoteServe,
      sshCommand: server.sshCommandLine,
    });
    const client = await connect(target);
    expect((await client.request({ n: 1 })).root).toBe(".");
    await client.close();
  });

  it("reports a remote shell that prints on stdout before the protocol starts", async () => {
    const target = spawnTarget("localhost:/srv", {
      localCommand: unused,
      remoteCommand: (root) => ["sh", "-c", 'echo "Welcome to the far side"; exec "$@"', "sh", ...remoteServe(root)],
      sshCommand: server.sshCommandLine,
    });
    const error = await connect(target).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect((error as Error).message).toMatch(/^peer sent non-protocol output on stdout: "Welcome to the far side\\n/);
    target.kill();
  });

  it("names the host and quotes ssh's stderr when the host is unreachable (exit 255)", async () => {
    const target = spawnTarget("localhost:/srv", {
      localCommand: unused,
      remoteCommand: remoteServe,
      sshCommand: server.sshCommandLine,
      sshOptions: ["-o", "Port=1"], // nothing listens on port 1: connection refused
    });
    const error = (await connect(target).catch((e: unknown) => e)) as Error;
    expect(error).toBeInstanceOf(TransportError);
    expect(error.message).toContain('ssh could not reach or log in to host "localhost" (exit status 255');
    expect(error.message).toMatch(/stderr: .*Connection refused/);
    expect((await target.exited).code).toBe(255);
  });

  it("names the host and quotes ssh's stderr when authentication fails", async () => {
    const target = spawnTarget("nobody@localhost:/srv", {
      localCommand: unused,
      remoteCommand: remoteServe,
      sshCommand: server.sshCommandLine,
    });
    const error = (await connect(target).catch((e: unknown) => e)) as Error;
    expect(error.message).toContain('ssh could not reach or log in to host "localhost"');
    expect(error.message).toMatch(/Permission denied/);
  });

  it("reports an ssh command that cannot be started", async () => {
    const target = spawnTarget("localhost:/srv", {
      localCommand: unused,
      remoteCommand: remoteServe,
      sshCommand: "/nonexistent/ssh",
    });
    const error = (await connect(target).catch((e: unknown) => e)) as Error;
    expect(error).toBeInstanceOf(TransportError);
    expect(error.message).toMatch(/could not start \/nonexistent\/ssh for ssh localhost: .*ENOENT/);
  });
});
