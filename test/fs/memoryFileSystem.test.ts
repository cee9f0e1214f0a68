import { posix } from "node:path";
import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { nameOfBytes } from "../../src/fs/byteNames.js";
import {
  FileSystemError,
  type FileSystemEvent,
  FileSystemEventType,
  RESERVED_PREFIX,
} from "../../src/fs/fileSystem.js";
import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { errorCodeOf } from "../contracts/fileSystemContract.js";

function errorOf(action: () => unknown): FileSystemError {
  try {
    action();
  } catch (error) {
    if (error instanceof FileSystemError) return error;
    throw error;
  }
  throw new Error("expected a FileSystemError, got none");
}

const added = (path: string): FileSystemEvent => ({ path, eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });

describe("MemoryFileSystem operation counters", () => {
  it("start at zero, for known and unknown names alike", () => {
    const fs = new MemoryFileSystem();
    expect(fs.getNumOperations("writeFile")).toBe(0);
    expect(fs.getNumOperations("noSuchOperation")).toBe(0);
  });

  it("count each public operation under its own name, failed calls included", () => {
    const fs = new MemoryFileSystem();
    fs.makeDir("/d");
    fs.writeFile("/d/f", "x");
    fs.exists("/d/f");
    fs.isFile("/d/f");
    fs.isDir("/d");
    fs.readFile("/d/f");
    fs.listDir("/d");
    fs.lstat("/d/f");
    fs.makeSymlink("/d/l", "f");
    fs.readLink("/d/l");
    fs.setMetadata("/d/f", { mode: 0o600 });
    fs.rename("/d/f", "/d/g");
    fs.watchDir("/d", () => {});
    fs.unwatchDir("/d");
    fs.debugString("/d");
    fs.removeFile("/d/l");
    expect(errorCodeOf(() => fs.readFile("/missing"))).toBe("ENOENT");
    const counts = Object.fromEntries(
      [
        "makeDir",
        "writeFile",
        "exists",
        "isFile",
        "isDir",
        "readFile",
        "listDir",
        "lstat",
        "makeSymlink",
        "readLink",
        "setMetadata",
        "rename",
        "watchDir",
        "unwatchDir",
        "debugString",
        "removeFile",
        "makeDirs",
        "removeDir",
      ].map((name) => [name, fs.getNumOperations(name)]),
    );
    expect(counts).toEqual({
      makeDir: 1,
      writeFile: 1,
      exists: 1,
      isFile: 1,
      isDir: 1,
      readFile: 2,
      listDir: 1,
      lstat: 1,
      makeSymlink: 1,
      readLink: 1,
      setMetadata: 1,
      rename: 1,
      watchDir: 1,
      unwatchDir: 1,
      debugString: 1,
      removeFile: 1,
      makeDirs: 0,
      removeDir: 0,
    });
  });

  it("makeDirs calls makeDir once per missing level only", () => {
    const fs = new MemoryFileSystem();
    fs.makeDirs("/a/b/c");
    expect(fs.getNumOperations("makeDirs")).toBe(1);
    expect(fs.getNumOperations("makeDir")).toBe(3);
    fs.makeDirs("/a/b/c/d/e");
    expect(fs.getNumOperations("makeDirs")).toBe(2);
    expect(fs.getNumOperations("makeDir")).toBe(5);
    fs.makeDirs("/a/b");
    expect(fs.getNumOperations("makeDir")).toBe(5);
  });

  it("removeDir calls removeFile for each file and symlink and removeDir for each directory below", () => {
    const fs = new MemoryFileSystem();
    fs.makeDirs("/t/s/e");
    fs.writeFile("/t/f1", "1");
    fs.writeFile("/t/f2", "2");
    fs.writeFile("/t/s/g", "3");
    fs.makeSymlink("/t/s/l", "/t/f1");
    fs.removeDir("/t");
    expect(fs.getNumOperations("removeDir")).toBe(3); // /t, /t/s, /t/s/e
    expect(fs.getNumOperations("removeFile")).toBe(4); // f1, f2, g, l
    expect(fs.listDir("/")).toEqual([]);
  });

  it("writeFileWith counts as a writeFile and nothing else", () => {
    const fs = new MemoryFileSystem();
    fs.writeFile("/a", "x");
    fs.writeFileWith("/b", Uint8Array.of(1), { mode: 0o600 });
    expect(fs.getNumOperations("writeFile")).toBe(2);
    expect(fs.getNumOperations("writeFileWith")).toBe(0);
  });

  test.prop([
    fc.uniqueArray(fc.array(fc.constantFrom("a", "b", "c"), { minLength: 1, maxLength: 4 }), { maxLength: 12 }),
  ])("removeDir's internal calls match the tree it removes", (paths) => {
    const fs = new MemoryFileSystem();
    fs.makeDir("/root");
    // Each generated path is made a file unless something already sits on it or on a prefix of it.
    for (const names of paths) {
      const dir = `/root/${names.slice(0, -1).join("/")}`;
      const file = `/root/${names.join("/")}`;
      if (errorCodeOf(() => fs.makeDirs(dir)) !== "no error" || fs.exists(file)) continue;
      fs.writeFile(file, names.join(""));
    }
    const lines = fs.debugString("/root").split("\n").slice(1);
    const dirs = 1 + lines.filter((line) => line.includes("-- /")).length;
    const files = lines.length + 1 - dirs;
    const before = { removeDir: fs.getNumOperations("removeDir"), removeFile: fs.getNumOperations("removeFile") };
    fs.removeDir("/root");
    expect(fs.getNumOperations("removeDir") - before.removeDir).toBe(dirs);
    expect(fs.getNumOperations("removeFile") - before.removeFile).toBe(files);
    expect(fs.exists("/root")).toBe(false);
  });
});

describe("MemoryFileSystem watches", () => {
  it("numWatchedDirs counts watches and keeps a removed directory's watch until it is unwatched", () => {
    const fs = new MemoryFileSystem();
    fs.makeDirs("/a/b");
    expect(fs.numWatchedDirs()).toBe(0);
    fs.watchDir("/a", () => {});
    fs.watchDir("/a/b", () => {});
    expect(fs.numWatchedDirs()).toBe(2);
    fs.removeDir("/a");
    expect(fs.numWatchedDirs()).toBe(2);
    fs.unwatchDir("/a/b");
    fs.unwatchDir("/a");
    expect(fs.numWatchedDirs()).toBe(0);
  });

  it("a recreated directory cannot be watched again while the old watch is held", () => {
    const fs = new MemoryFileSystem();
    fs.makeDir("/a");
    fs.watchDir("/a", () => {});
    fs.removeDir("/a");
    fs.makeDir("/a");
    expect(errorCodeOf(() => fs.watchDir("/a", () => {}))).toBe("EALREADYWATCHED");
    fs.unwatchDir("/a");
    fs.watchDir("/a", () => {});
    expect(fs.numWatchedDirs()).toBe(1);
  });

  it("watchDir refuses a symlink to a directory and keys watches by normalised path", () => {
    const fs = new MemoryFileSystem();
    fs.makeDir("/d");
    fs.makeSymlink("/l", "/d");
    expect(errorCodeOf(() => fs.watchDir("/l", () => {}))).toBe("ENOTDIR");
    fs.watchDir("/d/", () => {});
    expect(errorCodeOf(() => fs.watchDir("/x/../d", () => {}))).toBe("EALREADYWATCHED");
    fs.unwatchDir("/d");
    expect(fs.numWatchedDirs()).toBe(0);
  });

  it("rename does not move a watch", () => {
    const fs = new MemoryFileSystem();
    fs.makeDir("/a");
    fs.watchDir("/a", () => {});
    fs.rename("/a", "/b");
    expect(errorCodeOf(() => fs.unwatchDir("/b"))).toBe("ENOTWATCHED");
    fs.unwatchDir("/a");
  });

  it("handleEvent calls the parent directory's watcher with the event, and only it", () => {
    const fs = new MemoryFileSystem();
    fs.makeDirs("/a/b");
    const seen: Array<[string, FileSystemEvent]> = [];
    fs.watchDir("/", (event) => seen.push(["/", event]));
    fs.watchDir("/a", (event) => seen.push(["/a", event]));
    fs.watchDir("/a/b", (event) => seen.push(["/a/b", event]));
    const removed: FileSystemEvent = { path: "/a/b/f", eventType: FileSystemEventType.FILE_OR_SUBDIR_REMOVED };
    fs.handleEvent(removed);
    fs.handleEvent(added("/a/b/"));
    fs.handleEvent(added("/top"));
    expect(seen).toEqual([
      ["/a/b", removed],
      ["/a", added("/a/b/")],
      ["/", added("/top")],
    ]);
  });

  it("handleEvent does nothing when the parent is not watched, or no longer is", () => {
    const fs = new MemoryFileSystem();
    fs.makeDirs("/a/b");
    const seen: FileSystemEvent[] = [];
    fs.watchDir("/a", (event) => seen.push(event));
    fs.handleEvent(added("/a/b/deep")); // the grandparent's watch does not see it
    fs.handleEvent(added("/elsewhere/f"));
    fs.unwatchDir("/a");
    fs.handleEvent(added("/a/f"));
    expect(seen).toEqual([]);
  });

  it("never emits an event by itself", () => {
    const fs = new MemoryFileSystem();
    fs.makeDir("/a");
    const seen: FileSystemEvent[] = [];
    fs.watchDir("/a", (event) => seen.push(event));
    fs.writeFile("/a/f", "x");
    fs.makeDir("/a/d");
    fs.rename("/a/f", "/a/g");
    fs.removeFile("/a/g");
    fs.removeDir("/a/d");
    expect(seen).toEqual([]);
  });
});

describe("MemoryFileSystem debugString", () => {
  it("renders the seed's example", () => {
    const fs = new MemoryFileSystem();
    fs.makeDirs("/a/b");
    fs.writeFile("/a/b/c", "x");
    fs.writeFile("/a/d", "y");
    expect(fs.debugString("/a")).toMatchInlineSnapshot(`
      "/a
      |-- /b
      |   \`-- c: x
      \`-- d: y"
    `);
  });

  it("renders nested last children with four spaces, symlinks with their target, and the root line as given", () => {
    const fs = new MemoryFileSystem();
    fs.makeDirs("/src/z/deep");
    fs.writeFile("/src/z/deep/leaf", "1");
    fs.writeFile("/src/z/deep/other", "2");
    fs.makeDirs("/src/a/empty");
    fs.makeSymlink("/src/m", "../elsewhere");
    fs.writeFile("/src/b", "");
    expect(fs.debugString("/src/")).toMatchInlineSnapshot(`
      "/src/
      |-- /a
      |   \`-- /empty
      |-- b: 
      |-- m -> ../elsewhere
      \`-- /z
          \`-- /deep
              |-- leaf: 1
              \`-- other: 2"
    `);
  });

  it("continues a multi-line file's content under its first line", () => {
    const fs = new MemoryFileSystem();
    fs.writeFile("/one", "first\nsecond");
    fs.writeFile("/two", "third\nfourth");
    expect(fs.debugString("/")).toMatchInlineSnapshot(`
      "/
      |-- one: first
      |   second
      \`-- two: third
          fourth"
    `);
  });

  it("refuses a file, a symlink and a missing path", () => {
    const fs = new MemoryFileSystem();
    fs.writeFile("/f", "x");
    fs.makeSymlink("/l", "/");
    expect(errorCodeOf(() => fs.debugString("/f"))).toBe("ENOTDIR");
    expect(errorCodeOf(() => fs.debugString("/l"))).toBe("ENOTDIR");
    expect(errorCodeOf(() => fs.debugString("/missing"))).toBe("ENOENT");
  });
});

describe("MemoryFileSystem errors", () => {
  it("name the path, normalised", () => {
    const fs = new MemoryFileSystem();
    fs.writeFile("/file", "x");
    const cases: Array<[() => unknown, string, string]> = [
      [() => fs.readFile("/missing/./f"), "ENOENT", "/missing/f"],
      [() => fs.writeFile("/file/below", "x"), "ENOTDIR", "/file/below"],
      [() => fs.listDir("/file"), "ENOTDIR", "/file"],
      [() => fs.unwatchDir("/file/"), "ENOTWATCHED", "/file"],
      [() => fs.rename("/file", "/nowhere/new"), "ENOENT", "/nowhere/new"],
      [() => fs.removeDir("/"), "EINVAL", "/"],
    ];
    for (const [action, code, path] of cases) {
      const error = errorOf(action);
      expect(error.code).toBe(code);
      expect(error.path).toBe(path);
      expect(error.message).toContain(path);
    }
  });

  it("refuses relative paths", () => {
    const fs = new MemoryFileSystem();
    expect(errorCodeOf(() => fs.exists("relative/path"))).toBe("EINVAL");
  });
});

describe("MemoryFileSystem symlink choices", () => {
  it("a symlink in the middle of a path is ENOTDIR for every operation", () => {
    const fs = new MemoryFileSystem();
    fs.makeDir("/d");
    fs.writeFile("/d/f", "x");
    fs.makeSymlink("/l", "/d");
    expect(fs.exists("/l/f")).toBe(false);
    expect(errorCodeOf(() => fs.readFile("/l/f"))).toBe("ENOTDIR");
    expect(errorCodeOf(() => fs.lstat("/l/f"))).toBe("ENOTDIR");
    expect(errorCodeOf(() => fs.makeDirs("/l/x/y"))).toBe("ENOTDIR");
    expect(errorCodeOf(() => fs.removeFile("/l/f"))).toBe("ENOTDIR");
    expect(fs.listDir("/d")).toEqual(["f"]);
  });

  it("readFile on a symlink fails with ELOOP; setMetadata sets the link's own metadata; writeFile replaces the link", () => {
    const fs = new MemoryFileSystem();
    fs.writeFile("/target", "keep");
    fs.makeSymlink("/link", "/target");
    expect(errorCodeOf(() => fs.readFile("/link"))).toBe("ELOOP");
    const before = fs.lstat("/target");
    fs.setMetadata("/link", { mode: 0o600, uid: 7, gid: 8, mtime: { sec: 5, nsec: 6 } });
    expect(fs.lstat("/link")).toMatchObject({ mode: 0o777, uid: 7, gid: 8, mtime: { sec: 5, nsec: 6 } });
    expect(fs.lstat("/target")).toEqual(before);
    fs.writeFile("/link", "new");
    expect(fs.lstat("/link").kind).toBe("file");
    expect(new TextDecoder().decode(fs.readFile("/target"))).toBe("keep");
  });

  it("refuses an empty or NUL-bearing symlink target, as symlink(2) does", () => {
    const fs = new MemoryFileSystem();
    expect(errorCodeOf(() => fs.makeSymlink("/l", ""))).toBe("ENOENT");
    expect(errorCodeOf(() => fs.makeSymlink("/l", "a\0b"))).toBe("EINVAL");
    expect(fs.exists("/l")).toBe(false);
  });
});

describe("MemoryFileSystem metadata", () => {
  it("uses default modes 0o644, 0o755 and 0o777", () => {
    const fs = new MemoryFileSystem();
    fs.writeFile("/f", "x");
    fs.makeDir("/d");
    fs.makeSymlink("/l", "f");
    expect([fs.lstat("/f").mode, fs.lstat("/d").mode, fs.lstat("/l").mode]).toEqual([0o644, 0o755, 0o777]);
    expect(fs.lstat("/").kind).toBe("dir");
  });

  it("takes times from the injected clock, and touches a directory when its children change", () => {
    let clock = 1_000;
    const fs = new MemoryFileSystem({ now: () => clock });
    clock = 2_000;
    fs.makeDir("/d");
    expect(fs.lstat("/d").mtimeMs).toBe(2_000);
    clock = 3_000;
    fs.writeFile("/d/f", "x");
    expect(fs.lstat("/d/f").mtimeMs).toBe(3_000);
    expect(fs.lstat("/d").mtimeMs).toBe(3_000);
    clock = 4_000;
    fs.writeFile("/d/f", "y"); // an overwrite changes the file, not the directory
    expect(fs.lstat("/d/f")).toMatchObject({ mtimeMs: 4_000, ctimeMs: 4_000 });
    expect(fs.lstat("/d").mtimeMs).toBe(3_000);
    clock = 5_000;
    fs.setMetadata("/d/f", { mtime: { sec: 0, nsec: 10_000_000 } });
    expect(fs.lstat("/d/f")).toMatchObject({ mtimeMs: 10, ctimeMs: 5_000 });
    expect(fs.lstat("/d").mtimeMs).toBe(3_000);
  });

  it("defaults to a deterministic, strictly increasing clock", () => {
    const first = new MemoryFileSystem();
    const second = new MemoryFileSystem();
    for (const fs of [first, second]) {
      fs.writeFile("/a", "x");
      fs.writeFile("/b", "x");
    }
    expect(first.lstat("/b").mtimeMs).toBeGreaterThan(first.lstat("/a").mtimeMs);
    expect(second.lstat("/a")).toEqual(first.lstat("/a"));
    expect(second.lstat("/b")).toEqual(first.lstat("/b"));
  });

  it("writeFile overwrites in place (same inode); writeFileWith replaces (new inode, mode kept unless given)", () => {
    const fs = new MemoryFileSystem();
    fs.writeFile("/f", "x");
    fs.setMetadata("/f", { mode: 0o600 });
    const ino = fs.lstat("/f").ino;
    fs.writeFile("/f", "y");
    expect(fs.lstat("/f").ino).toBe(ino);
    fs.writeFileWith("/f", Uint8Array.of(1), {});
    expect(fs.lstat("/f").ino).not.toBe(ino);
    expect(fs.lstat("/f").mode).toBe(0o600);
  });

  test.prop([fc.uint8Array({ maxLength: 300 })])("any bytes round-trip and stay private to the store", (bytes) => {
    const fs = new MemoryFileSystem();
    const original = bytes.slice();
    fs.writeFile("/f", bytes);
    bytes.fill(0xff);
    expect(fs.readFile("/f")).toEqual(original);
  });
});

describe("MemoryFileSystem clock and timestamps", () => {
  it("turns clock milliseconds into exact timestamps, before 1970 and fractional ones too", () => {
    let clock = 0;
    const fs = new MemoryFileSystem({ now: () => clock });
    const cases: Array<[number, { sec: number; nsec: number }]> = [
      [1_700_000_000_123, { sec: 1_700_000_000, nsec: 123_000_000 }],
      [-1, { sec: -1, nsec: 999_000_000 }],
      [-1_500, { sec: -2, nsec: 500_000_000 }],
      [2.5, { sec: 0, nsec: 2_500_000 }],
      [999.9999999, { sec: 1, nsec: 0 }],
    ];
    for (const [index, [ms, mtime]] of cases.entries()) {
      clock = ms;
      fs.writeFile(`/f${index}`, "x");
      const stat = fs.lstat(`/f${index}`);
      expect(stat.mtime, String(ms)).toEqual(mtime);
      // mtimeMs and ctimeMs are the same instant as mtime.
      expect(stat.mtimeMs).toBe(mtime.sec * 1000 + mtime.nsec / 1e6);
      expect(stat.ctimeMs).toBe(stat.mtimeMs);
    }
  });

  it("setMetadata keeps the exact mtime it is given and moves ctime to the clock", () => {
    let clock = 1_000;
    const fs = new MemoryFileSystem({ now: () => clock });
    fs.writeFile("/f", "x");
    fs.makeDir("/d");
    clock = 9_000;
    fs.setMetadata("/f", { mtime: { sec: -34_560_000, nsec: 987_654_321 } });
    fs.setMetadata("/d", { mode: 0o700 });
    expect(fs.lstat("/f")).toMatchObject({ mtime: { sec: -34_560_000, nsec: 987_654_321 }, ctimeMs: 9_000 });
    expect(fs.lstat("/f").mtimeMs).toBeCloseTo(-34_559_999_012.3457, 3);
    expect(fs.lstat("/d")).toMatchObject({ mtimeMs: 1_000, ctimeMs: 9_000 });
  });

  it("setMetadata with nothing to change changes nothing, not even ctime", () => {
    let clock = 1_000;
    const fs = new MemoryFileSystem({ now: () => clock });
    fs.writeFile("/f", "x");
    fs.makeSymlink("/l", "f");
    clock = 2_000;
    fs.setMetadata("/f", {});
    fs.setMetadata("/l", { mode: 0o600 }); // a symlink's mode is ignored
    expect(fs.lstat("/f").ctimeMs).toBe(1_000);
    expect(fs.lstat("/l").ctimeMs).toBe(1_000);
  });

  it("refuses what chown, chmod and utimensat refuse, before changing anything", () => {
    const fs = new MemoryFileSystem();
    fs.writeFile("/f", "x");
    const before = fs.lstat("/f");
    const bad = [
      { mtime: { sec: 1, nsec: 1e9 } },
      { mtime: { sec: 1, nsec: -1 } },
      { mtime: { sec: 1.5, nsec: 0 } },
      { uid: -1 },
      { gid: 2 ** 32 },
      { mode: 0o644, uid: 0.5 },
      { mode: -1 },
    ];
    for (const metadata of bad)
      expect(
        errorCodeOf(() => fs.setMetadata("/f", metadata)),
        JSON.stringify(metadata),
      ).toBe("EINVAL");
    expect(errorCodeOf(() => fs.writeFileWith("/g", Uint8Array.of(1), { mtime: { sec: 0, nsec: 1e9 } }))).toBe(
      "EINVAL",
    );
    expect(errorCodeOf(() => fs.stageFile("/g", Uint8Array.of(1), { uid: -2 }))).toBe("EINVAL");
    expect(fs.lstat("/f")).toEqual(before);
    expect(fs.exists("/g")).toBe(false);
  });
});

describe("MemoryFileSystem directory times", () => {
  it("creating, removing and renaming entries sets the directory's mtime and ctime to the clock", () => {
    let clock = 100;
    const fs = new MemoryFileSystem({ now: () => clock });
    fs.makeDirs("/a/sub");
    fs.makeDir("/b");
    fs.writeFile("/a/f", "x");
    const steps: Array<[string, () => void, string[]]> = [
      ["writeFile (new)", () => fs.writeFile("/a/g", "x"), ["/a"]],
      ["makeDir", () => fs.makeDir("/a/d"), ["/a"]],
      ["makeSymlink", () => fs.makeSymlink("/a/l", "f"), ["/a"]],
      ["writeFileWith", () => fs.writeFileWith("/a/f", Uint8Array.of(1), {}), ["/a"]],
      ["rename across", () => fs.rename("/a/g", "/b/g"), ["/a", "/b"]],
      ["rename within", () => fs.rename("/b/g", "/b/h"), ["/b"]],
      ["removeFile", () => fs.removeFile("/a/l"), ["/a"]],
      ["removeDir", () => fs.removeDir("/a/d"), ["/a"]],
      ["stageFile (the temp is an entry)", () => fs.stageFile("/a/sub/s", Uint8Array.of(1), {}), ["/a/sub"]],
      ["stageExisting", () => fs.stageExisting("/b/h", "/a/moved", {}), ["/a", "/b"]],
    ];
    for (const [what, step, touched] of steps) {
      clock += 1_000;
      step();
      for (const dir of ["/", "/a", "/a/sub", "/b"]) {
        const stat = fs.lstat(dir);
        if (touched.includes(dir)) expect([stat.mtimeMs, stat.ctimeMs], `${what}: ${dir}`).toEqual([clock, clock]);
        else expect(stat.mtimeMs, `${what}: ${dir}`).toBeLessThan(clock);
      }
    }
  });

  it("commit and discard of a staged file touch its directory; an in-place overwrite does not", () => {
    let clock = 100;
    const fs = new MemoryFileSystem({ now: () => clock });
    fs.makeDir("/d");
    fs.writeFile("/d/f", "x");
    clock = 200;
    const staged = fs.stageFile("/d/f", Uint8Array.of(1), {});
    clock = 300;
    expect(fs.commitStaged([staged])).toEqual([]);
    expect(fs.lstat("/d").mtimeMs).toBe(300);
    clock = 400;
    const discarded = fs.stageFile("/d/g", Uint8Array.of(1), {});
    clock = 500;
    fs.discardStaged([discarded]);
    expect(fs.lstat("/d").mtimeMs).toBe(500);
    clock = 600;
    fs.writeFile("/d/f", "y");
    expect(fs.lstat("/d").mtimeMs).toBe(500);
  });
});

describe("MemoryFileSystem owners", () => {
  it("new entries belong to uid/gid 0 unless the options say otherwise", () => {
    const root = new MemoryFileSystem();
    root.writeFile("/f", "x");
    expect(root.lstat("/f")).toMatchObject({ uid: 0, gid: 0 });
    expect(root.lstat("/")).toMatchObject({ uid: 0, gid: 0 });
    const user = new MemoryFileSystem({ uid: 1000, gid: 100 });
    user.writeFile("/f", "x");
    user.makeDir("/d");
    user.makeSymlink("/l", "f");
    for (const path of ["/", "/f", "/d", "/l"]) expect(user.lstat(path), path).toMatchObject({ uid: 1000, gid: 100 });
  });

  it("applies chown, then the mode, then mtime: setuid given with a new owner survives", () => {
    const fs = new MemoryFileSystem();
    fs.writeFileWith("/f", Uint8Array.of(1), { uid: 5, gid: 6, mode: 0o6755, mtime: { sec: 1, nsec: 2 } });
    expect(fs.lstat("/f")).toMatchObject({ uid: 5, gid: 6, mode: 0o6755, mtime: { sec: 1, nsec: 2 } });
    fs.setMetadata("/f", { gid: 7 });
    expect(fs.lstat("/f")).toMatchObject({ uid: 5, gid: 7, mode: 0o755 });
  });
});

describe("MemoryFileSystem hard links", () => {
  it("two names share one file: bytes written in place through one are read through the other", () => {
    const fs = new MemoryFileSystem();
    fs.writeFile("/a", "first");
    expect(fs.commitStaged([fs.stageLink("/a", "/b")])).toEqual([]);
    fs.writeFile("/b", "second");
    expect(new TextDecoder().decode(fs.readFile("/a"))).toBe("second");
    expect(fs.lstat("/a")).toEqual(fs.lstat("/b"));
    expect(fs.lstat("/a").nlink).toBe(2);
    fs.removeFile("/b");
    expect(fs.lstat("/a").nlink).toBe(1);
  });

  it("counts links while staged, drops the staged one when discarded, and keeps counts across rename and removeDir", () => {
    let clock = 1;
    const fs = new MemoryFileSystem({ now: () => clock });
    fs.makeDir("/d");
    fs.writeFile("/keep", "x");
    clock = 2;
    const staged = fs.stageLink("/keep", "/d/link");
    // link(2) counts at once and moves ctime.
    expect(fs.lstat("/keep")).toMatchObject({ nlink: 2, ctimeMs: 2 });
    fs.discardStaged([staged]);
    expect(fs.lstat("/keep").nlink).toBe(1);
    expect(fs.commitStaged([fs.stageLink("/keep", "/d/link")])).toEqual([]);
    fs.rename("/d/link", "/d/moved");
    expect(fs.lstat("/keep").nlink).toBe(2);
    // rename(2) between two names of one inode does nothing at all.
    fs.rename("/keep", "/d/moved");
    expect(fs.listDir("/")).toEqual(["d", "keep"]);
    expect(fs.lstat("/keep").nlink).toBe(2);
    // A staged link left inside a removed directory is unlinked with it.
    fs.stageLink("/keep", "/d/pending");
    expect(fs.lstat("/keep").nlink).toBe(3);
    fs.removeDir("/d");
    expect(fs.lstat("/keep").nlink).toBe(1);
  });

  it("replacing a linked name (writeFileWith, rename over it, a commit) unlinks only that name", () => {
    const fs = new MemoryFileSystem();
    fs.writeFile("/a", "a");
    for (const name of ["/b", "/c", "/d"]) expect(fs.commitStaged([fs.stageLink("/a", name)])).toEqual([]);
    expect(fs.lstat("/a").nlink).toBe(4);
    fs.writeFileWith("/b", Uint8Array.of(1), {});
    fs.writeFile("/x", "x");
    fs.rename("/x", "/c");
    expect(fs.commitStaged([fs.stageFile("/d", Uint8Array.of(2), {})])).toEqual([]);
    expect(fs.lstat("/a").nlink).toBe(1);
    expect(new TextDecoder().decode(fs.readFile("/a"))).toBe("a");
  });

  it("stageExisting moves the file itself, so its other names stay linked", () => {
    const fs = new MemoryFileSystem();
    fs.writeFile("/a", "shared");
    expect(fs.commitStaged([fs.stageLink("/a", "/b")])).toEqual([]);
    expect(fs.commitStaged([fs.stageExisting("/b", "/c", { mode: 0o600 })])).toEqual([]);
    expect(fs.listDir("/")).toEqual(["a", "c"]);
    expect(fs.lstat("/c")).toMatchObject({ ino: fs.lstat("/a").ino, nlink: 2, mode: 0o600 });
    expect(fs.lstat("/a").mode).toBe(0o600);
  });

  it("a directory's link count is 2 plus its subdirectories; a symlink has one", () => {
    const fs = new MemoryFileSystem();
    fs.makeDirs("/d/x");
    fs.makeDir("/d/y");
    fs.writeFile("/d/f", "x");
    fs.makeSymlink("/d/l", "f");
    expect(fs.lstat("/d").nlink).toBe(4);
    expect(fs.lstat("/d/x").nlink).toBe(2);
    expect(fs.lstat("/d/l").nlink).toBe(1);
  });

  it("stageLink and stageExisting take regular files only", () => {
    const fs = new MemoryFileSystem();
    fs.makeDir("/d");
    fs.makeSymlink("/l", "d");
    for (const source of ["/d", "/l"]) {
      expect(errorCodeOf(() => fs.stageLink(source, "/new"))).toBe("EINVAL");
      expect(errorCodeOf(() => fs.stageExisting(source, "/new", {}))).toBe("EINVAL");
    }
    expect(errorCodeOf(() => fs.stageExisting("/missing", "/new", {}))).toBe("ENOENT");
  });
});

describe("MemoryFileSystem internal names and staged files", () => {
  it("each instance has its own internal names; labelled ones never collide with temps", () => {
    const first = new MemoryFileSystem();
    const second = new MemoryFileSystem();
    first.writeFile("/f", "x");
    const temp = posix.basename(first.stageFile("/f", Uint8Array.of(1), {}).tempPath);
    const stash = first.internalName("stash");
    expect(temp.startsWith(RESERVED_PREFIX)).toBe(true);
    expect(stash.startsWith(RESERVED_PREFIX)).toBe(true);
    expect([first.isInternalName(temp), first.isInternalName(stash)]).toEqual([true, true]);
    expect([second.isInternalName(temp), second.isInternalName(stash)]).toEqual([false, false]);
    expect(first.internalName("1")).not.toBe(temp.replace(/[0-9]+$/, "1"));
    expect(first.isInternalName(RESERVED_PREFIX)).toBe(false);
    expect(first.isInternalName(`${RESERVED_PREFIX}anything`)).toBe(false);
    for (const label of ["", "a/b", "a\0b"]) expect(errorCodeOf(() => first.internalName(label))).toBe("EINVAL");
  });

  it("an internal directory (a stash) works like any directory but is hidden from listings, debugString and removeDir's counts", () => {
    const fs = new MemoryFileSystem();
    const stash = `/t/${fs.internalName("stash")}`;
    fs.makeDir("/t");
    fs.writeFile(`/t/${RESERVED_PREFIX}user`, "shown");
    fs.makeDir(stash);
    fs.writeFile("/t/f", "x");
    fs.rename("/t/f", `${stash}/f`);
    expect(fs.listDir("/t")).toEqual([`${RESERVED_PREFIX}user`]);
    expect(fs.listDir(stash)).toEqual(["f"]);
    expect(fs.debugString("/t")).toBe(`/t\n\`-- ${RESERVED_PREFIX}user: shown`);
    const before = { removeDir: fs.getNumOperations("removeDir"), removeFile: fs.getNumOperations("removeFile") };
    fs.removeDir("/t");
    expect(fs.getNumOperations("removeDir") - before.removeDir).toBe(1);
    expect(fs.getNumOperations("removeFile") - before.removeFile).toBe(1);
    expect(fs.exists("/t")).toBe(false);
  });

  it("a temp lives beside its final path from staging on, and goes when discarded, aborted or failed", () => {
    const fs = new MemoryFileSystem();
    fs.makeDir("/d");
    const staged = fs.stageFile("/d/f", Uint8Array.of(1), {});
    expect(posix.dirname(staged.tempPath)).toBe("/d");
    expect(fs.lstat(staged.tempPath).kind).toBe("file");
    fs.discardStaged([staged]);
    expect(fs.exists(staged.tempPath)).toBe(false);
    const writer = fs.openStaged("/d/g");
    writer.write(Uint8Array.of(1));
    writer.abort();
    expect(fs.listDir("/d")).toEqual([]);
    expect(errorCodeOf(() => writer.write(Uint8Array.of(2)))).toBe("EBADF");
    const blocked = fs.stageFile("/d/h", Uint8Array.of(1), {});
    fs.makeDir("/d/h");
    const [failure] = fs.commitStaged([blocked]);
    expect(failure?.error.code).toBe("EISDIR");
    expect(failure?.error.path).toBe("/d/h");
    expect(fs.exists(blocked.tempPath)).toBe(false);
  });

  it("openStaged writes a temp whose mode is the replaced file's unless given, and commits like a staged file", () => {
    const fs = new MemoryFileSystem();
    fs.writeFile("/f", "old");
    fs.setMetadata("/f", { mode: 0o640 });
    const writer = fs.openStaged("/f");
    expect(fs.listDir("/")).toEqual(["f"]);
    writer.write(new TextEncoder().encode("ne"));
    writer.write(new TextEncoder().encode("w"));
    expect(writer.size).toBe(3);
    const staged = writer.finish({});
    expect(fs.lstat(staged.tempPath)).toMatchObject({ mode: 0o640, size: 3 });
    expect(errorCodeOf(() => writer.finish({}))).toBe("EBADF");
    expect(fs.commitStaged([staged])).toEqual([]);
    // A plain Uint8Array, like every read (toEqual tells a Buffer apart).
    expect(fs.readFile("/f")).toEqual(new TextEncoder().encode("new"));
  });

  it("commitStaged counts one writeFile per committed file, none for a failure, and refuses a foreign temp", () => {
    const fs = new MemoryFileSystem();
    fs.makeDir("/d");
    const good = fs.stageFile("/d/a", Uint8Array.of(1), {});
    const bad = fs.stageFile("/d/b", Uint8Array.of(1), {});
    fs.makeDir("/d/b");
    fs.writeFile("/d/not-a-temp", "x");
    const foreign = { path: "/d/c", tempPath: "/d/not-a-temp" };
    const elsewhere = { path: "/c", tempPath: good.tempPath };
    const writes = fs.getNumOperations("writeFile");
    const failures = fs.commitStaged([elsewhere, good, bad, foreign]);
    expect(failures.map(({ file, error }) => [file, error.code])).toEqual([
      [elsewhere, "EINVAL"],
      [bad, "EISDIR"],
      [foreign, "EINVAL"],
    ]);
    expect(fs.getNumOperations("writeFile") - writes).toBe(1);
    expect(fs.getNumOperations("commitStaged")).toBe(1);
    expect(fs.listDir("/d")).toEqual(["a", "b", "not-a-temp"]);
  });

  it("a symlink's size counts the bytes its target stands for", () => {
    const fs = new MemoryFileSystem();
    fs.makeSymlink("/l", nameOfBytes(Buffer.from([0xff, 0xfe, 0x61])));
    expect(fs.lstat("/l").size).toBe(3);
    fs.makeSymlink("/u", "é");
    expect(fs.lstat("/u").size).toBe(2);
  });
});

describe("MemoryFileSystem setImmutable (instrumentation for chattr +i)", () => {
  it("refuses every change to an immutable file with EPERM until it is cleared", () => {
    const fs = new MemoryFileSystem();
    fs.writeFile("/f", "x");
    fs.writeFile("/g", "y");
    fs.makeDir("/d");
    fs.setImmutable("/f", true);
    const before = fs.lstat("/f");
    const refused: Array<[string, () => unknown]> = [
      ["writeFile", () => fs.writeFile("/f", "new")],
      ["writeFileWith", () => fs.writeFileWith("/f", Uint8Array.of(1), {})],
      ["removeFile", () => fs.removeFile("/f")],
      ["setMetadata", () => fs.setMetadata("/f", { mode: 0o600 })],
      ["rename from", () => fs.rename("/f", "/h")],
      ["rename over", () => fs.rename("/g", "/f")],
      ["stageLink", () => fs.stageLink("/f", "/h")],
      ["stageExisting", () => fs.stageExisting("/f", "/h", {})],
    ];
    for (const [what, action] of refused) expect(errorCodeOf(action), what).toBe("EPERM");
    expect(fs.lstat("/f")).toEqual(before);
    expect(fs.listDir("/")).toEqual(["d", "f", "g"]);
    fs.setImmutable("/f", false);
    fs.removeFile("/f");
    expect(fs.exists("/f")).toBe(false);
  });

  it("a commit over an immutable file fails alone with EPERM", () => {
    const fs = new MemoryFileSystem();
    fs.writeFile("/locked", "old");
    fs.setImmutable("/locked", true);
    const locked = fs.stageFile("/locked", Uint8Array.of(1), {});
    const free = fs.stageFile("/free", Uint8Array.of(2), {});
    const failures = fs.commitStaged([locked, free]);
    expect(failures.map(({ file, error }) => [file, error.code])).toEqual([[locked, "EPERM"]]);
    expect(new TextDecoder().decode(fs.readFile("/locked"))).toBe("old");
    expect(fs.readFile("/free")).toEqual(Uint8Array.of(2));
    expect(fs.exists(locked.tempPath)).toBe(false);
  });

  it("an immutable directory refuses new, removed and renamed children, and its own removal", () => {
    const fs = new MemoryFileSystem();
    fs.makeDirs("/d/sub");
    fs.writeFile("/d/f", "x");
    fs.writeFile("/outside", "y");
    fs.setImmutable("/d", true);
    const refused: Array<[string, () => unknown]> = [
      ["writeFile", () => fs.writeFile("/d/new", "x")],
      ["makeDir", () => fs.makeDir("/d/new")],
      ["makeSymlink", () => fs.makeSymlink("/d/new", "f")],
      ["removeFile", () => fs.removeFile("/d/f")],
      ["removeDir child", () => fs.removeDir("/d/sub")],
      ["removeDir", () => fs.removeDir("/d")],
      ["rename in", () => fs.rename("/outside", "/d/in")],
      ["rename out", () => fs.rename("/d/f", "/out")],
      ["stageFile", () => fs.stageFile("/d/new", Uint8Array.of(1), {})],
      ["openStaged", () => fs.openStaged("/d/new")],
    ];
    for (const [what, action] of refused) expect(errorCodeOf(action), what).toBe("EPERM");
    expect(fs.listDir("/d")).toEqual(["f", "sub"]);
    // Its existing file is not itself immutable: it may still be written in place.
    fs.writeFile("/d/f", "changed");
    expect(new TextDecoder().decode(fs.readFile("/d/f"))).toBe("changed");
  });
});
