// `npm run bench -- profile`: runs mirrorlog under V8's sampling profiler on both sides of an ssh
// mirror (initial, then no-change) and prints each side's hottest functions by self time, which is
// where optimisation should start. The .cpuprofile files stay in the printed directory when
// --keep is given (open them in Chrome DevTools or speedscope).
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { posix } from "node:path";
import { type BenchContext, freshPath, MIRRORLOG_BIN, mirrorlogCommand, sshSyncArgv } from "./contenders.js";
import type { OneShotSource } from "./oneShotScenarios.js";

/** The parts of V8's .cpuprofile format the summary reads. */
interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

/** One function's share of a profile. */
export interface HotSpot {
  /** Function name and where it is defined (file:line, relative to the checkout when inside it). */
  name: string;
  selfMs: number;
  /** Percent of all sampled time, including idle. */
  selfPercent: number;
}

/** Self time per function (summed over all call sites), largest first. */
export function hotSpots(profile: CpuProfile, checkoutRoot: string): HotSpot[] {
  const nameOfNode = new Map<number, string>();
  for (const node of profile.nodes) {
    const { functionName, url, lineNumber } = node.callFrame;
    const file = url.replace(/^file:\/\//, "").replace(`${checkoutRoot}/`, "");
    nameOfNode.set(
      node.id,
      url === "" ? functionName || "(anonymous)" : `${functionName || "(anonymous)"} ${file}:${lineNumber + 1}`,
    );
  }
  const selfMicros = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((nodeId, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    const name = nameOfNode.get(nodeId) ?? "(unknown)";
    selfMicros.set(name, (selfMicros.get(name) ?? 0) + delta);
    total += delta;
  });
  return [...selfMicros.entries()]
    .map(([name, micros]) => ({ name, selfMs: micros / 1000, selfPercent: (100 * micros) / total }))
    .sort((a, b) => b.selfMs - a.selfMs);
}

/** The top `count` hot spots of every .cpuprofile in `directory`, as Markdown lines. */
export function describeProfiles(directory: string, checkoutRoot: string, count: number): string[] {
  const lines: string[] = [];
  for (const file of readdirSync(directory).filter((name) => name.endsWith(".cpuprofile"))) {
    const profile = JSON.parse(readFileSync(posix.join(directory, file), "utf8")) as CpuProfile;
    const spots = hotSpots(profile, checkoutRoot);
    const totalMs = spots.reduce((sum, spot) => sum + spot.selfMs, 0);
    lines.push(`${file} (${totalMs.toFixed(0)} ms sampled):`);
    for (const spot of spots.slice(0, count)) {
      lines.push(
        `  ${spot.selfPercent.toFixed(1).padStart(5)} %  ${spot.selfMs.toFixed(0).padStart(6)} ms  ${spot.name}`,
      );
    }
  }
  return lines;
}

/** Runs one profiled `mirrorlog sync SRC localhost:DST`; returns the source and target profile directories. */
function profiledSync(context: BenchContext, source: string, target: string, label: string): string[] {
  const directories = ["source", "target"].map((side) => posix.join(context.dir, "profiles", `${label}-${side}`));
  for (const directory of directories) mkdirSync(directory, { recursive: true });
  const [local, remote] = directories.map((directory) =>
    mirrorlogCommand(MIRRORLOG_BIN, ["--cpu-prof", `--cpu-prof-dir=${directory}`]),
  );
  const [node, ...args] = sshSyncArgv(local!, remote!, { source, target, stateHome: context.remoteStateHome });
  const started = performance.now();
  const result = spawnSync(node!, args, { env: context.env, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`profiled sync failed (${result.status}):\n${result.stderr.slice(-4000)}`);
  context.log(`  profile ${label}: ${((performance.now() - started) / 1000).toFixed(3)} s (with the profiler on)`);
  return directories;
}

/** The profile scenario: initial and no-change mirror over ssh, both sides profiled. */
export function profileScenario(context: BenchContext, source: OneShotSource, count: number): string[] {
  const checkoutRoot = posix.dirname(posix.dirname(MIRRORLOG_BIN));
  const target = freshPath(context, "profile-target");
  const lines: string[] = [];
  for (const label of ["initial", "no-change"]) {
    const directories = profiledSync(context, source.tree.root, target, label);
    for (const directory of directories) {
      lines.push(
        `### ${label}, ${posix.basename(directory).endsWith("source") ? "source side (sync)" : "target side (serve)"}`,
      );
      const described = describeProfiles(directory, checkoutRoot, count);
      lines.push(...(described.length > 0 ? described : ["(no profile written: the process did not exit normally)"]));
      lines.push("");
    }
  }
  lines.push(`profiles: ${posix.join(context.dir, "profiles")}`);
  return lines;
}
