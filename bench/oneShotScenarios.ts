// Scenarios 1–3: one-shot mirrors of the 20,000-file tree, mirrorlog against rsync, interleaved.
// Every timed trial writes into a target of its own (fresh name, never delete-then-recreate), and
// every target is checked against the source after the timed part.
import {
  type BenchContext,
  COPY_AND_FLUSH,
  flushDirtyPages,
  freshPath,
  type MirrorTarget,
  runCopyAndFlush,
  runCp,
  runMirrorlogSync,
  runRsync,
  runSshNoop,
  runTarOverSsh,
  runWalkFloor,
  TAR_OVER_SSH,
  WALK_FLOOR_NAME,
} from "./contenders.js";
import { type FloorRow, interleave, largest, median, type ResultRow } from "./measurement.js";
import {
  filesDifference,
  type GeneratedTree,
  rewriteFiles,
  SeededRandom,
  type TreeShape,
  treeDifference,
} from "./workload.js";

/** What a scenario adds to the report. */
export interface ScenarioResult {
  rows: ResultRow[];
  /** Context lines printed under the table (baselines, what was measured how). */
  notes: string[];
  /** Floors of some rows (see FloorRow), printed as a table of their own. */
  floors?: FloorRow[];
}

/** The source tree every one-shot scenario mirrors. */
export interface OneShotSource {
  tree: GeneratedTree;
  shape: TreeShape;
}

/** Stops the benchmark when a target is not an exact copy of the source. */
function assertMirrored(tool: string, source: string, target: string): void {
  const difference = treeDifference(source, target);
  if (difference !== null) throw new Error(`${tool} did not mirror ${source} to ${target}: ${difference}`);
}

/** The milliseconds of the named contender's trials. */
function timesOf(times: Map<string, number[]>, name: string): number[] {
  return times.get(name)!;
}

/**
 * A trial of the no-change floor (runWalkFloor) against `target`, an up-to-date copy of the source: fails
 * unless both walks listed every entry of the source, so a floor that walked nothing is no result.
 */
function walkFloorTrial(context: BenchContext, source: OneShotSource, target: MirrorTarget): () => Promise<number> {
  const entries = source.tree.files.length + source.tree.directories.length;
  return async () => {
    const run = await runWalkFloor(context, source.tree.root, target);
    const counts = run.stdout
      .trim()
      .split("\n")
      .map((line) => Number(line.split(" ").at(-1)));
    if (counts.length !== 2 || counts.some((count) => count !== entries)) {
      throw new Error(`the walk floor listed ${JSON.stringify(run.stdout)}, expected ${entries} entries in each tree`);
    }
    context.log(`  walk floor ${target.overSsh ? "over ssh" : "local"} ${(run.ms / 1000).toFixed(3)} s`);
    return run.ms;
  };
}

/**
 * Scenario 1: initial mirror into a fresh, non-existent target per trial: over ssh to localhost
 * (against rsync), then locally (against rsync, `rsync --fsync` and `cp -a`, see initialLocalRows).
 */
export async function initialScenario(
  context: BenchContext,
  source: OneShotSource,
  trials: number,
): Promise<ScenarioResult> {
  const root = source.tree.root;
  const targets: { tool: string; path: string }[] = [];
  const rssParent: (number | undefined)[] = [];
  const rssServe: (number | undefined)[] = [];
  const rssRsync: (number | undefined)[] = [];
  const times = await interleave(trials, [
    {
      name: "mirrorlog",
      trial: async () => {
        const target: MirrorTarget = { path: freshPath(context, "initial-mirrorlog"), overSsh: true };
        const run = await runMirrorlogSync(context, root, target);
        if (run.summary.filesWritten !== source.tree.files.length) {
          throw new Error(`mirrorlog wrote ${run.summary.filesWritten} files, expected ${source.tree.files.length}`);
        }
        targets.push({ tool: "mirrorlog", path: target.path });
        rssParent.push(run.maxRssKiB);
        rssServe.push(run.serveRssKiB);
        context.log(`  initial mirrorlog ${(run.ms / 1000).toFixed(3)} s`);
        return run.ms;
      },
    },
    {
      name: "rsync",
      trial: async () => {
        const target: MirrorTarget = { path: freshPath(context, "initial-rsync"), overSsh: true };
        const run = await runRsync(context, root, target);
        targets.push({ tool: "rsync", path: target.path });
        rssRsync.push(run.maxRssKiB);
        context.log(`  initial rsync     ${(run.ms / 1000).toFixed(3)} s`);
        return run.ms;
      },
    },
    {
      name: "floor",
      trial: async () => {
        const path = freshPath(context, "initial-tar");
        const run = await runTarOverSsh(context, root, path);
        targets.push({ tool: "tar over ssh", path });
        context.log(`  initial floor     ${(run.ms / 1000).toFixed(3)} s`);
        return run.ms;
      },
    },
  ]);
  for (const target of targets) assertMirrored(target.tool, root, target.path);
  recordMemory(context, "mirrorlog sync (source side), initial over ssh", rssParent);
  recordMemory(context, "mirrorlog serve (target side), initial over ssh", rssServe);
  recordMemory(context, "rsync (sender, local side), initial over ssh", rssRsync);
  const overSsh: ResultRow = {
    scenario: `initial mirror over ssh (${source.tree.files.length} files)`,
    peer: "rsync",
    unit: "s",
    mirrorlog: median(timesOf(times, "mirrorlog")),
    peerValue: median(timesOf(times, "rsync")),
    goal: 0.8,
    note: `median of ${trials} interleaved trials (with the floor's)`,
  };
  const local = await initialLocalRows(context, source, trials);
  return {
    rows: [overSsh, ...local.rows],
    notes: [],
    floors: [
      {
        row: overSsh,
        floor: TAR_OVER_SSH,
        floorValue: median(timesOf(times, "floor")),
      },
      local.floor,
    ],
  };
}

/**
 * The local initial mirror: `mirrorlog sync SRC DST_i` against `rsync -a --delete`, the durable
 * peer `rsync -a --delete --fsync`, the floor `cp -a` and the durable floor `cp -a` + `sync -f` (the
 * FloorRow of the rsync row), five contenders interleaved, each into a
 * fresh target. An untimed `sync` precedes every trial (flushDirtyPages), so none pays for the
 * writeback of the trial before it. One row per peer, all against the same mirrorlog trials.
 */
async function initialLocalRows(
  context: BenchContext,
  source: OneShotSource,
  trials: number,
): Promise<{ rows: ResultRow[]; floor: FloorRow }> {
  const root = source.tree.root;
  const targets: { tool: string; path: string }[] = [];
  const rssMirrorlog: (number | undefined)[] = [];
  const rssRsync: (number | undefined)[] = [];
  /** One contender: flush, then the timed run into a fresh target. */
  const contender = (
    name: string,
    run: (path: string) => Promise<{ ms: number; maxRssKiB: number | undefined }>,
    rss?: (number | undefined)[],
  ) => ({
    name,
    trial: async () => {
      const path = freshPath(context, `initial-local-${name.replaceAll(/[^a-z]+/g, "-")}`);
      flushDirtyPages();
      const result = await run(path);
      targets.push({ tool: name, path });
      rss?.push(result.maxRssKiB);
      context.log(`  initial local ${name.padEnd(13)} ${(result.ms / 1000).toFixed(3)} s`);
      return result.ms;
    },
  });
  const times = await interleave(trials, [
    contender(
      "mirrorlog",
      async (path) => {
        const run = await runMirrorlogSync(context, root, { path, overSsh: false });
        if (run.summary.filesWritten !== source.tree.files.length) {
          throw new Error(`mirrorlog wrote ${run.summary.filesWritten} files, expected ${source.tree.files.length}`);
        }
        return run;
      },
      rssMirrorlog,
    ),
    contender("rsync", (path) => runRsync(context, root, { path, overSsh: false }), rssRsync),
    contender("rsync --fsync", (path) => runRsync(context, root, { path, overSsh: false }, { fsync: true })),
    contender("cp -a", (path) => runCp(context, root, path)),
    contender("cp -a, sync -f", (path) => runCopyAndFlush(context, root, path)),
  ]);
  for (const target of targets) assertMirrored(target.tool, root, target.path);
  // GNU time's %M of a process is the largest of it and its reaped children: sync or its serve child.
  recordMemory(context, "mirrorlog sync and its local serve child (the larger), initial local", rssMirrorlog);
  recordMemory(context, "rsync (largest of its processes), initial local", rssRsync);
  const mirrorlog = median(timesOf(times, "mirrorlog"));
  const note = `median of ${trials} interleaved trials (5 tools), \`sync\` before each`;
  const row = (peer: string, goal?: number): ResultRow => ({
    scenario: `initial mirror, local (${source.tree.files.length} files)`,
    peer,
    unit: "s",
    mirrorlog,
    peerValue: median(timesOf(times, peer)),
    ...(goal === undefined ? {} : { goal }),
    note,
  });
  const againstRsync = row("rsync", 0.8);
  return {
    rows: [againstRsync, row("rsync --fsync"), row("cp -a")],
    floor: {
      row: againstRsync,
      floor: COPY_AND_FLUSH,
      floorValue: median(timesOf(times, "cp -a, sync -f")),
    },
  };
}

/** Scenario 2: re-run with nothing changed, locally and over ssh, against targets synced beforehand. */
export async function noChangeScenario(
  context: BenchContext,
  source: OneShotSource,
  trials: number,
): Promise<ScenarioResult> {
  const root = source.tree.root;
  const rows: ResultRow[] = [];
  const notes: string[] = [];
  const floors: FloorRow[] = [];
  for (const overSsh of [false, true]) {
    const where = overSsh ? "over ssh" : "local";
    const mirrorlogTarget: MirrorTarget = { path: freshPath(context, `nochange-mirrorlog-${where}`), overSsh };
    const rsyncTarget: MirrorTarget = { path: freshPath(context, `nochange-rsync-${where}`), overSsh };
    context.log(`  no-change ${where}: untimed first syncs`);
    await runMirrorlogSync(context, root, mirrorlogTarget);
    await runRsync(context, root, rsyncTarget);
    const rssParent: (number | undefined)[] = [];
    const times = await interleave(trials, [
      {
        name: "mirrorlog",
        trial: async () => {
          const run = await runMirrorlogSync(context, root, mirrorlogTarget);
          if (run.summary.filesWritten !== 0) throw new Error(`no-change run wrote ${run.summary.filesWritten} files`);
          rssParent.push(run.maxRssKiB);
          context.log(`  no-change ${where} mirrorlog ${(run.ms / 1000).toFixed(3)} s`);
          return run.ms;
        },
      },
      {
        name: "rsync",
        trial: async () => {
          const run = await runRsync(context, root, rsyncTarget);
          context.log(`  no-change ${where} rsync     ${(run.ms / 1000).toFixed(3)} s`);
          return run.ms;
        },
      },
      { name: "floor", trial: walkFloorTrial(context, source, rsyncTarget) },
    ]);
    assertMirrored("mirrorlog", root, mirrorlogTarget.path);
    assertMirrored("rsync", root, rsyncTarget.path);
    recordMemory(context, `mirrorlog sync (source side), no-change ${where}`, rssParent);
    const row: ResultRow = {
      scenario: `no-change re-run, ${where}`,
      peer: "rsync",
      unit: "s",
      mirrorlog: median(timesOf(times, "mirrorlog")),
      peerValue: median(timesOf(times, "rsync")),
      goal: overSsh ? 0.8 : 1.0,
      note: `median of ${trials} interleaved trials (with the floor's)`,
    };
    rows.push(row);
    floors.push({ row, floor: WALK_FLOOR_NAME, floorValue: median(timesOf(times, "floor")) });
  }
  const sshTimes = await interleave(trials, [{ name: "ssh", trial: async () => (await runSshNoop(context)).ms }]);
  notes.push(
    `\`ssh localhost true\` (the connection both tools pay over ssh): median ${median(timesOf(sshTimes, "ssh")).toFixed(0)} ms of ${trials}.`,
  );
  return { rows, notes, floors };
}

/**
 * Scenario 3: 100 files rewritten with new random bytes, then each tool re-syncs its own
 * up-to-date target (over ssh and locally). Each trial rewrites a different 100 files.
 */
export async function modifiedScenario(
  context: BenchContext,
  source: OneShotSource,
  trials: number,
): Promise<ScenarioResult> {
  const root = source.tree.root;
  const random = new SeededRandom(source.shape.seed + 100);
  const order = random.shuffled(source.tree.files);
  const batchSize = 100;
  const targets = {
    mirrorlogSsh: { path: freshPath(context, "modified-mirrorlog-ssh"), overSsh: true },
    rsyncSsh: { path: freshPath(context, "modified-rsync-ssh"), overSsh: true },
    mirrorlogLocal: { path: freshPath(context, "modified-mirrorlog-local"), overSsh: false },
    rsyncLocal: { path: freshPath(context, "modified-rsync-local"), overSsh: false },
  } satisfies Record<string, MirrorTarget>;
  context.log("  modified: untimed first syncs");
  await runMirrorlogSync(context, root, targets.mirrorlogSsh);
  await runRsync(context, root, targets.rsyncSsh);
  await runMirrorlogSync(context, root, targets.mirrorlogLocal);
  await runRsync(context, root, targets.rsyncLocal);

  const batch = (index: number): string[] => order.slice(index * batchSize, (index + 1) * batchSize);
  const mirrorlogTrial = (target: MirrorTarget) => async (index: number) => {
    const run = await runMirrorlogSync(context, root, target);
    if (run.summary.filesWritten !== batchSize) {
      throw new Error(`mirrorlog wrote ${run.summary.filesWritten} files after ${batchSize} were modified`);
    }
    const difference = filesDifference(root, target.path, batch(index));
    if (difference !== null) throw new Error(`mirrorlog left a modified file behind: ${difference}`);
    context.log(`  modified ${target.overSsh ? "over ssh" : "local"} mirrorlog ${(run.ms / 1000).toFixed(3)} s`);
    return run.ms;
  };
  const rsyncTrial = (target: MirrorTarget) => async (index: number) => {
    const run = await runRsync(context, root, target);
    const difference = filesDifference(root, target.path, batch(index));
    if (difference !== null) throw new Error(`rsync left a modified file behind: ${difference}`);
    context.log(`  modified ${target.overSsh ? "over ssh" : "local"} rsync     ${(run.ms / 1000).toFixed(3)} s`);
    return run.ms;
  };
  const times = await interleave(trials, [
    {
      name: "modify",
      trial: (index) => {
        // Not timed for either tool: the source changes before the four runs of this trial.
        rewriteFiles(root, batch(index), random, source.shape);
        return 0;
      },
    },
    { name: "mirrorlog ssh", trial: mirrorlogTrial(targets.mirrorlogSsh) },
    { name: "rsync ssh", trial: rsyncTrial(targets.rsyncSsh) },
    { name: "mirrorlog local", trial: mirrorlogTrial(targets.mirrorlogLocal) },
    { name: "rsync local", trial: rsyncTrial(targets.rsyncLocal) },
    // A modified run walks both trees as a no-change run does: the same floor, against these rsync trials.
    { name: "floor ssh", trial: walkFloorTrial(context, source, targets.rsyncSsh) },
    { name: "floor local", trial: walkFloorTrial(context, source, targets.rsyncLocal) },
  ]);
  assertMirrored("mirrorlog", root, targets.mirrorlogSsh.path);
  assertMirrored("rsync", root, targets.rsyncSsh.path);
  assertMirrored("mirrorlog", root, targets.mirrorlogLocal.path);
  assertMirrored("rsync", root, targets.rsyncLocal.path);
  const note = `median of ${trials} interleaved trials, a different ${batchSize} files each`;
  const row = (where: "ssh" | "local", goal: number): ResultRow => ({
    scenario: `${batchSize} files modified, ${where === "ssh" ? "over ssh" : "local"}`,
    peer: "rsync",
    unit: "s",
    mirrorlog: median(timesOf(times, `mirrorlog ${where}`)),
    peerValue: median(timesOf(times, `rsync ${where}`)),
    goal,
    note,
  });
  const rows = [row("ssh", 0.7), row("local", 1.0)];
  return {
    rows,
    notes: [],
    floors: rows.map((modified, index) => ({
      row: modified,
      floor: WALK_FLOOR_NAME,
      floorValue: median(timesOf(times, index === 0 ? "floor ssh" : "floor local")),
    })),
  };
}

/** Appends the largest of `observations` to the run's peak-RSS list (nothing when none was measured). */
export function recordMemory(context: BenchContext, what: string, observations: readonly (number | undefined)[]): void {
  const peakKiB = largest(observations);
  if (peakKiB !== undefined) context.memory.push({ what, peakKiB });
}
