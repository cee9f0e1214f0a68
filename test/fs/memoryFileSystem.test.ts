import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { FileSystemError, type FileSystemEvent, FileSystemEventType } from "../../src/fs/fileSystem.js";
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

  it("readFile and setMetadata on a symlink fail with ELOOP; writeFile replaces the link itself", () => {
    const fs = new MemoryFileSystem();
    fs.writeFile("/target", "keep");
    fs.makeSymlink("/link", "/target");
    expect(errorCodeOf(() => fs.readFile("/link"))).toBe("ELOOP");
    expect(errorCodeOf(() => fs.setMetadata("/link", { mode: 0o600 }))).toBe("ELOOP");
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
    fs.setMetadata("/d/f", { mtimeMs: 10 });
    expect(fs.lstat("/d/f")).toMatchObject({ mtimeMs: 10, ctimeMs: 5_000 });
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
