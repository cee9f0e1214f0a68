// One source, three targets through a real nats-server: publish a tree, subscribers A and B follow live,
// B is stopped and restarted mid-way, C joins late (from a snapshot), bursts of random changes are
// published, and every target ends byte for byte equal to the source with its consumer at the stream's end.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeWorkspace } from "../support/cliRunner.js";
import { type NatsTestServer, startNatsServer } from "../support/natsServer.js";
import { compareTrees, findTempFiles, formatDifferences } from "../support/treeOracle.js";
import { mutate, run, seeded, startSubscriber, stopChild, waitForMirror, writeTree } from "./support.js";

let server: NatsTestServer;
const created: string[] = [];

beforeAll(async () => {
  server = await startNatsServer();
});

afterAll(async () => {
  await server?.stop();
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

describe("publish and subscribe through JetStream", () => {
  it("keeps three subscribers (one late, one restarted) exact through bursts of changes", async () => {
    const ws = makeWorkspace("fanout", created);
    const url = `${server.url}/tree1`;
    const random = seeded(12);
    writeTree(ws.src, random, 300);
    const first = JSON.parse((await run(["publish", "--json", ws.src, url], ws.env)).stdout);
    expect(first.operationsPublished).toBeGreaterThan(300);
    expect(first.snapshotSeq).toBe(first.streamSeq);

    const [a, b, c] = ["a", "b", "c"].map((n) => join(ws.base, n)) as [string, string, string];
    const subscriberA = startSubscriber(url, a, ws.env);
    let subscriberB = startSubscriber(url, b, ws.env);
    try {
      await waitForMirror(ws.src, a);
      await waitForMirror(ws.src, b);

      // B goes away; the source changes twice while it is gone.
      expect(await stopChild(subscriberB)).toBe(0);
      mutate(ws.src, random, 40);
      await run(["publish", ws.src, url], ws.env);
      await waitForMirror(ws.src, a);
      mutate(ws.src, random, 40);
      await run(["publish", ws.src, url], ws.env);

      // C joins late (its consumer starts from the snapshot), B comes back and resumes from its cursor.
      const late = JSON.parse((await run(["subscribe", "--json", url, c], ws.env)).stdout);
      expect(late.bootstrappedFrom).toBeGreaterThan(0);
      subscriberB = startSubscriber(url, b, ws.env);
      await waitForMirror(ws.src, b);

      mutate(ws.src, random, 60);
      const last = JSON.parse((await run(["publish", "--json", ws.src, url], ws.env)).stdout);
      await run(["subscribe", url, c], ws.env);
      await waitForMirror(ws.src, a);
      await waitForMirror(ws.src, b);
      await waitForMirror(ws.src, c);
      for (const dst of [a, b, c]) {
        expect(formatDifferences(compareTrees(ws.src, dst, { mtimes: true }))).toBe("(trees are equal)");
        expect(findTempFiles(dst)).toEqual([]);
      }

      // Every consumer stands at the end of the stream, with nothing left to apply.
      const status = JSON.parse((await run(["status", "--json", url], ws.env)).stdout);
      expect(status.stream.lastSeq).toBe(last.streamSeq);
      expect(status.subscribers).toHaveLength(3);
      for (const subscriber of status.subscribers) {
        expect(subscriber.position).toBe(last.streamSeq);
        expect(subscriber.lagOperations).toBe(0);
        expect(subscriber.lastSeen).not.toBeNull();
      }
    } finally {
      expect(await stopChild(subscriberA)).toBe(0);
      expect(await stopChild(subscriberB)).toBe(0);
    }
  }, 120_000);

  it("uploads each chunk once: an unchanged re-publish uploads no content, an edit only its new chunks", async () => {
    const ws = makeWorkspace("fanout-bytes", created);
    const url = `${server.url}/bytes`;
    const random = seeded(5);
    writeTree(ws.src, random, 50);
    const first = JSON.parse((await run(["publish", "--json", ws.src, url], ws.env)).stdout);
    // Compressed chunks plus the operations: about the content's size, never a multiple of it.
    expect(first.chunkBytesPut).toBeLessThanOrEqual(first.contentBytes * 1.01);
    const again = JSON.parse((await run(["publish", "--json", ws.src, url], ws.env)).stdout);
    expect(again.operationsPublished).toBe(0);
    expect(again.chunkBytesPut).toBe(0);
    // 64 bytes changed in the middle of a 5 MiB file: one or two chunks of about 8 KiB travel.
    mutate(ws.src, () => 0.99, 1);
    const edit = JSON.parse((await run(["publish", "--json", ws.src, url], ws.env)).stdout);
    expect(edit.operationsPublished).toBeGreaterThan(0);
    expect(edit.chunkBytesPut).toBeLessThan(100_000);
    const dst = join(ws.base, "dst");
    const sub = JSON.parse((await run(["subscribe", "--json", url, dst], ws.env)).stdout);
    expect(sub.problems).toEqual([]);
    expect(compareTrees(ws.src, dst, { mtimes: true })).toEqual([]);
  }, 60_000);
});
