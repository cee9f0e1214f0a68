import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FileSystemError, type MirrorFileSystem } from "../../src/fs/fileSystem.js";

/** What a contract factory returns: a file system and a fresh, empty, existing directory in it. */
export interface FileSystemUnderTest {
  fs: MirrorFileSystem;
  /** Absolute, normalised, existing, empty directory the tests may use freely. */
  root: string;
  cleanup?: () => void;
}

/**
 * The code of the `FileSystemError` that `action` throws; "no error" when it returns,
 * and a descriptive string when it throws something else (so a failed assertion says what happened).
 */
export function errorCodeOf(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    if (error instanceof FileSystemError) return error.code;
    return `not a FileSystemError: ${String(error)}`;
  }
  return "no error";
}

const allByteValues = Uint8Array.from({ length: 256 }, (_, index) => index);

/**
 * The FileSystem contract: behaviour every implementation shares with a real Linux disk,
 * run on a fresh empty directory. Event delivery is not part of it (the memory mock never
 * emits events by itself); neither is instrumentation such as `numWatchedDirs`.
 */
export function describeFileSystemContract(label: string, makeFileSystem: () => FileSystemUnderTest): void {
  describe(`FileSystem contract: ${label}`, () => {
    let subject: FileSystemUnderTest;
    let fs: MirrorFileSystem;
    let root: string;
    /** Absolute path under the test root. */
    const at = (relative: string) => `${root}/${relative}`;
    const text = (path: string) => new TextDecoder().decode(fs.readFile(path));

    beforeEach(() => {
      subject = makeFileSystem();
      fs = subject.fs;
      root = subject.root;
    });
    afterEach(() => {
      subject.cleanup?.();
    });

    describe("files", () => {
      it("starts from an empty root directory", () => {
        expect(fs.exists(root)).toBe(true);
        expect(fs.isDir(root)).toBe(true);
        expect(fs.listDir(root)).toEqual([]);
      });

      it("round-trips all 256 byte values", () => {
        fs.writeFile(at("bytes"), allByteValues);
        expect(new Uint8Array(fs.readFile(at("bytes")))).toEqual(allByteValues);
        expect(fs.lstat(at("bytes")).size).toBe(256);
      });

      it("round-trips an empty file", () => {
        fs.writeFile(at("empty"), new Uint8Array(0));
        expect(fs.isFile(at("empty"))).toBe(true);
        expect(fs.readFile(at("empty")).length).toBe(0);
        expect(fs.lstat(at("empty")).size).toBe(0);
      });

      it("writes strings as UTF-8", () => {
        const content = "héllo ✓ 🎉\n";
        fs.writeFile(at("text"), content);
        expect(new Uint8Array(fs.readFile(at("text")))).toEqual(new Uint8Array(Buffer.from(content, "utf8")));
        expect(text(at("text"))).toBe(content);
      });

      it("overwrites a file, shorter content truncating it", () => {
        fs.writeFile(at("f"), "a long first version");
        fs.writeFile(at("f"), "short");
        expect(text(at("f"))).toBe("short");
        expect(fs.lstat(at("f")).size).toBe(5);
      });

      it("keeps its own copy of the bytes in both directions", () => {
        const written = Uint8Array.of(1, 2, 3);
        fs.writeFile(at("f"), written);
        written[0] = 99;
        const read = fs.readFile(at("f"));
        read[1] = 99;
        expect(new Uint8Array(fs.readFile(at("f")))).toEqual(Uint8Array.of(1, 2, 3));
      });

      it("answers exists, isFile and isDir", () => {
        fs.writeFile(at("f"), "x");
        fs.makeDir(at("d"));
        expect(fs.exists(at("f"))).toBe(true);
        expect(fs.exists(at("d"))).toBe(true);
        expect(fs.exists(at("missing"))).toBe(false);
        expect(fs.exists(at("missing/deeper"))).toBe(false);
        expect(fs.exists(at("f/below-a-file"))).toBe(false);
        expect([fs.isFile(at("f")), fs.isDir(at("f"))]).toEqual([true, false]);
        expect([fs.isFile(at("d")), fs.isDir(at("d"))]).toEqual([false, true]);
        expect(errorCodeOf(() => fs.isFile(at("missing")))).toBe("ENOENT");
        expect(errorCodeOf(() => fs.isDir(at("missing")))).toBe("ENOENT");
      });

      it("normalises paths on entry", () => {
        fs.makeDir(at("d"));
        fs.writeFile(`${root}/d/../d/./f/`, "x");
        expect(text(at("d/f"))).toBe("x");
        expect(fs.listDir(`${root}/d/`)).toEqual(["f"]);
      });

      it("removes a file", () => {
        fs.writeFile(at("f"), "x");
        fs.removeFile(at("f"));
        expect(fs.exists(at("f"))).toBe(false);
        expect(fs.listDir(root)).toEqual([]);
      });

      it("raises the POSIX codes for file operations", () => {
        fs.writeFile(at("f"), "x");
        fs.makeDir(at("d"));
        expect(errorCodeOf(() => fs.readFile(at("missing")))).toBe("ENOENT");
        expect(errorCodeOf(() => fs.readFile(at("d")))).toBe("EISDIR");
        expect(errorCodeOf(() => fs.writeFile(at("missing/f"), "x"))).toBe("ENOENT");
        expect(errorCodeOf(() => fs.writeFile(at("f/g"), "x"))).toBe("ENOTDIR");
        expect(errorCodeOf(() => fs.writeFile(at("d"), "x"))).toBe("EISDIR");
        expect(errorCodeOf(() => fs.removeFile(at("missing")))).toBe("ENOENT");
        expect(errorCodeOf(() => fs.removeFile(at("d")))).toBe("EISDIR");
        expect(fs.isDir(at("d"))).toBe(true);
      });

      it("names the path in its errors", () => {
        let caught: unknown;
        try {
          fs.readFile(at("missing"));
        } catch (error) {
          caught = error;
        }
        expect(caught).toBeInstanceOf(FileSystemError);
        expect((caught as FileSystemError).message).toContain(at("missing"));
      });
    });

    describe("directories", () => {
      it("lists base names of the immediate children", () => {
        fs.writeFile(at("b"), "x");
        fs.makeDir(at("a"));
        fs.writeFile(at("a/inner"), "x");
        fs.makeSymlink(at("c"), "b");
        expect(fs.listDir(root).sort()).toEqual(["a", "b", "c"]);
        expect(fs.listDir(at("a"))).toEqual(["inner"]);
      });

      it("makeDir is a no-op on an existing directory and keeps its content", () => {
        fs.makeDir(at("d"));
        fs.writeFile(at("d/f"), "x");
        fs.makeDir(at("d"));
        expect(fs.listDir(at("d"))).toEqual(["f"]);
      });

      it("makeDirs creates every missing level and accepts an existing path", () => {
        fs.makeDirs(at("a/b/c"));
        expect(fs.isDir(at("a"))).toBe(true);
        expect(fs.isDir(at("a/b"))).toBe(true);
        expect(fs.isDir(at("a/b/c"))).toBe(true);
        fs.writeFile(at("a/b/c/f"), "x");
        fs.makeDirs(at("a/b/c"));
        expect(fs.listDir(at("a/b/c"))).toEqual(["f"]);
      });

      it("removeDir removes a whole tree and nothing next to it", () => {
        fs.makeDirs(at("tree/sub/deeper"));
        fs.writeFile(at("tree/f"), "x");
        fs.writeFile(at("tree/sub/g"), "y");
        fs.writeFile(at("tree/sub/deeper/h"), "z");
        fs.makeDir(at("sibling"));
        fs.writeFile(at("sibling/keep"), "k");
        fs.removeDir(at("tree"));
        expect(fs.exists(at("tree"))).toBe(false);
        expect(fs.listDir(root)).toEqual(["sibling"]);
        expect(text(at("sibling/keep"))).toBe("k");
      });

      it("removeDir removes an empty directory", () => {
        fs.makeDir(at("d"));
        fs.removeDir(at("d"));
        expect(fs.exists(at("d"))).toBe(false);
      });

      it("raises the POSIX codes for directory operations", () => {
        fs.writeFile(at("f"), "x");
        expect(errorCodeOf(() => fs.listDir(at("missing")))).toBe("ENOENT");
        expect(errorCodeOf(() => fs.listDir(at("f")))).toBe("ENOTDIR");
        expect(errorCodeOf(() => fs.makeDir(at("missing/d")))).toBe("ENOENT");
        expect(errorCodeOf(() => fs.makeDir(at("f/d")))).toBe("ENOTDIR");
        expect(errorCodeOf(() => fs.makeDir(at("f")))).toBe("EEXIST");
        expect(errorCodeOf(() => fs.makeDirs(at("f")))).toBe("EEXIST");
        expect(errorCodeOf(() => fs.makeDirs(at("f/d/e")))).toBe("ENOTDIR");
        expect(errorCodeOf(() => fs.removeDir(at("missing")))).toBe("ENOENT");
        expect(errorCodeOf(() => fs.removeDir(at("f")))).toBe("ENOTDIR");
        expect(text(at("f"))).toBe("x");
      });
    });

    describe("symlinks are entries of their own, never followed", () => {
      beforeEach(() => {
        fs.makeDir(at("dir"));
        fs.writeFile(at("dir/inside"), "secret");
        fs.writeFile(at("file"), "content");
        fs.makeSymlink(at("link-to-dir"), "dir");
        fs.makeSymlink(at("link-to-file"), "file");
        fs.makeSymlink(at("dangling"), "nowhere/at/all");
      });

      it("stores and reads back the target text as given", () => {
        expect(fs.readLink(at("link-to-dir"))).toBe("dir");
        expect(fs.readLink(at("dangling"))).toBe("nowhere/at/all");
        const absoluteTarget = at("dir");
        fs.makeSymlink(at("absolute"), absoluteTarget);
        expect(fs.readLink(at("absolute"))).toBe(absoluteTarget);
      });

      it("exists reports a symlink, even a dangling one; isFile and isDir say false", () => {
        expect(fs.exists(at("dangling"))).toBe(true);
        expect(fs.exists(at("link-to-file"))).toBe(true);
        for (const link of ["link-to-dir", "link-to-file", "dangling"]) {
          expect([fs.isFile(at(link)), fs.isDir(at(link))]).toEqual([false, false]);
        }
      });

      it("lstat reports kind symlink, the target's byte length as size and mode 0o777", () => {
        const stat = fs.lstat(at("link-to-dir"));
        expect(stat.kind).toBe("symlink");
        expect(stat.size).toBe(3);
        expect(stat.mode).toBe(0o777);
        expect(fs.lstat(at("dangling")).kind).toBe("symlink");
      });

      it("readFile of a symlink fails with ELOOP, as an O_NOFOLLOW open does", () => {
        expect(errorCodeOf(() => fs.readFile(at("link-to-file")))).toBe("ELOOP");
        expect(errorCodeOf(() => fs.readFile(at("dangling")))).toBe("ELOOP");
      });

      it("a symlink in the middle of a path is not traversed", () => {
        // ENOTDIR from a component-by-component walk, ELOOP from a RESOLVE_NO_SYMLINKS open: both refuse.
        expect(["ENOTDIR", "ELOOP"]).toContain(errorCodeOf(() => fs.readFile(at("link-to-dir/inside"))));
        expect(["ENOTDIR", "ELOOP"]).toContain(errorCodeOf(() => fs.writeFile(at("link-to-dir/new"), "x")));
        // Linux's open(O_DIRECTORY | O_NOFOLLOW) of a symlink says ENOTDIR too.
        expect(errorCodeOf(() => fs.listDir(at("link-to-dir")))).toBe("ENOTDIR");
        expect(fs.listDir(at("dir"))).toEqual(["inside"]);
      });

      it("writing to a symlink never writes through it", () => {
        const code = errorCodeOf(() => fs.writeFile(at("link-to-file"), "replaced"));
        // Either the link is refused or the link itself is replaced; the target is untouched.
        if (code === "no error") expect(text(at("link-to-file"))).toBe("replaced");
        else expect(fs.readLink(at("link-to-file"))).toBe("file");
        expect(text(at("file"))).toBe("content");
        fs.writeFileWith(at("dangling"), Uint8Array.of(7), { mode: 0o600 });
        expect(fs.lstat(at("dangling")).kind).toBe("file");
        expect(fs.exists(at("nowhere"))).toBe(false);
      });

      it("setMetadata on a symlink fails and leaves its target alone", () => {
        fs.setMetadata(at("file"), { mode: 0o640 });
        expect(errorCodeOf(() => fs.setMetadata(at("link-to-file"), { mode: 0o600 }))).not.toBe("no error");
        expect(fs.lstat(at("file")).mode).toBe(0o640);
      });

      it("removeFile removes the link, not its target", () => {
        fs.removeFile(at("link-to-dir"));
        fs.removeFile(at("link-to-file"));
        fs.removeFile(at("dangling"));
        expect(fs.listDir(root).sort()).toEqual(["dir", "file"]);
        expect(fs.listDir(at("dir"))).toEqual(["inside"]);
        expect(text(at("file"))).toBe("content");
      });

      it("removeDir of a symlink to a directory fails with ENOTDIR", () => {
        expect(errorCodeOf(() => fs.removeDir(at("link-to-dir")))).toBe("ENOTDIR");
        expect(fs.listDir(at("dir"))).toEqual(["inside"]);
      });

      it("removeDir of a tree holding a symlink to a directory outside deletes only the link", () => {
        fs.makeDirs(at("tree/sub"));
        fs.makeSymlink(at("tree/sub/escape"), "../../dir");
        fs.makeSymlink(at("tree/absolute-escape"), at("dir"));
        fs.removeDir(at("tree"));
        expect(fs.exists(at("tree"))).toBe(false);
        expect(fs.listDir(at("dir"))).toEqual(["inside"]);
        expect(text(at("dir/inside"))).toBe("secret");
      });

      it("makeDir onto a symlink to a directory fails with EEXIST", () => {
        expect(errorCodeOf(() => fs.makeDir(at("link-to-dir")))).toBe("EEXIST");
        expect(fs.lstat(at("link-to-dir")).kind).toBe("symlink");
      });

      it("raises the POSIX codes for symlink operations", () => {
        expect(errorCodeOf(() => fs.makeSymlink(at("file"), "x"))).toBe("EEXIST");
        expect(errorCodeOf(() => fs.makeSymlink(at("dangling"), "x"))).toBe("EEXIST");
        expect(errorCodeOf(() => fs.makeSymlink(at("missing/link"), "x"))).toBe("ENOENT");
        expect(errorCodeOf(() => fs.readLink(at("file")))).toBe("EINVAL");
        expect(errorCodeOf(() => fs.readLink(at("dir")))).toBe("EINVAL");
        expect(errorCodeOf(() => fs.readLink(at("missing")))).toBe("ENOENT");
        expect(fs.readLink(at("dangling"))).toBe("nowhere/at/all");
      });
    });

    describe("metadata", () => {
      it("lstat reports kind, size, permission bits and times of files and directories", () => {
        fs.writeFile(at("f"), "12345");
        fs.makeDir(at("d"));
        const file = fs.lstat(at("f"));
        expect(file.kind).toBe("file");
        expect(file.size).toBe(5);
        expect(file.mode & ~0o7777).toBe(0);
        expect(Number.isFinite(file.mtimeMs)).toBe(true);
        expect(Number.isFinite(file.ctimeMs)).toBe(true);
        expect(fs.lstat(at("d")).kind).toBe("dir");
        expect(errorCodeOf(() => fs.lstat(at("missing")))).toBe("ENOENT");
      });

      it("gives distinct entries distinct inode numbers", () => {
        fs.writeFile(at("a"), "x");
        fs.writeFile(at("b"), "x");
        fs.makeDir(at("c"));
        fs.makeSymlink(at("d"), "a");
        const inodes = ["a", "b", "c", "d"].map((name) => fs.lstat(at(name)).ino);
        expect(new Set(inodes).size).toBe(4);
      });

      it("writeFileWith writes the bytes, the mode and the mtime", () => {
        fs.writeFileWith(at("f"), allByteValues, { mode: 0o640, mtimeMs: 1_600_000_000_000 });
        const stat = fs.lstat(at("f"));
        expect(new Uint8Array(fs.readFile(at("f")))).toEqual(allByteValues);
        expect(stat.mode).toBe(0o640);
        expect(stat.mtimeMs).toBe(1_600_000_000_000);
        expect(stat.size).toBe(256);
      });

      it("writeFileWith keeps millisecond mtimes and masks setuid, setgid and sticky bits", () => {
        fs.writeFileWith(at("f"), Uint8Array.of(1), { mode: 0o7755, mtimeMs: 1_600_000_000_123 });
        const stat = fs.lstat(at("f"));
        expect(stat.mode).toBe(0o755);
        // The kernel stores nanoseconds converted from a float; the millisecond survives.
        expect(stat.mtimeMs).toBeCloseTo(1_600_000_000_123, 0);
      });

      it("writeFileWith replaces an existing file", () => {
        fs.writeFile(at("f"), "old content, longer");
        fs.writeFileWith(at("f"), new TextEncoder().encode("new"), { mode: 0o600, mtimeMs: 1_500_000_000_000 });
        expect(text(at("f"))).toBe("new");
        expect(fs.lstat(at("f")).mode).toBe(0o600);
        expect(fs.listDir(root)).toEqual(["f"]);
      });

      it("writeFileWith raises the POSIX codes", () => {
        fs.makeDir(at("d"));
        fs.writeFile(at("f"), "x");
        const bytes = Uint8Array.of(1);
        expect(errorCodeOf(() => fs.writeFileWith(at("d"), bytes, {}))).toBe("EISDIR");
        expect(errorCodeOf(() => fs.writeFileWith(at("missing/f"), bytes, {}))).toBe("ENOENT");
        expect(errorCodeOf(() => fs.writeFileWith(at("f/g"), bytes, {}))).toBe("ENOTDIR");
        expect(fs.listDir(root).sort()).toEqual(["d", "f"]);
      });

      it("setMetadata sets mode and mtime of a file and of a directory", () => {
        fs.writeFile(at("f"), "x");
        fs.makeDir(at("d"));
        fs.setMetadata(at("f"), { mode: 0o600, mtimeMs: 1_400_000_000_000 });
        fs.setMetadata(at("d"), { mode: 0o750, mtimeMs: 1_300_000_000_000 });
        expect(fs.lstat(at("f")).mode).toBe(0o600);
        expect(fs.lstat(at("f")).mtimeMs).toBe(1_400_000_000_000);
        expect(fs.lstat(at("d")).mode).toBe(0o750);
        expect(fs.lstat(at("d")).mtimeMs).toBe(1_300_000_000_000);
        expect(text(at("f"))).toBe("x");
      });

      it("setMetadata changes only what it is given", () => {
        fs.writeFileWith(at("f"), Uint8Array.of(1), { mode: 0o640, mtimeMs: 1_400_000_000_000 });
        fs.setMetadata(at("f"), { mode: 0o600 });
        expect(fs.lstat(at("f")).mtimeMs).toBe(1_400_000_000_000);
        fs.setMetadata(at("f"), { mtimeMs: 1_500_000_000_000 });
        expect(fs.lstat(at("f")).mode).toBe(0o600);
        expect(errorCodeOf(() => fs.setMetadata(at("missing"), { mode: 0o600 }))).toBe("ENOENT");
      });
    });

    describe("rename", () => {
      it("moves a file, keeping its inode and bytes", () => {
        fs.makeDir(at("d"));
        fs.writeFile(at("a"), allByteValues);
        const ino = fs.lstat(at("a")).ino;
        fs.rename(at("a"), at("d/b"));
        expect(fs.exists(at("a"))).toBe(false);
        expect(new Uint8Array(fs.readFile(at("d/b")))).toEqual(allByteValues);
        expect(fs.lstat(at("d/b")).ino).toBe(ino);
      });

      it("moves a directory with its content", () => {
        fs.makeDirs(at("a/sub"));
        fs.writeFile(at("a/sub/f"), "x");
        fs.rename(at("a"), at("b"));
        expect(fs.listDir(root)).toEqual(["b"]);
        expect(text(at("b/sub/f"))).toBe("x");
      });

      it("replaces an existing file, and an empty directory with a directory", () => {
        fs.writeFile(at("a"), "new");
        fs.writeFile(at("b"), "old");
        fs.rename(at("a"), at("b"));
        expect(fs.listDir(root)).toEqual(["b"]);
        expect(text(at("b"))).toBe("new");
        fs.makeDir(at("d1"));
        fs.writeFile(at("d1/f"), "x");
        fs.makeDir(at("d2"));
        fs.rename(at("d1"), at("d2"));
        expect(fs.listDir(at("d2"))).toEqual(["f"]);
        expect(fs.exists(at("d1"))).toBe(false);
      });

      it("moves a symlink itself, not its target", () => {
        fs.writeFile(at("target"), "x");
        fs.makeSymlink(at("link"), "target");
        fs.rename(at("link"), at("moved"));
        expect(fs.readLink(at("moved"))).toBe("target");
        expect(text(at("target"))).toBe("x");
        expect(fs.listDir(root).sort()).toEqual(["moved", "target"]);
      });

      it("renaming a path onto itself changes nothing", () => {
        fs.writeFile(at("a"), "x");
        fs.rename(at("a"), at("a"));
        expect(text(at("a"))).toBe("x");
      });

      it("raises the POSIX codes", () => {
        fs.writeFile(at("f"), "x");
        fs.makeDirs(at("full/inner"));
        fs.makeDir(at("empty"));
        expect(errorCodeOf(() => fs.rename(at("missing"), at("g")))).toBe("ENOENT");
        expect(errorCodeOf(() => fs.rename(at("f"), at("missing/g")))).toBe("ENOENT");
        expect(errorCodeOf(() => fs.rename(at("empty"), at("full")))).toBe("ENOTEMPTY");
        expect(errorCodeOf(() => fs.rename(at("f"), at("empty")))).toBe("EISDIR");
        expect(errorCodeOf(() => fs.rename(at("empty"), at("f")))).toBe("ENOTDIR");
        expect(errorCodeOf(() => fs.rename(at("full"), at("full/inner/self")))).toBe("EINVAL");
        expect(fs.listDir(root).sort()).toEqual(["empty", "f", "full"]);
        expect(fs.listDir(at("full"))).toEqual(["inner"]);
      });
    });

    describe("debugString", () => {
      it("renders the tree in the seed's format, the root line as given", () => {
        fs.makeDir(at("a"));
        fs.makeDir(at("a/b"));
        fs.writeFile(at("a/b/c"), "x");
        fs.writeFile(at("a/d"), "y");
        expect(fs.debugString(at("a"))).toBe([at("a"), "|-- /b", "|   `-- c: x", "`-- d: y"].join("\n"));
      });

      it("sorts children by name, indents under non-last and last children, and shows symlinks", () => {
        fs.makeDirs(at("z/deep"));
        fs.writeFile(at("z/deep/leaf"), "1");
        fs.writeFile(at("z/file"), "2");
        fs.makeDir(at("m"));
        fs.writeFile(at("b"), "3");
        fs.makeSymlink(at("link"), "b");
        fs.makeDir(at("a-empty"));
        expect(fs.debugString(root)).toBe(
          [
            root,
            "|-- /a-empty",
            "|-- b: 3",
            "|-- link -> b",
            "|-- /m",
            "`-- /z",
            "    |-- /deep",
            "    |   `-- leaf: 1",
            "    `-- file: 2",
          ].join("\n"),
        );
      });

      it("an empty directory is its root line alone, and the root line keeps the path as given", () => {
        expect(fs.debugString(root)).toBe(root);
        fs.makeDir(at("d"));
        expect(fs.debugString(`${root}/d/`)).toBe(`${root}/d/`);
        expect(errorCodeOf(() => fs.debugString(at("missing")))).toBe("ENOENT");
      });
    });

    describe("watches", () => {
      it("watchDir then unwatchDir; unwatching again fails with ENOTWATCHED", () => {
        fs.makeDir(at("d"));
        fs.watchDir(at("d"), () => {});
        fs.unwatchDir(at("d"));
        expect(errorCodeOf(() => fs.unwatchDir(at("d")))).toBe("ENOTWATCHED");
      });

      it("a directory holds one watch at a time", () => {
        fs.makeDir(at("d"));
        fs.watchDir(at("d"), () => {});
        try {
          expect(errorCodeOf(() => fs.watchDir(at("d"), () => {}))).toBe("EALREADYWATCHED");
        } finally {
          fs.unwatchDir(at("d"));
        }
      });

      it("raises the error codes", () => {
        fs.writeFile(at("f"), "x");
        fs.makeDir(at("never-watched"));
        expect(errorCodeOf(() => fs.watchDir(at("missing"), () => {}))).toBe("ENOENT");
        expect(errorCodeOf(() => fs.watchDir(at("f"), () => {}))).toBe("ENOTDIR");
        expect(errorCodeOf(() => fs.unwatchDir(at("never-watched")))).toBe("ENOTWATCHED");
        expect(errorCodeOf(() => fs.unwatchDir(at("missing")))).toBe("ENOTWATCHED");
      });
    });
  });
}
