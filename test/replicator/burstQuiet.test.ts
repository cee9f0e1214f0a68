// Watch bursts (StreamingSourceOptions.burstQuiet, on in `watch`): a batch of many hints waits until the
// hints stop for a while, so a `git checkout` writes alone and is replicated after it (bench `checkout`);
// a small batch ships at once (live latency), and a source that never goes quiet still ships after the
// longest wait.
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { OperationLog } from "../../src/events/operationLog.js";
import type { Request, Response } from "../../src/events/protocol.js";
import { FileSystemEventType } from "../../src/fs/fileSystem.js";
import { NodeFileSystem } from "../../src/fs/nodeFileSystem.js";
import { SourceSession } from "../../src/replicator/sourceSession.js";
import { StreamingSource, type StreamingSourceOptions } from "../../src/replicator/streamingSource.js";
import { pollUntil } from "../support/cliRunner.js";
import { localPair } from "../support/localPair.js";
import { compareTrees, formatDifferences } from "../support/treeOracle.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const BURST: StreamingSourceOptions["burstQuiet"] = { hints: 8, quietMs: 300, maxWaitMs: 1_200 };

/** A mirrored pair whose source ships through `burstQuiet`; `writes` are the times apply requests went out. */
async function mirroredPair() {
  const { src, dst, answer } = localPair("mirrorlog-burst-", dirs);
  const writes: number[] = [];
  const connection = {
    request: async (request: Request): Promise<Response> => {
      if (request.type === "apply") writes.push(performance.now());
      return answer(request);
    },
  };
  const fs = new NodeFileSystem({ root: src, onProblem: () => {} });
  const session = new SourceSession({ fs, root: src, log: new OperationLog() });
  const source = new StreamingSource(session, connection, { burstQuiet: BURST });
  await source.establish();
  writes.length = 0;
  let count = 0;
  /** Writes one new file and hints it, as the watch would. */
  const change = () => {
    const path = join(src, `f${count++}`);
    writeFileSync(path, `file ${count}\n`);
    source.hint({ path, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
  };
  const expectMirrored = async () => {
    await source.idle();
    const differences = compareTrees(src, dst);
    expect(differences, formatDifferences(differences)).toEqual([]);
  };
  return { change, writes, expectMirrored };
}

/** Calls `change` every `everyMs` until `forMs` have passed; resolves with the time of the last call. */
function keepChanging(change: () => void, everyMs: number, forMs: number): Promise<number> {
  const started = performance.now();
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      change();
      if (performance.now() - started >= forMs) {
        clearInterval(timer);
        resolve(performance.now());
      }
    }, everyMs);
  });
}

describe("watch bursts wait for quiet", () => {
  it("a small batch ships at once", async () => {
    const pair = await mirroredPair();
    const changed = performance.now();
    pair.change();
    await pollUntil(() => pair.writes.length > 0, { deadlineMs: 5_000 });
    expect(pair.writes[0]! - changed).toBeLessThan(BURST!.quietMs);
    await pair.expectMirrored();
  });

  it("a burst ships only once its hints have stopped for quietMs, in one go", async () => {
    const pair = await mirroredPair();
    for (let i = 0; i < BURST!.hints; i++) pair.change();
    // More hints keep coming, each well within quietMs of the one before, for less than maxWaitMs.
    const lastChange = await keepChanging(pair.change, 20, BURST!.maxWaitMs / 2);
    expect(pair.writes).toEqual([]);
    await pollUntil(() => pair.writes.length > 0, { deadlineMs: 5_000 });
    expect(pair.writes[0]! - lastChange).toBeGreaterThanOrEqual(BURST!.quietMs - 20);
    await pair.expectMirrored();
    expect(pair.writes).toHaveLength(1);
  });

  it("a source that never goes quiet still ships after maxWaitMs", async () => {
    const pair = await mirroredPair();
    for (let i = 0; i < BURST!.hints; i++) pair.change();
    const lastChange = await keepChanging(pair.change, 20, 3 * BURST!.maxWaitMs);
    expect(pair.writes.length).toBeGreaterThan(0);
    expect(pair.writes[0]!).toBeLessThan(lastChange);
    await pair.expectMirrored();
  });
});
