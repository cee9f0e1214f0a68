// Real `nats-server -js` processes for the fan-out tests (Debian's nats-server package, 2.9.10 here):
// one node on a free loopback port with a temp store, or a 3-node JetStream cluster on loopback.
// Readiness is polled with a deadline (the server's "ready" line, then a JetStream answer), never slept on.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { pickFreePort } from "./sshd.js";

/** Where Debian installs the server. */
export const NATS_SERVER_CANDIDATES = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"];

/** The nats-server binary, or undefined when the package is missing. */
export function findNatsServer(): string | undefined {
  return NATS_SERVER_CANDIDATES.find((path) => existsSync(path));
}

/** One running server process. */
export interface NatsNode {
  /** nats://127.0.0.1:PORT */
  url: string;
  port: number;
  child: ChildProcess;
  /** The server's own log so far (stderr), for failure messages. */
  log(): string;
  /** SIGKILL, and wait for the process to be gone. */
  kill(): Promise<void>;
}

/** A running single server or cluster; `stop` ends every node and removes the stores. */
export interface NatsTestServer {
  nodes: NatsNode[];
  /** All client URLs, comma-separated (what a client given the whole cluster dials). */
  url: string;
  dir: string;
  stop(): Promise<void>;
}

async function waitFor(what: string, deadlineMs: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = performance.now() + deadlineMs;
  for (;;) {
    if (await check()) return;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function startNode(args: string[], port: number): NatsNode {
  const binary = findNatsServer();
  if (binary === undefined) {
    throw new Error(
      `nats-server not found (looked in ${NATS_SERVER_CANDIDATES.join(", ")}): apt-get install -y nats-server`,
    );
  }
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.on("data", (data: Buffer) => {
    output += data.toString();
  });
  child.stderr?.on("data", (data: Buffer) => {
    output += data.toString();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    child,
    log: () => output,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

/** Waits until JetStream on `url` answers (in a cluster: a meta leader is elected). */
async function waitForJetStream(url: string, deadlineMs: number): Promise<void> {
  await waitFor(`JetStream on ${url}`, deadlineMs, async () => {
    try {
      const nc = await connect({ servers: url, reconnect: false, timeout: 1000 });
      try {
        const jsm = await jetstreamManager(nc, { timeout: 1000 });
        await jsm.getAccountInfo();
        return true;
      } finally {
        await nc.close();
      }
    } catch {
      return false;
    }
  });
}

/** Starts one `nats-server -js` on a free port of 127.0.0.1 with a temp store directory. */
export async function startNatsServer(deadlineMs = 20_000): Promise<NatsTestServer> {
  const dir = await mkdtemp(join(tmpdir(), "mirrorlog-nats-"));
  const port = await pickFreePort();
  const node = startNode(["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", join(dir, "store")], port);
  const server: NatsTestServer = {
    nodes: [node],
    url: node.url,
    dir,
    stop: async () => {
      await node.kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitFor(`nats-server on port ${port}`, deadlineMs, () => node.log().includes("Server is ready"));
    await waitForJetStream(node.url, deadlineMs);
  } catch (error) {
    await server.stop();
    throw new Error(`${(error as Error).message}; server log:\n${node.log()}`);
  }
  return server;
}

/** Starts a 3-node JetStream cluster on loopback ports (R3 streams need all three to be up at creation). */
export async function startNatsCluster(deadlineMs = 30_000): Promise<NatsTestServer> {
  const dir = await mkdtemp(join(tmpdir(), "mirrorlog-nats-cluster-"));
  const ports = [await pickFreePort(), await pickFreePort(), await pickFreePort()];
  const routes = [await pickFreePort(), await pickFreePort(), await pickFreePort()];
  const nodes: NatsNode[] = [];
  for (let i = 0; i < 3; i++) {
    const config = join(dir, `n${i}.conf`);
    await writeFile(
      config,
      [
        `server_name: n${i}`,
        `listen: 127.0.0.1:${ports[i]}`,
        `jetstream { store_dir: "${join(dir, `store${i}`)}" }`,
        "cluster {",
        "  name: mirrorlog-test",
        `  listen: 127.0.0.1:${routes[i]}`,
        `  routes: [${routes
          .filter((_, j) => j !== i)
          .map((p) => `nats-route://127.0.0.1:${p}`)
          .join(", ")}]`,
        "}",
        "",
      ].join("\n"),
    );
    nodes.push(startNode(["-c", config], ports[i]!));
  }
  const server: NatsTestServer = {
    nodes,
    url: nodes.map((n) => n.url).join(","),
    dir,
    stop: async () => {
      for (const node of nodes) await node.kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    for (const node of nodes) {
      await waitFor(`cluster node on port ${node.port}`, deadlineMs, () => node.log().includes("Server is ready"));
    }
    for (const node of nodes) await waitForJetStream(node.url, deadlineMs);
  } catch (error) {
    const logs = nodes.map((n, i) => `--- n${i}\n${n.log()}`).join("\n");
    await server.stop();
    throw new Error(`${(error as Error).message}; logs:\n${logs}`);
  }
  return server;
}
