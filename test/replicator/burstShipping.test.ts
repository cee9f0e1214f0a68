// A watch burst ships in parts (HINT_BATCH_ENTRIES), and its planning lets each part's answer in while the
// rest is planned: over a pipe, a part written while the source plans on synchronously reaches the target
// only when the source next yields. The bench's 1,000-file burst left the target idle until all of it was
// planned (the source planned ≈ 300 ms, then the target applied for ≈ 200 ms).
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { OperationLog } from "../../src/events/operationLog.js";
import type { Request, Response } from "../../src/events/protocol.js";
import { FileSystemEventType } from "../../src/fs/fileSystem.js";
import { NodeFileSystem } from "../../src/fs/nodeFileSystem.js";
import { SourceSession } from "../../src/replicator/sourceSession.js";
import { StreamingSource } from "../../src/replicator/streamingSource.js";
import { localPair } from "../support/localPair.js";
import { compareTrees, formatDifferences } from "../support/treeOracle.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A source file system that counts the files it reads. */
class CountingReads extends NodeFileSystem {
  reads = 0;
  override readFile(path: string): Uint8Array {
    this.reads++;
    return super.readFile(path);
  }
}

it("a burst's first part is answered while the rest of it is planned", async () => {
  const { src, dst, answer } = localPair("mirrorlog-burst-parts-", dirs);
  const fs = new CountingReads({ root: src, onProblem: () => {} });
  /** Files the source had read when each apply was answered. */
  const answeredAt: number[] = [];
  const connection = {
    request: async (request: Request): Promise<Response> => {
      const response = answer(request);
      if (request.type !== "apply") return response;
      // An answer comes through the event loop, as one from a pipe does.
      await new Promise((resolve) => setImmediate(resolve));
      answeredAt.push(fs.reads);
      return response;
    },
  };
  const source = new StreamingSource(new SourceSession({ fs, root: src, log: new OperationLog() }), connection);
  await source.establish();

  const files = 1_000;
  const paths = Array.from({ length: files }, (_, i) => join(src, `f${String(i).padStart(4, "0")}`));
  for (const path of paths) writeFileSync(path, `burst file ${path}\n`);
  fs.reads = 0;
  answeredAt.length = 0;
  for (const path of paths) source.hint({ path, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
  await source.idle();

  expect(fs.reads).toBe(files);
  // Shipped in parts, the first answered long before the last file was read.
  expect(answeredAt.length).toBeGreaterThan(1);
  expect(answeredAt[0]).toBeLessThan(files / 2);
  const differences = compareTrees(src, dst);
  expect(differences, formatDifferences(differences)).toEqual([]);
});
