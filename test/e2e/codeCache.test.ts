// bin/mirrorlog runs the one-file bundle with the V8 code cache the build recorded (scripts/bundle.mjs) for
// every command but `--version` alone, which it answers itself. That cache is most of a small job's start-up
// saving, and nothing else would notice it silently stop working (V8 refusing it, or the build not writing it).
// MIRRORLOG_CODE_CACHE_REPORT=1 makes the bin say on stderr which cache it offered and whether V8 took it.

import { execFile } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { buildProgram } from "../../src/cli/main.js";
import { MIRRORLOG_BIN, makeWorkspace, runMirrorlog, summaryOf } from "../support/cliRunner.js";
import { compareTrees, formatDifferences } from "../support/treeOracle.js";

const created: string[] = [];
afterAll(() => {
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

describe("start-up from the recorded code cache", () => {
  it("V8 accepts the build's cache for --help and for a sync, and the sync still mirrors", async () => {
    const ws = makeWorkspace("code-cache", created);
    writeFileSync(join(ws.src, "note.txt"), "one small file\n");
    const env: NodeJS.ProcessEnv = { ...ws.env, MIRRORLOG_CODE_CACHE_REPORT: "1" };
    delete env.NODE_OPTIONS; // flags of the test runner's own would make V8 refuse any cache, by design

    const help = await runMirrorlog(["--help"], { env });
    expect(help.code, help.stderr).toBe(0);
    expect(help.stderr).toMatch(/^mirrorlog: code cache main\.cjs\.\d+-\d+\.cache accepted \(\d+ bytes\)$/m);

    const sync = await runMirrorlog(["sync", "--json", ws.src, ws.dst], { env });
    expect(sync.code, sync.stderr).toBe(0);
    expect(sync.stderr).toMatch(/code cache .* accepted/);
    expect(summaryOf(sync).filesWritten).toBe(1);
    const differences = compareTrees(ws.src, ws.dst);
    expect(differences, formatDifferences(differences)).toEqual([]);
  });

  it("`--version` alone is answered without reading the bundle, with the version the CLI states", async () => {
    const ws = makeWorkspace("code-cache-version", created);
    const env: NodeJS.ProcessEnv = { ...ws.env, MIRRORLOG_CODE_CACHE_REPORT: "1" };
    const { version } = JSON.parse(readFileSync(join(MIRRORLOG_BIN, "..", "..", "package.json"), "utf8")) as {
      version: string;
    };
    for (const flag of ["--version", "-V"]) {
      const answer = await runMirrorlog([flag], { env });
      expect(answer.code, answer.stderr).toBe(0);
      expect(answer.stdout).toBe(`${version}\n`);
      // The bin reports the cache it offers only once it reads the bundle.
      expect(answer.stderr).not.toMatch(/code cache/);
    }
    expect(buildProgram().version()).toBe(version);
  });

  it("a small sync loads no script it can do without: koffi's entry, better-sqlite3's files, perf_hooks, fs/promises", async () => {
    // Each was milliseconds of every start (src/fs/nativeCalls.ts loadKoffi, scripts/bundle.mjs, src/fs/clock.ts,
    // src/cli/progress.ts countTree); nothing else would notice one coming back.
    const ws = makeWorkspace("code-cache-modules", created);
    writeFileSync(join(ws.src, "note.txt"), "one small file\n");
    const loaded = join(ws.base, "loaded.json");
    const recorder = join(ws.base, "recorder.cjs");
    writeFileSync(
      recorder,
      `process.on("exit", () => require("node:fs").writeFileSync(${JSON.stringify(loaded)}, JSON.stringify({ scripts: Object.keys(require.cache), builtins: process.moduleLoadList })));`,
    );
    const env: NodeJS.ProcessEnv = { ...ws.env, NODE_OPTIONS: `--require ${recorder}` };
    for (const expectWritten of [1, 0]) {
      // The first run starts a serve child, the second serves the target in-process: the recording is the sync's.
      const sync = await runMirrorlog(["sync", "--json", ws.src, ws.dst], { env });
      expect(sync.code, sync.stderr).toBe(0);
      expect(summaryOf(sync).filesWritten).toBe(expectWritten);
      const { scripts, builtins } = JSON.parse(readFileSync(loaded, "utf8")) as {
        scripts: string[];
        builtins: string[];
      };
      const fromNodeModules = scripts.filter((path) => path.includes("/node_modules/"));
      expect(
        fromNodeModules.filter((path) => !path.endsWith(".node")),
        fromNodeModules.join("\n"),
      ).toEqual([]);
      expect(fromNodeModules.some((path) => path.endsWith("/koffi.node"))).toBe(true);
      expect(fromNodeModules.some((path) => path.endsWith("/better_sqlite3.node"))).toBe(true);
      expect(builtins).not.toContain("NativeModule perf_hooks");
      expect(builtins).not.toContain("NativeModule fs/promises");
    }
  });

  it("a `mirrorlog` started by name gets the flags the cache was recorded under, and so does its local target", async () => {
    // bin/mirrorlog's #! line passes V8 flags (src/cli/nodeCommand.ts); a cache recorded under others is refused.
    const ws = makeWorkspace("code-cache-by-name", created);
    writeFileSync(join(ws.src, "note.txt"), "one small file\n");
    const env: NodeJS.ProcessEnv = {
      ...ws.env,
      MIRRORLOG_CODE_CACHE_REPORT: "1",
      PATH: `${dirname(process.execPath)}:${ws.env.PATH ?? ""}`,
    };
    delete env.NODE_OPTIONS;

    const { stdout, stderr } = await promisify(execFile)(MIRRORLOG_BIN, ["sync", "--json", ws.src, ws.dst], { env });
    // One line from the sync, one from the serve child it started for the local target.
    const reports = stderr.split("\n").filter((line) => line.startsWith("mirrorlog: code cache "));
    expect(reports, stderr).toHaveLength(2);
    expect(
      reports.every((line) => line.includes(" accepted ")),
      stderr,
    ).toBe(true);
    expect((JSON.parse(stdout) as { filesWritten: number }).filesWritten).toBe(1);
  });
});
