// End-to-end tests of the audit commands `mirrorlog log`, `status` and `verify`: the real binary in
// child processes on temp directories with a private XDG_STATE_HOME. Expected hashes are computed
// here with node:crypto, and "verify changes nothing" is checked with lstat snapshots, not our scanner.
import { createHash } from "node:crypto";
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type CliResult, MIRRORLOG_BIN, runMirrorlog, testEnvironment } from "../support/cliRunner.js";
import { sshEnvironment, startSshd } from "../support/sshd.js";

const workspaces: string[] = [];

afterAll(() => {
  for (const dir of workspaces) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temp dir with src/ (created), dst (not created) and a private XDG_STATE_HOME. */
function workspace() {
  const base = mkdtempSync(join(tmpdir(), "mirrorlog-e2e-audit-"));
  workspaces.push(base);
  const src = join(base, "src");
  const dst = join(base, "dst");
  const stateHome = join(base, "state");
  mkdirSync(src);
  const env = testEnvironment(stateHome);
  const run = (args: readonly string[], cwd?: string) => runMirrorlog(args, { env, ...(cwd ? { cwd } : {}) });
  const sync = async () => {
    const result = await run(["sync", "--json", src, dst]);
    expect(result.code, result.stderr).toBe(0);
  };
  return { base, src, dst, stateHome, env, run, sync };
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function json<T>(result: CliResult): T {
  try {
    return JSON.parse(result.stdout) as T;
  } catch {
    throw new Error(`stdout is not JSON (exit ${result.code}):\n${result.stdout}\nstderr:\n${result.stderr}`);
  }
}

interface LogLine {
  statePath: string;
  sourceRoot: string;
  target: string;
  position: string;
  epoch: number;
  seq: number;
  loggedAt: string;
  type: string;
  path: string;
  oldHash: string | null;
  newHash: string | null;
  size: number | null;
  detectedBy: string;
  outcome: string;
  reason: string | null;
  wireBytes: number | null;
  appliedAt: string | null;
}

interface Status {
  statePath: string;
  sourceRoot: string;
  target: string;
  epoch: { epoch: number; startedAt: string; reason: string } | null;
  lastLogged: string | null;
  lastApplied: string | null;
  lag: number;
  lastMinute: { operations: number; bytesWritten: number };
  lastHour: { operations: number; bytesWritten: number };
  problems: unknown[];
}

interface Drift {
  drift: string;
  path: string;
  source: string | null;
  target: string | null;
  detail: string | null;
}

interface VerifyReport {
  identical: boolean;
  filesCompared: number;
  drift: Drift[];
  problems: unknown[];
}

/** Every entry below `root` with everything lstat says that a write, chmod, rename or touch would change. */
function snapshot(root: string): Map<string, string> {
  const entries = new Map<string, string>();
  const visit = (path: string): void => {
    const absolute = path === "" ? root : join(root, path);
    const s = lstatSync(absolute, { bigint: true });
    const content = s.isFile()
      ? createHash("sha256").update(readFileSync(absolute)).digest("hex")
      : s.isSymbolicLink()
        ? readlinkSync(absolute)
        : "";
    entries.set(path, `${s.mode} ${s.size} ${s.ino} ${s.mtimeNs} ${s.ctimeNs} ${content}`);
    if (s.isDirectory()) for (const name of readdirSync(absolute).sort()) visit(path === "" ? name : `${path}/${name}`);
  };
  visit("");
  return entries;
}

describe("mirrorlog log", () => {
  it("shows a file's create, modify and delete newest first, each with the previous and new hash", async () => {
    const w = workspace();
    mkdirSync(join(w.src, "d"));
    writeFileSync(join(w.src, "d/f"), "one");
    writeFileSync(join(w.src, "g"), "other");
    await w.sync();
    writeFileSync(join(w.src, "d/f"), "two!");
    await w.sync();
    rmSync(join(w.src, "d/f"));
    await w.sync();

    const result = await w.run(["log", "--json", join(w.src, "d/f")]);
    expect(result.code, result.stderr).toBe(0);
    const lines = json<LogLine[]>(result);
    expect(lines.map((l) => [l.type, l.path, l.oldHash, l.newHash, l.size, l.outcome])).toEqual([
      ["remove", "d/f", sha256("two!"), null, null, "applied"],
      ["writeFile", "d/f", sha256("one"), sha256("two!"), 4, "applied"],
      ["writeFile", "d/f", null, sha256("one"), 3, "applied"],
    ]);
    // Newest first; later syncs resume the log's epoch (the target proves continuity), found by a restart scan.
    expect(lines.map((l) => l.epoch)).toEqual([1, 1, 1]);
    expect(lines.map((l) => l.detectedBy)).toEqual(["restart", "restart", "initial"]);
    expect(lines[0]!.seq).toBeGreaterThan(lines[1]!.seq);
    expect(lines[1]!.seq).toBeGreaterThan(lines[2]!.seq);
    for (const l of lines) {
      expect(l.position).toBe(`${l.epoch}:${l.seq}`);
      expect(Number.isNaN(Date.parse(l.loggedAt))).toBe(false);
      expect(l.sourceRoot).toBe(w.src);
      expect(l.target).toBe(w.dst);
      expect(typeof l.wireBytes).toBe("number");
    }

    const text = await w.run(["log", join(w.src, "d/f")]);
    expect(text.code, text.stderr).toBe(0);
    const textLines = text.stdout.trimEnd().split("\n");
    expect(textLines).toHaveLength(3);
    expect(textLines[0]).toMatch(/^1:\d+ .*remove .*"d\/f"/);
    expect(textLines[1]).toContain(`${sha256("one").slice(0, 12)} → ${sha256("two!").slice(0, 12)}`);
    expect(textLines[2]).toContain(`- → ${sha256("one").slice(0, 12)}`);
  });

  it("shows a directory's own operations and its children's, nothing outside it, for a path relative to cwd", async () => {
    const w = workspace();
    mkdirSync(join(w.src, "d/sub"), { recursive: true });
    writeFileSync(join(w.src, "d/sub/a"), "a");
    writeFileSync(join(w.src, "d/b"), "b");
    writeFileSync(join(w.src, "dd"), "a sibling sharing the prefix");
    await w.sync();

    const result = await w.run(["log", "--json", "d"], w.src);
    expect(result.code, result.stderr).toBe(0);
    const paths = json<LogLine[]>(result).map((l) => `${l.type} ${l.path}`);
    expect(paths.sort()).toEqual(["ensureDir d", "ensureDir d/sub", "writeFile d/b", "writeFile d/sub/a"]);
  });

  it("reports a path outside every replicated source with exit 1", async () => {
    const w = workspace();
    writeFileSync(join(w.src, "f"), "x");
    await w.sync();
    const result = await w.run(["log", w.base]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/no replication state .* has a source containing/);
    expect(result.stdout).toBe("");
  });

  it("escapes newlines and terminal escapes in paths; --json keeps the real names", async () => {
    const w = workspace();
    const names = ["new\nline", "esc\u001b[31mred", "csi\u009bx"];
    for (const name of names) writeFileSync(join(w.src, name), name);
    await w.sync();

    const text = await w.run(["log", w.src]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout.includes("\u001b") || text.stdout.includes("\u009b")).toBe(false);
    // One line per operation (the three files and the root's metadata): a raw newline inside a path would make more.
    expect(text.stdout.trimEnd().split("\n")).toHaveLength(names.length + 1);
    expect(text.stdout).toContain('"new\\nline"');
    expect(text.stdout).toContain('"esc\\u001b[31mred"');
    expect(text.stdout).toContain('"csi\\u009bx"');

    const asJson = await w.run(["log", "--json", w.src]);
    expect(asJson.stdout.includes("\u001b") || asJson.stdout.includes("\u009b")).toBe(false);
    expect(
      json<LogLine[]>(asJson)
        .map((l) => l.path)
        .sort(),
    ).toEqual(["", ...names].sort());
  });
});

describe("mirrorlog status", () => {
  it("after a sync: the pair, the epoch and why it started, logged = applied, lag 0, recent throughput", async () => {
    const w = workspace();
    writeFileSync(join(w.src, "a"), "12345");
    writeFileSync(join(w.src, "b"), "123");
    await w.sync();

    const result = await w.run(["status", "--json"]);
    expect(result.code, result.stderr).toBe(0);
    const statuses = json<Status[]>(result);
    expect(statuses).toHaveLength(1);
    const s = statuses[0]!;
    expect(s.sourceRoot).toBe(w.src);
    expect(s.target).toBe(w.dst);
    expect(s.epoch?.epoch).toBe(1);
    expect(s.epoch?.reason).toBe("new log: first session");
    // The root directory's metadata (its mtime differs from the new target's), then a and b.
    expect(s.lastLogged).toBe("1:3");
    expect(s.lastApplied).toBe("1:3");
    expect(s.lag).toBe(0);
    expect(s.lastMinute).toMatchObject({ operations: 3, bytesWritten: 8 });
    expect(s.lastHour).toMatchObject({ operations: 3, bytesWritten: 8 });
    expect(s.problems).toEqual([]);

    const text = await w.run(["status", w.src]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`"${w.src}" → "${w.dst}"`);
    expect(text.stdout).toMatch(/lag +0 operations/);
    expect(text.stdout).toMatch(/applied +1:3/);
  });

  it("filters by SRC, and says so with exit 1 when SRC has no replication", async () => {
    const w = workspace();
    const other = join(w.base, "other");
    mkdirSync(other);
    writeFileSync(join(w.src, "a"), "a");
    writeFileSync(join(other, "b"), "b");
    await w.sync();
    expect((await w.run(["sync", other, join(w.base, "other-dst")])).code).toBe(0);

    expect(
      json<Status[]>(await w.run(["status", "--json"]))
        .map((s) => s.sourceRoot)
        .sort(),
    ).toEqual([other, w.src].sort());
    expect(json<Status[]>(await w.run(["status", "--json", other])).map((s) => s.sourceRoot)).toEqual([other]);
    const none = await w.run(["status", join(w.base, "dst")]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no replication state for source/);
  });
});

describe("mirrorlog verify", () => {
  async function synced() {
    const w = workspace();
    mkdirSync(join(w.src, "d"));
    writeFileSync(join(w.src, "d/f"), "content");
    writeFileSync(join(w.src, "g"), "more content");
    writeFileSync(join(w.src, "h"), "to be deleted on the target");
    await w.sync();
    return w;
  }

  /** Runs verify --json and checks it changed nothing on the target or in the state directory. */
  async function verifyUnchanged(w: ReturnType<typeof workspace>) {
    const targetBefore = snapshot(w.dst);
    const stateBefore = snapshot(w.stateHome);
    const sourceBefore = snapshot(w.src);
    const result = await w.run(["verify", "--json", w.src, w.dst]);
    expect(snapshot(w.dst)).toEqual(targetBefore);
    expect(snapshot(w.stateHome)).toEqual(stateBefore);
    expect(snapshot(w.src)).toEqual(sourceBefore);
    return { result, report: json<VerifyReport>(result) };
  }

  it("exits 0 right after a sync", async () => {
    const w = await synced();
    const { result, report } = await verifyUnchanged(w);
    expect(result.code, result.stderr).toBe(0);
    expect(report).toEqual({ identical: true, filesCompared: 3, drift: [], problems: [] });
    const text = await w.run(["verify", w.src, w.dst]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^identical: 3 files compared\n$/);
  });

  it("reports a target file with other content as differs, exit 1", async () => {
    const w = await synced();
    writeFileSync(join(w.dst, "d/f"), "CONTENT"); // same size, other bytes
    const { result, report } = await verifyUnchanged(w);
    expect(result.code, result.stderr).toBe(1);
    expect(report.drift).toEqual([
      expect.objectContaining({ drift: "differs", path: "d/f", source: "file", target: "file" }),
    ]);
  });

  it("reports an extra target file as extra and a deleted one as missing", async () => {
    const w = await synced();
    writeFileSync(join(w.dst, "d/extra"), "x");
    rmSync(join(w.dst, "h"));
    const { result, report } = await verifyUnchanged(w);
    expect(result.code, result.stderr).toBe(1);
    // Adding and removing entries also changed the mtimes of their directories (rsync: `.d..t......`).
    expect(report.drift.map((d) => [d.drift, d.path, d.source, d.target]).sort()).toEqual([
      ["extra", "d/extra", null, "file"],
      ["metadata", "", "dir", "dir"],
      ["metadata", "d", "dir", "dir"],
      ["missing", "h", "file", null],
    ]);
    expect(report.drift.find((d) => d.path === "d")?.detail).toMatch(/^mtime \S+ ≠ \S+$/);
    const text = await w.run(["verify", w.src, w.dst]);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/^extra +"d\/extra"/m);
    expect(text.stdout).toMatch(/^missing +"h"/m);
    expect(text.stdout).toMatch(/4 differences/);
  });

  it("reports a mode change as metadata and a file replaced by a directory as kind", async () => {
    const w = await synced();
    chmodSync(join(w.dst, "g"), 0o600);
    chmodSync(join(w.src, "g"), 0o644);
    rmSync(join(w.dst, "h"));
    mkdirSync(join(w.dst, "h"));
    const { result, report } = await verifyUnchanged(w);
    expect(result.code, result.stderr).toBe(1);
    expect(report.drift).toEqual(
      expect.arrayContaining([
        { drift: "metadata", path: "g", source: "file", target: "file", detail: "mode 0644 ≠ 0600" },
        expect.objectContaining({ drift: "kind", path: "h", source: "file", target: "dir" }),
        // Replacing h changed the root directory's mtime.
        expect.objectContaining({ drift: "metadata", path: "", source: "dir", target: "dir" }),
      ]),
    );
    expect(report.drift).toHaveLength(3);
  });

  it("reports a target that does not exist as missing and does not create it", async () => {
    const w = workspace();
    writeFileSync(join(w.src, "f"), "x");
    const result = await w.run(["verify", "--json", w.src, w.dst]);
    expect(result.code, result.stderr).toBe(1);
    expect(json<VerifyReport>(result).drift.map((d) => [d.drift, d.path])).toEqual([
      ["missing", ""],
      ["missing", "f"],
    ]);
    expect(() => lstatSync(w.dst)).toThrow(/ENOENT/);
    expect(() => lstatSync(w.stateHome)).toThrow(/ENOENT/);
  });

  it("exits 2 with one line on stderr when the source does not exist", async () => {
    const w = workspace();
    const result = await w.run(["verify", join(w.base, "nope"), w.dst]);
    expect(result.code).toBe(2);
    expect(result.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(/no such directory/);
  });
});

describe("audits of an ssh target", () => {
  it("status names the remote target as given; verify reads it through ssh: 0 after sync, 1 after drift, nothing changed", async () => {
    const server = await startSshd();
    try {
      const w = workspace();
      const remoteState = join(w.base, "remote-state");
      const args = [
        "--remote-command",
        ["env", `XDG_STATE_HOME=${remoteState}`, process.execPath, MIRRORLOG_BIN].join(" "),
      ];
      const env = testEnvironment(w.stateHome, sshEnvironment(server));
      const target = `localhost:${w.dst}`;
      writeFileSync(join(w.src, "f"), "over ssh");
      const synced = await runMirrorlog(["sync", ...args, w.src, target], { env });
      expect(synced.code, synced.stderr).toBe(0);

      const status = await runMirrorlog(["status", "--json", w.src], { env });
      expect(json<Status[]>(status)[0]).toMatchObject({ sourceRoot: w.src, target, lag: 0 });

      const clean = await runMirrorlog(["verify", "--json", ...args, w.src, target], { env });
      expect(clean.code, clean.stderr).toBe(0);
      writeFileSync(join(w.dst, "stray"), "x");
      const before = snapshot(w.dst);
      const remoteBefore = snapshot(remoteState);
      const drifted = await runMirrorlog(["verify", "--json", ...args, w.src, target], { env });
      expect(drifted.code, drifted.stderr).toBe(1);
      expect(json<VerifyReport>(drifted).drift.map((d) => [d.drift, d.path])).toEqual([
        ["metadata", ""],
        ["extra", "stray"],
      ]);
      expect(snapshot(w.dst)).toEqual(before);
      expect(snapshot(remoteState)).toEqual(remoteBefore);
    } finally {
      await server.stop();
    }
  });
});
