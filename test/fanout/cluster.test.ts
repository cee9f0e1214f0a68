// A 3-node JetStream cluster on loopback with an R3 stream and bucket: one node is killed with SIGKILL
// while the publisher writes, the publish still completes, and a subscriber gets everything.
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeWorkspace, mirrorlogArgs } from "../support/cliRunner.js";
import { type NatsTestServer, startNatsCluster } from "../support/natsServer.js";
import { compareTrees } from "../support/treeOracle.js";
import { mutate, seeded, startSubscriber, stopChild, waitForMirror, writeTree } from "./support.js";

let cluster: NatsTestServer;
const created: string[] = [];

beforeAll(async () => {
  cluster = await startNatsCluster();
}, 40_000);

afterAll(async () => {
  await cluster?.stop();
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

describe("fan-out on a 3-node cluster", () => {
  it("loses nothing when a node is killed while a publisher writes", async () => {
    const ws = makeWorkspace("fanout-cluster", created);
    const [first, second] = cluster.nodes as [(typeof cluster.nodes)[0], (typeof cluster.nodes)[0]];
    const url = `${first.url}/replicated`;
    writeTree(ws.src, seeded(21), 1500);
    // A live publisher: it is still writing when the node dies, however fast the first pass goes.
    const publisher = spawn(process.execPath, mirrorlogArgs(["publish", "--watch", "--replicas", "3", ws.src, url]), {
      env: ws.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    publisher.stdout.on("data", (d: Buffer) => {
      output += d.toString();
    });
    publisher.stderr.on("data", (d: Buffer) => {
      output += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => publisher.once("exit", (code) => resolve(code)));

    // Once chunks are flowing into the R3 bucket (operations follow them), the second node dies.
    const nc = await connect({ servers: first.url });
    const jsm = await jetstreamManager(nc);
    const deadline = performance.now() + 30_000;
    for (;;) {
      const messages = await jsm.streams
        .info("KV_mirrorlog_replicated")
        .then((info) => info.state.messages)
        .catch(() => 0);
      if (messages > 200) break;
      if (publisher.exitCode !== null) throw new Error(`the publisher exited:\n${output}`);
      if (performance.now() > deadline) throw new Error(`the publish never started:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await second.kill();
    await nc.close();
    expect(publisher.exitCode, output).toBeNull();

    // Changes made while the node is down reach the stream as well, and a subscriber gets everything.
    mutate(ws.src, seeded(22), 60);
    const dst = join(ws.base, "dst");
    const subscriber = startSubscriber(url, dst, ws.env);
    try {
      await waitForMirror(ws.src, dst, 60_000).catch((error: Error) => {
        throw new Error(`${error.message}\npublisher:\n${output}\nsubscriber:\n${subscriber.output()}`);
      });
    } finally {
      publisher.kill("SIGTERM");
      await stopChild(subscriber);
    }
    expect(await exited, output).toBe(0);
    expect(compareTrees(ws.src, dst, { mtimes: true })).toEqual([]);
  }, 120_000);
});
