// Scenario `startup`: what a small job costs beyond starting node. `mirrorlog --version` and a
// no-change `mirrorlog sync` of a one-file tree (already mirrored, local target) against `node -e 0`,
// interleaved, timed with spawnSync (no GNU time around the timed runs: at ~0.1 s its own fork and
// exec would show); peak RSS from one extra, untimed run of each under GNU time.
import { mkdirSync, writeFileSync } from "node:fs";
import { posix } from "node:path";
import {
  type BenchContext,
  flushDirtyPages,
  freshPath,
  MIRRORLOG_COMMAND,
  type MirrorlogSummary,
} from "./contenders.js";
import { interleave, median, readRss, rssWrapper, timeCommandSync } from "./measurement.js";
import { recordMemory, type ScenarioResult } from "./oneShotScenarios.js";
import { treeDifference } from "./workload.js";

/** Runs `argv` once under GNU time, untimed, and returns its peak RSS (KiB), or undefined without GNU time. */
function peakRssOf(context: BenchContext, argv: readonly string[]): number | undefined {
  const rssFile = `${freshPath(context, "startup-rss")}.txt`;
  const wrapper = rssWrapper(rssFile);
  if (wrapper.length === 0) return undefined;
  timeCommandSync([...wrapper, ...argv], context.env);
  return readRss(rssFile);
}

/** Start-up rows: `mirrorlog --version` and a one-file no-change sync, each against `node -e 0`. */
export async function startupScenario(context: BenchContext, trials: number): Promise<ScenarioResult> {
  const source = freshPath(context, "startup-source");
  const target = freshPath(context, "startup-target");
  mkdirSync(source);
  writeFileSync(posix.join(source, "note.txt"), "one small file\n".repeat(20));
  const commands = {
    node: [process.execPath, "-e", "0"],
    version: [...MIRRORLOG_COMMAND, "--version"],
    sync: [...MIRRORLOG_COMMAND, "sync", "--json", source, target],
  };
  const syncOnce = (expectedWritten: number): number => {
    const run = timeCommandSync(commands.sync, context.env);
    const summary = JSON.parse(run.stdout) as MirrorlogSummary;
    if (summary.problems.length > 0 || summary.filesWritten !== expectedWritten) {
      throw new Error(
        `one-file sync wrote ${summary.filesWritten} files (expected ${expectedWritten}), problems: ${JSON.stringify(summary.problems.slice(0, 5))}`,
      );
    }
    return run.ms;
  };
  // Untimed: the first sync mirrors the file (and creates the state); one warm-up run of each.
  syncOnce(1);
  timeCommandSync(commands.node, context.env);
  timeCommandSync(commands.version, context.env);
  syncOnce(0);
  // An untimed `sync` before each trial: the target's syncfs must not pay for the generated tree's
  // writeback or another trial's.
  const flushed = <T>(run: () => T): T => {
    flushDirtyPages();
    return run();
  };
  const times = await interleave(trials, [
    { name: "node", trial: () => flushed(() => timeCommandSync(commands.node, context.env).ms) },
    { name: "version", trial: () => flushed(() => timeCommandSync(commands.version, context.env).ms) },
    { name: "sync", trial: () => flushed(() => syncOnce(0)) },
  ]);
  const difference = treeDifference(source, target);
  if (difference !== null) throw new Error(`mirrorlog did not mirror the one-file tree: ${difference}`);
  const [node, version, sync] = ["node", "version", "sync"].map((name) => median(times.get(name)!)) as [
    number,
    number,
    number,
  ];
  context.log(
    `  start-up medians: node -e 0 ${node.toFixed(1)} ms, --version ${version.toFixed(1)} ms, one-file sync ${sync.toFixed(1)} ms`,
  );
  recordMemory(context, "node -e 0 (reference), start-up", [peakRssOf(context, commands.node)]);
  recordMemory(context, "mirrorlog --version, start-up", [peakRssOf(context, commands.version)]);
  recordMemory(context, "mirrorlog sync and its local serve child (the larger), one-file no-change", [
    peakRssOf(context, commands.sync),
  ]);
  const note = `median of ${trials} interleaved trials (3 commands, \`sync\` before each), spawnSync wall time`;
  return {
    rows: [
      {
        scenario: "`mirrorlog --version`",
        peer: "node -e 0",
        unit: "ms",
        mirrorlog: version,
        peerValue: node,
        goal: 1.5,
        note,
      },
      {
        scenario: "one-file tree, no change, local",
        peer: "node -e 0",
        unit: "ms",
        mirrorlog: sync,
        peerValue: node,
        goal: 2.5,
        note,
      },
    ],
    notes: [],
  };
}
