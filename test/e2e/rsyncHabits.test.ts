// Issue 11, rsync conventions and deletion safety: the real binary in child processes on temp
// directories, checked by the independent tree oracle (plain node:fs).
import { randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { type CliResult, makeWorkspace, pollUntil, runMirrorlog, startWatch, summaryOf } from "../support/cliRunner.js";
import { compareTrees, formatDifferences, listTree } from "../support/treeOracle.js";

const workspaces: string[] = [];

afterAll(() => {
  for (const dir of workspaces) rmSync(dir, { recursive: true, force: true });
});

function workspace() {
  return makeWorkspace("rsync", workspaces);
}

function expectMirrored(src: string, dst: string, options: Parameters<typeof compareTrees>[2] = {}): void {
  const differences = compareTrees(src, dst, options);
  expect(differences, `${formatDifferences(differences)}\n--- target\n${listTree(dst)}`).toEqual([]);
}

/** Exit 2 with exactly one line on stderr, naming `text`. */
function expectRefused(result: CliResult, text: string): void {
  expect(result.code, result.stderr).toBe(2);
  const lines = result.stderr.trim().split("\n");
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^mirrorlog: /);
  expect(lines[0]).toContain(text);
  expect(result.stderr).not.toMatch(/\n\s+at /);
}

describe("deletion safety: the first sync into a non-empty DST", () => {
  it("lists what it would delete, refuses without --delete (again on a second try), then mirrors with it", async () => {
    const { src, dst, env } = workspace();
    writeFileSync(join(src, "a.txt"), "a");
    mkdirSync(join(dst, "mine/deep"), { recursive: true });
    writeFileSync(join(dst, "mine.txt"), "the user's own file");
    for (let i = 0; i < 30; i++) writeFileSync(join(dst, "mine/deep", `f${String(i).padStart(2, "0")}`), "x");
    const before = listTree(dst);

    for (const attempt of [1, 2]) {
      const refused = await runMirrorlog(["sync", src, dst], { env });
      expectRefused(refused, "--delete");
      expect(refused.stderr, `attempt ${attempt}`).toContain("33 entries");
      const listed = refused.stdout.trim().split("\n");
      expect(listed).toHaveLength(21);
      expect(listed).toContain("would delete mine.txt");
      expect(listed).toContain("would delete mine/");
      expect(listed.at(-1)).toBe("... and 13 more");
      expect(listTree(dst), "nothing changed on the target").toBe(before);
    }

    const allowed = await runMirrorlog(["sync", "--delete", "--json", src, dst], { env });
    expect(allowed.code, allowed.stderr).toBe(0);
    expectMirrored(src, dst);
  });

  it("a known pair mirrors exactly without --delete; an unknown DST holding only what SRC has is no refusal", async () => {
    const { src, dst, env } = workspace();
    writeFileSync(join(src, "a.txt"), "a");
    writeFileSync(join(src, "b.txt"), "b");
    mkdirSync(dst);
    writeFileSync(join(dst, "a.txt"), "an older a");
    const first = await runMirrorlog(["sync", "--json", src, dst], { env });
    expect(first.code, first.stderr).toBe(0);
    expectMirrored(src, dst);

    writeFileSync(join(dst, "stray.txt"), "appeared on the target");
    rmSync(join(src, "b.txt"));
    const again = await runMirrorlog(["sync", "--json", src, dst], { env });
    expect(again.code, again.stderr).toBe(0);
    expect(summaryOf(again).filesDeleted).toBe(2);
    expectMirrored(src, dst);
  });

  it("a first sync into a DST that already was a copy makes the pair known, though it logged nothing", async () => {
    // A user coming from rsync: DST is SRC's copy already, so the first sync has nothing to do.
    const { src, dst, env } = workspace();
    writeFileSync(join(src, "a.txt"), "a");
    mkdirSync(dst);
    writeFileSync(join(dst, "a.txt"), "a");
    for (const dir of [src, dst])
      for (const path of [join(dir, "a.txt"), dir]) utimesSync(path, 1_700_000_000, 1_700_000_000);
    const first = await runMirrorlog(["sync", "--json", src, dst], { env });
    expect(first.code, first.stderr).toBe(0);
    expect(summaryOf(first).operationsLogged).toBe(0);

    // Known now: a later sync mirrors exactly without --delete (it was refused, the pair judged unknown again).
    writeFileSync(join(dst, "stray.txt"), "appeared on the target");
    const again = await runMirrorlog(["sync", "--json", src, dst], { env });
    expect(again.code, again.stderr).toBe(0);
    expect(summaryOf(again).filesDeleted).toBe(1);
    expectMirrored(src, dst);
  });

  it("another source's mirror is an unknown DST: a second SRC aimed at it is refused", async () => {
    const { base, src, dst, env } = workspace();
    writeFileSync(join(src, "a.txt"), "a");
    expect((await runMirrorlog(["sync", src, dst], { env })).code).toBe(0);
    const other = join(base, "other-src");
    mkdirSync(other);
    writeFileSync(join(other, "b.txt"), "b");
    const refused = await runMirrorlog(["sync", other, dst], { env });
    expectRefused(refused, "--delete");
    expect(refused.stdout).toBe("would delete a.txt\n");
    expect(readFileSync(join(dst, "a.txt"), "utf8")).toBe("a");
  });

  it("watch refuses the same way, and excluded paths are neither listed nor deleted", async () => {
    const { src, dst, env } = workspace();
    writeFileSync(join(src, "a.txt"), "a");
    mkdirSync(join(dst, "cache"), { recursive: true });
    writeFileSync(join(dst, "cache/x"), "kept: excluded");
    writeFileSync(join(dst, "other"), "would go");
    const refused = await runMirrorlog(["watch", "--exclude", "cache", src, dst], { env });
    expectRefused(refused, "--delete");
    expect(refused.stdout).toBe("would delete other\n");
    const excludedOnly = await runMirrorlog(["sync", "--exclude", "cache", "--exclude", "other", src, dst], { env });
    expect(excludedOnly.code, excludedOnly.stderr).toBe(0);
    expect(readFileSync(join(dst, "cache/x"), "utf8")).toBe("kept: excluded");
  });
});

describe("--backup-dir", () => {
  it("keeps deleted and replaced files under their relative paths; a DIR inside DST is not mirrored", async () => {
    const { base, src, dst, env } = workspace();
    mkdirSync(join(src, "d"));
    writeFileSync(join(src, "d/gone.txt"), "deleted later");
    writeFileSync(join(src, "changed.txt"), "version 1");
    writeFileSync(join(src, "same.txt"), "same");
    expect((await runMirrorlog(["sync", src, dst], { env })).code).toBe(0);

    rmSync(join(src, "d/gone.txt"));
    writeFileSync(join(src, "changed.txt"), "version 2, longer");
    const synced = await runMirrorlog(["sync", "--backup-dir=.backup", src, dst], { env });
    expect(synced.code, synced.stderr).toBe(0);
    expect(readFileSync(join(dst, ".backup/d/gone.txt"), "utf8")).toBe("deleted later");
    expect(readFileSync(join(dst, ".backup/changed.txt"), "utf8")).toBe("version 1");
    expect(existsSync(join(dst, ".backup/same.txt"))).toBe(false);
    expectMirrored(src, dst, { exclude: (path) => path === ".backup" });

    // The next run with the same DIR neither deletes nor rewrites anything (creating DIR changed DST's mtime,
    // which it sets again).
    const again = await runMirrorlog(["sync", "--json", "--backup-dir=.backup", src, dst], { env });
    expect(summaryOf(again)).toMatchObject({ filesDeleted: 0, dirsDeleted: 0, filesWritten: 0, problems: [] });
    expect(existsSync(join(dst, ".backup/d/gone.txt"))).toBe(true);

    // An absolute DIR outside DST (same file system).
    const outside = join(base, "backups");
    rmSync(join(src, "same.txt"));
    const absolute = await runMirrorlog(["sync", `--backup-dir=${outside}`, "--exclude=.backup", src, dst], { env });
    expect(absolute.code, absolute.stderr).toBe(0);
    expect(readFileSync(join(outside, "same.txt"), "utf8")).toBe("same");
    expect(existsSync(join(dst, "same.txt"))).toBe(false);
  });
});

describe("--mkpath", () => {
  it("refuses a DST whose parent is missing, naming it; creates it with --mkpath", async () => {
    const { base, src, env } = workspace();
    writeFileSync(join(src, "a.txt"), "a");
    const dst = join(base, "typo/deeper/dst");
    expectRefused(await runMirrorlog(["sync", src, dst], { env }), join(base, "typo/deeper"));
    expect(existsSync(join(base, "typo"))).toBe(false);
    const made = await runMirrorlog(["sync", "--mkpath", src, dst], { env });
    expect(made.code, made.stderr).toBe(0);
    expectMirrored(src, dst);
    // A DST whose parent exists needs no flag.
    const sibling = await runMirrorlog(["sync", src, join(base, "typo/deeper/sibling")], { env });
    expect(sibling.code, sibling.stderr).toBe(0);
  });
});

describe("a single file as SRC", () => {
  it("goes into DST/NAME when DST is a directory, else becomes DST; mode and mtime kept; re-runs write nothing", async () => {
    const { base, dst, env } = workspace();
    const file = join(base, "notes.txt");
    writeFileSync(join(base, "notes.txt"), "my notes", { mode: 0o640 });
    utimesSync(file, 1_500_000_000.5, 1_500_000_000.5);
    mkdirSync(dst);
    writeFileSync(join(dst, "unrelated"), "stays");

    const into = await runMirrorlog(["sync", "-i", file, dst], { env });
    expect(into.code, into.stderr).toBe(0);
    expect(into.stdout.split("\n")[0]).toBe(">f+++++++++ notes.txt");
    expect(readFileSync(join(dst, "notes.txt"), "utf8")).toBe("my notes");
    expect(statSync(join(dst, "notes.txt")).mode & 0o7777).toBe(0o640);
    expect(statSync(join(dst, "notes.txt")).mtimeMs).toBe(statSync(file).mtimeMs);
    expect(readFileSync(join(dst, "unrelated"), "utf8")).toBe("stays");

    const again = await runMirrorlog(["sync", "--json", "-i", file, dst], { env });
    expect(summaryOf(again).filesWritten).toBe(0);
    expect(again.stderr).toBe("");

    const copy = join(base, "copy.txt");
    const renamed = await runMirrorlog(["sync", "-q", file, copy], { env });
    expect(renamed.code, renamed.stderr).toBe(0);
    expect(renamed.stdout).toBe("");
    expect(readFileSync(copy, "utf8")).toBe("my notes");
    expect(statSync(copy).mtimeMs).toBe(statSync(file).mtimeMs);
  });
});

describe("rsync's flags", () => {
  it("-a -r -z -v are accepted; -n changes nothing; -q prints nothing; unknown flags exit 2", async () => {
    const { src, dst, env } = workspace();
    writeFileSync(join(src, "a.txt"), "a");
    const dry = await runMirrorlog(["sync", "-n", "-a", "-r", "-z", src, dst], { env });
    expect(dry.code, dry.stderr).toBe(0);
    expect(existsSync(dst)).toBe(false);
    const verbose = await runMirrorlog(["sync", "-avv", src, dst], { env });
    expect(verbose.code, verbose.stderr).toBe(0);
    expect(verbose.stdout.split("\n")).toContain("a.txt");
    writeFileSync(join(src, "b.txt"), "b");
    const quiet = await runMirrorlog(["sync", "-q", src, dst], { env });
    expect(quiet.code, quiet.stderr).toBe(0);
    expect(quiet.stdout + quiet.stderr).toBe("");
    expectMirrored(src, dst);
    const unknown = await runMirrorlog(["sync", "--no-such-flag", src, dst], { env });
    expect(unknown.code).toBe(2);
  });

  it("-i itemizes each change like rsync, in sync and in a dry run", async () => {
    const { src, dst, env } = workspace();
    mkdirSync(join(src, "dir"));
    writeFileSync(join(src, "dir/new.txt"), "new");
    writeFileSync(join(src, "touched.txt"), "same bytes");
    writeFileSync(join(src, "gone.txt"), "to be deleted");
    symlinkSync("dir/new.txt", join(src, "link"));
    const first = await runMirrorlog(["sync", "-i", src, dst], { env });
    expect(first.code, first.stderr).toBe(0);
    const firstLines = first.stdout.split("\n");
    for (const line of [
      "cd+++++++++ dir/",
      ">f+++++++++ dir/new.txt",
      ">f+++++++++ touched.txt",
      "cL+++++++++ link -> dir/new.txt",
    ])
      expect(firstLines, first.stdout).toContain(line);

    rmSync(join(src, "gone.txt"));
    utimesSync(join(src, "touched.txt"), 1_000_000_000, 1_000_000_000);
    writeFileSync(join(src, "dir/new.txt"), "changed, longer");
    const planned = await runMirrorlog(["sync", "-n", "-i", src, dst], { env });
    const applied = await runMirrorlog(["sync", "-i", "-q", src, dst], { env });
    expect(applied.stdout, "-q silences -i").toBe("");
    const expected = ["*deleting   gone.txt", ".f..t...... touched.txt", ">fcst...... dir/new.txt"];
    for (const line of expected) expect(planned.stdout.split("\n"), planned.stdout).toContain(line);
    expectMirrored(src, dst);
  });

  it("-i judges a change deep in an unchanged tree against what the target held there", async () => {
    // A re-run reads most listings as digests: the lines must still say what each change replaced.
    const { src, dst, env } = workspace();
    mkdirSync(join(src, "a/b/c"), { recursive: true });
    mkdirSync(join(src, "x"));
    writeFileSync(join(src, "a/b/c/deep.txt"), "deep");
    writeFileSync(join(src, "a/top.txt"), "top");
    writeFileSync(join(src, "x/y.txt"), "y");
    const first = await runMirrorlog(["sync", src, dst], { env });
    expect(first.code, first.stderr).toBe(0);

    writeFileSync(join(src, "a/b/c/deep.txt"), "deeper and longer");
    rmSync(join(src, "x"), { recursive: true });
    const second = await runMirrorlog(["sync", "-i", src, dst], { env });
    expect(second.code, second.stderr).toBe(0);
    const lines = second.stdout.split("\n");
    for (const line of [">fcst...... a/b/c/deep.txt", "*deleting   x/y.txt", "*deleting   x/"])
      expect(lines, second.stdout).toContain(line);
    expectMirrored(src, dst);
  });

  it("watch -i prints each change with a timestamp", async () => {
    const { src, dst, env } = workspace();
    writeFileSync(join(src, "a.txt"), "a");
    const watch = await startWatch(src, dst, { env, args: ["-i"] });
    try {
      writeFileSync(join(src, "live.txt"), "live");
      const line = /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d >f\+{9} live\.txt$/m;
      await pollUntil(() => line.test(watch.stdout()), {
        deadlineMs: 15_000,
        describe: () => `no itemized line for live.txt; stdout:\n${watch.stdout()}`,
      });
    } finally {
      await watch.stop();
    }
  });

  it("--exclude-from and --include: includes win over excludes", async () => {
    const { base, src, dst, env } = workspace();
    for (const name of ["a.log", "keep.log", "a.txt"]) writeFileSync(join(src, name), name);
    mkdirSync(join(src, "cache"));
    writeFileSync(join(src, "cache/blob"), "cached");
    const patterns = join(base, "excludes");
    writeFileSync(patterns, "# logs and caches\n*.log\n\ncache/\n");
    const result = await runMirrorlog(["sync", "--include", "keep.log", "--exclude-from", patterns, src, dst], { env });
    expect(result.code, result.stderr).toBe(0);
    expect(readdirSync(dst).sort()).toEqual(["a.txt", "keep.log"]);
    const missing = await runMirrorlog(["sync", "--exclude-from", join(base, "nope"), src, dst], { env });
    expectRefused(missing, join(base, "nope"));
  });

  it("-c re-reads files whose index row the target trusted", async () => {
    const { src, dst, env, stateHome } = workspace();
    writeFileSync(join(src, "f"), "original");
    expect((await runMirrorlog(["sync", src, dst], { env })).code).toBe(0);
    // Same size, other bytes on the target, and its index row made to match the new file: only -c notices.
    writeFileSync(join(dst, "f"), "ORIGINAL");
    const stat = statSync(join(dst, "f"));
    const name = readdirSync(join(stateHome, "mirrorlog")).find((n) => n.startsWith("target-") && n.endsWith(".db"));
    const db = new Database(join(stateHome, "mirrorlog", name!));
    db.prepare("UPDATE file_index SET size = ?, mtime_ms = ?, ctime_ms = ?, ino = ? WHERE path = 'f'").run(
      stat.size,
      stat.mtimeMs,
      stat.ctimeMs,
      stat.ino,
    );
    db.close();
    const trusting = await runMirrorlog(["sync", "--json", src, dst], { env });
    expect(summaryOf(trusting).filesWritten).toBe(0);
    const checking = await runMirrorlog(["sync", "--json", "-c", src, dst], { env });
    expect(summaryOf(checking).filesWritten).toBe(1);
    expect(readFileSync(join(dst, "f"), "utf8")).toBe("original");
  });

  it("--bwlimit paces what is sent; a bad rate is a usage error", async () => {
    const { src, dst, env } = workspace();
    writeFileSync(join(src, "random.bin"), randomBytes(256 * 1024)); // incompressible
    const started = Date.now();
    const limited = await runMirrorlog(["sync", "--json", "--bwlimit", "128", src, dst], { env });
    const elapsed = Date.now() - started;
    expect(limited.code, limited.stderr).toBe(0);
    // 256 KiB at 128 KiB/s: at least about 2 s (one 16 KiB slice may leave at once).
    expect(elapsed).toBeGreaterThanOrEqual(1_700);
    expectMirrored(src, dst);
    expect((await runMirrorlog(["sync", "--bwlimit", "fast", src, dst], { env })).code).toBe(2);
  });

  it("--help documents the trailing-slash rule, examples and exit codes", async () => {
    const { env } = workspace();
    for (const command of ["sync", "watch"]) {
      const help = await runMirrorlog([command, "--help"], { env });
      expect(help.code).toBe(0);
      expect(help.stdout).toContain(`Examples:\n  mirrorlog ${command} `);
      expect(help.stdout).toContain('"src" and "src/" mean the same');
      expect(help.stdout).toMatch(/23 {2}partial transfer/);
      expect(help.stdout).toMatch(/20 {2}interrupted/);
    }
  });
});
