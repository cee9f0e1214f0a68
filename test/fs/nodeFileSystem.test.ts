import { execFileSync } from "node:child_process";
import { EventEmitter } from "node:events";
import {
  appendFileSync,
  chmodSync,
  closeSync,
  type FSWatcher,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { nameOfBytes } from "../../src/fs/byteNames.js";
import { type FileSystemEvent, FileSystemEventType, RESERVED_PREFIX } from "../../src/fs/fileSystem.js";
import { loadNativeCalls } from "../../src/fs/nativeCalls.js";
import {
  type FileSystemProblem,
  NodeFileSystem,
  type NodeFileSystemOptions,
  type WatchFactory,
  type WatchListener,
} from "../../src/fs/nodeFileSystem.js";
import { errorCodeOf } from "../contracts/fileSystemContract.js";

const { FILE_OR_SUBDIR_ADDED: ADDED, FILE_OR_SUBDIR_REMOVED: REMOVED, FILE_MODIFIED: MODIFIED } = FileSystemEventType;

/** Polls `condition` until it holds; fails with `what` after the deadline. Never a fixed sleep. */
async function waitFor(what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Every name in `dir` and below, raw from the OS (reserved names included). */
function allNamesBelow(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).map(String);
}

/** Hashable snapshot of a directory tree: relative path -> content (or "dir"/"link"). */
function snapshot(dir: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const name of allNamesBelow(dir).sort()) {
    const path = `${dir}/${name}`;
    const stat = statSync(path, { throwIfNoEntry: false });
    result[name] = stat?.isFile() ? readFileSync(path, "latin1") : "non-file";
  }
  return result;
}

/** A stand-in for the kernel: records listeners so a test can deliver notifications synchronously. */
class FakeKernel {
  readonly watchers = new Map<string, { listener: WatchListener; watcher: FSWatcher }>();
  failWith: string | undefined;
  readonly factory: WatchFactory = (path, listener) => {
    if (this.failWith !== undefined) {
      throw Object.assign(new Error(`${this.failWith}: fake kernel, watch '${path}'`), { code: this.failWith });
    }
    const emitter = new EventEmitter();
    const watcher = Object.assign(emitter, {
      close: () => {
        this.watchers.delete(path);
      },
      ref: () => watcher,
      unref: () => watcher,
    }) as unknown as FSWatcher;
    this.watchers.set(path, { listener, watcher });
    return watcher;
  };
  notify(dir: string, eventType: string, name: string | Buffer | null): void {
    const entry = this.watchers.get(dir);
    if (entry === undefined) throw new Error(`no fake watch on ${dir}`);
    entry.listener(eventType, name);
  }
}

let base: string;
let root: string;
let outside: string;
let problems: FileSystemProblem[];
let opened: NodeFileSystem[];

function makeFileSystem(options: NodeFileSystemOptions = {}): NodeFileSystem {
  const fs = new NodeFileSystem({ root, onProblem: (problem) => problems.push(problem), ...options });
  opened.push(fs);
  return fs;
}

beforeEach(() => {
  base = mkdtempSync(`${tmpdir()}/mirrorlog-nodefs-`);
  root = `${base}/root`;
  outside = `${base}/outside`;
  mkdirSync(root);
  mkdirSync(outside);
  writeFileSync(`${outside}/canary`, "canary");
  problems = [];
  opened = [];
});

afterEach(() => {
  for (const fs of opened) fs.close();
  rmSync(base, { recursive: true, force: true });
});

describe("atomic writes", () => {
  it("leaves no temp file behind after many writes and rewrites", () => {
    const fs = makeFileSystem();
    fs.makeDir(`${root}/d`);
    for (let index = 0; index < 50; index += 1) {
      fs.writeFile(`${root}/d/f${index % 7}`, `version ${index}`);
      fs.writeFileWith(`${root}/g${index % 3}`, Uint8Array.of(index), {
        mode: 0o600,
        mtime: { sec: 1000 + index, nsec: 7 },
      });
    }
    expect(allNamesBelow(root).filter((name) => name.includes(RESERVED_PREFIX))).toEqual([]);
    expect(readFileSync(`${root}/d/f0`, "utf8")).toBe("version 49");
  });

  it("replaces the file by rename: a reader holding the old file keeps the old bytes", () => {
    const fs = makeFileSystem();
    fs.writeFile(`${root}/f`, "old bytes");
    const before = statSync(`${root}/f`).ino;
    const fd = openSync(`${root}/f`, "r");
    try {
      fs.writeFile(`${root}/f`, "new bytes");
      const buffer = Buffer.alloc(9);
      readSync(fd, buffer, 0, 9, 0);
      expect(buffer.toString()).toBe("old bytes");
    } finally {
      closeSync(fd);
    }
    expect(statSync(`${root}/f`).ino).not.toBe(before);
    expect(readFileSync(`${root}/f`, "utf8")).toBe("new bytes");
  });

  it("a write whose rename fails (ENAMETOOLONG) throws, leaves no temp and creates nothing", () => {
    const fs = makeFileSystem();
    const tooLong = "n".repeat(256);
    let caught: unknown;
    try {
      fs.writeFile(`${root}/${tooLong}`, "x");
    } catch (error) {
      caught = error;
    }
    expect((caught as { code?: string }).code).toBe("ENAMETOOLONG");
    expect((caught as Error).message).toContain(tooLong);
    expect((caught as Error).cause).toBeInstanceOf(Error);
    expect(readdirSync(root)).toEqual([]);
  });

  it("a 255-byte name, the longest allowed, still gets a temp name that fits", () => {
    const fs = makeFileSystem();
    const longest = `${"é".repeat(127)}n`; // 255 bytes in UTF-8
    expect(Buffer.byteLength(longest)).toBe(255);
    fs.writeFile(`${root}/${longest}`, "x");
    expect(fs.listDir(root)).toEqual([longest]);
  });

  it("a failure in the middle of writing (EFBIG under a file-size limit) keeps the old content and no temp", () => {
    writeFileSync(`${root}/victim`, "old content");
    const script = [
      "const { NodeFileSystem } = await import(process.env.MODULE);",
      "const fs = new NodeFileSystem({ root: process.env.ROOT });",
      "try { fs.writeFile(process.env.TARGET, new Uint8Array(4 << 20).fill(7)); console.log(JSON.stringify({ ok: true })); }",
      "catch (error) { console.log(JSON.stringify({ code: error.code, message: error.message })); }",
    ].join("\n");
    // The shell ignores SIGXFSZ so that exceeding `ulimit -f` (512 KiB) surfaces as EFBIG from write(2).
    const output = execFileSync(
      "sh",
      ["-c", 'trap "" XFSZ; ulimit -f 1024; exec "$NODE" --import tsx --input-type=module -e "$SCRIPT"'],
      {
        cwd: fileURLToPath(new URL("../..", import.meta.url)),
        encoding: "utf8",
        env: {
          ...process.env,
          NODE: process.execPath,
          SCRIPT: script,
          MODULE: fileURLToPath(new URL("../../src/fs/nodeFileSystem.ts", import.meta.url)),
          ROOT: root,
          TARGET: `${root}/victim`,
          TSX_DISABLE_CACHE: "1",
        },
      },
    );
    const result = JSON.parse(output.trim().split("\n").at(-1)!) as { code?: string; message?: string };
    expect(result.code).toBe("EFBIG");
    expect(result.message).toContain(`${root}/victim`);
    expect(readdirSync(root)).toEqual(["victim"]);
    expect(readFileSync(`${root}/victim`, "utf8")).toBe("old content");
  });

  it("writeFile keeps an existing file's mode and gives new files 0644 whatever the umask", () => {
    const fs = makeFileSystem();
    writeFileSync(`${root}/script`, "#!/bin/sh\n");
    chmodSync(`${root}/script`, 0o750);
    fs.writeFile(`${root}/script`, "#!/bin/sh\necho changed\n");
    expect(statSync(`${root}/script`).mode & 0o7777).toBe(0o750);
    const previous = process.umask(0o077);
    try {
      fs.writeFile(`${root}/fresh`, "x");
    } finally {
      process.umask(previous);
    }
    expect(statSync(`${root}/fresh`).mode & 0o7777).toBe(0o644);
  });

  it("writeFileWith sets all 12 mode bits (setuid included) and the exact mtime on the new file", () => {
    const fs = makeFileSystem();
    fs.writeFile(`${root}/f`, "old");
    fs.writeFileWith(`${root}/f`, Uint8Array.of(1, 2, 3), {
      mode: 0o4751,
      mtime: { sec: 1_234_567_890, nsec: 123_456_789 },
    });
    const stat = statSync(`${root}/f`, { bigint: true });
    expect(stat.mode & 0o7777n).toBe(0o4751n);
    expect(stat.mtimeNs).toBe(1_234_567_890_123_456_789n);
    expect([...readFileSync(`${root}/f`)]).toEqual([1, 2, 3]);
  });

  it("writeFile refuses to replace a directory and leaves it intact", () => {
    const fs = makeFileSystem();
    mkdirSync(`${root}/d`);
    writeFileSync(`${root}/d/keep`, "k");
    expect(errorCodeOf(() => fs.writeFile(`${root}/d`, "x"))).toBe("EISDIR");
    expect(readFileSync(`${root}/d/keep`, "utf8")).toBe("k");
    expect(readdirSync(root)).toEqual(["d"]);
  });

  it("a file is not staged over a directory, at the root or below it, and no temp is left", () => {
    const fs = makeFileSystem();
    mkdirSync(`${root}/sub/d`, { recursive: true });
    mkdirSync(`${root}/d`);
    writeFileSync(`${root}/sub/f`, "f");
    for (const at of [`${root}/d`, `${root}/sub/d`]) {
      expect(errorCodeOf(() => fs.openStaged(at))).toBe("EISDIR");
      expect(errorCodeOf(() => fs.stageExisting(`${root}/sub/f`, at, {}))).toBe("EISDIR");
      expect(errorCodeOf(() => fs.stageLink(`${root}/sub/f`, at))).toBe("EISDIR");
    }
    expect(readdirSync(root).sort()).toEqual(["d", "sub"]);
    expect(readdirSync(`${root}/sub`).sort()).toEqual(["d", "f"]);
    // A name that is not there is no directory: the temp is made and removed again on abort.
    const staged = fs.openStaged(`${root}/sub/new`);
    staged.write(Uint8Array.of(1));
    staged.abort();
    expect(readdirSync(`${root}/sub`).sort()).toEqual(["d", "f"]);
  });

  it("a temp staged as over no directory fails alone at its commit when one appeared meanwhile, the directory intact", () => {
    const fs = makeFileSystem();
    const staged = fs.openStaged(`${root}/name`, 0o644, true);
    staged.write(Uint8Array.of(1, 2));
    const file = staged.finish({});
    mkdirSync(`${root}/name`); // a local user's directory, after the caller looked
    writeFileSync(`${root}/name/keep`, "k");
    const failures = fs.commitStaged([file]);
    expect(failures.map((failure) => failure.error.code)).toEqual(["EISDIR"]);
    expect(readFileSync(`${root}/name/keep`, "utf8")).toBe("k");
    expect(readdirSync(root)).toEqual(["name"]); // no temp left
  });

  it("listDir and debugString hide only this instance's own names; others with the reserved prefix are user data", () => {
    const fs = makeFileSystem();
    const other = makeFileSystem();
    writeFileSync(`${root}/${RESERVED_PREFIX}0123456789ab`, "someone's file");
    writeFileSync(`${root}/${fs.internalName("stash")}`, "ours");
    writeFileSync(`${root}/real`, "r");
    expect(fs.listDir(root)).toEqual([`${RESERVED_PREFIX}0123456789ab`, "real"]);
    expect(fs.debugString(root)).toBe(
      [root, `|-- ${RESERVED_PREFIX}0123456789ab: someone's file`, "`-- real: r"].join("\n"),
    );
    expect(other.listDir(root)).toEqual([`${RESERVED_PREFIX}0123456789ab`, fs.internalName("stash"), "real"].sort());
  });

  it("temp names carry a random part of at least 48 bits per instance, and only the instance's own are internal", () => {
    const fs = makeFileSystem();
    const other = makeFileSystem();
    const staged = fs.stageFile(`${root}/f`, Uint8Array.of(1), {});
    const tempName = staged.tempPath.slice(root.length + 1);
    const instancePart = /^\.mirrorlog-tmp-([0-9a-f]{12,})/.exec(tempName)?.[1];
    expect(instancePart).toBeDefined();
    expect(fs.isInternalName(tempName)).toBe(true);
    expect(other.isInternalName(tempName)).toBe(false);
    expect(fs.isInternalName(fs.internalName("stash"))).toBe(true);
    expect(fs.internalName("stash")).not.toBe(other.internalName("stash"));
    expect(fs.isInternalName(`${RESERVED_PREFIX}stash`)).toBe(false);
    expect(fs.listDir(root)).toEqual([]);
    expect(other.listDir(root)).toEqual([tempName]);
    expect(fs.commitStaged([staged])).toEqual([]);
    expect(readdirSync(root)).toEqual(["f"]);
  });

  it("durability 'none' writes and reads the same bytes", () => {
    const fs = makeFileSystem({ durability: "none" });
    fs.writeFileWith(`${root}/f`, Uint8Array.of(9, 8), { mode: 0o600 });
    expect([...fs.readFile(`${root}/f`)]).toEqual([9, 8]);
    expect(fs.lstat(`${root}/f`).mode).toBe(0o600);
  });
});

describe("reading", () => {
  it("reads a multi-megabyte file completely into a plain Uint8Array", () => {
    const fs = makeFileSystem();
    const content = Buffer.alloc(3 * 1024 * 1024 + 17);
    for (let index = 0; index < content.length; index += 1) content[index] = (index * 31) & 0xff;
    writeFileSync(`${root}/big`, content);
    const read = fs.readFile(`${root}/big`);
    expect(read).toBeInstanceOf(Uint8Array);
    expect(read.length).toBe(content.length);
    expect(Buffer.from(read).equals(content)).toBe(true);
  });

  it("a listing states each entry exactly as lstat does (statx through the directory's handle, or Node's lstat)", () => {
    mkdirSync(`${root}/d`);
    writeFileSync(`${root}/d/file`, "12345");
    chmodSync(`${root}/d/file`, 0o4751);
    symlinkSync("nowhere", `${root}/d/link`);
    mkdirSync(`${root}/d/sub`);
    execFileSync("mkfifo", [`${root}/d/pipe`]);
    execFileSync("ln", [`${root}/d/file`, `${root}/d/hard`]);
    // A name with a byte that is not UTF-8 goes through the byte mapping on both paths.
    writeFileSync(Buffer.from(`${root}/d/bad\xffname`, "latin1"), "x");
    const fs = makeFileSystem();
    expect(loadNativeCalls()?.statAt).toBeDefined();
    const listed = fs.listDirStats(`${root}/d`);
    expect(listed.map((entry) => entry.name)).toEqual(["bad\uefffname", "file", "hard", "link", "pipe", "sub"]);
    for (const { name, stat } of listed) {
      expect(stat, name).toEqual(fs.lstat(`${root}/d/${name}`));
      // What Node's own lstat says, field by field (nanosecond times included).
      const node = lstatSync(Buffer.from(`${root}/d/${name.replace("\uefff", "\xff")}`, "latin1"), { bigint: true });
      const time = (ns: bigint) => ({ sec: Number(ns / 10n ** 9n), nsec: Number(ns % 10n ** 9n) });
      expect(stat, name).toMatchObject({
        size: Number(node.size),
        mtime: time(node.mtimeNs),
        mtimeMs: Number(node.mtimeNs / 10n ** 9n) * 1e3 + Number(node.mtimeNs % 10n ** 9n) / 1e6,
        ctimeMs: Number(node.ctimeNs / 10n ** 9n) * 1e3 + Number(node.ctimeNs % 10n ** 9n) / 1e6,
        mode: Number(node.mode) & 0o7777,
        ino: Number(node.ino),
        dev: Number(node.dev),
        nlink: Number(node.nlink),
        uid: Number(node.uid),
        gid: Number(node.gid),
      });
    }
    expect(listed.find((entry) => entry.name === "file")!.stat).toMatchObject({ size: 5, mode: 0o4751, nlink: 2 });
    expect(listed.map((entry) => entry.stat.kind)).toEqual(["file", "file", "file", "symlink", "special", "dir"]);
  });

  it("files are opened, staged and renamed through their directory's handle: odd names, and no descriptor leaks into children", () => {
    const fs = makeFileSystem();
    mkdirSync(`${root}/sub`);
    const odd = `${root}/sub/bad\uefffname`; // stands for the byte 0xff
    fs.writeFile(odd, "odd bytes");
    expect(readFileSync(Buffer.from(`${root}/sub/bad\xffname`, "latin1"), "utf8")).toBe("odd bytes");
    expect(new TextDecoder().decode(fs.readFile(odd))).toBe("odd bytes");
    const staged = fs.openStaged(`${root}/sub/new`);
    staged.write(Uint8Array.of(1, 2, 3));
    const tempFd = readdirSync("/proc/self/fd").find((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`).includes(`${root}/sub/${RESERVED_PREFIX}`);
      } catch {
        return false;
      }
    });
    expect(tempFd).toBeDefined();
    // The child's descriptor of that number, if any, is not the temp: it was opened close-on-exec.
    const inChild = execFileSync("sh", ["-c", `readlink /proc/self/fd/${tempFd} || true`], { encoding: "utf8" });
    expect(inChild).not.toContain(RESERVED_PREFIX);
    fs.commitStaged([staged.finish({ mode: 0o640 })]);
    expect([...readFileSync(`${root}/sub/new`)]).toEqual([1, 2, 3]);
    expect(statSync(`${root}/sub/new`).mode & 0o777).toBe(0o640);
    expect(readdirSync(`${root}/sub`).sort()).toEqual(["bad\ufffdname", "new"]);
  });

  it("reads files whose size stat reports as zero (procfs) in full", () => {
    const fs = new NodeFileSystem();
    opened.push(fs);
    const text = new TextDecoder().decode(fs.readFile("/proc/self/status"));
    expect(text).toContain("Pid:");
    // More than one probe for growth: every mapping of the process, each with its closing line.
    const smaps = new TextDecoder().decode(fs.readFile("/proc/self/smaps"));
    expect(smaps.length).toBeGreaterThan(64 * 1024);
    expect(smaps.endsWith("\n")).toBe(true);
    expect(smaps.split("\n").filter((line) => line.startsWith("VmFlags:")).length).toBe(
      smaps.split("\n").filter((line) => /^[0-9a-f]+-[0-9a-f]+ /.test(line)).length,
    );
  });

  it("readFileStated gives a file's bytes and its stat through the descriptor read, which shows a size that disagrees", () => {
    const fs = makeFileSystem();
    writeFileSync(`${root}/f`, "some bytes");
    const read = fs.readFileStated(`${root}/f`);
    expect(new TextDecoder().decode(read.bytes)).toBe("some bytes");
    expect(read.stat).toEqual(fs.lstat(`${root}/f`));
    // procfs states 0 bytes for a file that holds some: read whole, and the stat shows the difference.
    const procfs = new NodeFileSystem();
    opened.push(procfs);
    const status = procfs.readFileStated("/proc/self/status");
    expect(new TextDecoder().decode(status.bytes)).toContain("Pid:");
    expect(status.stat.size).toBe(0);
    expect(errorCodeOf(() => fs.readFileStated(`${root}/missing`))).toBe("ENOENT");
  });

  it("a FIFO is refused with EINVAL at once, without waiting for a writer", { timeout: 5000 }, () => {
    const fs = makeFileSystem();
    execFileSync("mkfifo", [`${root}/pipe`]);
    let caught: unknown;
    try {
      fs.readFile(`${root}/pipe`);
    } catch (error) {
      caught = error;
    }
    expect((caught as { code?: string }).code).toBe("EINVAL");
    expect((caught as Error).message).toContain("not a regular file (fifo)");
    expect((caught as Error).message).toContain(`${root}/pipe`);
    expect(fs.lstat(`${root}/pipe`).kind).toBe("special");
    expect(fs.listDir(root)).toEqual(["pipe"]);
    expect(fs.debugString(root)).toBe([root, "`-- pipe (fifo)"].join("\n"));
  });
});

describe("symlinks are never followed", () => {
  beforeEach(() => {
    writeFileSync(`${root}/target`, "target bytes");
    symlinkSync(outside, `${root}/to-outside`);
    symlinkSync("target", `${root}/to-target`);
  });

  it("readFile and listDir refuse a symlink; setMetadata sets the link's own owner and mtime, never its target's", () => {
    const fs = makeFileSystem();
    const before = snapshot(outside);
    const outsideBefore = statSync(outside, { bigint: true });
    expect(errorCodeOf(() => fs.readFile(`${root}/to-target`))).toBe("ELOOP");
    expect(errorCodeOf(() => fs.readFileStated(`${root}/to-target`))).toBe("ELOOP");
    expect(errorCodeOf(() => fs.listDir(`${root}/to-outside`))).toBe("ENOTDIR");
    expect(errorCodeOf(() => fs.removeDir(`${root}/to-outside`))).toBe("ENOTDIR");
    const uid = process.getuid?.() ?? 0;
    fs.setMetadata(`${root}/to-outside`, { mode: 0o700, mtime: { sec: 1_000_000_000, nsec: 5 }, uid });
    const link = lstatSync(`${root}/to-outside`, { bigint: true });
    expect(link.isSymbolicLink()).toBe(true);
    expect(link.mtimeNs).toBe(1_000_000_000_000_000_005n);
    const after = statSync(outside, { bigint: true });
    expect([after.mode, after.mtimeNs, after.ctimeNs]).toEqual([
      outsideBefore.mode,
      outsideBefore.mtimeNs,
      outsideBefore.ctimeNs,
    ]);
    expect(snapshot(outside)).toEqual(before);
  });

  it("removeDir unlinks symlinks inside the tree without entering them", () => {
    const fs = makeFileSystem();
    mkdirSync(`${root}/tree/deep`, { recursive: true });
    symlinkSync(outside, `${root}/tree/deep/escape`);
    symlinkSync(`${outside}/canary`, `${root}/tree/file-escape`);
    fs.removeDir(`${root}/tree`);
    expect(readdirSync(root).sort()).toEqual(["target", "to-outside", "to-target"]);
    expect(snapshot(outside)).toEqual({ canary: "canary" });
  });

  it("writeFile onto a symlink replaces the link, never its target", () => {
    const fs = makeFileSystem();
    fs.writeFile(`${root}/to-target`, "replaced");
    expect(fs.lstat(`${root}/to-target`).kind).toBe("file");
    expect(readFileSync(`${root}/target`, "utf8")).toBe("target bytes");
  });
});

describe("root confinement", () => {
  it("rejects paths outside the root with EACCES, including lookalike prefixes and .. escapes", () => {
    const fs = makeFileSystem();
    mkdirSync(`${base}/root2`);
    const attempts: Array<() => unknown> = [
      () => fs.writeFile(`${outside}/canary`, "overwritten"),
      () => fs.writeFile(`${root}/../outside/canary`, "overwritten"),
      () => fs.writeFile(`${base}/root2/f`, "x"),
      () => fs.removeFile(`${outside}/canary`),
      () => fs.removeDir(outside),
      () => fs.readFile(`${outside}/canary`),
      () => fs.listDir(base),
      () => fs.makeDirs(`${outside}/new/dir`),
      () => fs.rename(`${outside}/canary`, `${root}/stolen`),
      () => fs.makeSymlink(`${outside}/link`, "/"),
      () => fs.setMetadata(`${outside}/canary`, { mode: 0o777 }),
      () => fs.exists(`${outside}/canary`),
      () => fs.watchDir(outside, () => {}),
    ];
    for (const attempt of attempts) expect(errorCodeOf(attempt)).toBe("EACCES");
    expect(readdirSync(`${base}/root2`)).toEqual([]);
    expect(snapshot(outside)).toEqual({ canary: "canary" });
    fs.writeFile(`${root}/inside`, "fine");
    expect(fs.listDir(root)).toEqual(["inside"]);
  });

  it("rejects a path whose intermediate component is a symlink with ELOOP, for every operation", () => {
    const fs = makeFileSystem();
    mkdirSync(`${root}/real`);
    mkdirSync(`${outside}/inner`);
    symlinkSync(outside, `${root}/real/hop`);
    const through = `${root}/real/hop`;
    const before = snapshot(outside);
    const attempts: Array<() => unknown> = [
      () => fs.writeFile(`${through}/canary`, "overwritten"),
      () => fs.writeFileWith(`${through}/new`, Uint8Array.of(1), {}),
      () => fs.readFile(`${through}/canary`),
      () => fs.removeFile(`${through}/canary`),
      () => fs.listDir(`${through}/inner`),
      () => fs.removeDir(`${through}/inner`),
      () => fs.watchDir(`${through}/inner`, () => {}),
      () => fs.makeDirs(`${through}/a/b`),
      () => fs.makeDir(`${through}/a`),
      () => fs.makeSymlink(`${through}/link`, "/"),
      () => fs.rename(`${root}/real`, `${through}/moved`),
      () => fs.setMetadata(`${through}/canary`, { mode: 0o777 }),
      () => fs.exists(`${through}/canary`),
      () => fs.lstat(`${through}/canary`),
    ];
    for (const attempt of attempts) expect(errorCodeOf(attempt)).toBe("ELOOP");
    let message = "";
    try {
      fs.readFile(`${through}/canary`);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain("traverses symlink");
    // The final name is never followed either: the link itself is not a directory to list.
    expect(errorCodeOf(() => fs.listDir(through))).toBe("ENOTDIR");
    expect(snapshot(outside)).toEqual(before);
    expect(fs.numWatchedDirs()).toBe(0);
    expect(statSync(outside).mode & 0o777).not.toBe(0o777);
  });

  it("without a root, intermediate symlinks resolve as the kernel resolves them (only final names are never followed)", () => {
    const fs = new NodeFileSystem({ onProblem: (problem) => problems.push(problem) });
    opened.push(fs);
    symlinkSync(outside, `${root}/hop`);
    expect(new TextDecoder().decode(fs.readFile(`${root}/hop/canary`))).toBe("canary");
    expect(errorCodeOf(() => fs.readFile(`${root}/hop`))).toBe("ELOOP");
  });
});

describe("names that are not UTF-8", () => {
  /** "bad<0xff>name" as byteNames.ts writes it: the byte 0xff becomes U+EFFF. */
  const badName = nameOfBytes(Buffer.from("bad\xffname", "latin1"));

  it("are listed losslessly, and every operation reaches the same bytes again", () => {
    const fs = makeFileSystem();
    mkdirSync(`${root}/d`);
    execFileSync("sh", ["-c", "touch \"$(printf 'bad\\377name')\" good"], { cwd: `${root}/d` });
    expect(badName).toBe("bad\uefffname");
    expect(fs.listDir(`${root}/d`)).toEqual(["bad\uefffname", "good"]);
    expect(fs.listDirStats(`${root}/d`).map((entry) => [entry.name, entry.stat.kind])).toEqual([
      [badName, "file"],
      ["good", "file"],
    ]);
    fs.writeFile(`${root}/d/${badName}`, "written");
    expect(readFileSync(Buffer.from(`${root}/d/bad\xffname`, "latin1"), "utf8")).toBe("written");
    expect(new TextDecoder().decode(fs.readFile(`${root}/d/${badName}`))).toBe("written");
    fs.makeDir(`${root}/${badName}`);
    fs.writeFile(`${root}/${badName}/inner`, "x");
    expect(readdirSync(Buffer.from(`${root}/bad\xffname`, "latin1"), "utf8")).toEqual(["inner"]);
    fs.rename(`${root}/d/${badName}`, `${root}/${badName}/moved`);
    expect(fs.listDir(`${root}/${badName}`)).toEqual(["inner", "moved"]);
    expect(problems).toEqual([]);
    fs.removeDir(`${root}/d`);
    fs.removeDir(`${root}/${badName}`);
    expect(readdirSync(root)).toEqual([]);
  });

  it("symlink targets are bytes too: readLink maps them, makeSymlink writes them back", () => {
    const fs = makeFileSystem();
    symlinkSync(Buffer.from("to-\xfe\xff", "latin1"), `${root}/raw-link`);
    const target = fs.readLink(`${root}/raw-link`);
    expect(target).toBe("to-\ueffe\uefff");
    fs.makeSymlink(`${root}/copy`, target);
    expect(readlinkSync(`${root}/copy`, { encoding: "buffer" })).toEqual(Buffer.from("to-\xfe\xff", "latin1"));
    // A real U+EFFF (valid UTF-8 that the mapping uses for escapes) is read as three escapes and written back.
    const privateUse = Buffer.from("\uefff", "utf8");
    symlinkSync(privateUse, `${root}/private-use`);
    const escaped = fs.readLink(`${root}/private-use`);
    expect(escaped).toBe("\uefee\uefbf\uefbf");
    fs.makeSymlink(`${root}/private-use-copy`, escaped);
    expect(readlinkSync(`${root}/private-use-copy`, { encoding: "buffer" })).toEqual(privateUse);
    expect(fs.debugString(root)).toContain("raw-link -> to-\ueffe\uefff");
  });

  it("a watch reports them under the same string", async () => {
    const fs = makeFileSystem();
    const events: FileSystemEvent[] = [];
    fs.watchDir(root, (event) => events.push(event));
    writeFileSync(Buffer.from(`${root}/bad\xffname`, "latin1"), "x");
    await waitFor("ADDED bad name", () =>
      events.some((event) => event.path === `${root}/${badName}` && event.eventType === ADDED),
    );
  });
});

describe("kernel watches", () => {
  it("reports create, modify and delete in a watched directory as hints naming the child", async () => {
    const fs = makeFileSystem();
    const events: FileSystemEvent[] = [];
    fs.watchDir(root, (event) => events.push(event));
    expect(fs.numWatchedDirs()).toBe(1);
    const has = (path: string, eventType: FileSystemEventType) => () =>
      events.some((event) => event.path === path && event.eventType === eventType);

    writeFileSync(`${root}/made`, "1");
    await waitFor("ADDED made", has(`${root}/made`, ADDED));
    appendFileSync(`${root}/made`, "2");
    await waitFor("MODIFIED made", has(`${root}/made`, MODIFIED));
    unlinkSync(`${root}/made`);
    await waitFor("REMOVED made", has(`${root}/made`, REMOVED));
    mkdirSync(`${root}/sub`);
    await waitFor("ADDED sub", has(`${root}/sub`, ADDED));
  });

  it("an atomic write shows up under its final name; the temp name never appears", async () => {
    const fs = makeFileSystem();
    const events: FileSystemEvent[] = [];
    fs.watchDir(root, (event) => events.push(event));
    fs.writeFile(`${root}/final`, "bytes");
    await waitFor("ADDED final", () =>
      events.some((event) => event.path === `${root}/final` && event.eventType === ADDED),
    );
    expect(events.filter((event) => event.path.includes(RESERVED_PREFIX))).toEqual([]);
  });

  it("unwatchDir stops the events of that directory only", async () => {
    const fs = makeFileSystem();
    mkdirSync(`${root}/quiet`);
    mkdirSync(`${root}/sentinel`);
    const quiet: FileSystemEvent[] = [];
    const sentinel: FileSystemEvent[] = [];
    fs.watchDir(`${root}/quiet`, (event) => quiet.push(event));
    fs.watchDir(`${root}/sentinel`, (event) => sentinel.push(event));
    fs.unwatchDir(`${root}/quiet`);
    expect(fs.numWatchedDirs()).toBe(1);
    writeFileSync(`${root}/quiet/f`, "x");
    writeFileSync(`${root}/sentinel/f`, "x");
    // Both writes were queued by the kernel together: once the sentinel's arrives, the other would have too.
    await waitFor("sentinel event", () => sentinel.length > 0);
    await new Promise((resolve) => setImmediate(resolve));
    expect(quiet).toEqual([]);
  });

  it("a watched directory that is deleted hints at itself, and is watched again once recreated", async () => {
    const fs = makeFileSystem({ rescanIntervalMs: 20 });
    mkdirSync(`${root}/w`);
    const events: FileSystemEvent[] = [];
    fs.watchDir(`${root}/w`, (event) => events.push(event));
    rmSync(`${root}/w`, { recursive: true });
    await waitFor("self hint", () => events.some((event) => event.path === `${root}/w` && event.eventType === ADDED));
    expect(fs.numWatchedDirs()).toBe(1);
    mkdirSync(`${root}/w`);
    writeFileSync(`${root}/w/after`, "x");
    // The periodic retry re-attaches a kernel watch to the new directory; a fresh write must be reported.
    await waitFor("events from the recreated directory", () => {
      writeFileSync(`${root}/w/after`, "again");
      return events.some((event) => event.path === `${root}/w/after`);
    });
  });

  it("watchDir refuses a symlink to a directory with ENOTDIR", () => {
    const fs = makeFileSystem();
    symlinkSync(outside, `${root}/link`);
    expect(errorCodeOf(() => fs.watchDir(`${root}/link`, () => {}))).toBe("ENOTDIR");
    expect(fs.numWatchedDirs()).toBe(0);
  });

  it("close releases every watch", () => {
    const fs = makeFileSystem();
    mkdirSync(`${root}/a`);
    fs.watchDir(root, () => {});
    fs.watchDir(`${root}/a`, () => {});
    expect(fs.numWatchedDirs()).toBe(2);
    fs.close();
    expect(fs.numWatchedDirs()).toBe(0);
    expect(errorCodeOf(() => fs.unwatchDir(root))).toBe("ENOTWATCHED");
  });
});

describe("watch notifications to hints (fake kernel)", () => {
  it("rename becomes ADDED or REMOVED by what is on disk; change becomes MODIFIED; only own names are dropped", () => {
    const kernel = new FakeKernel();
    const fs = makeFileSystem({ watchFactory: kernel.factory });
    const events: FileSystemEvent[] = [];
    fs.watchDir(root, (event) => events.push(event));
    writeFileSync(`${root}/present`, "x");
    writeFileSync(Buffer.from(`${root}/b\xff`, "latin1"), "x");
    kernel.notify(root, "rename", "present");
    kernel.notify(root, "rename", Buffer.from("absent"));
    kernel.notify(root, "change", "present");
    kernel.notify(root, "rename", fs.internalName("stash"));
    kernel.notify(root, "rename", `${fs.internalName("")}0123`);
    kernel.notify(root, "rename", `${RESERVED_PREFIX}0123456789ab`);
    kernel.notify(root, "rename", null);
    kernel.notify(root, "rename", Buffer.from([0x62, 0xff]));
    expect(events).toEqual([
      { path: `${root}/present`, eventType: ADDED },
      { path: `${root}/absent`, eventType: REMOVED },
      { path: `${root}/present`, eventType: MODIFIED },
      { path: `${root}/${RESERVED_PREFIX}0123456789ab`, eventType: REMOVED },
      { path: root, eventType: ADDED },
      { path: `${root}/b\uefff`, eventType: ADDED },
    ]);
  });

  it("a child named like its watched parent is still a child while the parent is in place", () => {
    const kernel = new FakeKernel();
    const fs = makeFileSystem({ watchFactory: kernel.factory });
    mkdirSync(`${root}/same`);
    writeFileSync(`${root}/same/same`, "x");
    const events: FileSystemEvent[] = [];
    fs.watchDir(`${root}/same`, (event) => events.push(event));
    kernel.notify(`${root}/same`, "rename", "same");
    expect(events).toEqual([{ path: `${root}/same/same`, eventType: ADDED }]);
  });

  it("a notification whose child path no longer resolves (dir replaced by a file) is a REMOVED hint, not a crash", () => {
    const kernel = new FakeKernel();
    const fs = makeFileSystem({ watchFactory: kernel.factory });
    mkdirSync(`${root}/d`);
    const events: FileSystemEvent[] = [];
    fs.watchDir(`${root}/d`, (event) => events.push(event));
    rmSync(`${root}/d`, { recursive: true });
    writeFileSync(`${root}/d`, "now a file");
    // lstat of d/x fails with ENOTDIR here; thrown inside an fs.watch listener it would kill the process.
    expect(() => kernel.notify(`${root}/d`, "rename", "x")).not.toThrow();
    expect(events).toEqual([{ path: `${root}/d/x`, eventType: REMOVED }]);
  });

  it("a watcher error is reported, hints a rescan and never throws", () => {
    const kernel = new FakeKernel();
    const fs = makeFileSystem({ watchFactory: kernel.factory });
    const events: FileSystemEvent[] = [];
    fs.watchDir(root, (event) => events.push(event));
    const { watcher } = kernel.watchers.get(root)!;
    watcher.emit("error", Object.assign(new Error("EIO: fake"), { code: "EIO" }));
    expect(problems).toEqual([{ path: root, reason: expect.stringContaining("watch failed (EIO)") as string }]);
    expect(events).toEqual([{ path: root, eventType: ADDED }]);
    expect(fs.numWatchedDirs()).toBe(1);
  });

  it("a callback that throws is reported through onProblem instead of crashing the event loop", () => {
    const kernel = new FakeKernel();
    const fs = makeFileSystem({ watchFactory: kernel.factory });
    fs.watchDir(root, () => {
      throw new Error("consumer bug");
    });
    kernel.notify(root, "change", "f");
    expect(problems).toEqual([{ path: `${root}/f`, reason: expect.stringContaining("consumer bug") as string }]);
  });

  it("ENOSPC from the kernel: one line names the watch limit; polled directories hint only when they change", async () => {
    const kernel = new FakeKernel();
    kernel.failWith = "ENOSPC";
    const notices: string[] = [];
    const fs = makeFileSystem({
      watchFactory: kernel.factory,
      rescanIntervalMs: 10,
      onNotice: (message) => notices.push(message),
    });
    mkdirSync(`${root}/polled`);
    mkdirSync(`${root}/sentinel`);
    const polled: FileSystemEvent[] = [];
    const sentinel: FileSystemEvent[] = [];
    fs.watchDir(`${root}/polled`, (event) => polled.push(event));
    fs.watchDir(`${root}/sentinel`, (event) => sentinel.push(event));
    expect(fs.numWatchedDirs()).toBe(2);
    expect(fs.numPolledDirs()).toBe(2);
    await waitFor("the watch-limit line", () => notices.length > 0);
    expect(notices).toHaveLength(1);
    expect(notices[0]).toContain("fs.inotify.max_user_watches");
    expect(notices[0]).toContain("needs 2 watches");
    expect(problems).toHaveLength(1);
    // Nothing changed: no hints. A change in a polled directory is hinted as a rescan of it.
    expect(polled).toEqual([]);
    writeFileSync(`${root}/polled/new`, "x");
    await waitFor("a hint for the changed directory", () => polled.length > 0);
    expect(polled).toEqual([{ path: `${root}/polled`, eventType: ADDED }]);
    fs.unwatchDir(`${root}/polled`);
    writeFileSync(`${root}/polled/after`, "x");
    writeFileSync(`${root}/sentinel/new`, "x");
    await waitFor("a hint from the sentinel", () => sentinel.length > 0);
    expect(polled).toHaveLength(1);
    expect(fs.numWatchedDirs()).toBe(1);
    expect(fs.numPolledDirs()).toBe(1);
  });

  it("other watch failures are thrown as typed errors and nothing is counted as watched", () => {
    const kernel = new FakeKernel();
    kernel.failWith = "EACCES";
    const fs = makeFileSystem({ watchFactory: kernel.factory });
    expect(errorCodeOf(() => fs.watchDir(root, () => {}))).toBe("EACCES");
    expect(fs.numWatchedDirs()).toBe(0);
  });

  it("a burst at the overflow threshold drops the flood and hints a rescan of each root-most watched directory", async () => {
    const kernel = new FakeKernel();
    const fs = makeFileSystem({ watchFactory: kernel.factory, overflowThreshold: 10 });
    mkdirSync(`${root}/tree/a/b`, { recursive: true });
    mkdirSync(`${root}/other`);
    const events: FileSystemEvent[] = [];
    for (const dir of ["tree", "tree/a", "tree/a/b", "other"]) {
      fs.watchDir(`${root}/${dir}`, (event) => events.push(event));
    }
    for (let index = 0; index < 25; index += 1) kernel.notify(`${root}/tree/a/b`, "change", `f${index}`);
    expect(events.length).toBe(9);
    await waitFor("rescan hints", () => events.length > 9);
    expect(events.slice(9)).toEqual([
      { path: `${root}/tree`, eventType: ADDED },
      { path: `${root}/other`, eventType: ADDED },
    ]);
    expect(problems.map((problem) => problem.path)).toEqual([`${root}/tree`, `${root}/other`]);
    // The next, smaller burst is trusted again.
    kernel.notify(`${root}/other`, "change", "g");
    expect(events.at(-1)).toEqual({ path: `${root}/other/g`, eventType: MODIFIED });
  });

  it("a below-threshold stream spread over several macrotasks is not mistaken for an overflow", async () => {
    const kernel = new FakeKernel();
    const fs = makeFileSystem({ watchFactory: kernel.factory, overflowThreshold: 10 });
    const events: FileSystemEvent[] = [];
    fs.watchDir(root, (event) => events.push(event));
    for (let round = 0; round < 5; round += 1) {
      for (let index = 0; index < 5; index += 1) kernel.notify(root, "change", `f${index}`);
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(events.length).toBe(25);
    expect(events.every((event) => event.eventType === MODIFIED)).toBe(true);
    expect(problems).toEqual([]);
  });
});

describe("overflow detection on the real kernel", () => {
  it("many changes queued at once in a watched tree produce one rescan hint for its top", async () => {
    const fs = makeFileSystem({ overflowThreshold: 40 });
    mkdirSync(`${root}/sub`);
    const events: FileSystemEvent[] = [];
    fs.watchDir(root, (event) => events.push(event));
    fs.watchDir(`${root}/sub`, (event) => events.push(event));
    // Written synchronously: the kernel queues every notification before Node reads any of them.
    for (let index = 0; index < 100; index += 1) writeFileSync(`${root}/sub/f${index}`, "x");
    await waitFor("rescan hint for the root", () =>
      events.some((event) => event.path === root && event.eventType === ADDED),
    );
    expect(events.filter((event) => event.path === root)).toHaveLength(1);
    expect(problems.some((problem) => problem.reason.includes("inotify queue may have overflowed"))).toBe(true);
  });
});

describe("exact mtimes", () => {
  const times = [
    { sec: 1_700_000_000, nsec: 123_456_789 },
    { sec: -86_400 * 400, nsec: 987_654_321 }, // before 1970
    { sec: 4_102_444_800, nsec: 1 }, // 2100
  ];
  const nanoseconds = (time: { sec: number; nsec: number }) => BigInt(time.sec) * 1_000_000_000n + BigInt(time.nsec);

  it("koffi is loaded here, so times are set to the nanosecond rather than the microsecond", () => {
    expect(loadNativeCalls()).toBeDefined();
  });

  for (const time of times) {
    it(`file, directory and symlink keep ${JSON.stringify(time)} exactly, through every writer`, () => {
      const fs = makeFileSystem();
      fs.writeFile(`${root}/f`, "x");
      fs.makeDir(`${root}/d`);
      fs.makeSymlink(`${root}/l`, "f");
      for (const name of ["f", "d", "l"]) fs.setMetadata(`${root}/${name}`, { mtime: time });
      fs.writeFileWith(`${root}/w`, Uint8Array.of(1), { mtime: time });
      const staged = fs.openStaged(`${root}/o`);
      staged.write(Uint8Array.of(2));
      fs.commitStaged([staged.finish({ mtime: time })]);
      writeFileSync(`${root}/moved-from`, "m");
      fs.commitStaged([fs.stageExisting(`${root}/moved-from`, `${root}/m`, { mtime: time })]);
      for (const name of ["f", "d", "l", "w", "o", "m"]) {
        expect(lstatSync(`${root}/${name}`, { bigint: true }).mtimeNs, name).toBe(nanoseconds(time));
        expect(fs.lstat(`${root}/${name}`).mtime, name).toEqual(time);
      }
      // The link's own time was set, never its target's through it.
      expect(lstatSync(`${root}/l`).isSymbolicLink()).toBe(true);
    });
  }

  it("mtimeMs agrees with Node's number stats", () => {
    const fs = makeFileSystem();
    fs.writeFileWith(`${root}/f`, Uint8Array.of(1), { mtime: { sec: 1_600_000_000, nsec: 123_456_789 } });
    expect(fs.lstat(`${root}/f`).mtimeMs).toBe(statSync(`${root}/f`).mtimeMs);
    expect(fs.lstat(`${root}/f`).ctimeMs).toBe(statSync(`${root}/f`).ctimeMs);
  });

  it("a listing, an lstat and a read state every field as Node's lstat does (statx decoded straight into EntryStat)", () => {
    const fs = makeFileSystem();
    fs.writeFileWith(`${root}/f`, Uint8Array.of(1, 2, 3), { mode: 0o4751, mtime: { sec: -5, nsec: 7 } });
    linkSync(`${root}/f`, `${root}/g`);
    fs.makeDir(`${root}/d`);
    fs.makeSymlink(`${root}/l`, "f");
    const expected = (name: string) => {
      const node = lstatSync(`${root}/${name}`);
      return {
        kind: node.isFile() ? "file" : node.isDirectory() ? "dir" : "symlink",
        size: node.size,
        mtimeMs: node.mtimeMs,
        ctimeMs: node.ctimeMs,
        mode: node.mode & 0o7777,
        ino: node.ino,
        dev: node.dev,
        nlink: node.nlink,
        uid: node.uid,
        gid: node.gid,
      };
    };
    const listed = new Map(fs.listDirStats(root).map(({ name, stat }) => [name, stat]));
    expect([...listed.keys()]).toEqual(["d", "f", "g", "l"]);
    for (const name of listed.keys()) {
      const { mtime: _listedTime, ...fromListing } = listed.get(name)!;
      const { mtime: _time, ...fromLstat } = fs.lstat(`${root}/${name}`);
      expect(fromListing, name).toEqual(expected(name));
      expect(fromLstat, name).toEqual(expected(name));
    }
    expect(listed.get("f")).toMatchObject({ kind: "file", mode: 0o4751, nlink: 2, mtime: { sec: -5, nsec: 7 } });
    const { mtime: _readTime, ...fromRead } = fs.readFileStated(`${root}/f`).stat;
    expect(fromRead).toEqual(expected("f"));
  });

  it("refuses a time that is not whole seconds and 0 <= nsec < 1e9 with EINVAL", () => {
    const fs = makeFileSystem();
    fs.writeFile(`${root}/f`, "x");
    expect(errorCodeOf(() => fs.setMetadata(`${root}/f`, { mtime: { sec: 1, nsec: 1e9 } }))).toBe("EINVAL");
    expect(errorCodeOf(() => fs.setMetadata(`${root}/f`, { mtime: { sec: 1.5, nsec: 0 } }))).toBe("EINVAL");
  });
});

describe("directory handles (confinement)", () => {
  /** Descriptors of this process open on something inside the test root (the instance's handles). */
  const openDescriptors = () =>
    readdirSync("/proc/self/fd").filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`).startsWith(root);
      } catch {
        return false; // the descriptor readdir itself used, closed by now
      }
    }).length;

  it("opens a deep directory in one call when the kernel says no symlink was on its way, also below a root whose path goes through one", () => {
    mkdirSync(`${root}/a/b/c`, { recursive: true });
    writeFileSync(`${root}/a/b/c/f`, "1");
    symlinkSync(base, `${base}/base-link`);
    for (const given of [root, `${base}/base-link/root`]) {
      const fs = makeFileSystem({ root: given });
      expect(fs.listDir(`${given}/a/b/c`)).toEqual(["f"]);
      // The root's handle and c's: not one per level (a, b) as a walk from the root would hold.
      expect(openDescriptors()).toBe(2);
      fs.releaseHandles();
      expect(openDescriptors()).toBe(0);
    }
  });

  it("refuses a deep path through a symlink that leads back inside the root (the one-call open is not trusted)", () => {
    const fs = makeFileSystem();
    mkdirSync(`${root}/real/inner`, { recursive: true });
    mkdirSync(`${root}/a`);
    symlinkSync(`${root}/real`, `${root}/a/hop`);
    expect(errorCodeOf(() => fs.listDir(`${root}/a/hop/inner`))).toBe("ELOOP");
    expect(errorCodeOf(() => fs.writeFile(`${root}/a/hop/inner/f`, "x"))).toBe("ELOOP");
    expect(readdirSync(`${root}/real/inner`)).toEqual([]);
  });

  it("a directory renamed through the instance is never written through its old handle", () => {
    const fs = makeFileSystem();
    fs.makeDir(`${root}/a`);
    fs.writeFile(`${root}/a/f`, "1");
    fs.rename(`${root}/a`, `${root}/b`);
    fs.makeDir(`${root}/a`);
    fs.writeFile(`${root}/a/g`, "2");
    expect(readdirSync(`${root}/a`)).toEqual(["g"]);
    expect(readdirSync(`${root}/b`)).toEqual(["f"]);
  });

  it("a tree removed and made again through the instance is written in its new directories", () => {
    const fs = makeFileSystem();
    fs.makeDirs(`${root}/x/y`);
    fs.writeFile(`${root}/x/y/f`, "1");
    fs.removeDir(`${root}/x`);
    fs.makeDirs(`${root}/x/y`);
    fs.writeFile(`${root}/x/y/g`, "2");
    expect(readdirSync(`${root}/x/y`)).toEqual(["g"]);
  });

  it("within a request a held handle keeps writing into the real directory a racer moved away; after release the symlink is refused", () => {
    const fs = makeFileSystem();
    fs.makeDir(`${root}/a`);
    fs.writeFile(`${root}/a/f`, "1");
    // Someone else swaps `a` for a symlink to the outside while the handle is cached.
    renameSync(`${root}/a`, `${root}/a.moved`);
    symlinkSync(outside, `${root}/a`);
    fs.writeFile(`${root}/a/g`, "2");
    expect(readdirSync(`${root}/a.moved`).sort()).toEqual(["f", "g"]);
    fs.releaseHandles();
    let message = "";
    try {
      fs.writeFile(`${root}/a/h`, "3");
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toBe(`ELOOP: traverses symlink ${root}/a: ${root}/a/h`);
    expect(snapshot(outside)).toEqual({ canary: "canary" });
  });

  it("the cache is bounded (no EMFILE however many directories a request touches) and released on demand", () => {
    const fs = makeFileSystem({ durability: "none" });
    const before = openDescriptors();
    for (let index = 0; index < 700; index += 1) {
      fs.makeDirs(`${root}/many/d${index}/e`);
      fs.writeFile(`${root}/many/d${index}/e/f`, "x");
    }
    const during = openDescriptors();
    expect(during - before).toBeGreaterThan(10);
    expect(during - before).toBeLessThanOrEqual(256 + 4);
    expect(before).toBe(0);
    fs.releaseHandles();
    expect(openDescriptors()).toBe(before);
  });

  it("a walk holding the handles keeps them from one macrotask to the next, until it lets go", async () => {
    mkdirSync(`${root}/a/b/c`, { recursive: true });
    const fs = makeFileSystem();
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    const release = fs.holdHandles();
    fs.listDir(`${root}/a/b`);
    const held = openDescriptors();
    await turn();
    await turn();
    expect(openDescriptors()).toBe(held);
    // The next directory down is opened through b's handle (one more kept), not again from the root.
    fs.listDir(`${root}/a/b/c`);
    expect(openDescriptors()).toBe(held + 1);
    release();
    expect(openDescriptors()).toBe(0);
    release(); // a second call changes nothing
    fs.listDir(`${root}/a/b`);
    await turn();
    await turn();
    expect(openDescriptors()).toBe(0);
  });

  it("handles held by a request that never calls releaseHandles are released when its macrotask ends", async () => {
    const fs = makeFileSystem();
    const before = openDescriptors();
    fs.makeDirs(`${root}/p/q`);
    fs.writeFile(`${root}/p/q/f`, "x");
    expect(openDescriptors()).toBeGreaterThan(before);
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(openDescriptors()).toBe(before);
  });

  it("makeDirs refuses to go through a symlink planted at any level, and creates nothing outside", () => {
    const fs = makeFileSystem();
    fs.makeDir(`${root}/real`);
    symlinkSync(outside, `${root}/real/hop`);
    expect(errorCodeOf(() => fs.makeDirs(`${root}/real/hop/x/y`))).toBe("ELOOP");
    expect(errorCodeOf(() => fs.makeDirs(`${root}/real/hop`))).toBe("EEXIST");
    expect(snapshot(outside)).toEqual({ canary: "canary" });
  });

  it("removeDir of the root itself is refused (catalogue A9)", () => {
    const fs = makeFileSystem();
    fs.writeFile(`${root}/f`, "x");
    expect(errorCodeOf(() => fs.removeDir(root))).toBe("EACCES");
    expect(readdirSync(root)).toEqual(["f"]);
  });
});

describe("hard links and commit failures", () => {
  it("stageLink adds a name to the same inode; committed, it replaces what stood there", () => {
    const fs = makeFileSystem();
    fs.writeFile(`${root}/original`, "shared");
    fs.writeFile(`${root}/replaced`, "old");
    fs.makeDir(`${root}/d`);
    const staged = [
      fs.stageLink(`${root}/original`, `${root}/replaced`),
      fs.stageLink(`${root}/original`, `${root}/d/n`),
    ];
    expect(readFileSync(`${root}/replaced`, "utf8")).toBe("old");
    expect(fs.commitStaged(staged)).toEqual([]);
    const ino = statSync(`${root}/original`).ino;
    expect([statSync(`${root}/replaced`).ino, statSync(`${root}/d/n`).ino]).toEqual([ino, ino]);
    expect(fs.lstat(`${root}/original`).nlink).toBe(3);
  });

  it("stageLink refuses a symlink or a directory as the existing file, and leaves no temp", () => {
    const fs = makeFileSystem();
    symlinkSync(`${outside}/canary`, `${root}/link`);
    fs.makeDir(`${root}/d`);
    expect(errorCodeOf(() => fs.stageLink(`${root}/link`, `${root}/n`))).toBe("EINVAL");
    expect(errorCodeOf(() => fs.stageLink(`${root}/d`, `${root}/n`))).toBe("EINVAL");
    expect(readdirSync(root).sort()).toEqual(["d", "link"]);
    expect(statSync(`${outside}/canary`).nlink).toBe(1);
  });

  it("an immutable final name (chattr +i) fails alone with EPERM; the other files commit and no temp is left", (context) => {
    const fs = makeFileSystem();
    writeFileSync(`${root}/frozen`, "frozen");
    try {
      execFileSync("chattr", ["+i", `${root}/frozen`], { stdio: "ignore" });
    } catch {
      context.skip(); // not root, or a file system without the immutable attribute
    }
    try {
      const bytes = new TextEncoder().encode("new");
      const files = ["a", "frozen", "b"].map((name) => fs.stageFile(`${root}/${name}`, bytes, {}));
      const failures = fs.commitStaged(files);
      expect(failures.map(({ file, error }) => [file.path, error.code])).toEqual([[`${root}/frozen`, "EPERM"]]);
      expect(readdirSync(root).sort()).toEqual(["a", "b", "frozen"]);
      expect(readFileSync(`${root}/frozen`, "utf8")).toBe("frozen");
    } finally {
      execFileSync("chattr", ["-i", `${root}/frozen`]);
    }
  });
});
