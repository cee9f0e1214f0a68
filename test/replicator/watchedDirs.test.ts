// The source's record of its watches answers "which watches are at or below this path" from counts kept
// per ancestor (a file's plan asks once per file); the answers must be those of reading every watch.
import fc from "fast-check";
import { expect, it } from "vitest";
import { isAtOrBelow } from "../../src/events/paths.js";
import { WatchedDirs } from "../../src/replicator/watchedDirs.js";

const name = fc.constantFrom("a", "b", "a-b", "a.b", "ab", "é");
const dir = fc.array(name, { maxLength: 4 }).map((names) => names.join("/"));
const step = fc.oneof(
  fc.record({ add: dir, ino: fc.option(fc.nat(), { nil: undefined }) }),
  fc.record({ remove: dir }),
  fc.record({ removeBelow: dir }),
);

it("atOrBelow answers as a read of every watch would, after any adds and removals", () => {
  fc.assert(
    fc.property(fc.array(step, { maxLength: 60 }), fc.array(dir, { minLength: 1, maxLength: 8 }), (steps, asked) => {
      const watched = new WatchedDirs();
      const model = new Map<string, number | undefined>();
      for (const s of steps) {
        if ("add" in s) {
          watched.add(s.add, s.ino);
          model.set(s.add, s.ino);
        } else if ("remove" in s) {
          watched.delete(s.remove);
          model.delete(s.remove);
        } else {
          // What updateWatches does when a directory became a file: every watch at or below it ends.
          for (const d of watched.atOrBelow(s.removeBelow)) watched.delete(d);
          for (const d of [...model.keys()]) if (isAtOrBelow(s.removeBelow, d)) model.delete(d);
        }
      }
      expect(watched.all().sort()).toEqual([...model.keys()].sort());
      for (const path of [...asked, ...model.keys()]) {
        const expected = [...model.keys()].filter((d) => isAtOrBelow(path, d)).sort();
        expect(watched.atOrBelow(path).sort(), `atOrBelow(${JSON.stringify(path)})`).toEqual(expected);
        expect(watched.inodeOf(path)).toBe(model.get(path));
      }
    }),
    { numRuns: 300 },
  );
});

it("a path with no watch at or below it is answered without reading the watches", () => {
  const watched = new WatchedDirs();
  for (let i = 0; i < 1_000; i++) watched.add(`dir-${i}/sub`, i);
  let reads = 0;
  const all = watched.all.bind(watched);
  watched.all = () => {
    reads++;
    return all();
  };
  for (let i = 0; i < 1_000; i++) expect(watched.atOrBelow(`dir-${i}/sub/file`)).toEqual([]);
  expect(watched.atOrBelow("dir-7")).toEqual(["dir-7/sub"]);
  expect(reads).toBe(1);
});
