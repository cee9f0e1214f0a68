import { posix } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { hasByteEscapes, nameOfBytes } from "../../src/fs/byteNames.js";
import { FileSystemError, type MirrorFileSystem, RESERVED_PREFIX, type Timestamp } from "../../src/fs/fileSystem.js";

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

/** 400 days before the epoch, with a nanosecond part: seconds negative, nanoseconds still positive. */
const beforeEpoch: Timestamp = { sec: -400 * 86_400, nsec: 987_654_321 };
/** 2100-01-01, past the 32-bit time_t limit, one nanosecond in. */
const after2038: Timestamp = { sec: 4_102_444_800, nsec: 1 };

/** The instant of `time` in milliseconds, as `EntryStat.mtimeMs` states it. */
function millisecondsOf(time: Timestamp): number {
  return time.sec * 1000 + time.nsec / 1e6;
}

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
      it("lstat reports kind, size, permission bits, times, links and owner of files and directories", () => {
        fs.writeFile(at("f"), "12345");
        fs.makeDir(at("d"));
        const file = fs.lstat(at("f"));
        const dir = fs.lstat(at("d"));
        expect(file.kind).toBe("file");
        expect(file.size).toBe(5);
        expect(file.mode & ~0o7777).toBe(0);
        expect(file.nlink).toBe(1);
        expect(dir.kind).toBe("dir");
        expect(dir.nlink).toBeGreaterThanOrEqual(1);
        for (const stat of [file, dir]) {
          expect(Number.isInteger(stat.mtime.sec)).toBe(true);
          expect(Number.isInteger(stat.mtime.nsec)).toBe(true);
          expect(stat.mtime.nsec).toBeGreaterThanOrEqual(0);
          expect(stat.mtime.nsec).toBeLessThan(1e9);
          // mtimeMs is the same instant as mtime, to float precision.
          expect(Math.abs(stat.mtimeMs - millisecondsOf(stat.mtime))).toBeLessThan(1e-3);
          expect(Number.isFinite(stat.ctimeMs)).toBe(true);
          expect(Number.isInteger(stat.uid) && Number.isInteger(stat.gid)).toBe(true);
        }
        // One file system: one device, which with the inode identifies a hard-link group.
        expect(dir.dev).toBe(file.dev);
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

      it("writeFileWith writes the bytes, the mode and the exact mtime", () => {
        const mtime = { sec: 1_600_000_000, nsec: 123_456_789 };
        fs.writeFileWith(at("f"), allByteValues, { mode: 0o640, mtime });
        const stat = fs.lstat(at("f"));
        expect(new Uint8Array(fs.readFile(at("f")))).toEqual(allByteValues);
        expect(stat.mode).toBe(0o640);
        expect(stat.mtime).toEqual(mtime);
        expect(stat.size).toBe(256);
      });

      it("writeFileWith replaces an existing file", () => {
        fs.writeFile(at("f"), "old content, longer");
        fs.writeFileWith(at("f"), new TextEncoder().encode("new"), {
          mode: 0o600,
          mtime: { sec: 1_500_000_000, nsec: 0 },
        });
        expect(text(at("f"))).toBe("new");
        expect(fs.lstat(at("f")).mode).toBe(0o600);
        expect(fs.lstat(at("f")).mtime).toEqual({ sec: 1_500_000_000, nsec: 0 });
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
        fs.setMetadata(at("f"), { mode: 0o600, mtime: { sec: 1_400_000_000, nsec: 0 } });
        fs.setMetadata(at("d"), { mode: 0o750, mtime: { sec: 1_300_000_000, nsec: 0 } });
        expect(fs.lstat(at("f")).mode).toBe(0o600);
        expect(fs.lstat(at("f")).mtimeMs).toBe(1_400_000_000_000);
        expect(fs.lstat(at("d")).mode).toBe(0o750);
        expect(fs.lstat(at("d")).mtimeMs).toBe(1_300_000_000_000);
        expect(text(at("f"))).toBe("x");
      });

      it("setMetadata changes only what it is given", () => {
        const mtime = { sec: 1_400_000_000, nsec: 42 };
        fs.writeFileWith(at("f"), Uint8Array.of(1), { mode: 0o640, mtime });
        const { uid, gid } = fs.lstat(at("f"));
        fs.setMetadata(at("f"), { mode: 0o600 });
        expect(fs.lstat(at("f")).mtime).toEqual(mtime);
        fs.setMetadata(at("f"), { mtime: { sec: 1_500_000_000, nsec: 7 } });
        expect(fs.lstat(at("f"))).toMatchObject({ mode: 0o600, mtime: { sec: 1_500_000_000, nsec: 7 }, uid, gid });
        expect(errorCodeOf(() => fs.setMetadata(at("missing"), { mode: 0o600 }))).toBe("ENOENT");
      });

      describe.each([
        ["before 1970", beforeEpoch],
        ["after 2038", after2038],
      ])("exact mtimes %s, to the nanosecond", (_, mtime) => {
        it("setMetadata sets it on a file, a directory and a symlink, and lstat reads it back", () => {
          fs.writeFile(at("f"), "x");
          fs.makeDir(at("d"));
          fs.makeSymlink(at("l"), "f");
          for (const name of ["f", "d", "l"]) fs.setMetadata(at(name), { mtime });
          for (const name of ["f", "d", "l"]) {
            const stat = fs.lstat(at(name));
            expect(stat.mtime, name).toEqual(mtime);
            expect(Math.abs(stat.mtimeMs - millisecondsOf(mtime)), name).toBeLessThan(1e-3);
          }
        });

        it("stageFile, openStaged and writeFileWith apply it before the file becomes visible", () => {
          const staged = fs.stageFile(at("staged"), Uint8Array.of(1, 2), { mode: 0o640, mtime });
          const writer = fs.openStaged(at("streamed"));
          writer.write(Uint8Array.of(3));
          writer.write(Uint8Array.of(4, 5));
          const streamed = writer.finish({ mode: 0o600, mtime });
          expect(fs.commitStaged([staged, streamed])).toEqual([]);
          fs.writeFileWith(at("written"), Uint8Array.of(6), { mtime });
          expect(fs.lstat(at("staged"))).toMatchObject({ mode: 0o640, mtime, size: 2 });
          expect(fs.lstat(at("streamed"))).toMatchObject({ mode: 0o600, mtime, size: 3 });
          expect(new Uint8Array(fs.readFile(at("streamed")))).toEqual(Uint8Array.of(3, 4, 5));
          expect(fs.lstat(at("written")).mtime).toEqual(mtime);
        });
      });

      it.each([
        ["4755", 0o4755],
        ["2755", 0o2755],
        ["1777", 0o1777],
      ])("keeps all 12 mode bits (0o%s) on files and directories", (_, mode) => {
        fs.writeFile(at("f"), "x");
        fs.makeDir(at("d"));
        fs.setMetadata(at("f"), { mode });
        fs.setMetadata(at("d"), { mode });
        fs.writeFileWith(at("written"), Uint8Array.of(1), { mode });
        const staged = fs.stageFile(at("staged"), Uint8Array.of(1), { mode });
        expect(fs.commitStaged([staged])).toEqual([]);
        for (const name of ["f", "d", "written", "staged"]) expect(fs.lstat(at(name)).mode, name).toBe(mode);
      });

      it("sets owner and group of a file, a directory and a symlink itself (as root; EPERM otherwise)", () => {
        fs.writeFile(at("f"), "x");
        fs.makeDir(at("d"));
        fs.makeSymlink(at("l"), "f");
        const own = fs.lstat(at("f"));
        // New entries belong to whoever the file system acts as: uid 0 is root (MemoryFileSystem always
        // is; NodeFileSystem is when this process is), and only root may give a file away.
        if (own.uid !== 0) {
          expect(errorCodeOf(() => fs.setMetadata(at("f"), { uid: 1234, gid: 1234 }))).toBe("EPERM");
          expect(fs.lstat(at("f"))).toMatchObject({ uid: own.uid, gid: own.gid });
          return;
        }
        fs.setMetadata(at("l"), { uid: 1234, gid: 1234 });
        // The link itself changed owner, not its target.
        expect(fs.lstat(at("l"))).toMatchObject({ uid: 1234, gid: 1234 });
        expect(fs.lstat(at("f"))).toMatchObject({ uid: own.uid, gid: own.gid });
        fs.setMetadata(at("f"), { uid: 1234 });
        expect(fs.lstat(at("f"))).toMatchObject({ uid: 1234, gid: own.gid });
        fs.setMetadata(at("d"), { uid: 1234, gid: 1234 });
        expect(fs.lstat(at("d"))).toMatchObject({ uid: 1234, gid: 1234 });
        // Owner first, then the mode: the setuid bit that chown would clear survives.
        const staged = fs.stageFile(at("staged"), Uint8Array.of(1), { uid: 1234, gid: 1234, mode: 0o4755 });
        expect(fs.commitStaged([staged])).toEqual([]);
        fs.writeFileWith(at("written"), Uint8Array.of(1), { uid: 1234, gid: 1234, mode: 0o6755 });
        expect(fs.lstat(at("staged"))).toMatchObject({ uid: 1234, gid: 1234, mode: 0o4755 });
        expect(fs.lstat(at("written"))).toMatchObject({ uid: 1234, gid: 1234, mode: 0o6755 });
      });

      it("chown of a file clears setuid, and setgid when group-execute is set, as Linux does even for root", () => {
        fs.writeFile(at("f"), "x");
        fs.makeDir(at("d"));
        if (fs.lstat(at("f")).uid !== 0)
          return expect(errorCodeOf(() => fs.setMetadata(at("f"), { uid: 1234 }))).toBe("EPERM");
        fs.setMetadata(at("f"), { mode: 0o6755 });
        fs.setMetadata(at("f"), { uid: 1234 });
        expect(fs.lstat(at("f")).mode).toBe(0o755);
        fs.setMetadata(at("f"), { mode: 0o2745 });
        fs.setMetadata(at("f"), { gid: 1234 });
        expect(fs.lstat(at("f")).mode).toBe(0o2745);
        // A directory keeps them.
        fs.setMetadata(at("d"), { mode: 0o6755 });
        fs.setMetadata(at("d"), { uid: 1234, gid: 1234 });
        expect(fs.lstat(at("d")).mode).toBe(0o6755);
      });

      it("setMetadata on a symlink sets the link's own mtime, ignores a mode, and leaves its target alone", () => {
        const targetTime = { sec: 1_400_000_000, nsec: 1 };
        const linkTime = { sec: 1_500_000_000, nsec: 2 };
        fs.writeFileWith(at("file"), Uint8Array.of(1), { mode: 0o640, mtime: targetTime });
        fs.makeSymlink(at("link"), "file");
        fs.setMetadata(at("link"), { mode: 0o600, mtime: linkTime });
        expect(fs.lstat(at("link"))).toMatchObject({ kind: "symlink", mode: 0o777, mtime: linkTime });
        expect(fs.lstat(at("file"))).toMatchObject({ mode: 0o640, mtime: targetTime });
        fs.setMetadata(at("link"), { mode: 0o600 });
        expect(fs.lstat(at("link")).mode).toBe(0o777);
        expect(fs.lstat(at("file")).mode).toBe(0o640);
      });

      it("a directory's mtime changes when an entry is created, removed or renamed in it; setMetadata sets it back exactly", () => {
        const old = { sec: 1_000_000_000, nsec: 5 };
        fs.makeDir(at("d"));
        fs.writeFile(at("outside"), "x");
        const changes: Array<[string, () => void]> = [
          ["file created", () => fs.writeFile(at("d/f"), "x")],
          ["directory created", () => fs.makeDir(at("d/sub"))],
          ["symlink created", () => fs.makeSymlink(at("d/link"), "f")],
          ["renamed in", () => fs.rename(at("outside"), at("d/moved"))],
          ["renamed within", () => fs.rename(at("d/moved"), at("d/renamed"))],
          ["file removed", () => fs.removeFile(at("d/f"))],
          ["directory removed", () => fs.removeDir(at("d/sub"))],
          ["staged file committed", () => fs.commitStaged([fs.stageFile(at("d/staged"), Uint8Array.of(1), {})])],
        ];
        for (const [what, change] of changes) {
          fs.setMetadata(at("d"), { mtime: old });
          expect(fs.lstat(at("d")).mtime, what).toEqual(old);
          change();
          expect(fs.lstat(at("d")).mtime, what).not.toEqual(old);
        }
        const restored = { sec: 1_234_567_890, nsec: 123_456_789 };
        fs.setMetadata(at("d"), { mtime: restored });
        expect(fs.lstat(at("d")).mtime).toEqual(restored);
        expect(fs.listDir(at("d")).sort()).toEqual(["link", "renamed", "staged"]);
      });
    });

    describe("names", () => {
      const escaped = nameOfBytes(Buffer.from([0x66, 0xff, 0x6f]));
      const reservedLooking = `${RESERVED_PREFIX}user-data`;

      it("a name with a byte escape and a name starting with RESERVED_PREFIX are ordinary names", () => {
        expect(hasByteEscapes(escaped)).toBe(true);
        fs.writeFile(at(escaped), "escaped");
        fs.writeFile(at(reservedLooking), "reserved-looking");
        fs.makeDir(at(`${escaped}.d`));
        fs.writeFile(at(`${escaped}.d/${reservedLooking}`), "inside");
        const names = [escaped, `${escaped}.d`, reservedLooking];
        expect(fs.listDir(root).sort()).toEqual([...names].sort());
        expect(
          fs
            .listDirStats(root)
            .map(({ name, stat }) => [name, stat.kind])
            .sort(),
        ).toEqual(
          [
            [escaped, "file"],
            [`${escaped}.d`, "dir"],
            [reservedLooking, "file"],
          ].sort(),
        );
        expect(text(at(escaped))).toBe("escaped");
        expect(text(at(reservedLooking))).toBe("reserved-looking");
        expect(fs.listDir(at(`${escaped}.d`))).toEqual([reservedLooking]);
        expect(text(at(`${escaped}.d/${reservedLooking}`))).toBe("inside");
        expect(fs.lstat(at(escaped)).size).toBe("escaped".length);
        expect(fs.isInternalName(escaped)).toBe(false);
        expect(fs.isInternalName(reservedLooking)).toBe(false);
        fs.rename(at(escaped), at(`${escaped}.d/moved`));
        fs.removeFile(at(reservedLooking));
        expect(fs.listDir(root)).toEqual([`${escaped}.d`]);
        expect(fs.listDir(at(`${escaped}.d`)).sort()).toEqual([reservedLooking, "moved"].sort());
      });

      it("a symlink target with a byte escape round-trips; its size counts bytes", () => {
        const target = `x${nameOfBytes(Buffer.from([0xfe]))}/y`;
        fs.makeSymlink(at("link"), target);
        expect(fs.readLink(at("link"))).toBe(target);
        expect(fs.lstat(at("link")).size).toBe(4);
      });

      it("isInternalName is true for this file system's staged temps, which listings hide; other reserved-looking names show", () => {
        fs.writeFile(at(reservedLooking), "user data");
        const staged = fs.stageFile(at("f"), Uint8Array.of(1), {});
        const writer = fs.openStaged(at("g"));
        const tempName = posix.basename(staged.tempPath);
        expect(posix.dirname(staged.tempPath)).toBe(root);
        expect(tempName.startsWith(RESERVED_PREFIX)).toBe(true);
        expect(fs.isInternalName(tempName)).toBe(true);
        expect(fs.isInternalName("f")).toBe(false);
        expect(fs.listDir(root)).toEqual([reservedLooking]);
        expect(fs.listDirStats(root).map(({ name }) => name)).toEqual([reservedLooking]);
        const streamed = writer.finish({});
        expect(fs.isInternalName(posix.basename(streamed.tempPath))).toBe(true);
        expect(fs.listDir(root)).toEqual([reservedLooking]);
        fs.discardStaged([staged, streamed]);
        expect(fs.listDir(root)).toEqual([reservedLooking]);
        expect(fs.exists(at("f"))).toBe(false);
        expect(text(at(reservedLooking))).toBe("user data");
      });
    });

    describe("staged files", () => {
      it("a staged file is invisible until committed, then replaces its final name", () => {
        fs.writeFile(at("f"), "old");
        const staged = fs.stageFile(at("f"), new TextEncoder().encode("new"), {});
        const created = fs.stageFile(at("g"), new TextEncoder().encode("fresh"), {});
        expect(text(at("f"))).toBe("old");
        expect(fs.exists(at("g"))).toBe(false);
        expect(fs.commitStaged([staged, created])).toEqual([]);
        expect(text(at("f"))).toBe("new");
        expect(text(at("g"))).toBe("fresh");
        expect(fs.listDir(root).sort()).toEqual(["f", "g"]);
      });

      it("stageLink gives a file a second name: same inode, two links, one content; removing one keeps the other", () => {
        fs.writeFile(at("a"), allByteValues);
        fs.writeFile(at("b"), "to be replaced");
        const staged = fs.stageLink(at("a"), at("b"));
        // Staged: the new name is not visible yet, the old file still stands at `b`.
        expect(text(at("b"))).toBe("to be replaced");
        expect(fs.listDir(root).sort()).toEqual(["a", "b"]);
        expect(fs.commitStaged([staged])).toEqual([]);
        const a = fs.lstat(at("a"));
        const b = fs.lstat(at("b"));
        expect([b.ino, b.dev]).toEqual([a.ino, a.dev]);
        expect([a.nlink, b.nlink]).toEqual([2, 2]);
        expect(new Uint8Array(fs.readFile(at("b")))).toEqual(allByteValues);
        // Metadata belongs to the inode: set through one name, seen through the other.
        fs.setMetadata(at("a"), { mode: 0o600, mtime: { sec: 1_000_000_000, nsec: 9 } });
        expect(fs.lstat(at("b"))).toMatchObject({ mode: 0o600, mtime: { sec: 1_000_000_000, nsec: 9 } });
        fs.removeFile(at("a"));
        expect(fs.listDir(root)).toEqual(["b"]);
        expect(fs.lstat(at("b"))).toMatchObject({ ino: a.ino, nlink: 1 });
        expect(new Uint8Array(fs.readFile(at("b")))).toEqual(allByteValues);
      });

      it("stageLink raises the POSIX codes and leaves no extra link behind", () => {
        fs.writeFile(at("f"), "x");
        fs.makeDir(at("d"));
        expect(errorCodeOf(() => fs.stageLink(at("missing"), at("g")))).toBe("ENOENT");
        expect(errorCodeOf(() => fs.stageLink(at("f"), at("missing/g")))).toBe("ENOENT");
        // A directory in the way may be refused when staging or when committing; either way with EISDIR.
        let code: string;
        try {
          code = fs.commitStaged([fs.stageLink(at("f"), at("d"))])[0]?.error.code ?? "no error";
        } catch (error) {
          code = errorCodeOf(() => {
            throw error;
          });
        }
        expect(code).toBe("EISDIR");
        expect(fs.isDir(at("d"))).toBe(true);
        expect(fs.lstat(at("f")).nlink).toBe(1);
      });

      it("stageExisting moves the file itself (same inode) and applies the metadata", () => {
        fs.makeDir(at("d"));
        fs.writeFile(at("from"), "moved bytes");
        const ino = fs.lstat(at("from")).ino;
        const mtime = { sec: 1_100_000_000, nsec: 11 };
        const staged = fs.stageExisting(at("from"), at("d/to"), { mode: 0o604, mtime });
        expect(fs.exists(at("from"))).toBe(false);
        expect(fs.exists(at("d/to"))).toBe(false);
        expect(fs.commitStaged([staged])).toEqual([]);
        expect(fs.lstat(at("d/to"))).toMatchObject({ ino, mode: 0o604, mtime, nlink: 1 });
        expect(text(at("d/to"))).toBe("moved bytes");
      });

      it("commitStaged commits every file it can and returns the others alone, each with its error", () => {
        fs.makeDir(at("sub"));
        const bytes = (content: string) => new TextEncoder().encode(content);
        const first = fs.stageFile(at("first"), bytes("1"), {});
        const blocked = fs.stageFile(at("blocked"), bytes("2"), {});
        const orphan = fs.stageFile(at("sub/orphan"), bytes("3"), {});
        const last = fs.stageFile(at("last"), bytes("4"), {});
        // After staging: a directory takes the final name of one file, another one's directory vanishes.
        fs.makeDir(at("blocked"));
        fs.removeDir(at("sub"));
        const failures = fs.commitStaged([first, blocked, orphan, last]);
        expect(failures.map(({ file, error }) => [file, error instanceof FileSystemError, error.code])).toEqual([
          [blocked, true, "EISDIR"],
          [orphan, true, "ENOENT"],
        ]);
        expect(text(at("first"))).toBe("1");
        expect(text(at("last"))).toBe("4");
        expect(fs.isDir(at("blocked"))).toBe(true);
        expect(fs.listDir(at("blocked"))).toEqual([]);
        expect(fs.listDir(root).sort()).toEqual(["blocked", "first", "last"]);
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
