// Live fan-out end to end: `publish --watch` follows SRC while `subscribe --watch` follows the stream; each
// kind of change made in SRC (create, modify, delete, rename) must reach DST through both watchers alone
// (no one-shot publish runs here), and both stop cleanly on SIGTERM with the consumer at the stream's end.
import { appendFileSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeWorkspace } from "../support/cliRunner.js";
import { type NatsTestServer, startNatsServer } from "../support/natsServer.js";
import { compareTrees, findTempFiles, formatDifferences } from "../support/treeOracle.js";
import {
  bytesOf,
  run,
  seeded,
  startPublisher,
  startSubscriber,
  stopChild,
  type WatchingChild,
  waitForMirror,
  waitForOutput,
  writeTree,
} from "./support.js";

let server: NatsTestServer;
const created: string[] = [];
const children: WatchingChild[] = [];

beforeAll(async () => {
  server = await startNatsServer();
});

afterAll(async () => {
  // A failed assertion leaves the watchers running: they must not outlive the test.
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await server?.stop();
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

describe("publish --watch and subscribe --watch", () => {
  it("carries creates, modifications, deletes and renames live, then both stop cleanly on SIGTERM", async () => {
    const ws = makeWorkspace("fanout-live", created);
    const url = `${server.url}/live`;
    const random = seeded(31);
    writeTree(ws.src, random, 60);
    const dst = join(ws.base, "dst");

    const publisher = startPublisher(ws.src, url, ws.env);
    children.push(publisher);
    // "watching" is printed once the initial tree is published and the watches are in place.
    await waitForOutput(publisher, /mirrorlog publish: watching /);
    const subscriber = startSubscriber(url, dst, ws.env);
    children.push(subscriber);
    await waitForMirror(ws.src, dst);

    // Create: a file in an existing directory, and a new directory holding a file.
    writeFileSync(join(ws.src, "d0", "created.txt"), bytesOf(random, 3000));
    mkdirSync(join(ws.src, "fresh", "deeper"), { recursive: true });
    writeFileSync(join(ws.src, "fresh", "deeper", "inside.bin"), bytesOf(random, 40_000));
    await waitForMirror(ws.src, dst);

    // Modify: a rewrite with a new size, an append, 64 bytes in the middle of the 5 MiB file.
    writeFileSync(join(ws.src, "d1", "e1", "f1.txt"), bytesOf(random, 1234));
    appendFileSync(join(ws.src, "d2", "e2", "f2.txt"), bytesOf(random, 300));
    writeFileSync(join(ws.src, "big.bin"), bytesOf(random, 64), { flag: "r+" });
    await waitForMirror(ws.src, dst);

    // Delete: a file, and a whole directory with its files.
    rmSync(join(ws.src, "d3", "e0", "f3.txt"));
    rmSync(join(ws.src, "d4"), { recursive: true });
    await waitForMirror(ws.src, dst);

    // Rename: a file within its directory, a file into another directory, a directory with its content.
    renameSync(join(ws.src, "d5", "e2", "f5.txt"), join(ws.src, "d5", "e2", "renamed.txt"));
    renameSync(join(ws.src, "d0", "created.txt"), join(ws.src, "fresh", "moved.txt"));
    renameSync(join(ws.src, "d6"), join(ws.src, "d6-renamed"));
    await waitForMirror(ws.src, dst);

    expect(formatDifferences(compareTrees(ws.src, dst, { mtimes: true }))).toBe("(trees are equal)");
    expect(findTempFiles(dst)).toEqual([]);

    // SIGTERM ends both with exit 0 (the publisher after its final snapshot, the subscriber after its last ack).
    expect(await stopChild(subscriber), subscriber.output()).toBe(0);
    expect(await stopChild(publisher), publisher.output()).toBe(0);
    expect(publisher.signalCode).toBeNull();
    expect(subscriber.signalCode).toBeNull();
    expect(publisher.output()).toMatch(/^published \d+ operations to /m);
    expect(subscriber.output()).toMatch(/follows .* at \d+, \d+ operations applied/);

    // What the watchers did is durable: the consumer stands at the stream's end, nothing left to apply.
    const status = JSON.parse((await run(["status", "--json", url], ws.env)).stdout);
    expect(status.subscribers).toHaveLength(1);
    expect(status.subscribers[0].position).toBe(status.stream.lastSeq);
    expect(status.subscribers[0].lagOperations).toBe(0);
  }, 60_000);
});
