// A whole-tree pass ships what it planned once the oldest planned operation has waited a little
// (BUFFER_MAX_AGE_MS), not only once a full request's worth is planned: a few files changed early in a
// long walk are applied while the walk goes on (bench `modified`), and the pass still mirrors exactly.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { OperationLog } from "../../src/events/operationLog.js";
import type { Request, Response } from "../../src/events/protocol.js";
import type { DirEntryStat } from "../../src/fs/fileSystem.js";
import { SourceSession } from "../../src/replicator/sourceSession.js";
import { StreamingSource } from "../../src/replicator/streamingSource.js";
import { CountedListing, localPair } from "../support/localPair.js";
import { compareTrees, formatDifferences } from "../support/treeOracle.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A source file system whose listings take 2 ms each (a slow disk), counting them. */
class SlowListing extends CountedListing {
  override listDirStats(path: string): DirEntryStat[] {
    const until = performance.now() + 2;
    while (performance.now() < until) {
      // A listing of a slow disk.
    }
    return super.listDirStats(path);
  }
}

it("ships a change found early in a long walk before the walk is over", async () => {
  const { src, dst, answer } = localPair("mirrorlog-early-", dirs);
  const count = 200;
  for (let d = 0; d < count; d++) {
    mkdirSync(join(src, `d${String(d).padStart(3, "0")}`), { recursive: true });
    writeFileSync(join(src, `d${String(d).padStart(3, "0")}`, "f"), `file ${d}\n`);
  }
  const fs = new SlowListing({ root: src, onProblem: () => {} });
  /** Listings made when each apply request went out. */
  const appliedAt: number[] = [];
  const connection = {
    request: async (request: Request): Promise<Response> => {
      if (request.type === "apply") appliedAt.push(fs.listings);
      return answer(request);
    },
  };
  const source = new StreamingSource(new SourceSession({ fs, root: src, log: new OperationLog() }), connection);
  await source.establish();

  // The first directory in walk order changes; the other 199 are as mirrored.
  writeFileSync(join(src, "d000", "f"), "changed\n");
  appliedAt.length = 0;
  fs.listings = 0;
  await source.establish();
  expect(fs.listings).toBeGreaterThan(count);
  // Sent after a few listings (50 ms of a 400 ms walk), not when every directory had been read.
  expect(appliedAt.length).toBeGreaterThan(0);
  expect(appliedAt[0]).toBeLessThan(count / 2);
  const differences = compareTrees(src, dst, { mtimes: true });
  expect(differences, formatDifferences(differences)).toEqual([]);
});
