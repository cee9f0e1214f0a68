// `node --import tsx bench/content.ts [SCENARIO...] [--scale F] [--trials N] [--bin PATH] [--keep]`:
// what content costs on the wire, mirrorlog beside rsync in the same run, both over ssh to a
// throwaway sshd on localhost. Scenarios (all by default):
//   modify      256 MiB random file, 1 MiB overwritten in the middle, re-run (rsync -a --no-whole-file)
//   insert      the same file with 100 bytes inserted at offset 1 MiB, re-run (rsync -a --no-whole-file)
//   dirrename   1 GiB directory (256 files of 4 MiB) renamed, re-run (rsync -a --no-whole-file --delete)
//   compress    initial mirror of ~100 MB of generated text, JSON and logs (rsync -az)
//   large       initial copy of a 4 GiB file: peak RSS of both mirrorlog sides, throughput against
//               rsync -a --whole-file
// Bytes are mirrorlog's `wireBytesSent + wireBytesReceived` (`--json`) and rsync's `--stats` "Total
// bytes sent" + "Total bytes received": both count their own protocol stream inside ssh. Progress goes
// to stderr, the report (Markdown) to stdout. `--scale 0.25` shrinks every size (for a quick check or
// a small disk); `--bin` runs another mirrorlog build on both sides (to compare a fix with this one).

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, mkdtempSync, openSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { posix } from "node:path";
import { parseArgs } from "node:util";
import { startSshd, type TestSshServer } from "../test/support/sshd.js";
import { MIRRORLOG_BIN, mirrorlogCommand, sshSyncArgv } from "./contenders.js";
import {
  freeBytes,
  kib,
  largeCopyDiskNeeded,
  largeFileCopy,
  RSYNC_WHOLE_FILE,
  THROUGHPUT_GOAL,
  throughputOf,
} from "./largeFile.js";
import { canMeasureRss, readRss, rssWrapper, timeCommand } from "./measurement.js";
import { checkMirrors, SeededRandom, treeDigest, writeRandomFile } from "./workload.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
/** Generated files are written in pieces of this size. */
const PIECE = 4 * MiB;

const SCENARIOS = ["modify", "insert", "dirrename", "compress", "large"] as const;
type Scenario = (typeof SCENARIOS)[number];

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    keep: { type: "boolean", default: false },
    scale: { type: "string", default: "1" },
    trials: { type: "string", default: "2" },
    bin: { type: "string" },
  },
});
const unknown = positionals.filter((name) => !(SCENARIOS as readonly string[]).includes(name));
if (unknown.length > 0) {
  process.stderr.write(`unknown scenario ${unknown.join(", ")}; choose from ${SCENARIOS.join(", ")}\n`);
  process.exit(2);
}
const chosen: Scenario[] = positionals.length > 0 ? (positionals as Scenario[]) : [...SCENARIOS];
const scale = Number(flags.scale);
const largeTrials = Math.max(1, Number(flags.trials));
const mirrorlogBin = flags.bin === undefined ? MIRRORLOG_BIN : posix.resolve(flags.bin);
/** Sizes, scaled; the edit sizes (1 MiB, 100 B at 1 MiB) are the issue's and do not scale. */
const sizes = {
  editedFile: roundTo(256 * MiB * scale, MiB),
  renamedDirFiles: Math.max(1, Math.round(256 * scale)),
  renamedDirFileSize: 4 * MiB,
  compressibleBytes: Math.round(100e6 * scale),
  largeFile: roundTo(4 * GiB * scale, MiB),
};

const started = performance.now();
const log = (message: string): void => {
  process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(1)} s] ${message}\n`);
};

function roundTo(value: number, unit: number): number {
  return Math.max(unit, Math.round(value / unit) * unit);
}

/** What one benchmark run shares: its temp dir, the sshd and the environment of mirrorlog runs. */
interface ContentBench {
  dir: string;
  ssh: TestSshServer;
  env: NodeJS.ProcessEnv;
  remoteStateHome: string;
  counter: number;
}

/** A bytes comparison: the second run's wire bytes of both tools on the same change. */
interface BytesRow {
  scenario: string;
  mirrorlog: number;
  rsync: number;
  rsyncFlags: string;
  goal: number;
  /** How mirrorlog's file bytes travelled, when its `--json` summary says. */
  split?: ContentSplit;
}

/** A measurement against a fixed limit or a peer, for the large-file table. */
interface LimitRow {
  what: string;
  value: string;
  goal: string;
  met: boolean | undefined;
}

/** mirrorlog's `--json` summary (the fields read here). */
interface Summary {
  filesWritten: number;
  bytesWritten: number;
  wireBytesSent: number;
  wireBytesReceived: number;
  problems: unknown[];
  content?: ContentSplit;
}

/** The split of written file bytes by how they travelled (present in newer `--json` summaries). */
interface ContentSplit {
  literal: number;
  compressed: number;
  matched: number;
  reused: number;
}

/** One run of a tool: wall time, bytes on the wire, peak RSS of its local (and, for mirrorlog, remote) process. */
interface ToolRun {
  ms: number;
  bytes: number;
  localRssKiB: number | undefined;
  remoteRssKiB: number | undefined;
  summary?: Summary;
}

/** Frees a finished scenario's disk space (the largest scenarios would not fit side by side); kept with --keep. */
function removeAll(...paths: string[]): void {
  if (flags.keep) return;
  for (const path of paths) rmSync(path, { recursive: true, force: true });
}

/** A path below the bench dir that has never been used. */
function fresh(bench: ContentBench, label: string): string {
  bench.counter += 1;
  return posix.join(bench.dir, `${label}-${bench.counter}`);
}

/** `mirrorlog sync --json SRC localhost:DST`, the far side in this checkout with its state in the bench dir. */
async function mirrorlogRun(
  bench: ContentBench,
  source: string,
  target: string,
  expectWritten: number,
): Promise<ToolRun> {
  const localRss = fresh(bench, "rss");
  const remoteRss = fresh(bench, "rss");
  const command = mirrorlogCommand(mirrorlogBin);
  const run = await timeCommand({
    argv: sshSyncArgv(command, command, { source, target, stateHome: bench.remoteStateHome }, rssWrapper(remoteRss)),
    env: bench.env,
    rssFile: localRss,
  });
  const summary = JSON.parse(run.stdout) as Summary;
  if (summary.problems.length > 0) throw new Error(`mirrorlog reported problems: ${JSON.stringify(summary.problems)}`);
  if (summary.filesWritten !== expectWritten) {
    throw new Error(`mirrorlog wrote ${summary.filesWritten} files, expected ${expectWritten}: ${run.stdout}`);
  }
  return {
    ms: run.ms,
    bytes: summary.wireBytesSent + summary.wireBytesReceived,
    localRssKiB: run.maxRssKiB,
    remoteRssKiB: readRss(remoteRss),
    summary,
  };
}

/** `rsync FLAGS --stats -e <the same ssh> SRC/ localhost:DST/`. */
async function rsyncRun(bench: ContentBench, rsyncFlags: string[], source: string, target: string): Promise<ToolRun> {
  const run = await timeCommand({
    argv: ["rsync", ...rsyncFlags, "--stats", "-e", bench.ssh.sshCommandLine, `${source}/`, `localhost:${target}/`],
    rssFile: fresh(bench, "rss"),
  });
  const total = (label: string): number => {
    const match = new RegExp(`^${label}: ([\\d,]+)`, "m").exec(run.stdout);
    if (!match) throw new Error(`rsync --stats printed no "${label}":\n${run.stdout}`);
    return Number(match[1]!.replaceAll(",", ""));
  };
  return {
    ms: run.ms,
    bytes: total("Total bytes sent") + total("Total bytes received"),
    localRssKiB: run.maxRssKiB,
    remoteRssKiB: undefined,
  };
}

/** Overwrites `length` bytes at `offset` with random bytes, in place. */
function overwriteRandom(path: string, offset: number, length: number): void {
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, randomBytes(length), 0, length, offset);
  } finally {
    closeSync(fd);
  }
}

/** Rewrites `path` with `inserted` placed at `offset` (through a new file renamed over it, as editors do). */
function insertBytes(path: string, offset: number, inserted: Buffer): void {
  const temporary = `${path}.inserting`;
  const input = openSync(path, "r");
  const output = openSync(temporary, "w");
  const buffer = Buffer.allocUnsafe(PIECE);
  try {
    let position = 0;
    for (let read = readSync(input, buffer); read > 0; read = readSync(input, buffer)) {
      if (position <= offset && offset < position + read) {
        const split = offset - position;
        writeSync(output, buffer, 0, split);
        writeSync(output, inserted);
        writeSync(output, buffer, split, read - split);
      } else {
        writeSync(output, buffer, 0, read);
      }
      position += read;
    }
  } finally {
    closeSync(input);
    closeSync(output);
  }
  renameSync(temporary, path);
}

/** A source and one target per tool, both brought in sync by a first run of each tool. */
async function syncedPair(
  bench: ContentBench,
  label: string,
  fill: (source: string) => number,
  rsyncFlags: string[],
): Promise<{ source: string; mirrorlogTarget: string; rsyncTarget: string }> {
  const source = fresh(bench, `${label}-source`);
  mkdirSync(source, { recursive: true });
  const files = fill(source);
  const mirrorlogTarget = fresh(bench, `${label}-mirrorlog`);
  const rsyncTarget = fresh(bench, `${label}-rsync`);
  log(`  first runs (${files} files)`);
  await mirrorlogRun(bench, source, mirrorlogTarget, files);
  await rsyncRun(bench, rsyncFlags, source, rsyncTarget);
  checkMirrors(source, mirrorlogTarget, rsyncTarget);
  return { source, mirrorlogTarget, rsyncTarget };
}

/** The second runs after `change`: both tools' bytes, checked targets. */
async function changedRun(
  bench: ContentBench,
  pair: { source: string; mirrorlogTarget: string; rsyncTarget: string },
  rsyncFlags: string[],
  expectWritten: number,
): Promise<{ mirrorlog: ToolRun; rsync: ToolRun }> {
  const mirrorlog = await mirrorlogRun(bench, pair.source, pair.mirrorlogTarget, expectWritten);
  const rsync = await rsyncRun(bench, rsyncFlags, pair.source, pair.rsyncTarget);
  checkMirrors(pair.source, pair.mirrorlogTarget, pair.rsyncTarget);
  return { mirrorlog, rsync };
}

const DELTA_FLAGS = ["-a", "--no-whole-file", "--delete"];

/** modify and insert share one file: the insert starts from the targets the modify run left in sync. */
async function editScenarios(bench: ContentBench, which: Scenario[]): Promise<BytesRow[]> {
  const size = sizes.editedFile;
  const rows: BytesRow[] = [];
  log(`edited file: ${size / MiB} MiB of random bytes`);
  const pair = await syncedPair(
    bench,
    "edit",
    (source) => {
      writeRandomFile(posix.join(source, "big.bin"), size);
      return 1;
    },
    DELTA_FLAGS,
  );
  const file = posix.join(pair.source, "big.bin");
  if (which.includes("modify")) {
    log("  1 MiB overwritten in the middle");
    overwriteRandom(file, Math.floor(size / 2 / MiB) * MiB, MiB);
    const { mirrorlog, rsync } = await changedRun(bench, pair, DELTA_FLAGS, 1);
    rows.push({
      scenario: `${size / MiB} MiB file, 1 MiB overwritten in the middle`,
      mirrorlog: mirrorlog.bytes,
      rsync: rsync.bytes,
      rsyncFlags: DELTA_FLAGS.join(" "),
      goal: 0.9,
      ...(mirrorlog.summary?.content ? { split: mirrorlog.summary.content } : {}),
    });
  }
  if (which.includes("insert")) {
    log("  100 bytes inserted at offset 1 MiB");
    insertBytes(file, MiB, randomBytes(100));
    const { mirrorlog, rsync } = await changedRun(bench, pair, DELTA_FLAGS, 1);
    rows.push({
      scenario: `${size / MiB} MiB file, 100 B inserted at offset 1 MiB`,
      mirrorlog: mirrorlog.bytes,
      rsync: rsync.bytes,
      rsyncFlags: DELTA_FLAGS.join(" "),
      goal: 0.25,
      ...(mirrorlog.summary?.content ? { split: mirrorlog.summary.content } : {}),
    });
  }
  removeAll(pair.source, pair.mirrorlogTarget, pair.rsyncTarget);
  return rows;
}

async function dirRenameScenario(bench: ContentBench): Promise<BytesRow> {
  const count = sizes.renamedDirFiles;
  const total = count * sizes.renamedDirFileSize;
  log(`renamed directory: ${count} files of ${sizes.renamedDirFileSize / MiB} MiB (${(total / GiB).toFixed(2)} GiB)`);
  const pair = await syncedPair(
    bench,
    "dirrename",
    (source) => {
      const dir = posix.join(source, "albums/2023");
      mkdirSync(dir, { recursive: true });
      for (let i = 0; i < count; i++)
        writeRandomFile(posix.join(dir, `img-${String(i).padStart(4, "0")}.raw`), sizes.renamedDirFileSize);
      return count;
    },
    DELTA_FLAGS,
  );
  log("  albums/ renamed to photos/");
  renameSync(posix.join(pair.source, "albums"), posix.join(pair.source, "photos"));
  const { mirrorlog, rsync } = await changedRun(bench, pair, DELTA_FLAGS, count);
  removeAll(pair.source, pair.mirrorlogTarget, pair.rsyncTarget);
  return {
    scenario: `${(total / GiB).toFixed(2)} GiB directory (${count} × ${sizes.renamedDirFileSize / MiB} MiB) renamed`,
    mirrorlog: mirrorlog.bytes,
    rsync: rsync.bytes,
    rsyncFlags: DELTA_FLAGS.join(" "),
    goal: 0.001,
    ...(mirrorlog.summary?.content ? { split: mirrorlog.summary.content } : {}),
  };
}

/** Pseudo-words over a small alphabet, drawn with a skewed (roughly Zipf-like) frequency. */
function vocabulary(random: SeededRandom, size: number): string[] {
  const letters = "etaoinshrdlucmfwypvbgkqjxz";
  const words: string[] = [];
  for (let i = 0; i < size; i++) {
    const length = random.integer(2, 10);
    let word = "";
    for (let j = 0; j < length; j++)
      word += letters[Math.min(25, Math.floor(-Math.log(1 - random.nextUint32() / 2 ** 32) * 6))];
    words.push(word);
  }
  return words;
}

/** A deterministic tree of prose, JSON records and log lines totalling about `bytes` bytes; returns its file count. */
function generateCompressibleTree(root: string, bytes: number): number {
  const random = new SeededRandom(20_240_601);
  const words = vocabulary(random, 4000);
  const word = (): string => words[Math.floor(words.length * (random.nextUint32() / 2 ** 32) ** 3)]!;
  const sentence = (): string => {
    const n = random.integer(6, 18);
    const parts: string[] = [];
    for (let i = 0; i < n; i++) parts.push(word());
    return `${parts.join(" ")}.`;
  };
  const prose = (target: number): string => {
    const paragraphs: string[] = [];
    let length = 0;
    while (length < target) {
      const n = random.integer(2, 7);
      const sentences: string[] = [];
      for (let i = 0; i < n; i++) sentences.push(sentence());
      const paragraph = sentences.join(" ");
      paragraphs.push(paragraph);
      length += paragraph.length + 2;
    }
    return `${paragraphs.join("\n\n")}\n`;
  };
  const records = (target: number): string => {
    const items: string[] = [];
    let length = 0;
    while (length < target) {
      const record = JSON.stringify(
        {
          id: random.nextUint32(),
          name: `${word()} ${word()}`,
          email: `${word()}.${word()}@${word()}.example`,
          active: random.integer(0, 1) === 1,
          balance: random.integer(0, 10_000_000) / 100,
          tags: Array.from({ length: random.integer(0, 5) }, word),
          created: new Date(1_600_000_000_000 + random.nextUint32() * 1000).toISOString(),
        },
        null,
        2,
      );
      items.push(record);
      length += record.length + 2;
    }
    return `[\n${items.join(",\n")}\n]\n`;
  };
  const levels = ["DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR"];
  const logLines = (target: number): string => {
    const lines: string[] = [];
    let length = 0;
    let time = 1_700_000_000_000 + random.nextUint32();
    while (length < target) {
      time += random.integer(0, 5000);
      const line = `${new Date(time).toISOString()} ${levels[random.integer(0, levels.length - 1)]} [${word()}-${random.integer(1, 16)}] ${sentence()} latency_ms=${random.integer(1, 2000)} request=${random.nextUint32().toString(16)}`;
      lines.push(line);
      length += line.length + 1;
    }
    return `${lines.join("\n")}\n`;
  };
  let written = 0;
  let files = 0;
  while (written < bytes) {
    const dir = posix.join(root, `section-${Math.floor(files / 40)}`, `part-${Math.floor(files / 8) % 5}`);
    mkdirSync(dir, { recursive: true });
    const kind = files % 3;
    const target = random.integer(4 * KiB, 300 * KiB);
    const text = kind === 0 ? prose(target) : kind === 1 ? records(target) : logLines(target);
    const name = `${files}-${word()}.${kind === 0 ? "txt" : kind === 1 ? "json" : "log"}`;
    const fd = openSync(posix.join(dir, name), "w");
    writeSync(fd, text);
    closeSync(fd);
    written += Buffer.byteLength(text);
    files++;
  }
  return files;
}

async function compressScenario(bench: ContentBench): Promise<BytesRow> {
  const source = fresh(bench, "compress-source");
  log(`compressible tree: ~${(sizes.compressibleBytes / 1e6).toFixed(0)} MB of text, JSON and logs`);
  const files = generateCompressibleTree(source, sizes.compressibleBytes);
  const flagsZ = ["-az", "--delete"];
  const mirrorlogTarget = fresh(bench, "compress-mirrorlog");
  const mirrorlog = await mirrorlogRun(bench, source, mirrorlogTarget, files);
  const rsyncTarget = fresh(bench, "compress-rsync");
  const rsync = await rsyncRun(bench, flagsZ, source, rsyncTarget);
  checkMirrors(source, mirrorlogTarget, rsyncTarget);
  const total = [...treeDigest(source).values()].reduce((n, v) => n + (v === "dir" ? 0 : Number(v.split(" ")[0])), 0);
  removeAll(source, mirrorlogTarget, rsyncTarget);
  log(`  ${files} files, ${(total / 1e6).toFixed(1)} MB: mirrorlog ${mirrorlog.bytes} B, rsync ${rsync.bytes} B`);
  return {
    scenario: `initial mirror, ${files} text/JSON/log files, ${(total / 1e6).toFixed(1)} MB`,
    mirrorlog: mirrorlog.bytes,
    rsync: rsync.bytes,
    rsyncFlags: flagsZ.join(" "),
    goal: 1.0,
    ...(mirrorlog.summary?.content ? { split: mirrorlog.summary.content } : {}),
  };
}

async function largeScenario(bench: ContentBench): Promise<LimitRow[]> {
  const size = sizes.largeFile;
  const result = await largeFileCopy({
    bytes: size,
    trials: largeTrials,
    fresh: (label) => fresh(bench, label),
    log,
    keep: flags.keep,
    tools: {
      mirrorlog: async (source, target) => {
        const run = await mirrorlogRun(bench, source, target, 1);
        return { ms: run.ms, sourceRssKiB: run.localRssKiB, targetRssKiB: run.remoteRssKiB };
      },
      rsync: async (source, target) => {
        const run = await rsyncRun(bench, RSYNC_WHOLE_FILE, source, target);
        return { ms: run.ms, sourceRssKiB: run.localRssKiB, targetRssKiB: undefined };
      },
    },
  });
  const mirrorlogRate = throughputOf(size, result.mirrorlog);
  const rsyncRate = throughputOf(size, result.rsync);
  const ratio = mirrorlogRate / rsyncRate;
  const peak = (values: (number | undefined)[]): number | undefined => {
    const defined = values.filter((v): v is number => v !== undefined);
    return defined.length === 0 ? undefined : Math.max(...defined);
  };
  const limit = 200e6 / 1024; // 200 MB in KiB
  const sourcePeak = peak(result.mirrorlog.map((r) => r.sourceRssKiB));
  const targetPeak = peak(result.mirrorlog.map((r) => r.targetRssKiB));
  const label = `${(size / GiB).toFixed(2)} GiB file`;
  return [
    {
      what: `${label}: peak RSS, mirrorlog source (incl. its ssh client)`,
      value: kib(sourcePeak),
      goal: "≤ 200 MB",
      met: sourcePeak === undefined ? undefined : sourcePeak <= limit,
    },
    {
      what: `${label}: peak RSS, mirrorlog target (remote serve)`,
      value: kib(targetPeak),
      goal: "≤ 200 MB",
      met: targetPeak === undefined ? undefined : targetPeak <= limit,
    },
    {
      what: `${label}: peak RSS, rsync client (for reference)`,
      value: kib(peak(result.rsync.map((r) => r.sourceRssKiB))),
      goal: "—",
      met: undefined,
    },
    {
      what: `${label}: initial copy, mirrorlog throughput (median of ${largeTrials})`,
      value: `${(mirrorlogRate / MiB).toFixed(0)} MiB/s`,
      goal: "—",
      met: undefined,
    },
    {
      what: `${label}: initial copy, rsync ${RSYNC_WHOLE_FILE.join(" ")} throughput (median of ${largeTrials})`,
      value: `${(rsyncRate / MiB).toFixed(0)} MiB/s`,
      goal: "—",
      met: undefined,
    },
    {
      what: `${label}: throughput ratio mirrorlog / rsync`,
      value: `${ratio.toFixed(2)}×`,
      goal: `≥ ${THROUGHPUT_GOAL}×`,
      met: ratio >= THROUGHPUT_GOAL,
    },
  ];
}

function formatBytesTable(rows: readonly BytesRow[]): string {
  const lines = [
    "| scenario | mirrorlog bytes | rsync bytes | rsync flags | ratio | goal | met? |",
    "|---|---:|---:|---|---:|---:|:---:|",
  ];
  for (const row of rows) {
    const ratio = row.mirrorlog / row.rsync;
    lines.push(
      `| ${row.scenario} | ${row.mirrorlog.toLocaleString("en-US")} | ${row.rsync.toLocaleString("en-US")} | \`${row.rsyncFlags}\` | ${ratio < 0.01 ? ratio.toExponential(2) : ratio.toFixed(3)}× | ≤ ${row.goal}× | ${ratio <= row.goal ? "yes" : "**no**"} |`,
    );
  }
  return lines.join("\n");
}

function formatLimitTable(rows: readonly LimitRow[]): string {
  const lines = ["| measurement | value | goal | met? |", "|---|---:|---:|:---:|"];
  for (const row of rows)
    lines.push(
      `| ${row.what} | ${row.value} | ${row.goal} | ${row.met === undefined ? "—" : row.met ? "yes" : "**no**"} |`,
    );
  return lines.join("\n");
}

function versionOf(argv: string[]): string {
  try {
    return execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
      .split("\n")[0]!
      .trim();
  } catch {
    return `${argv[0]} not found`;
  }
}

const dir = mkdtempSync(posix.join(tmpdir(), "mirrorlog-bench-content-"));
/** Source plus two targets of the largest scenario (each scenario's files go when it ends). */
const needed = largeCopyDiskNeeded(
  Math.max(sizes.largeFile, sizes.renamedDirFiles * sizes.renamedDirFileSize, sizes.editedFile),
);
if (freeBytes(dir) < needed) {
  rmSync(dir, { recursive: true, force: true });
  process.stderr.write(
    `need about ${(needed / GiB).toFixed(1)} GiB free in ${tmpdir()}, have ${(freeBytes(tmpdir()) / GiB).toFixed(1)} GiB: use --scale\n`,
  );
  process.exit(2);
}
const loadAtStart = loadavg()[0]!.toFixed(2);
const ssh = await startSshd();
const bench: ContentBench = {
  dir,
  ssh,
  env: { ...process.env, XDG_STATE_HOME: posix.join(dir, "state"), MIRRORLOG_SSH: ssh.sshCommandLine },
  remoteStateHome: posix.join(dir, "state-remote"),
  counter: 0,
};
const bytesRows: BytesRow[] = [];
let limitRows: LimitRow[] = [];
try {
  log(`bench dir ${dir}; mirrorlog ${mirrorlogBin}; scenarios ${chosen.join(", ")}; scale ${scale}`);
  await timeCommand({ argv: [...ssh.sshCommand, "localhost", "true"], rssFile: fresh(bench, "rss") }); // warm sshd
  const edits = chosen.filter((name) => name === "modify" || name === "insert");
  if (edits.length > 0) bytesRows.push(...(await editScenarios(bench, edits)));
  if (chosen.includes("dirrename")) bytesRows.push(await dirRenameScenario(bench));
  if (chosen.includes("compress")) bytesRows.push(await compressScenario(bench));
  if (chosen.includes("large")) limitRows = await largeScenario(bench);
} finally {
  await ssh.stop();
  if (flags.keep) log(`kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}

const report = [
  `## Content results (${new Date().toISOString().slice(0, 10)}, ${availableParallelism()} cores, Node ${process.version}, load ${loadAtStart} at start${scale === 1 ? "" : `, scale ${scale}`})`,
  "",
  `Peer: ${versionOf(["rsync", "--version"])}, over the same ssh to a throwaway sshd on 127.0.0.1.`,
  "",
];
if (bytesRows.length > 0) {
  report.push("Bytes on the wire (both directions) of the run after the change:", "", formatBytesTable(bytesRows), "");
  const splits = bytesRows.filter((row) => row.split !== undefined);
  if (splits.length > 0) {
    report.push("How mirrorlog's written file bytes travelled (`content` of its `--json` summary):", "");
    for (const row of splits) {
      const s = row.split!;
      report.push(
        `- ${row.scenario}: literal ${s.literal}, compressed ${s.compressed}, matched ${s.matched}, reused ${s.reused}`,
      );
    }
    report.push("");
  }
}
if (limitRows.length > 0) report.push(formatLimitTable(limitRows), "");
if (!canMeasureRss()) report.push("Peak RSS not measured: /usr/bin/time (Debian package `time`) is missing.", "");
report.push(`Total benchmark time: ${((performance.now() - started) / 1000).toFixed(1)} s.`);
process.stdout.write(`${report.join("\n")}\n`);
