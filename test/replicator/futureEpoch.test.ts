// A target that believes it is on a later epoch of the source's log than the log has reached (found by the
// transport fault suite: a bit flipped in a hello's epoch still parsed, and the target saved it) refused
// every later session as "stale-epoch", forever. The refusal now says where the target stands, and the
// source starts a new epoch beyond it, re-establishing from the target's manifest.
import { describe, expect, it } from "vitest";
import { OperationLog } from "../../src/events/operationLog.js";
import { PROTOCOL_VERSION } from "../../src/events/protocol.js";
import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { ReplicatorSource } from "../../src/replicator/source.js";
import { ReplicatorTarget } from "../../src/replicator/target.js";

describe("a target on a later epoch than the source's log", () => {
  it("is re-established with a newer epoch instead of refusing every session", () => {
    const sourceFs = new MemoryFileSystem();
    sourceFs.makeDirs("/src/d");
    sourceFs.writeFile("/src/d/f", "one");
    const targetFs = new MemoryFileSystem();
    targetFs.makeDirs("/dst");
    const target = new ReplicatorTarget(targetFs, "/dst", { canSetOwner: false });
    const log = new OperationLog();
    new ReplicatorSource(sourceFs, "/src", (r) => target.handleRequest(r), { log }).close();
    expect(log.lastPosition().epoch).toBe(1);

    // The damaged hello: this log, an epoch it never started.
    const damaged = target.handleRequest({ type: "hello", version: PROTOCOL_VERSION, logId: log.logId, epoch: 6 });
    expect(damaged).toMatchObject({ type: "hello" });
    expect(target.appliedPosition()).toMatchObject({ epoch: 6, seq: 0 });

    sourceFs.writeFile("/src/d/f", "two");
    sourceFs.writeFile("/src/g", "new");
    new ReplicatorSource(sourceFs, "/src", (r) => target.handleRequest(r), { log }).close();
    expect(log.lastPosition().epoch).toBe(7);
    expect(log.epochs().at(-1)?.reason).toMatch(/target is on epoch 6, beyond the log's 1/);
    expect(targetFs.debugString("/dst").replace(/^\/dst/, "")).toBe(sourceFs.debugString("/src").replace(/^\/src/, ""));
  });
});
