// Unit tests of the pieces behind `log -n/--since/--until`, readable sizes, the per-operation wire
// accounting, the watch heartbeat (on a real file SQLite log), remembered pair options and the systemd unit.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CliError } from "../../src/cli/cliError.js";
import {
  HeartbeatWriter,
  livenessOf,
  readHeartbeat,
  readRunProblems,
  STALE_AFTER_BEATS,
} from "../../src/cli/heartbeat.js";
import { selectEntries } from "../../src/cli/log.js";
import { mergeRemembered, pairConfigPath, readPairConfig } from "../../src/cli/pairConfig.js";
import { bytes, rate } from "../../src/cli/report.js";
import { systemdWord, unitName, unitText } from "../../src/cli/service.js";
import { idMatches, pairIdOf } from "../../src/cli/stateFiles.js";
import { parseCount, parseTimeSpec } from "../../src/cli/timeSpec.js";
import { OperationLog, StateFileError } from "../../src/events/operationLog.js";
import { wireShares } from "../../src/replicator/wireShares.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "mirrorlog-service-"));
  dirs.push(dir);
  return dir;
}

/** The CliError `run` throws (fails when it throws nothing or something else). */
function cliErrorOf(run: () => unknown): CliError {
  try {
    run();
  } catch (error) {
    if (error instanceof CliError) return error;
    throw error;
  }
  throw new Error("expected a CliError");
}

describe("parseTimeSpec and parseCount", () => {
  const now = Date.parse("2024-05-10T12:00:00Z");

  it.each([
    ["90s", now - 90_000],
    ["30m", now - 30 * 60_000],
    ["1h", now - 3_600_000],
    ["1.5h", now - 5_400_000],
    ["2d", now - 2 * 86_400_000],
    ["1w", now - 7 * 86_400_000],
    ["2024-05-01T10:00:00Z", Date.parse("2024-05-01T10:00:00Z")],
    ["2024-05-01T10:00+02:00", Date.parse("2024-05-01T08:00:00Z")],
    ["2024-05-01 10:00Z", Date.parse("2024-05-01T10:00:00Z")],
    // A bare date is local midnight, as `date -d 2024-05-01` means.
    ["2024-05-01", new Date(2024, 4, 1).getTime()],
  ])("%s", (text, expected) => {
    expect(parseTimeSpec(text, "--since", now)).toBe(expected);
  });

  it.each(["yesterday", "5", "1x", "-1h", "2024-13-01", "2024-05-01T25:00", ""])(
    "refuses %j as a usage error in one line naming the option",
    (text) => {
      const error = cliErrorOf(() => parseTimeSpec(text, "--since", now));
      expect(error.exitCode).toBe(2);
      expect(error.message).toContain("--since");
      expect(error.message).not.toContain("\n");
    },
  );

  it("counts are positive whole numbers", () => {
    expect(parseCount("20", "-n")).toBe(20);
    for (const bad of ["0", "-1", "1.5", "ten", ""]) expect(cliErrorOf(() => parseCount(bad, "-n")).exitCode).toBe(2);
  });
});

describe("selectEntries", () => {
  // Two logs, each newest first, by minute logged.
  const a = [5, 3, 1];
  const b = [4, 2];
  const at = (minute: number) => Date.parse(`2024-05-01T10:0${minute}:00Z`);

  it("keeps the window, then the newest N across logs", () => {
    const select = (selection: Parameters<typeof selectEntries>[1]) => selectEntries([a, b], selection, at);
    expect(select({})).toEqual([
      [5, 3, 1],
      [4, 2],
    ]);
    expect(select({ newest: 3 })).toEqual([[5, 3], [4]]);
    expect(select({ newest: 10 })).toEqual([
      [5, 3, 1],
      [4, 2],
    ]);
    expect(select({ since: at(2), until: at(4) })).toEqual([[3], [4, 2]]);
    expect(select({ since: at(2), newest: 1 })).toEqual([[5], []]);
  });
});

describe("bytes and rate", () => {
  it.each([
    [0, "0 B"],
    [6, "6 B"],
    [395.0561797752809, "395 B"],
    [1023.4, "1023 B"],
    [1023.7, "1.00 KiB"],
    [1536, "1.50 KiB"],
    [524_431, "512 KiB"],
    [12.3 * 1024 * 1024, "12.3 MiB"],
    [5 * 1024 ** 4, "5.00 TiB"],
  ])("%d bytes read %s", (n, text) => {
    expect(bytes(n)).toBe(text);
  });

  it("rates are readable too: never a long fraction", () => {
    expect(rate(395.0561797752809)).toBe("395 B/s");
    expect(rate(1.2 * 1024 * 1024)).toBe("1.20 MiB/s");
    expect(rate(0.4)).toBe("0 B/s");
  });
});

describe("wireShares", () => {
  it("charges each entry its own content plus an even share of the rest, not an even share of everything", () => {
    // A 6-byte file packed beside a 1 MiB incompressible one, plus the root's ensureDir: 3 entries.
    const big = 1024 * 1024;
    const shares = wireShares(
      [
        { contentWire: 0, inRequest: true },
        { contentWire: big, inRequest: true },
        { contentWire: 6, inRequest: true },
      ],
      big + 6 + 600,
    );
    expect(shares).toEqual([200, big + 200, 206]);
  });

  it("content sent ahead in uploads is charged to its entry without taking from the request's overhead", () => {
    expect(
      wireShares(
        [
          { contentWire: 5_000_000, inRequest: false },
          { contentWire: 0, inRequest: true },
        ],
        400,
      ),
    ).toEqual([5_000_200, 200]);
    expect(wireShares([], 100)).toEqual([]);
  });
});

describe("heartbeat", () => {
  const beat = { pid: 4242, host: "here", since: 1_000, beatAt: 50_000, intervalMs: 5_000, stoppedAt: null };
  const alive = () => true;

  it("live while beats are fresh and the pid runs; stopped when stale, when the pid is gone, or when it said so", () => {
    expect(livenessOf(beat, 50_000 + 1_000, alive, "here")).toEqual({
      state: "live",
      pid: 4242,
      since: 1_000,
      lastBeat: 50_000,
    });
    const stale = 50_000 + STALE_AFTER_BEATS * 5_000 + 1;
    expect(livenessOf(beat, stale, alive, "here")).toEqual({ state: "stopped", pid: 4242, lastSeen: 50_000 });
    expect(livenessOf(beat, 51_000, () => false, "here")).toEqual({ state: "stopped", pid: 4242, lastSeen: 50_000 });
    // Another host's pid means nothing here: only the age counts.
    expect(livenessOf(beat, 51_000, () => false, "elsewhere").state).toBe("live");
    expect(livenessOf({ ...beat, stoppedAt: 52_000 }, 52_500, alive, "here")).toEqual({
      state: "stopped",
      pid: 4242,
      lastSeen: 52_000,
    });
    expect(livenessOf(undefined, 0, alive)).toEqual({ state: "stopped", pid: null, lastSeen: null });
  });

  it("a writer beats into the log file (read back by a read-only audit), records problems, and marks its stop", () => {
    const file = join(tempDir(), "source.db");
    const log = new OperationLog(file);
    let now = 10_000;
    let problems = [{ path: "pipe", reason: "skipped: FIFO" }];
    const errors: unknown[] = [];
    const writer = new HeartbeatWriter({
      log,
      mode: "watch",
      problems: () => problems,
      onError: (error) => errors.push(error),
      now: () => now,
      intervalMs: 60_000,
    });
    writer.start();
    const audit = new OperationLog(file, { readOnly: true });
    expect(readHeartbeat(audit)).toMatchObject({ pid: process.pid, since: 10_000, beatAt: 10_000, stoppedAt: null });
    expect(livenessOf(readHeartbeat(audit), now).state).toBe("live");
    expect(readRunProblems(audit)).toEqual({ at: 10_000, mode: "watch", problems });
    now = 20_000;
    problems = [];
    writer.stop();
    expect(readHeartbeat(audit)).toMatchObject({ beatAt: 20_000, stoppedAt: 20_000 });
    expect(livenessOf(readHeartbeat(audit), now)).toEqual({ state: "stopped", pid: process.pid, lastSeen: 20_000 });
    expect(readRunProblems(audit)?.problems).toEqual([]);
    expect(errors).toEqual([]);
    audit.close();
    log.close();
  });

  it("a log without service records reads as never watched; a garbled record is a damaged state file", () => {
    const file = join(tempDir(), "source.db");
    const log = new OperationLog(file);
    expect(readHeartbeat(log)).toBeUndefined();
    log.putServiceRecord("heartbeat", '{"pid":"x"}');
    expect(() => readHeartbeat(log)).toThrow(StateFileError);
    expect(() => readHeartbeat(log)).toThrow(/heartbeat record cannot be read/);
    log.close();
  });
});

describe("remembered pair options", () => {
  const knownKeys = ["exclude", "hardLinks", "rescanInterval", "json", "dryRun", "verbose"];

  it("explicit options win and are remembered; the rest come from memory; per-run ones are never remembered", () => {
    const given = {
      exclude: [] as string[],
      hardLinks: false,
      rescanInterval: 300,
      json: true,
      dryRun: false,
      verbose: 2,
    };
    const explicit = new Set(["json", "verbose"]);
    const first = mergeRemembered(
      given,
      { exclude: ["*.tmp"], hardLinks: true },
      { isExplicit: (k) => explicit.has(k), knownKeys },
    );
    expect(first.merged).toEqual({ ...given, exclude: ["*.tmp"], hardLinks: true });
    // Nothing new to remember: --json and -v belong to this run.
    expect(first.remember).toBeUndefined();

    const second = mergeRemembered(
      { ...given, exclude: ["*.log"] },
      { exclude: ["*.tmp"], hardLinks: true },
      { isExplicit: (k) => k === "exclude", knownKeys },
    );
    expect(second.merged.exclude).toEqual(["*.log"]);
    expect(second.merged.hardLinks).toBe(true);
    expect(second.remember).toEqual({ exclude: ["*.log"], hardLinks: true });
  });

  it("the config file sits beside the state; one that is not a config is a one-line usage error naming it", () => {
    const dir = tempDir();
    expect(pairConfigPath(join(dir, "source-a-0123.db"))).toBe(join(dir, "source-a-0123.json"));
    expect(readPairConfig(join(dir, "none.json"))).toBeUndefined();
    const bad = join(dir, "bad.json");
    writeFileSync(bad, "{ not json");
    expect(cliErrorOf(() => readPairConfig(bad)).message).toMatch(/bad\.json" is not JSON/);
    writeFileSync(bad, JSON.stringify({ version: 1, source: "/s", target: "/t", options: { exclude: [1] } }));
    const error = cliErrorOf(() => readPairConfig(bad));
    expect(error.message).toMatch(/not a mirrorlog pair config at options\.exclude/);
    expect(error.message).not.toContain("\n");
  });
});

describe("pair ids", () => {
  it("are the state file's name without source- and .db; the hash alone matches too", () => {
    const path = "/state/mirrorlog/source-photos-0123456789abcdef.db";
    expect(pairIdOf(path)).toBe("photos-0123456789abcdef");
    expect(idMatches(path, "photos-0123456789abcdef")).toBe(true);
    expect(idMatches(path, "0123456789abcdef")).toBe(true);
    expect(idMatches(path, "photos")).toBe(false);
    expect(idMatches(path, "89abcdef0")).toBe(false);
  });
});

describe("systemd unit", () => {
  it("quotes words as systemd reads them: specifiers and variables doubled, quotes and backslashes escaped", () => {
    expect(systemdWord('/a b/%h/$HOME/"q"\\')).toBe('"/a b/%%h/$$HOME/\\"q\\"\\\\"');
    expect(() => systemdWord("/new\nline")).toThrow(/control character/);
    expect(unitName("my photos-01")).toBe("mirrorlog-my_photos-01.service");
  });

  it("restarts on failure, reloads with SIGHUP, and carries the environment", () => {
    const unit = unitText({
      sourceRoot: "/src",
      target: "host:/dst",
      configPath: "/state/source-src-01.json",
      command: ["/usr/bin/node", "/opt/mirrorlog/bin/mirrorlog", "watch", "/src", "host:/dst"],
      environment: { XDG_STATE_HOME: "/home/me/state" },
    });
    const lines = unit.split("\n");
    expect(lines).toContain('ExecStart="/usr/bin/node" "/opt/mirrorlog/bin/mirrorlog" "watch" "/src" "host:/dst"');
    expect(lines).toContain("Restart=on-failure");
    expect(lines).toContain("ExecReload=/bin/kill -HUP $MAINPID");
    expect(lines).toContain('Environment="XDG_STATE_HOME=/home/me/state"');
    expect(lines).toContain("WantedBy=default.target");
  });
});
