// Unit tests of the audit commands' pieces: the log's pair and audit queries (file SQLite, opened
// read-only the way the commands open it), the path-log fold, the drift classification, status,
// path canonicalisation and terminal-safe quoting.
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { recordRunProblems } from "../../src/cli/heartbeat.js";
import { pathLogEntries } from "../../src/cli/log.js";
import { canonicalPath, openState } from "../../src/cli/stateFiles.js";
import { formatStatus, statusOf } from "../../src/cli/status.js";
import { quoteText, terminalSafeJson } from "../../src/cli/terminalText.js";
import { driftOf } from "../../src/cli/verify.js";
import type { Operation, WriteFile } from "../../src/events/operation.js";
import { type LogEntry, type LoggedResult, OperationLog } from "../../src/events/operationLog.js";
import { emptyDir } from "../../src/events/tree.js";
import { treeFromManifest } from "../../src/projections/expectedTree.js";

const H1 = "11".repeat(32);
const H2 = "22".repeat(32);
const H3 = "33".repeat(32);

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "mirrorlog-audit-"));
  dirs.push(dir);
  return dir;
}

/** Names, sizes and mtimes of a directory's files. */
function snapshotDir(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .map((name) => {
      const s = statSync(join(dir, name), { bigint: true });
      return `${name} ${s.size} ${s.mtimeNs}`;
    });
}

function write(path: string, hash: string, size = 3): WriteFile {
  return { type: "writeFile", path, hash, size };
}

function result(epoch: number, seq: number, outcome: LoggedResult["outcome"], appliedAt: number, reason?: string) {
  return {
    position: { epoch, seq },
    outcome,
    ...(reason === undefined ? {} : { reason }),
    wireBytes: 100,
    bytesWritten: outcome === "applied" ? 3 : 0,
    appliedAt,
  };
}

describe("OperationLog: pair and audit queries", () => {
  it("keeps the pair across reopening, read-only too; a log without one answers null", () => {
    const file = join(tempDir(), "log.db");
    const log = new OperationLog(file);
    expect(log.pair()).toBeNull();
    log.describePair("/src", "host:/dst");
    log.describePair("/src", "host:/dst2"); // recording again replaces
    log.close();
    const reopened = new OperationLog(file, { readOnly: true });
    expect(reopened.pair()).toEqual({ sourceRoot: "/src", target: "host:/dst2" });
    reopened.close();
  });

  it("read-only: refuses a missing file or a non-log without creating anything, and cannot append", () => {
    const dir = tempDir();
    expect(() => new OperationLog(join(dir, "absent.db"), { readOnly: true })).toThrow();
    expect(() => statSync(join(dir, "absent.db"))).toThrow(/ENOENT/);
    const notALog = join(dir, "text.db");
    writeFileSync(notALog, "not sqlite at all, just text that is long enough to be a header......");
    expect(() => new OperationLog(notALog, { readOnly: true })).toThrow();
    expect(readFileSync(notALog, "utf8")).toMatch(/^not sqlite/);

    const file = join(dir, "log.db");
    const writer = new OperationLog(file);
    writer.startEpoch("first", 1);
    writer.close();
    const before = snapshotDir(dir);
    const reader = new OperationLog(file, { readOnly: true });
    expect(() => reader.startEpoch("second", 2)).toThrow(/readonly/i);
    expect(() => reader.describePair("/a", "/b")).toThrow(/readonly/i);
    expect(reader.epochs()).toEqual([{ epoch: 1, startedAt: 1, reason: "first" }]);
    reader.close();
    // Not even the WAL's side files are left behind.
    expect(snapshotDir(dir)).toEqual(before);
  });

  it("epochProgress, resultTotalsSince and openFailures over two epochs", () => {
    const log = new OperationLog(join(tempDir(), "log.db"));
    log.startEpoch("one", 0);
    log.append([{ operation: write("old", H1), detectedBy: "initial" }], 0);
    log.recordResults([result(1, 1, "failed", 10, "disk full")]);
    log.startEpoch("two", 1000);
    log.append(
      ["a", "b", "c", "a", "d"].map((p, i) => ({ operation: write(p, [H1, H2, H3][i % 3]!), detectedBy: "watch" })),
      1000,
    );
    // a failed at 2:1 and was applied at 2:4 (resolved); b (2:2) and c (2:3) failed with nothing after.
    log.recordResults([
      result(2, 1, "failed", 2000, "permission denied"),
      result(2, 2, "failed", 2000, "EIO"),
      result(2, 3, "failed", 2500, "ENOSPC"),
      result(2, 4, "applied", 3000),
    ]);
    expect(log.epochProgress(2)).toEqual({ epoch: 2, lastSeq: 5, lastAnsweredSeq: 4, unanswered: 1 });
    expect(log.epochProgress(1)).toEqual({ epoch: 1, lastSeq: 1, lastAnsweredSeq: 1, unanswered: 0 });
    expect(log.resultTotalsSince(2500)).toEqual({ operations: 2, bytesWritten: 3, wireBytes: 200 });
    expect(log.resultTotalsSince(0).operations).toBe(5);
    expect(log.openFailures(2).map((f) => [f.path, f.position.seq, f.reason])).toEqual([
      ["b", 2, "EIO"],
      ["c", 3, "ENOSPC"],
    ]);
    expect(log.openFailures(1).map((f) => f.path)).toEqual(["old"]);

    // A later failure on the same path replaces the earlier one; a later success clears it.
    log.append([{ operation: write("b", H3), detectedBy: "retry" }], 4000);
    log.append([{ operation: write("c", H3), detectedBy: "retry" }], 4000);
    log.recordResults([result(2, 6, "failed", 4000, "still EIO"), result(2, 7, "unchanged", 4000)]);
    expect(log.openFailures(2).map((f) => [f.path, f.position.seq, f.reason])).toEqual([["b", 6, "still EIO"]]);
    log.close();
  });
});

describe("status of a log", () => {
  it("reports the current epoch, positions, lag, throughput windows and open problems", () => {
    const dir = tempDir();
    const file = join(dir, "source-x.db");
    const log = new OperationLog(file);
    log.describePair("/s", "/t");
    log.startEpoch("watch run started", 1_000);
    log.append(
      ["x", "y", "z"].map((p) => ({ operation: write(p, H1), detectedBy: "watch" as const })),
      1_000,
    );
    const now = 10_000_000;
    log.recordResults([result(1, 1, "applied", now - 2 * 60_000), result(1, 2, "failed", now - 1_000, "EACCES")]);
    log.close();

    const state = openState(file);
    const status = statusOf(state, now);
    state.log.close();
    expect(status).toMatchObject({
      statePath: file,
      sourceRoot: "/s",
      target: "/t",
      epoch: { epoch: 1, startedAt: new Date(1_000).toISOString(), reason: "watch run started" },
      lastLogged: "1:3",
      lastApplied: "1:2",
      lag: 1,
      lastMinute: { operations: 1, bytesWritten: 0, wireBytes: 100 },
      lastHour: { operations: 2, bytesWritten: 3, wireBytes: 200 },
      problems: [{ path: "y", position: "1:2", reason: "EACCES", appliedAt: new Date(now - 1_000).toISOString() }],
    });
  });

  it("counts every kind of problem: failed applies from the log and paths the last run skipped, each once", () => {
    const file = join(tempDir(), "source-x.db");
    const log = new OperationLog(file);
    log.describePair("/s", "/t");
    log.startEpoch("first", 1_000);
    log.append([{ operation: write("y", H1), detectedBy: "initial" as const }], 1_000);
    log.recordResults([result(1, 1, "failed", 2_000, "EACCES")]);
    // The run's own list names the failed apply too: it must not count twice.
    recordRunProblems(
      log,
      "sync",
      [
        { path: "pipe", reason: "skipped: FIFO, socket or device" },
        { path: "y", reason: "EACCES" },
      ],
      3_000,
    );
    log.close();

    const state = openState(file);
    const status = statusOf(state, 4_000);
    state.log.close();
    expect(status.problemCounts).toEqual({ failed: 1, skipped: 1 });
    expect(status.problems.map((p) => [p.kind, p.path, p.position])).toEqual([
      ["failed", "y", "1:1"],
      ["skipped", "pipe", null],
    ]);
    // Never watched, last seen at the end of that sync.
    expect(status.watch).toEqual({
      state: "stopped",
      pid: null,
      since: null,
      lastBeat: null,
      lastSeen: new Date(3_000).toISOString(),
    });
    const text = formatStatus(status);
    expect(text).toMatch(/problems +2 \(1 failed, 1 skipped\)/);
    expect(text).toMatch(/skipped +"pipe": "skipped: FIFO, socket or device"/);
    expect(text).toMatch(/watch +stopped \(last seen 1970-01-01T00:00:03.000Z\)/);
  });

  it("a log with no epoch yet has no positions and no lag", () => {
    const file = join(tempDir(), "source-empty.db");
    new OperationLog(file).close();
    const state = openState(file);
    const status = statusOf(state, 0);
    state.log.close();
    expect(status).toMatchObject({ sourceRoot: null, epoch: null, lastLogged: null, lastApplied: null, lag: 0 });
  });
});

describe("pathLogEntries", () => {
  const source = { statePath: "/state.db", sourceRoot: "/s", target: "/t" };
  let seq = 0;
  const entry = (operation: Operation, epoch = 1): { entry: LogEntry; result?: LoggedResult } => ({
    entry: { position: { epoch, seq: ++seq }, loggedAt: 0, operation, detectedBy: "watch" },
  });

  it("old hash is the path's previous content; removal of the path or a directory above it forgets it", () => {
    const lines = pathLogEntries(source, [
      entry({ type: "ensureDir", path: "d" }),
      entry(write("d/f", H1)),
      entry(write("d/f", H2)),
      entry({ type: "ensureDir", path: "d", mode: 0o700 }), // a mode change keeps the children
      entry(write("d/f", H3)),
      entry({ type: "remove", path: "d" }),
      entry(write("d/f", H1), 2),
      entry({ type: "writeSymlink", path: "d", target: "elsewhere" }, 2), // replaces the directory
      entry({ type: "ensureDir", path: "d" }, 2),
      entry(write("d/f", H2), 2),
      entry({ type: "remove", path: "d/f" }, 2),
    ]);
    expect(lines.map((l) => [l.type, l.path, l.oldHash, l.newHash])).toEqual([
      ["ensureDir", "d", null, null],
      ["writeFile", "d/f", null, H1],
      ["writeFile", "d/f", H1, H2],
      ["ensureDir", "d", null, null],
      ["writeFile", "d/f", H2, H3],
      ["remove", "d", null, null],
      ["writeFile", "d/f", null, H1],
      ["writeSymlink", "d", null, null],
      ["ensureDir", "d", null, null],
      ["writeFile", "d/f", null, H2],
      ["remove", "d/f", H2, null],
    ]);
    expect(lines[7]?.symlinkTarget).toBe("elsewhere");
    expect(lines[3]?.mode).toBe(0o700);
    expect(lines.every((l) => l.outcome === "pending" && l.appliedAt === null && l.wireBytes === null)).toBe(true);
  });

  it("carries the result: outcome, reason, wire bytes and time", () => {
    const [line] = pathLogEntries(source, [
      { ...entry(write("f", H1)), result: { ...result(1, seq, "failed", 5, "EIO"), wireBytes: 321 } },
    ]);
    expect(line).toMatchObject({
      outcome: "failed",
      reason: "EIO",
      wireBytes: 321,
      appliedAt: new Date(5).toISOString(),
    });
    expect(line?.position).toBe(`1:${seq}`);
  });
});

describe("driftOf", () => {
  const target = treeFromManifest([
    { kind: "dir", path: "", mode: 0o755 },
    { kind: "dir", path: "dir", mode: 0o755 },
    { kind: "file", path: "same-size", hash: H1, size: 3, mode: 0o644, mtime: { sec: 1, nsec: 0 } },
    { kind: "file", path: "meta", hash: H1, size: 3, mode: 0o600, mtime: { sec: 1, nsec: 0 } },
    { kind: "file", path: "owned", hash: H1, size: 3, uid: 0, gid: 0 },
    { kind: "file", path: "unlinked", hash: H1, size: 3 },
    { kind: "symlink", path: "link", target: "a" },
    { kind: "file", path: "was-file", hash: H1, size: 3 },
    { kind: "unknown", path: "fifo" },
    { kind: "file", path: "extra", hash: H1, size: 3 },
  ]);

  it("classifies each planned operation by what the target holds at its path", () => {
    const drift = driftOf(target, [
      { type: "remove", path: "extra" },
      write("new", H1),
      { ...write("same-size", H2), mode: 0o644, mtime: { sec: 1, nsec: 0 } },
      { ...write("meta", H1), mode: 0o644, mtime: { sec: 5, nsec: 120 } },
      { type: "writeSymlink", path: "link", target: "b" },
      { type: "ensureDir", path: "was-file" },
      write("fifo", H1),
      { type: "ensureDir", path: "dir", mode: 0o700 },
      { ...write("owned", H1), uid: 1000, gid: 0 },
      { ...write("unlinked", H1), linkTo: "meta" },
    ]);
    expect(drift.map((d) => [d.drift, d.path, d.source, d.target])).toEqual([
      ["extra", "extra", null, "file"],
      ["missing", "new", "file", null],
      ["differs", "same-size", "file", "file"],
      ["metadata", "meta", "file", "file"],
      ["differs", "link", "symlink", "symlink"],
      ["kind", "was-file", "dir", "file"],
      ["kind", "fifo", "file", "unknown"],
      ["metadata", "dir", "dir", "dir"],
      ["metadata", "owned", "file", "file"],
      ["metadata", "unlinked", "file", "file"],
    ]);
    expect(drift[3]?.detail).toBe(
      "mode 0644 ≠ 0600, mtime 1970-01-01T00:00:05.000000120Z ≠ 1970-01-01T00:00:01.000000000Z",
    );
    expect(drift[7]?.detail).toBe("mode 0700 ≠ 0755");
    expect(drift[8]?.detail).toBe("uid 1000 ≠ 0");
    expect(drift[9]?.detail).toBe('hard link to "meta" ≠ none');
    expect(driftOf(emptyDir(), [])).toEqual([]);
  });
});

describe("canonicalPath", () => {
  it("resolves symlinks in the parents, not the last component, and keeps what no longer exists", () => {
    const base = tempDir();
    mkdirSync(join(base, "real/sub"), { recursive: true });
    symlinkSync(join(base, "real"), join(base, "alias"));
    symlinkSync("sub", join(base, "real/link"));
    expect(canonicalPath(join(base, "alias/sub"))).toBe(join(base, "real/sub"));
    expect(canonicalPath(join(base, "alias/link"))).toBe(join(base, "real/link"));
    expect(canonicalPath(join(base, "alias/gone/deeper/f"))).toBe(join(base, "real/gone/deeper/f"));
    expect(canonicalPath("x/../y", join(base, "alias"))).toBe(join(base, "real/y"));
  });
});

describe("terminal-safe text", () => {
  const hostile = "a\nb\u001b[2J\u0007\u007f\u009b31m\u202egnp.exe\u2028\ud800z";

  it("quoteText leaves no control, bidi or separator character and no lone surrogate", () => {
    const quoted = quoteText(hostile);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the test is about control characters
    expect(quoted).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2028\u2029\ud800-\udfff]/);
    expect(JSON.parse(quoted)).toBe(hostile);
    expect(quoteText("plain/name")).toBe('"plain/name"');
  });

  it("terminalSafeJson is still JSON for the same value", () => {
    const value = [{ path: hostile, n: 1 }];
    const text = terminalSafeJson(value);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the test is about control characters
    expect(text).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202e\u2028]/);
    expect(JSON.parse(text)).toEqual(value);
  });
});
