// End-to-end tests of `mirrorlog sync` as users run it: the real binary in child processes on
// temp directories, checked by an independent tree oracle (plain node:fs), never by our own scanner.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type CliResult, makeWorkspace, runMirrorlog, summaryOf, testEnvironment } from "../support/cliRunner.js";
import { pickFreePort } from "../support/sshd.js";
import {
  compareDescriptions,
  compareTrees,
  describeTree,
  findTempFiles,
  formatDifferences,
  listTree,
} from "../support/treeOracle.js";

const workspaces: string[] = [];

afterAll(() => {
  for (const dir of workspaces) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temp dir with src/ (created), dst (not created) and a private XDG_STATE_HOME. */
function workspace() {
  return makeWorkspace("cli", workspaces);
}

function expectMirrored(src: string, dst: string, options: Parameters<typeof compareTrees>[2] = {}): void {
  const differences = compareTrees(src, dst, options);
  expect(
    differences,
    `${formatDifferences(differences)}\n--- source\n${listTree(src)}\n--- target\n${listTree(dst)}`,
  ).toEqual([]);
}

function write(path: string, content: string | Uint8Array, mode?: number): void {
  writeFileSync(path, content);
  if (mode !== undefined) chmodSync(path, mode);
}

/** Sets a file's mtime (and atime) to `seconds` since the epoch; fractional seconds keep milliseconds. */
function setMtime(path: string, seconds: number): void {
  utimesSync(path, seconds, seconds);
}

describe("mirrorlog sync onto an empty target", () => {
  it("mirrors nested dirs, binary and empty files, symlinks, modes and mtimes; a second run writes nothing", async () => {
    const { src, dst, env } = workspace();
    mkdirSync(join(src, "dir/sub/deeper"), { recursive: true });
    chmodSync(join(src, "dir/sub"), 0o750);
    const files: [string, Uint8Array | string, number][] = [
      ["blob.bin", randomBytes(100_000), 0o640],
      ["empty.txt", "", 0o644],
      ["run.sh", "#!/bin/sh\necho hi\n", 0o755],
      ["secret.key", randomBytes(33), 0o600],
      ["dir/sub/deeper/nested.bin", randomBytes(3_000), 0o644],
      ["dir/notes.txt", "some notes\n".repeat(40), 0o640],
    ];
    for (const [path, content, mode] of files) write(join(src, path), content, mode);
    setMtime(join(src, "blob.bin"), 1_600_000_000.123);
    setMtime(join(src, "dir/sub/deeper/nested.bin"), 1_000_000_000.5);
    symlinkSync("dir/sub/deeper/nested.bin", join(src, "relative-link"));
    symlinkSync("/etc/hostname", join(src, "dir/absolute-link"));
    symlinkSync("no/such/target", join(src, "dir/sub/dangling-link"));
    const totalBytes = files.reduce((n, [, content]) => n + Buffer.byteLength(content), 0);

    const first = await runMirrorlog(["sync", "--json", src, dst], { env });
    expect(first.code, first.stderr).toBe(0);
    expectMirrored(src, dst, { mtimes: true });
    expect(findTempFiles(dst)).toEqual([]);
    const summary = summaryOf(first);
    expect(summary).toMatchObject({
      filesScanned: files.length,
      filesWritten: files.length,
      filesDeleted: 0,
      dirsCreated: 3,
      dirsDeleted: 0,
      bytesWritten: totalBytes,
      problems: [],
    });
    // The random bytes do not compress, so at least they crossed the wire.
    expect(summary.wireBytesSent).toBeGreaterThan(100_000 + 3_000);
    expect(summary.wireBytesReceived).toBeGreaterThan(0);
    expect(summary.durationMs).toBeGreaterThanOrEqual(0);
    expect(summary.operationsLogged).toBeGreaterThanOrEqual(files.length + 3 + 3);

    const second = await runMirrorlog(["sync", "--json", src, dst], { env });
    expect(second.code, second.stderr).toBe(0);
    expect(summaryOf(second)).toMatchObject({
      filesScanned: files.length,
      filesWritten: 0,
      filesDeleted: 0,
      dirsCreated: 0,
      dirsDeleted: 0,
      bytesWritten: 0,
      operationsLogged: 0,
      problems: [],
    });
    // Nothing to send: the second run's wire traffic is far below the content's size.
    expect(summaryOf(second).wireBytesSent).toBeLessThan(10_000);
    expectMirrored(src, dst, { mtimes: true });
  });

  it("prints a human summary without --json and exits 0", async () => {
    const { src, dst, env } = workspace();
    write(join(src, "a.txt"), "a");
    const result = await runMirrorlog(["sync", src, dst], { env });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("Number of files written: 1");
    expectMirrored(src, dst);
  });
});

describe("mirrorlog sync onto a non-empty target", () => {
  it("replaces wrong kinds, rewrites only differing bytes, fixes metadata and deletes extras", async () => {
    const { src, dst, env } = workspace();
    mkdirSync(dst);
    // Identical on both sides (bytes, mode, mtime): untouched.
    write(join(src, "same.txt"), "same bytes", 0o644);
    write(join(dst, "same.txt"), "same bytes", 0o644);
    setMtime(join(src, "same.txt"), 1_500_000_000);
    setMtime(join(dst, "same.txt"), 1_500_000_000);
    // Same bytes, other mode and mtime: metadata fixed, bytes not written again.
    write(join(src, "meta.txt"), "metadata only", 0o600);
    write(join(dst, "meta.txt"), "metadata only", 0o644);
    setMtime(join(src, "meta.txt"), 1_400_000_000.25);
    // Different bytes.
    write(join(src, "changed.txt"), "the new content");
    write(join(dst, "changed.txt"), "old");
    // A file in the source where the target has a populated directory.
    write(join(src, "was-dir"), "now a file");
    mkdirSync(join(dst, "was-dir/inner"), { recursive: true });
    write(join(dst, "was-dir/inner/x.txt"), "x");
    // A directory in the source where the target has a file.
    mkdirSync(join(src, "was-file"));
    write(join(src, "was-file/inside.txt"), "inside");
    write(join(dst, "was-file"), "i was a file");
    // A symlink where the target has a file, and a file where the target has a symlink.
    symlinkSync("same.txt", join(src, "now-link"));
    write(join(dst, "now-link"), "plain file");
    write(join(src, "was-link"), "plain again");
    symlinkSync("elsewhere", join(dst, "was-link"));
    // A symlink whose target text differs.
    symlinkSync("new-target", join(src, "retarget"));
    symlinkSync("old-target", join(dst, "retarget"));
    // Extras on the target only.
    write(join(dst, "extra.txt"), "extra");
    mkdirSync(join(dst, "extra-dir/deep"), { recursive: true });
    write(join(dst, "extra-dir/deep/f"), "f");

    // A DST with entries SRC lacks and no state of this pair: deleting them takes --delete (rsyncHabits.test.ts).
    const result = await runMirrorlog(["sync", "--delete", "--json", src, dst], { env });
    expect(result.code, result.stderr).toBe(0);
    expectMirrored(src, dst, { mtimes: true });
    expect(findTempFiles(dst)).toEqual([]);
    const written = ["changed.txt", "was-dir", "was-file/inside.txt", "was-link"];
    const summary = summaryOf(result);
    expect(summary).toMatchObject({
      filesScanned: 6,
      filesWritten: written.length,
      bytesWritten: written.reduce((n, path) => n + readFileSync(join(src, path)).length, 0),
      dirsCreated: 1,
      problems: [],
    });
    // extra.txt removed, the file was-file replaced by a directory; a removed directory (was-dir,
    // extra-dir) counts once, not its contents; a file replaced by a symlink counts as neither.
    expect(summary.filesDeleted).toBe(2);
    expect(summary.dirsDeleted).toBe(2);

    const again = await runMirrorlog(["sync", "--json", src, dst], { env });
    expect(again.code, again.stderr).toBe(0);
    expect(summaryOf(again)).toMatchObject({ filesWritten: 0, operationsLogged: 0, problems: [] });
  });

  it("re-mirrors after the target was changed behind its back", async () => {
    const { src, dst, env } = workspace();
    mkdirSync(join(src, "d"));
    write(join(src, "d/a.txt"), "a");
    write(join(src, "b.txt"), "b");
    expect((await runMirrorlog(["sync", src, dst], { env })).code).toBe(0);
    write(join(dst, "d/a.txt"), "tampered");
    rmSync(join(dst, "b.txt"));
    write(join(dst, "intruder"), "x");
    const result = await runMirrorlog(["sync", "--json", src, dst], { env });
    expect(result.code, result.stderr).toBe(0);
    expectMirrored(src, dst);
    expect(summaryOf(result)).toMatchObject({ filesWritten: 2, filesDeleted: 1 });
  });
});

describe("mirrorlog sync: per-path problems", () => {
  it("skips a FIFO, reports it in problems, exits 23 (partial transfer) and mirrors the rest", async () => {
    const { src, dst, env } = workspace();
    mkdirSync(join(src, "d"));
    write(join(src, "d/file.txt"), "content");
    write(join(src, "top.txt"), "top");
    execFileSync("mkfifo", [join(src, "d/pipe")]);
    const result = await runMirrorlog(["sync", "--json", src, dst], { env, timeoutMs: 20_000 });
    expect(result.code, result.stderr).toBe(23);
    const summary = summaryOf(result);
    expect(summary.problems).toEqual([{ path: "d/pipe", reason: expect.stringMatching(/FIFO/) }]);
    expect(existsSync(join(dst, "d/pipe"))).toBe(false);
    expectMirrored(src, dst, { exclude: (path) => path === "d/pipe" });
  });

  // Root reads every file whatever its mode, so as root the run drops to `nobody` for this test;
  // as any other user it runs as that user. Either way the reading process truly gets EACCES.
  it("reports an unreadable file and an unreadable directory, exits 23 and mirrors the rest", async () => {
    const { base, src, dst, stateHome } = workspace();
    const asRoot = process.getuid?.() === 0;
    const user = asRoot ? { uid: 65534, gid: 65534 } : {};
    mkdirSync(join(src, "closed"));
    write(join(src, "closed/hidden.txt"), "hidden");
    write(join(src, "readable.txt"), "readable");
    write(join(src, "locked.txt"), "locked");
    mkdirSync(stateHome);
    if (asRoot) {
      chmodSync(base, 0o755);
      for (const path of [src, join(src, "closed"), join(src, "closed/hidden.txt"), join(src, "readable.txt")]) {
        chownSync(path, 65534, 65534);
      }
      chownSync(join(src, "locked.txt"), 65534, 65534);
      chownSync(stateHome, 65534, 65534);
      chownSync(base, 65534, 65534);
    }
    chmodSync(join(src, "locked.txt"), 0o000);
    chmodSync(join(src, "closed"), 0o000);
    const result = await runMirrorlog(["sync", "--json", src, dst], { env: testEnvironment(stateHome), ...user });
    chmodSync(join(src, "closed"), 0o755); // so that the oracle (and cleanup) can read it
    expect(result.code, result.stderr).toBe(23);
    const problems = summaryOf(result).problems;
    expect(problems.map((p) => p.path).sort()).toEqual(["closed", "locked.txt"]);
    for (const problem of problems) expect(problem.reason).toMatch(/EACCES|permission denied/i);
    expect(readFileSync(join(dst, "readable.txt"), "utf8")).toBe("readable");
    expect(existsSync(join(dst, "locked.txt"))).toBe(false);
    expectMirrored(src, dst, { exclude: (path) => path === "locked.txt" || path === "closed" });
  });
});

describe("mirrorlog sync: exclusions", () => {
  it("neither sends nor deletes paths excluded by --exclude or .mirrorlogignore", async () => {
    const { src, dst, env } = workspace();
    mkdirSync(join(src, "sub"));
    mkdirSync(join(src, "cache"));
    write(join(src, ".mirrorlogignore"), "# caches are rebuilt\ncache/\n");
    write(join(src, "keep.txt"), "keep");
    write(join(src, "debug.log"), "source log");
    write(join(src, "sub/trace.log"), "source trace");
    write(join(src, "sub/keep.txt"), "keep too");
    write(join(src, "cache/blob"), "cached");
    // The target already holds excluded paths, some with the same names as the source's.
    mkdirSync(join(dst, "sub"), { recursive: true });
    mkdirSync(join(dst, "cache"));
    write(join(dst, "old.log"), "target log");
    write(join(dst, "debug.log"), "target's own debug log");
    write(join(dst, "sub/old.log"), "target trace");
    write(join(dst, "cache/stale"), "stale cache");
    write(join(dst, "not-excluded.txt"), "must go");

    // Deleting not-excluded.txt from a DST of no known pair takes --delete; excluded paths are not listed.
    const refused = await runMirrorlog(["sync", "--exclude", "*.log", src, dst], { env });
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stdout).toBe("would delete not-excluded.txt\n");
    const result = await runMirrorlog(["sync", "--delete", "--json", "--exclude", "*.log", src, dst], { env });
    expect(result.code, result.stderr).toBe(0);
    const isExcluded = (path: string) => path.endsWith(".log") || path === "cache" || path.startsWith("cache/");
    expectMirrored(src, dst, { exclude: isExcluded });
    expect(readFileSync(join(dst, "old.log"), "utf8")).toBe("target log");
    expect(readFileSync(join(dst, "debug.log"), "utf8")).toBe("target's own debug log");
    expect(readFileSync(join(dst, "sub/old.log"), "utf8")).toBe("target trace");
    expect(readFileSync(join(dst, "cache/stale"), "utf8")).toBe("stale cache");
    expect(existsSync(join(dst, "cache/blob"))).toBe(false);
    expect(existsSync(join(dst, "sub/trace.log"))).toBe(false);
    expect(existsSync(join(dst, "not-excluded.txt"))).toBe(false);
    expect(summaryOf(result).filesScanned).toBe(3); // .mirrorlogignore, keep.txt, sub/keep.txt
  });
});

describe("mirrorlog sync --dry-run", () => {
  it("prints the planned operations and changes neither the target nor any state file", async () => {
    const { src, dst, stateHome, env } = workspace();
    write(join(src, "new.txt"), "new file");
    write(join(src, "changed.txt"), "changed");
    mkdirSync(join(src, "new-dir"));
    symlinkSync("new.txt", join(src, "link"));
    mkdirSync(dst);
    write(join(dst, "changed.txt"), "before");
    write(join(dst, "stale.txt"), "stale");
    // The roots' mtimes are replicated too: set the source's apart from the target's (created within one
    // clock tick, they could be equal to the nanosecond, and the root's line would come and go).
    utimesSync(src, 1_000_000, 1_000_000);
    const before = describeTree(dst);

    const result = await runMirrorlog(["sync", "--dry-run", src, dst], { env });
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split("\n").sort();
    expect(lines).toEqual([
      'ensureDir ""',
      'ensureDir "new-dir"',
      'remove "stale.txt"',
      'writeFile "changed.txt" (7 bytes)',
      'writeFile "new.txt" (8 bytes)',
      'writeSymlink "link"',
    ]);
    const changes = compareDescriptions(before, describeTree(dst), { mtimes: true });
    expect(changes, formatDifferences(changes)).toEqual([]);
    const stateFiles = existsSync(join(stateHome, "mirrorlog")) ? readdirSync(join(stateHome, "mirrorlog")) : [];
    expect(stateFiles).toEqual([]);
  });

  it("--json lists the planned operations", async () => {
    const { src, dst, env } = workspace();
    write(join(src, "a.txt"), "a");
    mkdirSync(dst);
    const result = await runMirrorlog(["sync", "--dry-run", "--json", src, dst], { env });
    expect(result.code, result.stderr).toBe(0);
    const planned = (JSON.parse(result.stdout) as { plannedOperations: { type: string; path: string }[] })
      .plannedOperations;
    expect(planned.map((op) => `${op.type} ${op.path}`)).toContain("writeFile a.txt");
    expect(readdirSync(dst)).toEqual([]);
  });

  it("does not create a missing target", async () => {
    const { src, dst, env } = workspace();
    write(join(src, "a.txt"), "a");
    const result = await runMirrorlog(["sync", "--dry-run", src, dst], { env });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('writeFile "a.txt"');
    expect(existsSync(dst)).toBe(false);
  });
});

describe("mirrorlog sync --state", () => {
  it("keeps the source's log in the given file", async () => {
    const { base, src, dst, stateHome, env } = workspace();
    write(join(src, "a.txt"), "a");
    const statePath = join(base, "elsewhere/pair.db");
    const result = await runMirrorlog(["sync", "--state", statePath, src, dst], { env });
    expect(result.code, result.stderr).toBe(0);
    expect(existsSync(statePath)).toBe(true);
    // The default location holds no source log for this pair (only the local target's own state).
    const defaults = existsSync(join(stateHome, "mirrorlog")) ? readdirSync(join(stateHome, "mirrorlog")) : [];
    expect(defaults.filter((name) => name.startsWith("source-"))).toEqual([]);
    expectMirrored(src, dst);
  });

  it("refuses a state file inside SRC or DST", async () => {
    const { src, dst, env } = workspace();
    write(join(src, "a.txt"), "a");
    for (const statePath of [join(src, "state.db"), join(dst, "sub/state.db")]) {
      const result = await runMirrorlog(["sync", "--state", statePath, src, dst], { env });
      expect(result.code).toBe(2);
      expect(result.stderr.trim().split("\n"), result.stderr).toHaveLength(1);
      expect(result.stderr).toContain(statePath);
      expect(existsSync(statePath)).toBe(false);
      expect(existsSync(dst)).toBe(false);
    }
  });
});

describe("mirrorlog sync: unusable arguments", () => {
  /** One line on stderr naming `name`, exit 2, stdout empty. */
  function expectOneLineError(result: CliResult, name: string): void {
    expect(result.code, result.stderr).toBe(2);
    const lines = result.stderr.trim().split("\n");
    expect(lines, result.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^mirrorlog: /);
    expect(lines[0]).toContain(name);
    expect(result.stdout).toBe("");
  }

  it("a missing SRC", async () => {
    const { base, dst, env } = workspace();
    const missing = join(base, "no-such-source");
    expectOneLineError(await runMirrorlog(["sync", missing, dst], { env }), missing);
    expect(existsSync(dst)).toBe(false);
  });

  it("watch of a SRC that is a file (sync copies it: rsyncHabits.test.ts)", async () => {
    const { base, dst, env } = workspace();
    const file = join(base, "a-file");
    write(file, "x");
    expectOneLineError(await runMirrorlog(["watch", file, dst], { env }), file);
    expect(existsSync(dst)).toBe(false);
  });

  it("a DST that is a file", async () => {
    const { src, base, env } = workspace();
    write(join(src, "a.txt"), "a");
    const file = join(base, "target-file");
    write(file, "keep me");
    expectOneLineError(await runMirrorlog(["sync", src, file], { env }), file);
    expect(readFileSync(file, "utf8")).toBe("keep me");
  });

  it("SRC equal to DST, DST inside SRC, SRC inside DST", async () => {
    const { base, src, env } = workspace();
    write(join(src, "a.txt"), "a");
    const before = describeTree(base);
    expectOneLineError(await runMirrorlog(["sync", src, src], { env }), src);
    expectOneLineError(await runMirrorlog(["sync", src, join(src, "inner")], { env }), join(src, "inner"));
    expectOneLineError(await runMirrorlog(["sync", src, base], { env }), base);
    const changes = compareDescriptions(before, describeTree(base), { mtimes: true });
    expect(changes, formatDifferences(changes)).toEqual([]);
  });

  it("an unresolvable host", async () => {
    const { src, env } = workspace();
    write(join(src, "a.txt"), "a");
    const result = await runMirrorlog(["sync", src, "nohost.invalid:/tmp/mirrorlog-never"], {
      env: { ...env, MIRRORLOG_SSH: "ssh -F /dev/null -o BatchMode=yes -o ConnectTimeout=5" },
    });
    expectOneLineError(result, "nohost.invalid");
    expect(existsSync("/tmp/mirrorlog-never")).toBe(false);
  });

  it("a closed ssh port", async () => {
    const { src, base, env } = workspace();
    write(join(src, "a.txt"), "a");
    const port = await pickFreePort(); // free now, so nothing listens there
    const dst = join(base, "remote-dst");
    const ssh = `ssh -F /dev/null -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no -p ${port}`;
    const result = await runMirrorlog(["sync", src, `127.0.0.1:${dst}`], { env: { ...env, MIRRORLOG_SSH: ssh } });
    expectOneLineError(result, "127.0.0.1");
    expect(existsSync(dst)).toBe(false);
  });
});
