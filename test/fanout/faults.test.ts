// Faults of the fan-out against a real nats-server: hostile messages on the stream are refused by the
// subscriber's target as `serve` refuses them, and a subscriber killed with SIGKILL mid-apply resumes
// from its cursor with no torn or leftover file.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { pack } from "msgpackr";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROTOCOL_VERSION } from "../../src/events/protocol.js";
import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { ReplicatorTarget } from "../../src/replicator/target.js";
import { makeWorkspace, mirrorlogArgs } from "../support/cliRunner.js";
import { type NatsTestServer, startNatsServer } from "../support/natsServer.js";
import { compareTrees, findTempFiles } from "../support/treeOracle.js";
import { run, seeded, writeTree } from "./support.js";

let server: NatsTestServer;
const created: string[] = [];

beforeAll(async () => {
  server = await startNatsServer();
});

afterAll(async () => {
  await server?.stop();
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** Appends raw messages to fan-out `name`'s stream, as a hostile publisher would. */
async function inject(name: string, operations: { operation: unknown; chunk?: Uint8Array }[]): Promise<void> {
  const nc = await connect({ servers: server.url });
  try {
    const js = jetstream(nc);
    const kv = await new Kvm(nc).open(`mirrorlog_${name}`);
    let seq = 1_000_000;
    for (const { operation, chunk } of operations) {
      const message: Record<string, unknown> = {
        v: 1,
        logId: "0123456789abcdef",
        epoch: 1,
        seq: seq++,
        loggedAt: Date.now(),
        operation,
      };
      if (chunk !== undefined) {
        await kv.put(`c.${sha256(chunk)}`, new Uint8Array([0, ...chunk]));
        message.recipe = { chunks: [[sha256(chunk), chunk.length]] };
      }
      await js.publish(`mirrorlog.${name}.ops`, pack(message));
    }
  } finally {
    await nc.close();
  }
}

describe("fan-out faults", () => {
  it("refuses a path escaping the root and a bad hash exactly as serve's target does, and goes on", async () => {
    const ws = makeWorkspace("fanout-hostile", created);
    const url = `${server.url}/hostile`;
    writeTree(ws.src, seeded(3), 20);
    await run(["publish", ws.src, url], ws.env);
    const dst = join(ws.base, "dst");
    await run(["subscribe", url, dst], ws.env);

    const real = new TextEncoder().encode("the real bytes\n");
    const escaping = { type: "writeFile", path: "../escaped.txt", hash: sha256(real), size: real.length };
    const lie = {
      type: "writeFile",
      path: "bad.txt",
      hash: sha256(new TextEncoder().encode("other")),
      size: real.length,
    };
    await inject("hostile", [
      { operation: escaping, chunk: real },
      { operation: lie, chunk: real },
      { operation: { type: "ensureDir", path: "after-hostile", mode: 0o755 } },
    ]);
    const result = await run(["subscribe", "--json", url, dst], ws.env, 1);
    const summary = JSON.parse(result.stdout);
    const reasons = summary.problems.map((p: { path: string; reason: string }) => `${p.path}: ${p.reason}`).join("\n");

    // What serve's target answers to the same operations (in memory: the refusals do not depend on the disk).
    const target = new ReplicatorTarget(new MemoryFileSystem(), "/t");
    target.handleRequest({ type: "hello", version: PROTOCOL_VERSION, logId: "0123456789abcdef", epoch: 1 });
    const refusal = target.handleRequest({
      type: "apply",
      logId: "0123456789abcdef",
      epoch: 1,
      entries: [{ seq: 1, operation: escaping }],
    });
    expect(refusal.type).toBe("error");
    const mismatch = target.handleRequest({
      type: "apply",
      logId: "0123456789abcdef",
      epoch: 1,
      entries: [{ seq: 1, operation: lie, content: { kind: "inline", encoding: "raw", data: real } }],
    });
    expect(mismatch.type === "applied" && mismatch.results[0]?.code).toBe("hash-mismatch");

    expect(reasons).toContain(`../escaped.txt: refused: ${(refusal as { code: string }).code}`);
    expect(reasons).toContain("bad.txt: hash-mismatch");
    expect(summary.problems).toHaveLength(2);
    expect(existsSync(join(ws.base, "escaped.txt"))).toBe(false);
    expect(existsSync(join(dst, "bad.txt"))).toBe(false);
    // The message after them was applied, and the cursor moved past all three.
    expect(existsSync(join(dst, "after-hostile"))).toBe(true);
    const status = JSON.parse((await run(["status", "--json", url], ws.env)).stdout);
    expect(status.subscribers[0].position).toBe(status.stream.lastSeq);
  }, 60_000);

  it("a subscriber killed with SIGKILL mid-apply resumes from its cursor: no torn or leftover file", async () => {
    const ws = makeWorkspace("fanout-kill", created);
    const url = `${server.url}/kill`;
    writeTree(ws.src, seeded(9), 1500);
    await run(["publish", ws.src, url], ws.env);
    const dst = join(ws.base, "dst");
    // The first run bootstraps; a second publish gives the consumer a tail to be killed in.
    await run(["subscribe", url, dst], ws.env);
    writeTree(join(ws.src, "more"), seeded(10), 1500);
    await run(["publish", ws.src, url], ws.env);

    const child = spawn(process.execPath, mirrorlogArgs(["subscribe", url, dst]), { env: ws.env, stdio: "ignore" });
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    const deadline = performance.now() + 30_000;
    const count = (dir: string): number => (existsSync(dir) ? readdirSync(dir, { recursive: true }).length : 0);
    // Killed once part of the tail is on disk (polled, never slept on).
    while (count(join(dst, "more")) < 200 && child.exitCode === null) {
      if (performance.now() > deadline) throw new Error("the subscriber never started applying");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    child.kill("SIGKILL");
    await exited;
    expect(child.signalCode).toBe("SIGKILL"); // killed mid-run, not finished

    const resumed = JSON.parse((await run(["subscribe", "--json", url, dst], ws.env)).stdout);
    expect(resumed.bootstrappedFrom).toBeNull();
    expect(compareTrees(ws.src, dst, { mtimes: true })).toEqual([]);
    expect(findTempFiles(dst)).toEqual([]);
  }, 90_000);
});
