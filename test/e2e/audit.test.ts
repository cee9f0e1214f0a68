// End-to-end tests of the audit commands `mirrorlog log`, `status` and `verify`: the real binary in
// child processes on temp directories with a private XDG_STATE_HOME. Expected hashes are computed
// here with node:crypto, and "verify changes nothing" is checked with lstat snapshots, not our scanner.
import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
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
import { type CliResult, MIRRORLOG_BIN, mirrorlogArgs, runMirrorlog, testEnvironment } from "../support/cliRunner.js";
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

describe("mirrorlog log: -n, --since, --until", () => {
  async function threeVersions() {
    const w = workspace();
    for (const content of ["one", "two!", "three"]) {
      writeFileSync(join(w.src, "f"), content);
      await w.sync();
    }
    const all = json<LogLine[]>(await w.run(["log", "--json", join(w.src, "f")]));
    expect(all.map((l) => l.size)).toEqual([5, 4, 3]);
    return { w, all };
  }

  it("-n N keeps the newest N; --since and --until keep a window of time, ISO or relative", async () => {
    const { w, all } = await threeVersions();
    const f = join(w.src, "f");
    const positions = async (args: string[]) => {
      const result = await w.run(["log", "--json", ...args, f]);
      expect(result.code, result.stderr).toBe(0);
      return json<LogLine[]>(result).map((l) => l.position);
    };
    expect(await positions(["-n", "2"])).toEqual([all[0]!.position, all[1]!.position]);
    expect(await positions(["--max-count=1"])).toEqual([all[0]!.position]);
    expect(await positions(["--since", "1h"])).toEqual(all.map((l) => l.position));
    expect(await positions(["--until", "2000-01-01"])).toEqual([]);
    // Each sync logged at its own time (separate processes, hundreds of ms apart).
    expect(await positions(["--since", all[1]!.loggedAt])).toEqual([all[0]!.position, all[1]!.position]);
    expect(await positions(["--until", all[1]!.loggedAt])).toEqual([all[1]!.position, all[2]!.position]);
    expect(await positions(["--since", all[1]!.loggedAt, "-n", "1"])).toEqual([all[0]!.position]);

    const text = await w.run(["log", "-n", "1", f]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout.trimEnd().split("\n")).toHaveLength(1);
    expect(text.stdout).toMatch(/size 5 B +wire \d+ B /);
  });

  it.each([
    [["--since", "yesterday"], /--since "yesterday": not a time/],
    [["--until", "10x"], /--until "10x": not a time/],
    [["-n", "0"], /-n "0": not a positive whole number/],
    [["-n", "ten"], /-n "ten": not a positive whole number/],
  ])("%j is a usage error: exit 2, one line, nothing on stdout", async (args, message) => {
    const w = workspace();
    writeFileSync(join(w.src, "f"), "x");
    await w.sync();
    const result = await w.run(["log", ...args, w.src]);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(message);
  });
});

describe("readable sizes and rates", () => {
  it("a 6-byte file sent beside a 1 MiB one is charged its own bytes on the wire, not half the request", async () => {
    const w = workspace();
    writeFileSync(join(w.src, "small"), "hello!");
    // Incompressible, and small enough to share the 6-byte file's request (pack).
    writeFileSync(join(w.src, "big"), randomBytes(1024 * 1024));
    await w.sync();
    const lines = json<LogLine[]>(await w.run(["log", "--json", w.src]));
    const small = lines.find((l) => l.path === "small")!;
    const big = lines.find((l) => l.path === "big")!;
    expect(small.wireBytes).toBeLessThan(1024);
    expect(big.wireBytes).toBeGreaterThanOrEqual(1024 * 1024);
    const text = await w.run(["log", join(w.src, "small")]);
    expect(text.stdout).toMatch(/size 6 B +wire \d{1,3} B /);
  });

  it("the sync summary and status print rates as '395 B/s' or '1.20 MiB/s', never a long fraction", async () => {
    const w = workspace();
    writeFileSync(join(w.src, "f"), "some content");
    const result = await w.run(["sync", w.src, w.dst]);
    expect(result.code, result.stderr).toBe(0);
    const readable = /^\d+ B\/s$|^\d+(\.\d{1,2})? [KMGT]iB\/s$/;
    const summaryRate = /^Duration: \d+\.\d{3} s \((.*) on the wire\)$/m.exec(result.stdout)?.[1];
    expect(summaryRate, result.stdout).toMatch(readable);
    expect(result.stdout).toMatch(/^Total bytes sent: [\d,]+ B( \(\d+(\.\d+)? [KMG]iB\))?$/m);
    const status = await w.run(["status", w.src]);
    const rates = [...status.stdout.matchAll(/on the wire \((.*)\)$/gm)].map((m) => m[1]);
    expect(rates).toHaveLength(2);
    for (const r of rates) expect(r).toMatch(readable);
  });
});

describe("a reader that goes away (EPIPE)", () => {
  /** Runs mirrorlog with its stdout pipe closed by the reader before anything is written. */
  function runWithClosedStdout(
    args: readonly string[],
    env: NodeJS.ProcessEnv,
  ): Promise<{ code: number | null; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, mirrorlogArgs(args), { env, stdio: ["ignore", "pipe", "pipe"] });
      child.stdout.destroy();
      let stderr = "";
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
        stderr += chunk;
      });
      child.on("close", (code) => resolve({ code, stderr }));
    });
  }

  it("log | head -1 ends quietly with exit 0 (a long log, read only in part)", async () => {
    const w = workspace();
    for (let i = 0; i < 1500; i++) writeFileSync(join(w.src, `f${i}`), `${i}`);
    await w.sync();
    // Like `| head -1`: the reader takes the first line and goes away while the log is still being written.
    const child = spawn(process.execPath, mirrorlogArgs(["log", w.src]), {
      env: w.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    let first = "";
    child.stdout.setEncoding("utf8").once("data", (chunk: string) => {
      first = chunk.split("\n")[0]!;
      child.stdout.destroy();
    });
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(first).toMatch(/^1:\d+ /);
    expect(stderr).toBe("");
    expect(code).toBe(0);
  });

  it("every command that prints ends quietly with exit 0 when its stdout is gone", async () => {
    const w = workspace();
    writeFileSync(join(w.src, "f"), "x");
    await w.sync();
    for (const args of [
      ["log", w.src],
      ["log", "--json", w.src],
      ["status"],
      ["status", "--json"],
      ["verify", w.src, w.dst],
      ["sync", w.src, w.dst],
      ["sync", "--json", w.src, w.dst],
      ["service", "install", "--print", w.src, w.dst],
      ["--help"],
    ]) {
      const result = await runWithClosedStdout(args, w.env);
      expect({ args, ...result }).toEqual({ args, code: 0, stderr: "" });
    }
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

describe("mirrorlog status: problems of every kind, --forget, --prune", () => {
  it("counts a skipped FIFO as a problem instead of saying none", async () => {
    const w = workspace();
    writeFileSync(join(w.src, "f"), "x");
    execFileSync("mkfifo", [join(w.src, "pipe")]);
    const synced = await w.run(["sync", "--json", w.src, w.dst]);
    expect(synced.code, synced.stderr).not.toBe(0);
    const status = json<(Status & { problemCounts: unknown })[]>(await w.run(["status", "--json", w.src]))[0]!;
    expect(status.problemCounts).toEqual({ failed: 0, skipped: 1 });
    expect(status.problems).toEqual([expect.objectContaining({ kind: "skipped", path: "pipe" })]);
    const text = await w.run(["status", w.src]);
    expect(text.stdout).toMatch(/problems +1 \(1 skipped\)/);
    expect(text.stdout).toMatch(/skipped +"pipe": ".*FIFO/);
    // Fixed in the source: the next run records no problem, and status says so.
    rmSync(join(w.src, "pipe"));
    await w.sync();
    expect(json<Status[]>(await w.run(["status", "--json", w.src]))[0]!.problems).toEqual([]);
  });

  it("--forget removes one pair's state (by SRC DST or by id); a pair it does not know is exit 1", async () => {
    const w = workspace();
    writeFileSync(join(w.src, "f"), "x");
    const other = join(w.base, "other-dst");
    await w.sync();
    expect((await w.run(["sync", "--exclude", "*.tmp", w.src, other])).code).toBe(0);
    const before = json<(Status & { id: string })[]>(await w.run(["status", "--json"]));
    expect(before).toHaveLength(2);
    const stateDir = join(w.stateHome, "mirrorlog");
    const otherStatus = before.find((s) => s.target === other)!;
    // The remembered --exclude made a pair config beside the state file.
    expect(readdirSync(stateDir)).toContain(`source-${otherStatus.id}.json`);

    const unknown = await w.run(["status", "--forget", w.src, join(w.base, "nowhere")]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr.trimEnd().split("\n")).toHaveLength(1);

    const byPair = await w.run(["status", "--forget", w.src, other]);
    expect(byPair.code, byPair.stderr).toBe(0);
    expect(byPair.stdout).toMatch(new RegExp(`^forgot "${otherStatus.id}"`));
    expect(readdirSync(stateDir).filter((n) => n.includes(otherStatus.id))).toEqual([]);
    expect(json<Status[]>(await w.run(["status", "--json"])).map((s) => s.target)).toEqual([w.dst]);

    const id = before.find((s) => s.target === w.dst)!.id;
    const byId = await w.run(["status", "--json", "--forget", id]);
    expect(byId.code, byId.stderr).toBe(0);
    expect(json<{ id: string; removed: string[] }[]>(byId).map((f) => f.id)).toEqual([id]);
    expect(readdirSync(stateDir).filter((n) => n.startsWith("source-"))).toEqual([]);
    // The mirrors themselves are untouched.
    expect(readFileSync(join(w.dst, "f"), "utf8")).toBe("x");
    expect(readFileSync(join(other, "f"), "utf8")).toBe("x");
  });

  it("--prune forgets the pairs whose source or target is gone, and keeps the others", async () => {
    const w = workspace();
    writeFileSync(join(w.src, "f"), "x");
    await w.sync();
    const goneTarget = join(w.base, "gone-dst");
    expect((await w.run(["sync", w.src, goneTarget])).code).toBe(0);
    const goneSource = join(w.base, "gone-src");
    mkdirSync(goneSource);
    writeFileSync(join(goneSource, "g"), "y");
    expect((await w.run(["sync", goneSource, join(w.base, "kept-dst")])).code).toBe(0);
    rmSync(goneTarget, { recursive: true });
    rmSync(goneSource, { recursive: true });

    const pruned = await w.run(["status", "--prune"]);
    expect(pruned.code, pruned.stderr).toBe(0);
    const lines = pruned.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines.find((l) => l.includes(goneTarget))).toMatch(/\(target gone\)/);
    expect(lines.find((l) => l.includes(goneSource))).toMatch(/\(source gone\)/);
    expect(json<Status[]>(await w.run(["status", "--json"])).map((s) => [s.sourceRoot, s.target])).toEqual([
      [w.src, w.dst],
    ]);
    // The gone target's own state file went with it; the live target's stays.
    const stateFiles = readdirSync(join(w.stateHome, "mirrorlog"));
    expect(stateFiles.filter((n) => n.startsWith("target-gone-dst"))).toEqual([]);
    expect(stateFiles.filter((n) => n.startsWith("target-dst-") && n.endsWith(".db"))).toHaveLength(1);
    expect((await w.run(["status", "--prune"])).stdout).toMatch(/^nothing to prune/);
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
