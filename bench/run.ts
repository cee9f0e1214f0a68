// `npm run bench [-- SCENARIO... | --quick | --keep | --files N]`: mirrorlog against rsync, lsyncd
// and git on the same machine in the same run. Progress goes to stderr; the report (Markdown, the
// format of bench/README.md) to stdout. Scenarios: startup, initial, nochange, modified, live,
// checkout (all six by default), profile, fanout and large (only when named: large needs ~14 GiB of
// free disk). Needs rsync, lsyncd, git, openssh-server and GNU time (fanout: nats-server too).
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { posix } from "node:path";
import { parseArgs } from "node:util";
import { startSshd } from "../test/support/sshd.js";
import { checkoutScenario } from "./checkoutScenario.js";
import { type BenchContext, runSshNoop } from "./contenders.js";
import { profileScenario } from "./cpuProfile.js";
import { fanoutScenario } from "./fanout.js";
import { LARGE_FILE_BYTES, largeScenario } from "./largeFile.js";
import { liveScenario } from "./liveScenarios.js";
import {
  canMeasureRss,
  type FloorRow,
  formatFloorTable,
  formatMemoryTable,
  formatResultsTable,
  type ResultRow,
} from "./measurement.js";
import {
  initialScenario,
  modifiedScenario,
  noChangeScenario,
  type OneShotSource,
  type ScenarioResult,
} from "./oneShotScenarios.js";
import { startupScenario } from "./startupScenario.js";
import { FULL_TREE, generateTree, type TreeShape } from "./workload.js";

const SCENARIOS = [
  "startup",
  "initial",
  "nochange",
  "modified",
  "live",
  "checkout",
  "profile",
  "fanout",
  "large",
] as const;
type Scenario = (typeof SCENARIOS)[number];
const DEFAULT_SCENARIOS: Scenario[] = ["startup", "initial", "nochange", "modified", "live", "checkout"];
/** Scenarios that mirror the generated source tree (the others bring their own). */
const needsTree = (name: Scenario): boolean => ["initial", "nochange", "modified", "profile", "fanout"].includes(name);

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    keep: { type: "boolean", default: false },
    quick: { type: "boolean", default: false },
    files: { type: "string" },
  },
});

const unknown = positionals.filter((name) => !(SCENARIOS as readonly string[]).includes(name));
if (unknown.length > 0) {
  process.stderr.write(`unknown scenario ${unknown.join(", ")}; choose from ${SCENARIOS.join(", ")}\n`);
  process.exit(2);
}
const chosen = positionals.length > 0 ? (positionals as Scenario[]) : DEFAULT_SCENARIOS;
/** --quick: fewer trials, for checking the benchmark itself; its numbers are not results. */
const trials = flags.quick
  ? {
      startup: 5,
      initial: 1,
      nochange: 2,
      modified: 2,
      latency: 5,
      warmup: 1,
      burstWarmup: 1,
      bursts: 1,
      checkout: 2,
      large: 1,
    }
  : {
      startup: 15,
      initial: 3,
      nochange: 5,
      modified: 5,
      latency: 30,
      warmup: 3,
      burstWarmup: 1,
      bursts: 7,
      checkout: 10,
      large: 2,
    };
/** The large file: the issue's 4 GiB, 512 MiB with --quick. */
const largeBytes = flags.quick ? LARGE_FILE_BYTES / 8 : LARGE_FILE_BYTES;
const files = flags.files === undefined ? FULL_TREE.files : Number(flags.files);
const shape: TreeShape = { ...FULL_TREE, files, directories: Math.max(1, Math.round(files / 10)) };

const benchStarted = performance.now();
const elapsed = (): string => `${((performance.now() - benchStarted) / 1000).toFixed(1)} s`;
const log = (message: string): void => {
  process.stderr.write(`[${elapsed()}] ${message}\n`);
};

/** Versions of the peers, for the report header. */
function versionOf(argv: string[]): string {
  try {
    return execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8" }).split("\n")[0]!.trim();
  } catch {
    return `${argv[0]} not found`;
  }
}

const dir = mkdtempSync(posix.join(tmpdir(), "mirrorlog-bench-"));
const loadAtStart = loadavg()[0]!.toFixed(2);
const ssh = await startSshd();
const context: BenchContext = {
  dir,
  ssh,
  env: {
    ...process.env,
    XDG_STATE_HOME: posix.join(dir, "state"),
    MIRRORLOG_SSH: ssh.sshCommandLine,
  },
  remoteStateHome: posix.join(dir, "state-remote"),
  memory: [],
  log,
};
const rows: ResultRow[] = [];
const notes: string[] = [];
const floors: FloorRow[] = [];
let profileLines: string[] = [];
let fanoutLines: string[] = [];
try {
  mkdirSync(posix.join(dir, "runs"));
  log(`bench dir ${dir}; scenarios: ${chosen.join(", ")}${flags.quick ? " (--quick: not results)" : ""}`);
  await runSshNoop(context); // the first connection pays sshd's start-up; no trial should
  let source: OneShotSource | undefined;
  if (chosen.some(needsTree)) {
    log(`generating ${shape.files} files in ${shape.directories} directories (seed ${shape.seed})`);
    const tree = generateTree(posix.join(dir, "source"), shape);
    source = { tree, shape };
    log(`generated ${(tree.bytes / 1024 / 1024).toFixed(1)} MiB`);
  }
  for (const scenario of SCENARIOS.filter((name) => chosen.includes(name))) {
    log(`scenario ${scenario}`);
    let result: ScenarioResult | undefined;
    if (scenario === "startup") result = await startupScenario(context, trials.startup);
    if (scenario === "initial") result = await initialScenario(context, source!, trials.initial);
    if (scenario === "nochange") result = await noChangeScenario(context, source!, trials.nochange);
    if (scenario === "modified") result = await modifiedScenario(context, source!, trials.modified);
    if (scenario === "live") result = await liveScenario(context, trials);
    if (scenario === "checkout") result = await checkoutScenario(context, shape, trials.checkout);
    if (scenario === "large")
      result = await largeScenario(context, { bytes: largeBytes, trials: trials.large, keep: flags.keep });
    if (scenario === "profile") profileLines = profileScenario(context, source!, 15);
    if (scenario === "fanout") fanoutLines = await fanoutScenario(context, source!, trials.initial);
    if (result) {
      rows.push(...result.rows);
      notes.push(...result.notes);
      floors.push(...(result.floors ?? []));
    }
  }
} finally {
  await ssh.stop();
  if (flags.keep) log(`kept ${dir}`);
  else {
    log(`removing ${dir}`);
    rmSync(dir, { recursive: true, force: true });
  }
}

const report = [
  `## Results (${new Date().toISOString().slice(0, 10)}, ${availableParallelism()} cores, Node ${process.version}, load ${loadAtStart} at start)`,
  "",
  `Peers: ${versionOf(["rsync", "--version"])}; lsyncd ${versionOf(["lsyncd", "--version"])}; ${versionOf(["git", "--version"])}.${
    chosen.some(needsTree)
      ? ` Workload: ${shape.files} files of ${shape.minFileBytes}–${shape.maxFileBytes} bytes in ${shape.directories} directories up to depth ${shape.maxDepth}, seed ${shape.seed}.`
      : ""
  }`,
  "",
];
if (rows.length > 0) report.push(formatResultsTable(rows), "");
if (floors.length > 0) {
  report.push(
    "Floors: the least each job takes on this machine for a tool that does the job's work as mirrorlog must (a copy that ends durable with one flush; a walk of both trees, on node), timed in the same trials as the row's rsync (medians). A goal below its floor is out of reach of any change to mirrorlog here:",
    "",
    formatFloorTable(floors),
    "",
  );
}
if (context.memory.length > 0)
  report.push("Peak RSS (largest of the observed runs):", "", formatMemoryTable(context.memory), "");
else if (!canMeasureRss()) report.push("Peak RSS not measured: /usr/bin/time (Debian package `time`) is missing.", "");
for (const note of notes) report.push(`- ${note}`);
if (fanoutLines.length > 0) report.push("", ...fanoutLines);
if (profileLines.length > 0) report.push("", "## CPU profiles (self time)", "", "```", ...profileLines, "```");
report.push("", `Total benchmark time: ${elapsed()}.`);
process.stdout.write(`${report.join("\n")}\n`);
