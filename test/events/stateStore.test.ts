// The state file's content index against the in-memory one (ContentIndexMap) as the model: any sequence
// of sets and deletes, with writes to the file at any point (a flush, or buffered changes reaching the
// limit), and with a directory's rows read ahead at any point, gives the same answers; and what was written is what a reopened file holds.

import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { compareWalkOrder } from "../../src/events/paths.js";
import { ContentIndexMap, compareAsUtf8, type IndexedFile, StateStore } from "../../src/events/stateStore.js";
import { repositoryModule, traceScript } from "../support/tracedScript.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function stateFile(): string {
  const dir = mkdtempSync(join(tmpdir(), "mirrorlog-state-"));
  dirs.push(dir);
  return join(dir, "state.sqlite");
}

const sha = (text: string): string => createHash("sha256").update(text).digest("hex");

function entry(hash: string, ino = 1): IndexedFile {
  return { size: 3, mtimeMs: 1_700_000_000_123.5, ctimeMs: 1_700_000_000_456.25, ino, hash };
}

/** Paths that sort around "/" (0x2f): "a-b" and "a.b" before "a/b", "a0" after it. */
const path = fc.constantFrom("a", "a/b", "a/b/c", "a/bc", "a-b", "a.b", "a0", "a/b0", "b", "b/a", "ab", "\uef80x/y");
const hash = fc.constantFrom("h1", "h2", "h3");
const step = fc.oneof(
  fc.record({ kind: fc.constant("set" as const), path, hash, ino: fc.integer({ min: 1, max: 9 }) }),
  fc.record({ kind: fc.constant("delete" as const), path }),
  fc.record({ kind: fc.constant("flush" as const) }),
  fc.record({ kind: fc.constant("prefetch" as const) }),
);

const sorted = (entries: [string, IndexedFile][]) => [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

describe("StateStore content index", () => {
  it("answers like the in-memory index, whatever was written to the file when", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), fc.integer({ min: 1, max: 5 }), (steps, maxDirty) => {
        const store = new StateStore(undefined, { writeAheadAfter: maxDirty });
        const model = new ContentIndexMap();
        try {
          for (const s of steps) {
            if (s.kind === "set") {
              store.set(s.path, entry(s.hash, s.ino));
              model.set(s.path, entry(s.hash, s.ino));
            } else if (s.kind === "delete") {
              store.delete(s.path);
              model.delete(s.path);
            } else if (s.kind === "prefetch") {
              store.prefetch(
                "",
                ["a", "a0", "b"].map((name) => ({ name, stat: entry("-") })),
              );
            } else {
              store.flush();
            }
            for (const p of ["a", "a/b", "a0", "\uef80x/y"]) {
              expect(store.get(p)).toEqual(model.get(p));
              expect(sorted(store.entriesBelow(p))).toEqual(sorted(model.entriesBelow(p)));
            }
            for (const h of ["h1", "h2", "h3"])
              expect(store.pathsWithHash(h).sort()).toEqual(model.pathsWithHash(h).sort());
          }
        } finally {
          store.close();
        }
      }),
      { numRuns: 300 },
    );
  });

  it("writes buffered changes once the limit is reached, and a reopened file holds them", () => {
    const file = stateFile();
    const writer = new StateStore(file, { writeAheadAfter: 100 });
    for (let i = 0; i < 250; i++) writer.set(`d/f${i}`, entry(`hash${i % 7}`, i));
    // Not flushed or closed yet: the first 200 are in the file already, the last 50 only buffered.
    const reader = new StateStore(file);
    expect(reader.get("d/f0")).toEqual(entry("hash0", 0));
    expect(reader.get("d/f199")).toEqual(entry(`hash${199 % 7}`, 199));
    expect(reader.get("d/f249")).toBeUndefined();
    reader.close();
    writer.delete("d/f0");
    writer.close();
    const reopened = new StateStore(file);
    expect(reopened.get("d/f0")).toBeUndefined();
    expect(reopened.get("d/f249")).toEqual(entry(`hash${249 % 7}`, 249));
    expect(reopened.entriesBelow("d")).toHaveLength(249);
    expect(reopened.pathsWithHash("hash3").sort()).toEqual(
      Array.from({ length: 250 }, (_, i) => i)
        .filter((i) => i % 7 === 3)
        .map((i) => `d/f${i}`)
        .sort(),
    );
    reopened.close();
  });

  it("a store opened on an empty index asks the file only about directories it has written rows into", () => {
    const file = stateFile();
    const first = new StateStore(file);
    const other = new StateStore(file);
    other.set("elsewhere/f", entry("h1"));
    other.set("d/g", entry("h2"));
    other.flush();
    first.set("d/f", entry("h3"));
    first.flush();
    const listed = (name: string) => ({ name, stat: entry("-") });
    // Rows another connection wrote after `first` found the index empty are missed (a miss is a file read
    // again), except in a directory `first` wrote into itself, which it asks the file about.
    expect(first.get("elsewhere/f")).toBeUndefined();
    first.prefetch("elsewhere", [listed("f"), listed("x")]);
    expect(first.get("elsewhere/f")).toBeUndefined();
    expect(first.get("d/f")).toEqual(entry("h3"));
    expect(first.get("d/g")).toEqual(entry("h2"));
    first.prefetch("d", [listed("f"), listed("g")]);
    expect([first.get("d/f")?.hash, first.get("d/g")?.hash]).toEqual(["h3", "h2"]);
    first.close();
    // Opened on a file that holds rows, a store asks it about every directory.
    const reopened = new StateStore(file);
    expect(reopened.get("elsewhere/f")).toEqual(entry("h1"));
    other.close();
    reopened.close();
  });

  it("a recorded listing gives its hashes back only while every file states as recorded", () => {
    const file = stateFile();
    const files = ["a", "b", "c"].map((name, i) => ({ name, stat: { ...entry("-", i + 1) } }));
    const hashes = ["h-a", "h-b", "h-c"];
    const store = new StateStore(file, { writeAheadAfter: 1_000 });
    expect(store.prefetch("d", files)).toBeUndefined();
    store.recordListing("d", files, hashes);
    expect(store.prefetch("d", files)).toEqual(hashes);
    store.close();

    const reopened = new StateStore(file);
    expect(reopened.prefetch("d", files)).toEqual(hashes);
    expect(reopened.prefetch("elsewhere", files)).toBeUndefined();
    const changed = (field: "size" | "mtimeMs" | "ctimeMs" | "ino") =>
      files.map((f, i) => (i === 1 ? { name: f.name, stat: { ...f.stat, [field]: f.stat[field] + 0.25 } } : f));
    for (const field of ["size", "mtimeMs", "ctimeMs", "ino"] as const) {
      expect(reopened.prefetch("d", changed(field)), field).toBeUndefined();
    }
    expect(reopened.prefetch("d", files.slice(0, 2))).toBeUndefined();
    expect(reopened.prefetch("d", [...files, { name: "e", stat: files[0]!.stat }])).toBeUndefined();
    expect(
      reopened.prefetch(
        "d",
        files.map((f, i) => ({ name: ["a", "c", "b"][i]!, stat: f.stat })),
      ),
    ).toBeUndefined();
    // Missed: the files' own rows are read ahead instead.
    reopened.set("d/a", entry("row-a", 1));
    reopened.flush();
    expect(reopened.prefetch("d", changed("size"))).toBeUndefined();
    expect(reopened.get("d/a")).toEqual(entry("row-a", 1));
    reopened.close();
  });

  it("without write-ahead (a target), rows reach the file only with a flush: none vouches for bytes not yet durable", () => {
    const file = stateFile();
    const target = new StateStore(file);
    for (let i = 0; i < 20_000; i++) target.set(`d/f${i}`, entry("h", i));
    const listed = [0, 1].map((i) => ({ name: `f${i}`, stat: entry("-", i) }));
    target.recordListing("d", listed, ["h", "h"]);
    const reader = new StateStore(file);
    expect(reader.entriesBelow("d")).toEqual([]);
    expect(reader.prefetch("d", listed)).toBeUndefined();
    target.save({ logId: "log", epoch: 1, seq: 1 });
    expect(reader.entriesBelow("d")).toHaveLength(20_000);
    // Recorded listings are read a window at a time and kept: a store opened after the save reads them.
    const later = new StateStore(file);
    expect(later.prefetch("d", listed)).toEqual(["h", "h"]);
    later.close();
    reader.close();
    target.close();
  });

  it("an unchanged applied position with nothing buffered is not committed again; a changed one or buffered rows are", () => {
    const LOG_ID = "0123abcd-4567";
    const file = stateFile();
    const store = new StateStore(file);
    store.save({ logId: LOG_ID, epoch: 1, seq: 1 });
    store.close();
    const target = new StateStore(file);
    // data_version changes, for this other connection, at each commit another one makes.
    const watcher = new Database(file);
    const version = () => watcher.pragma("data_version", { simple: true });
    const before = version();
    expect(target.load()).toEqual({ logId: LOG_ID, epoch: 1, seq: 1 });
    target.save({ logId: LOG_ID, epoch: 1, seq: 1 });
    expect(version()).toBe(before);
    target.set("d/f", entry("h"));
    target.save({ logId: LOG_ID, epoch: 1, seq: 1 });
    const afterRows = version();
    expect(afterRows).not.toBe(before);
    target.save({ logId: LOG_ID, epoch: 1, seq: 2 });
    expect(version()).not.toBe(afterRows);
    expect(new StateStore(file).load()).toEqual({ logId: LOG_ID, epoch: 1, seq: 2 });
    watcher.close();
    target.close();
  });

  it("recalls every recorded digest and listing across many windows of rows, whatever the order of names", () => {
    const file = stateFile();
    const writer = new StateStore(file);
    // Names whose order differs between UTF-16 units, UTF-8 bytes and walk order: "-" and "." sort before
    // "/", a surrogate pair before U+E000.. in UTF-16 but after it in UTF-8.
    const names = ["a", "a-b", "a.b", "a/b", "a/b/c", "\u{1f600}", "\ue000", "\uef80x", "z"];
    const recorded = [""];
    for (let i = 0; i < 700; i++) for (const name of names) recorded.push(`${name}${i}/${names[i % names.length]}`);
    const listed = [0, 1].map((i) => ({ name: `f${i}`, stat: entry("-", i) }));
    for (const [i, dir] of recorded.entries()) {
      writer.recordDigest(dir, `sig${i}`, `digest${i}`, i);
      writer.recordListing(dir, listed, [`h${i}`, `x${i}`]);
    }
    writer.close();
    const reader = new StateStore(file);
    // Asked in walk order, in a shuffled order, and again: each directory's own row, a miss for the others.
    const shuffled = [...recorded].sort((x, y) => (sha(x) < sha(y) ? -1 : 1));
    for (const order of [[...recorded].sort(compareWalkOrder), shuffled, recorded]) {
      for (const dir of order) {
        const i = recorded.indexOf(dir);
        expect(reader.recallDigest(dir, `sig${i}`)).toEqual({ digest: `digest${i}`, count: i });
        expect(reader.recallDigest(dir, "other")).toBeUndefined();
        expect(reader.prefetch(dir, listed)).toEqual([`h${i}`, `x${i}`]);
      }
    }
    expect(reader.recallDigest("a0/unrecorded", "sig1")).toBeUndefined();
    reader.close();
  });

  it("compareAsUtf8 orders as the UTF-8 bytes do", () => {
    const unit = fc.constantFrom(
      "a",
      "/",
      "-",
      "\u00e9",
      "\ud7ff",
      "\ue000",
      "\uef80",
      "\uffff",
      "\u{10000}",
      "\u{1f600}",
    );
    const text = fc.array(unit, { maxLength: 5 }).map((units) => units.join(""));
    fc.assert(
      fc.property(text, text, (a, b) => {
        expect(Math.sign(compareAsUtf8(a, b))).toBe(Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))));
      }),
      { numRuns: 2000 },
    );
  });
});

describe("saving the position with buffered index rows", () => {
  const STATE_STORE = repositoryModule("src/events/stateStore.ts");

  it("writes them in its own transaction, not a nested one whose journal goes to a temporary file", () => {
    const path = stateFile();
    // Two saves of 8,000 rows: the second changes pages the first wrote, which a savepoint would journal.
    const script = `
      const { StateStore } = await import(${JSON.stringify(STATE_STORE)});
      const store = new StateStore(${JSON.stringify(path)});
      for (let round = 1; round <= 2; round++) {
        for (let i = 0; i < 8000; i++)
          store.set("d" + (i % 97) + "/f" + i, { size: i, mtimeMs: round, ctimeMs: 1, ino: i, hash: (i * 7919 + round).toString(16).padStart(64, "0") });
        store.save({ logId: "0123456789abcdef", epoch: 1, seq: round });
      }
      store.close();
    `;
    const { lines: opened } = traceScript(script, "openat", `${path}.trace`);
    expect(opened.some((line) => line.includes("state.sqlite"))).toBe(true);
    expect(opened.filter((line) => line.includes("etilqs"))).toEqual([]);
    const reader = new Database(path, { readonly: true });
    expect(reader.prepare("SELECT COUNT(*) FROM file_index").pluck().get()).toBe(8000);
    expect(reader.prepare("SELECT seq FROM applied_position").pluck().get()).toBe(2);
    reader.close();
  });
});
