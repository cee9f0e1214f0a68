// Per-path history is a pure fold of logged operations and their apply results.
import { describe, expect, it } from "vitest";
import type { Operation } from "../../src/events/operation.js";
import { foldPathHistory, type HistoryEvent, historyOf, type PathHistory } from "../../src/projections/pathHistory.js";

function logged(epoch: number, seq: number, operation: Operation): HistoryEvent {
  return { kind: "logged", position: { epoch, seq }, operation };
}

const write = (path: string): Operation => ({ type: "writeFile", path, hash: "c".repeat(64), size: 1 });
const remove = (path: string): Operation => ({ type: "remove", path });

describe("foldPathHistory", () => {
  it("keeps each path's steps in log order and attaches outcomes by position", () => {
    const history = foldPathHistory(new Map(), [
      logged(1, 1, write("a/f")),
      logged(1, 2, write("b")),
      logged(1, 3, remove("a/f")),
      { kind: "result", position: { epoch: 1, seq: 1 }, path: "a/f", outcome: "applied" },
      { kind: "result", position: { epoch: 1, seq: 3 }, path: "a/f", outcome: "failed" },
    ]);
    expect(history.get("a/f")).toEqual([
      { position: { epoch: 1, seq: 1 }, operation: write("a/f"), outcome: "applied" },
      { position: { epoch: 1, seq: 3 }, operation: remove("a/f"), outcome: "failed" },
    ]);
    expect(history.get("b")).toEqual([{ position: { epoch: 1, seq: 2 }, operation: write("b") }]);
  });

  it("ignores a result for a position it never logged, or logged under another path", () => {
    const base = foldPathHistory(new Map(), [logged(1, 1, write("f"))]);
    const next = foldPathHistory(base, [
      { kind: "result", position: { epoch: 2, seq: 1 }, path: "f", outcome: "applied" },
      { kind: "result", position: { epoch: 1, seq: 1 }, path: "g", outcome: "applied" },
    ]);
    expect(next.get("f")).toEqual([{ position: { epoch: 1, seq: 1 }, operation: write("f") }]);
    expect(next.has("g")).toBe(false);
  });

  it("returns the same history for an empty batch and never mutates its input", () => {
    const base: PathHistory = foldPathHistory(new Map(), [logged(1, 1, write("f"))]);
    expect(foldPathHistory(base, [])).toBe(base);
    const next = foldPathHistory(base, [
      logged(1, 2, write("f")),
      { kind: "result", position: { epoch: 1, seq: 1 }, path: "f", outcome: "unchanged" },
    ]);
    expect(base.get("f")).toEqual([{ position: { epoch: 1, seq: 1 }, operation: write("f") }]);
    expect(next.get("f")).toHaveLength(2);
  });
});

describe("historyOf", () => {
  const history = foldPathHistory(new Map(), [
    logged(1, 1, write("a")),
    logged(1, 2, write("ab/x")),
    logged(2, 1, write("a/y/z")),
    logged(1, 3, write("a/x")),
    logged(2, 2, remove("a")),
  ]);

  it("gathers a path and everything below it, ordered by epoch then seq", () => {
    expect(historyOf(history, "a").map((s) => [s.position.epoch, s.position.seq, s.operation.path])).toEqual([
      [1, 1, "a"],
      [1, 3, "a/x"],
      [2, 1, "a/y/z"],
      [2, 2, "a"],
    ]);
  });

  it("matches whole segments: a's history has nothing of ab", () => {
    expect(historyOf(history, "ab").map((s) => s.operation.path)).toEqual(["ab/x"]);
    expect(historyOf(history, "a").some((s) => s.operation.path.startsWith("ab"))).toBe(false);
  });

  it("gives everything for the root and nothing for an unknown path", () => {
    expect(historyOf(history, "")).toHaveLength(5);
    expect(historyOf(history, "zzz")).toEqual([]);
  });
});
