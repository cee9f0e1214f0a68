// One contract for both OperationLog backends (house rule 4): an in-memory SQLite log and a durable
// file log. Positions, epochs, batches, reads, results and per-path history must behave identically;
// the file log must also come back whole after being closed and reopened.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it, vi } from "vitest";
import { checkOperation, type Operation, OperationSchema } from "../../src/events/operation.js";
import { type LoggedResult, type NewEntry, OperationLog } from "../../src/events/operationLog.js";
import { repositoryModule, traceScript } from "../support/tracedScript.js";

const HASH = "ab".repeat(32);

function write(path: string): NewEntry {
  return { operation: { type: "writeFile", path, hash: HASH, size: 3 }, detectedBy: "watch" };
}

function ensure(path: string): NewEntry {
  return { operation: { type: "ensureDir", path }, detectedBy: "initial" };
}

/** How a backend is opened, and (for durable ones) reopened from where the last one left off. */
interface Backend {
  name: string;
  open(): OperationLog;
  reopen?: () => OperationLog;
  cleanup(): void;
}

function memoryBackend(): Backend {
  return { name: "in-memory", open: () => new OperationLog(), cleanup: () => {} };
}

function fileBackend(): Backend {
  const dir = mkdtempSync(join(tmpdir(), "mirrorlog-log-"));
  const file = join(dir, "log.sqlite");
  return {
    name: "file",
    open: () => new OperationLog(file),
    reopen: () => new OperationLog(file),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

for (const makeBackend of [memoryBackend, fileBackend]) {
  describe(`OperationLog contract (${makeBackend().name})`, () => {
    const opened: OperationLog[] = [];
    const backends: Backend[] = [];

    function setup(): { backend: Backend; log: OperationLog } {
      const backend = makeBackend();
      backends.push(backend);
      const log = backend.open();
      opened.push(log);
      return { backend, log };
    }

    afterEach(() => {
      for (const log of opened.splice(0)) {
        try {
          log.close();
        } catch {
          // already closed by the test
        }
      }
      for (const backend of backends.splice(0)) backend.cleanup();
    });

    it("starts empty, without an epoch, and refuses appends until one starts", () => {
      const { log } = setup();
      expect(log.lastPosition()).toEqual({ epoch: 0, seq: 0 });
      expect(log.epochs()).toEqual([]);
      expect(log.logId).toMatch(/^[0-9a-f-]{8,64}$/);
      expect(() => log.append([write("a")], 1)).toThrow(/no epoch/);
      expect(log.lastPosition()).toEqual({ epoch: 0, seq: 0 });
    });

    it("numbers epochs from 1 and keeps each one's reason and start time", () => {
      const { log } = setup();
      expect(log.startEpoch("new source session", 100)).toBe(1);
      expect(log.lastPosition()).toEqual({ epoch: 1, seq: 0 });
      log.append([write("a")], 101);
      expect(log.startEpoch("target refused: position gap", 200)).toBe(2);
      expect(log.lastPosition()).toEqual({ epoch: 2, seq: 0 });
      expect(log.epochs()).toEqual([
        { epoch: 1, startedAt: 100, reason: "new source session" },
        { epoch: 2, startedAt: 200, reason: "target refused: position gap" },
      ]);
    });

    it("appends batches at consecutive positions, restarting seq at 1 in a new epoch", () => {
      const { log } = setup();
      log.startEpoch("start", 1);
      const first = log.append([ensure("d"), write("d/f")], 10);
      const second = log.append([{ operation: { type: "remove", path: "d/f" }, detectedBy: "rescan" }], 11);
      expect(first.map((e) => e.position)).toEqual([
        { epoch: 1, seq: 1 },
        { epoch: 1, seq: 2 },
      ]);
      expect(second.map((e) => e.position)).toEqual([{ epoch: 1, seq: 3 }]);
      expect(first[0]).toEqual({
        position: { epoch: 1, seq: 1 },
        loggedAt: 10,
        operation: { type: "ensureDir", path: "d" },
        detectedBy: "initial",
      });
      expect(log.lastPosition()).toEqual({ epoch: 1, seq: 3 });
      expect(log.append([], 12)).toEqual([]);
      expect(log.lastPosition()).toEqual({ epoch: 1, seq: 3 });

      log.startEpoch("again", 20);
      expect(log.append([write("x")], 21).map((e) => e.position)).toEqual([{ epoch: 2, seq: 1 }]);
    });

    it("appends nothing of a batch that holds an invalid operation", () => {
      const { log } = setup();
      log.startEpoch("start", 1);
      log.append([write("kept")], 2);
      const invalid = { type: "remove", path: "../escape" } as Operation;
      expect(() => log.append([write("b1"), { operation: invalid, detectedBy: "watch" }, write("b3")], 3)).toThrow();
      expect(log.lastPosition()).toEqual({ epoch: 1, seq: 1 });
      expect(log.readAfter(1, 0).map((e) => e.operation.path)).toEqual(["kept"]);
      // The next batch continues where the last good one ended: no hole was left behind.
      expect(log.append([write("next")], 4).map((e) => e.position.seq)).toEqual([2]);
    });

    it("checks an operation once: one the source checked is logged as it is; an invalid one is refused each time", () => {
      const { log } = setup();
      log.startEpoch("start", 1);
      const operation: Operation = { type: "writeFile", path: "f", hash: "a".repeat(64), size: 1 };
      const parse = vi.spyOn(OperationSchema, "safeParse");
      try {
        const checked = checkOperation(operation);
        expect(checked.success && checked.data).toBe(operation); // the object itself, not a parsed copy
        expect(log.append([{ operation, detectedBy: "initial" }], 2)[0]!.operation).toBe(operation);
        expect(parse).toHaveBeenCalledTimes(1);
      } finally {
        parse.mockRestore();
      }
      const invalid = { type: "remove", path: "a/../b" } as Operation;
      expect(checkOperation(invalid).success).toBe(false);
      expect(checkOperation(invalid).success).toBe(false);
      expect(() => log.append([{ operation: invalid, detectedBy: "initial" }], 3)).toThrow(/unsafe path/);
    });

    it("keeps every field of an operation exactly: attributes, links, byte-escaped names and targets", () => {
      const { log } = setup();
      log.startEpoch("start", 1);
      const operations: Operation[] = [
        { type: "ensureDir", path: "", mode: 0o1777, mtime: { sec: -1, nsec: 999_999_999 }, uid: 0, gid: 2 ** 32 - 2 },
        {
          type: "writeFile",
          path: "d\\x/caf\uefe9",
          hash: HASH,
          size: 3,
          linkTo: "a",
          mode: 0o4755,
          mtime: { sec: 1e12, nsec: 1 },
          uid: 1000,
          gid: 100,
        },
        { type: "writeSymlink", path: "l", target: "\uefff/../x", mtime: { sec: 0, nsec: 0 }, uid: 7 },
        { type: "remove", path: ".mirrorlog-tmp-1" },
      ];
      log.append(
        operations.map((operation) => ({ operation, detectedBy: "watch" as const })),
        2,
      );
      expect(log.readAfter(1, 0).map((e) => e.operation)).toEqual(operations);
      expect(log.history("d\\x/caf\uefe9").map((h) => h.entry.operation)).toEqual([operations[1]]);
    });

    it("reads after a position, in order, within one epoch, at most `limit`", () => {
      const { log } = setup();
      log.startEpoch("one", 1);
      log.append(["a", "b", "c", "d", "e"].map(write), 2);
      log.startEpoch("two", 3);
      log.append([write("z")], 4);
      expect(log.readAfter(1, 0).map((e) => e.operation.path)).toEqual(["a", "b", "c", "d", "e"]);
      expect(log.readAfter(1, 2).map((e) => e.position.seq)).toEqual([3, 4, 5]);
      expect(log.readAfter(1, 1, 2).map((e) => e.position.seq)).toEqual([2, 3]);
      expect(log.readAfter(1, 5)).toEqual([]);
      expect(log.readAfter(2, 0).map((e) => e.operation.path)).toEqual(["z"]);
      expect(log.readAfter(3, 0)).toEqual([]);
    });

    it("answers history for a file and for a directory prefix, with results once recorded", () => {
      const { log } = setup();
      log.startEpoch("start", 1);
      log.append([ensure("a"), write("a/x"), write("ab/x"), write("a/y/z"), write("b")], 5);
      const result: LoggedResult = {
        position: { epoch: 1, seq: 2 },
        outcome: "failed",
        reason: "hash mismatch",
        wireBytes: 40,
        bytesWritten: 0,
        appliedAt: 9,
      };
      log.recordResults([result, { ...result, position: { epoch: 1, seq: 1 }, outcome: "applied", reason: undefined }]);

      const ofA = log.history("a");
      expect(ofA.map((h) => h.entry.operation.path)).toEqual(["a", "a/x", "a/y/z"]);
      expect(ofA[0]!.result).toEqual({
        position: { epoch: 1, seq: 1 },
        outcome: "applied",
        wireBytes: 40,
        bytesWritten: 0,
        appliedAt: 9,
      });
      expect(ofA[1]!.result).toEqual(result);
      expect(ofA[2]!.result).toBeUndefined();
      expect(log.history("a/x").map((h) => h.entry.position.seq)).toEqual([2]);
      expect(log.history("ab").map((h) => h.entry.operation.path)).toEqual(["ab/x"]);
      expect(log.history("missing")).toEqual([]);
      expect(log.history("").map((h) => h.entry.operation.path)).toEqual(["a", "a/x", "ab/x", "a/y/z", "b"]);
    });

    it("keeps the latest result recorded for a position", () => {
      const { log } = setup();
      log.startEpoch("start", 1);
      log.append([write("f")], 2);
      const base = { position: { epoch: 1, seq: 1 }, wireBytes: 1, bytesWritten: 0, appliedAt: 3 };
      log.recordResults([{ ...base, outcome: "failed", reason: "content missing" }]);
      log.recordResults([{ ...base, outcome: "applied", bytesWritten: 3, appliedAt: 4 }]);
      expect(log.history("f")[0]!.result).toEqual({ ...base, outcome: "applied", bytesWritten: 3, appliedAt: 4 });
    });

    it("treats LIKE wildcards in names literally", () => {
      const { log } = setup();
      log.startEpoch("start", 1);
      log.append(["a%/1", "ab/2", "a_/3", "a%b/4", "%/5", "_/6", "x/7"].map(write), 2);
      const pathsOf = (prefix: string) => log.history(prefix).map((h) => h.entry.operation.path);
      expect(pathsOf("a%")).toEqual(["a%/1"]);
      expect(pathsOf("a_")).toEqual(["a_/3"]);
      expect(pathsOf("%")).toEqual(["%/5"]);
      expect(pathsOf("_")).toEqual(["_/6"]);
      expect(pathsOf("a")).toEqual([]);
    });

    it("passes SQLite's quick check", () => {
      const { log } = setup();
      log.startEpoch("start", 1);
      log.append([write("a")], 2);
      expect(log.quickCheck()).toBe("ok");
    });

    if (makeBackend().reopen !== undefined) {
      it("comes back after reopening with the same log id, head, epochs, entries and results", () => {
        const { backend, log } = setup();
        log.startEpoch("first", 1);
        log.append([ensure("d"), write("d/f")], 2);
        log.startEpoch("second", 3);
        log.append([write("g")], 4);
        log.recordResults([
          { position: { epoch: 2, seq: 1 }, outcome: "applied", wireBytes: 7, bytesWritten: 3, appliedAt: 5 },
        ]);
        const id = log.logId;
        const entries = [...log.readAfter(1, 0), ...log.readAfter(2, 0)];
        const history = log.history("");
        log.close();

        const again = backend.reopen!();
        opened.push(again);
        expect(again.logId).toBe(id);
        expect(again.lastPosition()).toEqual({ epoch: 2, seq: 1 });
        expect(again.epochs().map((e) => e.reason)).toEqual(["first", "second"]);
        expect([...again.readAfter(1, 0), ...again.readAfter(2, 0)]).toEqual(entries);
        expect(again.history("")).toEqual(history);
        expect(again.quickCheck()).toBe("ok");
        expect(again.append([write("h")], 6).map((e) => e.position)).toEqual([{ epoch: 2, seq: 2 }]);
      });
    } else {
      it("gives every new log its own id", () => {
        expect(setup().log.logId).not.toBe(setup().log.logId);
      });
    }
  });
}

describe("describePair", () => {
  it("records the pair once: describing the same pair again commits nothing, another pair replaces it", () => {
    const file = join(mkdtempSync(join(tmpdir(), "mirrorlog-pair-")), "log.db");
    const log = new OperationLog(file);
    log.describePair("/src", "/dst");
    const watcher = new Database(file);
    const version = () => watcher.pragma("data_version", { simple: true });
    const before = version();
    log.describePair("/src", "/dst");
    expect(version()).toBe(before);
    log.describePair("/src", "/elsewhere");
    expect(version()).not.toBe(before);
    expect(log.pair()).toEqual({ sourceRoot: "/src", target: "/elsewhere" });
    watcher.close();
    log.close();
    rmSync(dirname(file), { recursive: true, force: true });
  });
});

describe("recordResults", () => {
  const OPERATION_LOG = repositoryModule("src/events/operationLog.ts");

  it("commits without an fsync of its own, readable at once, and leaves appends durable (synchronous=FULL)", () => {
    const dir = mkdtempSync(join(tmpdir(), "mirrorlog-results-"));
    const file = join(dir, "log.db");
    // A child appends one batch, then records 20 answers (as 20 responses would) between two marks, under strace.
    const script = `
      const { OperationLog } = await import(${JSON.stringify(OPERATION_LOG)});
      const log = new OperationLog(${JSON.stringify(file)});
      log.startEpoch("test", 1);
      const entries = log.append([{ operation: { type: "ensureDir", path: "d" }, detectedBy: "initial" }], 2);
      process.stderr.write("answers begin\\n");
      for (let i = 0; i < 20; i++)
        log.recordResults([{ position: entries[0].position, outcome: "applied", wireBytes: i, bytesWritten: 0, appliedAt: 3 }]);
      process.stderr.write("answers end\\n");
      console.log(JSON.stringify({ synchronous: log.db.pragma("synchronous", { simple: true }) }));
    `;
    const { output, lines } = traceScript(script, "fsync,fdatasync,write", join(dir, "trace"));
    expect(JSON.parse(output)).toEqual({ synchronous: 2 }); // FULL again once the answers are in
    const begin = lines.findIndex((line) => line.includes("answers begin"));
    const end = lines.findIndex((line) => line.includes("answers end"));
    expect(begin, lines.join("\n")).toBeGreaterThan(-1);
    expect(end).toBeGreaterThan(begin);
    const syncs = lines.slice(begin, end).filter((line) => /fsync|fdatasync/.test(line));
    expect(syncs, syncs.join("\n")).toEqual([]);
    const reader = new Database(file, { readonly: true });
    expect(reader.prepare("SELECT wire_bytes FROM results").pluck().get()).toBe(19);
    reader.close();
    rmSync(dir, { recursive: true, force: true });
  });
});

describe("deferDurability", () => {
  const OPERATION_LOG = repositoryModule("src/events/operationLog.ts");
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  const logFile = () => {
    const dir = mkdtempSync(join(tmpdir(), "mirrorlog-deferred-"));
    dirs.push(dir);
    return join(dir, "log.db");
  };

  it("an append is durable only once its WAL flush ends; whenDurable waits for it", async () => {
    const log = new OperationLog(logFile(), { deferDurability: true });
    log.startEpoch("test", 1);
    expect(log.durablePosition()).toEqual({ epoch: 1, seq: 0 }); // the epoch's commit was fsynced
    log.append([ensure("a"), ensure("b")], 2);
    expect(log.durablePosition()).toEqual({ epoch: 1, seq: 0 });
    await log.whenDurable();
    expect(log.durablePosition()).toEqual({ epoch: 1, seq: 2 });
    log.close();
  });

  it("without it (and in memory) an append is durable when it returns", () => {
    for (const log of [new OperationLog(logFile()), new OperationLog(undefined, { deferDurability: true })]) {
      log.startEpoch("test", 1);
      log.append([ensure("a")], 2);
      expect(log.durablePosition()).toEqual({ epoch: 1, seq: 1 });
      log.close();
    }
  });

  it("a log reopened after appends whose flush never ran is flushed first: all of it durable", () => {
    const file = logFile();
    const first = new OperationLog(file, { deferDurability: true });
    first.startEpoch("test", 1);
    first.append([ensure("a"), ensure("b"), ensure("c")], 2);
    // A second connection while the first still holds the file: as after a crash, nothing was checkpointed.
    const again = new OperationLog(file, { deferDurability: true });
    expect(again.durablePosition()).toEqual({ epoch: 1, seq: 3 });
    again.close();
    first.close();
  });

  it("close flushes what was appended, also while another connection (the state store) holds the file", () => {
    const file = logFile();
    const log = new OperationLog(file, { deferDurability: true });
    const other = new Database(file);
    log.startEpoch("test", 1);
    log.append([ensure("a"), ensure("b")], 2);
    expect(log.durablePosition()).toEqual({ epoch: 1, seq: 0 });
    log.close();
    expect(log.durablePosition()).toEqual({ epoch: 1, seq: 2 });
    other.close();
  });

  it("appends commit without an fsync on the main thread; the WAL is flushed on another thread", () => {
    const file = logFile();
    const script = `
      const { OperationLog } = await import(${JSON.stringify(OPERATION_LOG)});
      const log = new OperationLog(${JSON.stringify(file)}, { deferDurability: true });
      log.startEpoch("test", 1);
      process.stderr.write("appends begin\\n");
      for (let i = 0; i < 20; i++) log.append([{ operation: { type: "ensureDir", path: "d" + i }, detectedBy: "initial" }], 2);
      process.stderr.write("appends end\\n");
      await log.whenDurable();
      process.stderr.write("durable\\n");
      console.log(JSON.stringify(log.durablePosition()));
      log.close();
    `;
    const { output, lines } = traceScript(script, "fsync,fdatasync,write", `${file}.trace`);
    expect(JSON.parse(output)).toEqual({ epoch: 1, seq: 20 });
    const begin = lines.findIndex((line) => line.includes("appends begin"));
    const end = lines.findIndex((line) => line.includes("appends end"));
    expect(begin, lines.join("\n")).toBeGreaterThan(-1);
    const mainThread = lines[begin]!.split(" ")[0];
    const durable = lines.findIndex((line) => line.includes('"durable\\n"'));
    expect(durable, lines.join("\n")).toBeGreaterThan(end);
    const syncs = lines
      .slice(begin, durable)
      .filter((line) => /fsync|fdatasync/.test(line) && line.includes("log.db-wal"));
    expect(syncs.length, lines.join("\n")).toBeGreaterThan(0);
    for (const line of syncs) expect(line.split(" ")[0], line).not.toBe(mainThread);
    const onMainDuringAppends = lines
      .slice(begin, end)
      .filter((line) => /fsync|fdatasync/.test(line) && line.split(" ")[0] === mainThread);
    expect(onMainDuringAppends, onMainDuringAppends.join("\n")).toEqual([]);
  });
});
