// A directory's recorded listing (StateStore.recordListing): once a scan has found the hashes of a
// directory's files, the next scan takes them from one row while every file states as then, instead of
// one index row per file; a file rewritten with its size and mtime kept (its ctime moved) is read again.
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { type ListedFile, StateStore } from "../../src/events/stateStore.js";
import { sameNode } from "../../src/events/tree.js";
import { NodeFileSystem } from "../../src/fs/nodeFileSystem.js";
import { scanPath } from "../../src/replicator/scan.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** An mtime utimes can set again exactly. */
const WHOLE_SECOND = 1_600_000_000;

it("a scan takes an unchanged directory's hashes from its recorded listing, and re-reads a file whose ctime moved", () => {
  const root = mkdtempSync(join(tmpdir(), "mirrorlog-listing-index-"));
  dirs.push(root);
  for (let d = 0; d < 5; d++) {
    mkdirSync(join(root, `d${d}`));
    for (let f = 0; f < 4; f++) writeFileSync(join(root, `d${d}`, `f${f}`), `file ${d}/${f}\n`);
  }
  utimesSync(join(root, "d2/f1"), WHOLE_SECOND, WHOLE_SECOND);
  const stateDir = mkdtempSync(join(tmpdir(), "mirrorlog-listing-state-"));
  dirs.push(stateDir);
  const state = new StateStore(join(stateDir, "state.sqlite"));
  /** Directories whose hashes came from their recorded listing, per scan. */
  let recalled: string[] = [];
  const prefetch = state.prefetch.bind(state);
  state.prefetch = (dir: string, files: readonly ListedFile[]) => {
    const hashes = prefetch(dir, files);
    if (hashes !== undefined) recalled.push(dir);
    return hashes;
  };
  const fs = new NodeFileSystem({ root, onProblem: () => {} });
  const scan = () => scanPath({ fs, root, index: state, keepContentUpTo: -1 }, "").node;

  const first = scan();
  expect(recalled).toEqual([]);
  state.flush();
  const second = scan();
  expect(recalled.sort()).toEqual(["d0", "d1", "d2", "d3", "d4"]);
  expect(sameNode(second, first)).toBe(true);

  writeFileSync(join(root, "d2/f1"), "FILE 2/1\n");
  utimesSync(join(root, "d2/f1"), WHOLE_SECOND, WHOLE_SECOND);
  recalled = [];
  const third = scan();
  expect(recalled.sort()).toEqual(["d0", "d1", "d3", "d4"]);
  const fresh = scanPath({ fs, root, keepContentUpTo: -1 }, "").node;
  expect(sameNode(third, fresh)).toBe(true);
  expect(sameNode(third, first)).toBe(false);
  state.close();
});
