import { execFileSync } from "node:child_process";
import { EventEmitter } from "node:events";
import {
  appendFileSync,
  chmodSync,
  closeSync,
  type FSWatcher,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type FileSystemEvent, FileSystemEventType, RESERVED_PREFIX } from "../../src/fs/fileSystem.js";
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
      fs.writeFileWith(`${root}/g${index % 3}`, Uint8Array.of(index), { mode: 0o600, mtimeMs: 1_000_000 + index });
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

  it("writeFileWith sets mode and mtime on the new file, masking special bits", () => {
    const fs = makeFileSystem();
    fs.writeFile(`${root}/f`, "old");
    fs.writeFileWith(`${root}/f`, Uint8Array.of(1, 2, 3), { mode: 0o4751, mtimeMs: 1_234_567_890_000 });
    const stat = statSync(`${root}/f`);
    expect(stat.mode & 0o7777).toBe(0o751);
    expect(stat.mtimeMs).toBe(1_234_567_890_000);
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

  it("listDir and debugString ignore names carrying the reserved prefix", () => {
    const fs = makeFileSystem();
    writeFileSync(`${root}/${RESERVED_PREFIX}0123456789ab`, "stale temp");
    writeFileSync(`${root}/real`, "r");
    expect(fs.listDir(root)).toEqual(["real"]);
    expect(fs.debugString(root)).toBe([root, "`-- real: r"].join("\n"));
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

  it("reads files whose size stat reports as zero (procfs) in full", () => {
    const fs = new NodeFileSystem();
    opened.push(fs);
    const text = new TextDecoder().decode(fs.readFile("/proc/self/status"));
    expect(text).toContain("Pid:");
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

  it("readFile, listDir and setMetadata refuse a symlink, and the outside stays unchanged", () => {
    const fs = makeFileSystem();
    const before = snapshot(outside);
    expect(errorCodeOf(() => fs.readFile(`${root}/to-target`))).toBe("ELOOP");
    expect(errorCodeOf(() => fs.listDir(`${root}/to-outside`))).toBe("ENOTDIR");
    expect(errorCodeOf(() => fs.removeDir(`${root}/to-outside`))).toBe("ENOTDIR");
    expect(errorCodeOf(() => fs.setMetadata(`${root}/to-outside`, { mode: 0o700 }))).toBe("ELOOP");
    expect(statSync(outside).mode & 0o777).not.toBe(0o700);
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
  it("listDir skips them and reports them through onProblem; removeDir still removes them", () => {
    const fs = makeFileSystem();
    mkdirSync(`${root}/d`);
    execFileSync("sh", ["-c", "touch \"$(printf 'bad\\377name')\" good"], { cwd: `${root}/d` });
    expect(fs.listDir(`${root}/d`)).toEqual(["good"]);
    expect(problems).toEqual([
      { path: `${root}/d/bad\\xffname`, reason: expect.stringContaining("not valid UTF-8") as string },
    ]);
    fs.removeDir(`${root}/d`);
    expect(readdirSync(root)).toEqual([]);
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
  it("rename becomes ADDED or REMOVED by what is on disk; change becomes MODIFIED; reserved names are dropped", () => {
    const kernel = new FakeKernel();
    const fs = makeFileSystem({ watchFactory: kernel.factory });
    const events: FileSystemEvent[] = [];
    fs.watchDir(root, (event) => events.push(event));
    writeFileSync(`${root}/present`, "x");
    kernel.notify(root, "rename", "present");
    kernel.notify(root, "rename", Buffer.from("absent"));
    kernel.notify(root, "change", "present");
    kernel.notify(root, "rename", `${RESERVED_PREFIX}0123456789ab`);
    kernel.notify(root, "rename", null);
    kernel.notify(root, "rename", Buffer.from([0x62, 0xff]));
    expect(events).toEqual([
      { path: `${root}/present`, eventType: ADDED },
      { path: `${root}/absent`, eventType: REMOVED },
      { path: `${root}/present`, eventType: MODIFIED },
      { path: root, eventType: ADDED },
      { path: root, eventType: ADDED },
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

  it("ENOSPC from the kernel: reports the watch limit and falls back to periodic rescan hints", async () => {
    const kernel = new FakeKernel();
    kernel.failWith = "ENOSPC";
    const fs = makeFileSystem({ watchFactory: kernel.factory, rescanIntervalMs: 10 });
    mkdirSync(`${root}/polled`);
    mkdirSync(`${root}/sentinel`);
    const polled: FileSystemEvent[] = [];
    const sentinel: FileSystemEvent[] = [];
    fs.watchDir(`${root}/polled`, (event) => polled.push(event));
    fs.watchDir(`${root}/sentinel`, (event) => sentinel.push(event));
    expect(fs.numWatchedDirs()).toBe(2);
    expect(problems.map((problem) => problem.path)).toEqual([`${root}/polled`, `${root}/sentinel`]);
    expect(problems[0]!.reason).toContain("fs.inotify.max_user_watches");
    expect(problems[0]!.reason).toContain("periodic rescans");
    await waitFor("three periodic hints", () => polled.length >= 3);
    expect(new Set(polled.map((event) => `${event.eventType} ${event.path}`))).toEqual(
      new Set([`${ADDED} ${root}/polled`]),
    );
    fs.unwatchDir(`${root}/polled`);
    const afterUnwatch = polled.length;
    const sentinelBefore = sentinel.length;
    await waitFor("two more sentinel hints", () => sentinel.length >= sentinelBefore + 2);
    expect(polled.length).toBe(afterUnwatch);
    expect(fs.numWatchedDirs()).toBe(1);
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
