// A whole-tree walk asks for the listing of a directory whose digest differs as soon as it compares it,
// and reads on while that listing is on its way; it never waits at a directory for a listing it could have
// asked for earlier. Here each listing is answered only once the walk has read a few more directories
// (a busy target): a walk that stopped at a directory to ask for its listing there would wait forever.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { DEFAULT_LIMITS } from "../../src/events/limits.js";
import { OperationLog } from "../../src/events/operationLog.js";
import { type Request, type Response, ResponseSchema } from "../../src/events/protocol.js";
import { NodeFileSystem } from "../../src/fs/nodeFileSystem.js";
import { SourceSession } from "../../src/replicator/sourceSession.js";
import { StreamingSource } from "../../src/replicator/streamingSource.js";
import { ReplicatorTarget } from "../../src/replicator/target.js";
import { CountedListing, localPair } from "../support/localPair.js";
import { compareTrees, formatDifferences } from "../support/treeOracle.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** How many more directories the walk must read before a listing it asked for is answered. */
const READ_ON = 8;

it("asks for a differing listing when it compares the digest, and reads on meanwhile", async () => {
  const { src, dst } = localPair("mirrorlog-ahead-", dirs);
  const count = 60;
  const name = (d: number) => `d${String(d).padStart(2, "0")}`;
  for (let d = 0; d < count; d++) {
    mkdirSync(join(src, name(d)));
    writeFileSync(join(src, name(d), "f"), `file ${d}\n`);
  }
  // Small pages: digests arrive a few at a time while the walk plans.
  const target = new ReplicatorTarget(new NodeFileSystem({ root: dst, onProblem: () => {} }), dst, {
    limits: { ...DEFAULT_LIMITS, manifestPageEntries: 2 },
  });
  const fs = new CountedListing({ root: src, onProblem: () => {} });
  const held: { until: number; release: () => void }[] = [];
  let listingsAsked = 0;
  const releaseDue = () => {
    for (const entry of held.splice(0)) {
      if (fs.listings >= entry.until || fs.listings >= count + 1) entry.release();
      else held.push(entry);
    }
  };
  const connection = {
    request: async (request: Request): Promise<Response> => {
      releaseDue();
      const response = ResponseSchema.parse(target.handleRequest(structuredClone(request)));
      if (request.type !== "listing") return response;
      listingsAsked++;
      return new Promise((resolve) => {
        held.push({ until: fs.listings + READ_ON, release: () => resolve(response) });
      });
    },
  };
  const timer = setInterval(releaseDue, 1);
  /** Rejects once the walk has read nothing for 2 s while a listing is held: it waits for one it asked for late. */
  let check: NodeJS.Timeout | undefined;
  const stalled = () =>
    new Promise<never>((_, reject) => {
      let seen = -1;
      let since = performance.now();
      check = setInterval(() => {
        if (fs.listings !== seen || held.length === 0) [seen, since] = [fs.listings, performance.now()];
        else if (performance.now() - since > 2_000) {
          clearInterval(check);
          reject(
            new Error(`the walk stopped after ${seen} directories, waiting for a listing it asked for only there`),
          );
        }
      }, 10);
    });
  try {
    const source = new StreamingSource(
      new SourceSession({ fs, root: src, log: new OperationLog(), oneShot: true }),
      connection,
    );
    await source.establish();
    // Consecutive directories change: each one's digest differs from what the target states.
    for (let d = 20; d < 30; d++) writeFileSync(join(src, name(d), "f"), `changed ${d}\n`);
    fs.listings = 0;
    listingsAsked = 0;
    const next = new StreamingSource(
      new SourceSession({ fs, root: src, log: new OperationLog(), oneShot: true }),
      connection,
    );
    await Promise.race([next.establish(), stalled()]);
  } finally {
    clearInterval(timer);
    clearInterval(check);
  }
  expect(listingsAsked).toBeGreaterThanOrEqual(10);
  const differences = compareTrees(src, dst, { mtimes: true });
  expect(differences, formatDifferences(differences)).toEqual([]);
});
