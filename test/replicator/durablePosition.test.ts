// A target answers requests once applied and makes them durable later (one flush per interval, per pass
// and at the end). A target that dies after answering, before its durable position advanced, loses
// nothing: it comes back at its durable position, the source replays its log from there, and the mirror
// is exact again. Simulated as a power loss: the target directory goes back to what it held at the last
// flush, files written since then come back torn under their final names, and the state file keeps only
// what was committed.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { OperationLog } from "../../src/events/operationLog.js";
import { PROTOCOL_VERSION, type Request, type Response, ResponseSchema } from "../../src/events/protocol.js";
import { StateStore } from "../../src/events/stateStore.js";
import { FileSystemEventType } from "../../src/fs/fileSystem.js";
import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { NodeFileSystem } from "../../src/fs/nodeFileSystem.js";
import { SourceSession } from "../../src/replicator/sourceSession.js";
import { StreamingSource } from "../../src/replicator/streamingSource.js";
import { ReplicatorTarget } from "../../src/replicator/target.js";
import { compareTrees, formatDifferences } from "../support/treeOracle.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A real disk whose every flush also copies the target directory aside: what a power loss would keep. */
class SnapshottingFileSystem extends NodeFileSystem {
  flushes = 0;
  constructor(
    private readonly dst: string,
    private readonly snapshot: string,
  ) {
    super({ root: dst, durability: "batched", onProblem: () => {} });
  }
  override flush(): void {
    super.flush();
    this.flushes++;
    rmSync(this.snapshot, { recursive: true, force: true });
    execFileSync("cp", ["-a", this.dst, this.snapshot]);
  }
}

/** Every regular file below `dir`, by relative path, with its bytes. */
function filesBelow(dir: string, prefix = ""): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const entry of readdirSync(join(dir, prefix), { withFileTypes: true })) {
    const path = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isDirectory()) for (const [p, b] of filesBelow(dir, path)) files.set(p, b);
    else if (entry.isFile()) files.set(path, readFileSync(join(dir, path)));
  }
  return files;
}

describe("deferred durability", () => {
  it("a target that dies after answering, before its durable position advanced, loses nothing once the source reconnects", async () => {
    const base = mkdtempSync(join(tmpdir(), "mirrorlog-durable-"));
    dirs.push(base);
    const src = join(base, "src");
    const dst = join(base, "dst");
    const snapshot = join(base, "at-last-flush");
    const statePath = join(base, "target.sqlite");
    for (let d = 0; d < 5; d++) {
      mkdirSync(join(src, `d${d}`), { recursive: true });
      for (let f = 0; f < 10; f++)
        writeFileSync(join(src, `d${d}`, `f${f}`), `version one of d${d}/f${f}\n`.repeat(f + 1));
    }
    mkdirSync(dst);

    const clock = { now: 0 };
    const targetOn = (fs: NodeFileSystem, state: StateStore) =>
      new ReplicatorTarget(fs, dst, {
        positionStore: state,
        index: state,
        flushIntervalMs: 60_000,
        now: () => clock.now,
      });
    const firstFs = new SnapshottingFileSystem(dst, snapshot);
    const firstState = new StateStore(statePath);
    let target = targetOn(firstFs, firstState);
    const sent: Request[] = [];
    const connection = {
      request: async (request: Request): Promise<Response> => {
        sent.push(request);
        return ResponseSchema.parse(target.handleRequest(structuredClone(request)));
      },
    };
    const sourceFs = new NodeFileSystem({ root: src, onProblem: () => {} });
    const session = new SourceSession({ fs: sourceFs, root: src, log: new OperationLog(), now: () => clock.now });
    const source = new StreamingSource(session, connection);

    // The whole-tree pass ends with a durable release: one flush, the position saved.
    await source.establish();
    const afterPass = target.durablePosition();
    expect(afterPass).toEqual(target.appliedPosition());
    expect(firstFs.flushes).toBeGreaterThanOrEqual(1);
    expect(formatDifferences(compareTrees(src, dst))).toBe("(trees are equal)");
    const flushesAfterPass = firstFs.flushes;

    // A burst of changes shipped as a watch would: answered, but not flushed (the interval has not passed).
    for (let f = 0; f < 10; f++)
      writeFileSync(join(src, "d0", `f${f}`), `version two of d0/f${f}, longer than before\n`);
    for (let f = 0; f < 10; f++) writeFileSync(join(src, "d1", `new${f}`), `new file ${f}\n`.repeat(20));
    rmSync(join(src, "d2"), { recursive: true });
    mkdirSync(join(src, "d5"));
    writeFileSync(join(src, "d5", "late"), "late\n");
    for (const dir of ["d0", "d1", "d2", "d5"]) {
      source.hint({ path: join(src, dir), eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
    }
    await source.idle();
    expect(formatDifferences(compareTrees(src, dst))).toBe("(trees are equal)");
    expect(firstFs.flushes).toBe(flushesAfterPass);
    const answered = target.appliedPosition()!;
    expect(answered.seq).toBeGreaterThan(afterPass!.seq);
    expect(target.durablePosition()).toEqual(afterPass);

    // Power loss: the disk holds what it held at the last flush, except that files renamed since then
    // came back torn (their names durable, half their bytes not); the state file holds what was committed.
    const live = filesBelow(dst);
    rmSync(dst, { recursive: true });
    execFileSync("cp", ["-a", snapshot, dst]);
    const kept = filesBelow(dst);
    let torn = 0;
    for (const [path, bytes] of live) {
      const before = kept.get(path);
      if (before?.equals(bytes)) continue;
      mkdirSync(join(dst, path, ".."), { recursive: true });
      writeFileSync(
        join(dst, path),
        Buffer.concat([bytes.subarray(0, bytes.length >> 1), Buffer.alloc(bytes.length - (bytes.length >> 1))]),
      );
      torn++;
    }
    expect(torn).toBe(21);
    expect(compareTrees(src, dst).length).toBeGreaterThan(0);

    // The target comes back at its durable position, not at what it had answered...
    const secondState = new StateStore(statePath);
    expect(secondState.load()).toEqual(afterPass);
    target = targetOn(new NodeFileSystem({ root: dst, durability: "batched", onProblem: () => {} }), secondState);
    sent.length = 0;
    // ...and the source, reconnecting as the CLI does, replays its log from there and mirrors exactly.
    clock.now += 1;
    await source.establish();
    const replayed = sent.flatMap((r) => (r.type === "apply" ? r.entries.map((e) => e.seq) : []));
    expect(replayed).toContain(afterPass!.seq + 1);
    expect(replayed).toContain(answered.seq);
    expect(formatDifferences(compareTrees(src, dst))).toBe("(trees are equal)");
    expect(target.durablePosition()).toEqual(target.appliedPosition());
    for (const file of ["d0/f3", "d1/new7"])
      expect(statSync(join(dst, file)).size).toBe(statSync(join(src, file)).size);
  });
});

describe("when the interval's flush runs", () => {
  const LOG_ID = "0123456789abcdef";
  /** A target on a memory file system with a 1,000 ms interval on a clock the test moves. */
  function pacedTarget() {
    const clock = { now: 0 };
    const fs = new MemoryFileSystem();
    fs.makeDirs("/t");
    const target = new ReplicatorTarget(fs, "/t", { flushIntervalMs: 1_000, now: () => clock.now });
    target.handleRequest({ type: "hello", version: PROTOCOL_VERSION, logId: LOG_ID, epoch: 1 });
    let seq = 0;
    /** One apply request (a new directory) answered at `at`. */
    const applyAt = (at: number): void => {
      clock.now = at;
      seq += 1;
      const entries = [{ seq, operation: { type: "ensureDir" as const, path: `d${seq}` } }];
      expect(target.handleRequest({ type: "apply", logId: LOG_ID, epoch: 1, entries }).type).toBe("applied");
    };
    const durableSeq = () => target.durablePosition()?.seq ?? 0;
    return { clock, target, applyAt, durableSeq };
  }

  it("waits for a pause in the requests once the interval has passed: not between the parts of a burst", () => {
    const { clock, target, applyAt, durableSeq } = pacedTarget();
    applyAt(100);
    clock.now = 1_050; // due, but the last request came 950 ms ago: a pause
    target.flushIfDue();
    expect(durableSeq()).toBe(1);
    for (let at = 2_100; at <= 2_400; at += 30) applyAt(at); // a burst: parts 30 ms apart
    clock.now = 2_420; // due since 2,050, but 20 ms after a part
    target.flushIfDue();
    expect(durableSeq()).toBe(1);
    clock.now = 2_500; // the burst has paused for 100 ms
    target.flushIfDue();
    expect(durableSeq()).toBe(12);
  });

  it("flushes requests that never pause once two intervals have passed, after the request that passes them", () => {
    const { target, applyAt, durableSeq } = pacedTarget();
    for (let at = 50; at < 2_000; at += 50) {
      applyAt(at);
      target.flushIfDue();
      expect(durableSeq(), `at ${at} ms`).toBe(0);
    }
    applyAt(2_000);
    expect(durableSeq()).toBe(40);
  });
});

describe("a source whose log reaches the disk while it ships (ApplyRequest's logDurableSeq)", () => {
  const LOG_ID = "0123456789abcdef";
  function targetAfterHello() {
    const fs = new MemoryFileSystem();
    fs.makeDirs("/t");
    const saved: number[] = [];
    const target = new ReplicatorTarget(fs, "/t", {
      flushIntervalMs: 1_000,
      now: () => 0,
      positionStore: { load: () => null, save: (position) => void saved.push(position.seq) },
    });
    target.handleRequest({ type: "hello", version: PROTOCOL_VERSION, logId: LOG_ID, epoch: 1 });
    const apply = (from: number, to: number, logDurableSeq?: number) => {
      const entries = [];
      for (let seq = from; seq <= to; seq++)
        entries.push({ seq, operation: { type: "ensureDir" as const, path: `d${seq}` } });
      const request: Request = {
        type: "apply",
        logId: LOG_ID,
        epoch: 1,
        entries,
        ...(logDurableSeq === undefined ? {} : { logDurableSeq }),
      };
      expect(target.handleRequest(request).type).toBe("applied");
    };
    return { target, apply, saved };
  }

  it("the target never makes a position durable beyond what the source said its log holds durably", () => {
    const { target, apply, saved } = targetAfterHello();
    apply(1, 5, 2);
    target.flush();
    expect(target.durablePosition()?.seq).toBe(2);
    expect(saved.at(-1)).toBe(2);
    apply(6, 7, 4); // a later request says more, still short of what was applied
    target.flush();
    expect(target.durablePosition()?.seq).toBe(4);
    apply(8, 8); // without it: durable through this request's operations
    target.flush();
    expect(target.durablePosition()?.seq).toBe(8);
    apply(9, 10, 3); // a lower word never takes back what was said before
    target.flush();
    expect(target.durablePosition()?.seq).toBe(8);
  });

  it("a release (sent once the source's log is durable) lets the target make everything applied durable", () => {
    const { target, apply, saved } = targetAfterHello();
    apply(1, 3, 0);
    expect(target.handleRequest({ type: "release", durable: true })).toMatchObject({
      type: "released",
      durable: { seq: 3 },
    });
    expect(saved.at(-1)).toBe(3);
  });

  it("an apply shipped before the log is durable says how far it is, and the target's durable position stays within that", async () => {
    const base = mkdtempSync(join(tmpdir(), "mirrorlog-logdurable-"));
    dirs.push(base);
    const statePath = join(base, "source.sqlite");
    const fs = new MemoryFileSystem();
    fs.makeDirs("/src");
    fs.makeDirs("/dst");
    for (let i = 0; i < 5; i++) fs.writeFile(`/src/f${i}`, `file ${i}`);
    const log = new OperationLog(statePath, { deferDurability: true });
    const target = new ReplicatorTarget(fs, "/dst", { flushIntervalMs: 60_000, now: () => 0 });
    const session = new SourceSession({ fs, root: "/src", log });
    const sent: Request[] = [];
    const send = (request: Request): Response => {
      sent.push(request);
      return ResponseSchema.parse(target.handleRequest(request));
    };
    const hello = session.resume(send(session.openingHello()));
    if ("hello" in hello) session.acceptHello(send(hello.hello));
    session.planEventUnlogged({ path: "/src", eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED }, "initial");
    const entries = session.logPlanned();
    expect(entries.length).toBeGreaterThan(0);
    // Shipped at once, while the log's flush runs: the request says how far the log is durable.
    const durableWhenShipped = log.durablePosition().seq;
    expect(durableWhenShipped).toBeLessThan(entries.at(-1)!.position.seq);
    for (const request of session.requestsFor(entries)) session.settle(request, send(request));
    const apply = sent.find((request) => request.type === "apply");
    expect(apply).toMatchObject({ logDurableSeq: durableWhenShipped });
    target.flush();
    // What a power cut right now would leave: the target's durable position is within the log's durable part.
    expect(target.durablePosition()!.seq).toBeLessThanOrEqual(durableWhenShipped);
    await log.whenDurable();
    expect(log.durablePosition()).toEqual(log.lastPosition());
    log.close();
  });
});
