// Peak memory of both sides of `mirrorlog sync SRC DST` (local target; an initial mirror, then a no-change
// re-run, whose manifest lists the whole target) for trees of small files
// of different sizes: the goal is that 200,000 files cost at most 1.5x the peak of 20,000, i.e.
// that whole-tree passes stream instead of holding the tree. The source's peak comes from GNU time; the
// target (`serve`, a child of sync) is sampled from /proc/PID/status VmHWM, a high-water mark, so
// sampling every 20 ms misses at most the growth of its last 20 ms.
//
//   npm run build && node --import tsx bench/memory.ts [--files 20000,200000] [--bin PATH] [--keep]
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { mirrorlogCommand } from "./contenders.js";
import { readRss, rssWrapper } from "./measurement.js";
import { generateTree, treeDifference } from "./workload.js";

const argv = process.argv.slice(2);
const option = (name: string): string | undefined => {
  const at = argv.indexOf(name);
  return at < 0 ? undefined : argv[at + 1];
};
const sizes = (option("--files") ?? "20000,200000").split(",").map(Number);
const bin = option("--bin") ?? fileURLToPath(new URL("../bin/mirrorlog", import.meta.url));
const keep = argv.includes("--keep");

/** VmHWM (peak RSS, KiB) of a live process, or undefined once it is gone. */
function peakRssOf(pid: number): number | undefined {
  try {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined; // exited between the listing and the read
  }
}

/** Pids of the descendants of `pid` whose command line contains `text`. */
function descendantsMentioning(pid: number, text: string): number[] {
  const found: number[] = [];
  const stack = [pid];
  while (stack.length > 0) {
    const parent = stack.pop()!;
    let children: string[] = [];
    try {
      children = readdirSync(`/proc/${parent}/task`).flatMap((task) =>
        readFileSync(`/proc/${parent}/task/${task}/children`, "utf8").trim().split(/\s+/).filter(Boolean),
      );
    } catch {
      continue; // gone meanwhile
    }
    for (const child of children.map(Number)) {
      stack.push(child);
      try {
        if (readFileSync(`/proc/${child}/cmdline`, "utf8").includes(text)) found.push(child);
      } catch {
        // gone meanwhile
      }
    }
  }
  return found;
}

interface MemoryRun {
  files: number;
  pass: "initial" | "no-change";
  seconds: number;
  sourceKiB: number | undefined;
  targetKiB: number | undefined;
}

/** Runs `mirrorlog sync SRC DST` once: wall time, the source's peak (GNU time) and the serve child's (VmHWM). */
async function syncOnce(src: string, dst: string, env: NodeJS.ProcessEnv, rssFile: string) {
  const started = performance.now();
  const command = [...rssWrapper(rssFile), ...mirrorlogCommand(bin), "sync", "--json", src, dst];
  const child = spawn(command[0]!, command.slice(1), { env, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  child.stdout.resume();
  let targetKiB: number | undefined;
  const sampler = setInterval(() => {
    for (const pid of descendantsMentioning(child.pid!, "serve")) {
      const peak = peakRssOf(pid);
      if (peak !== undefined) targetKiB = Math.max(targetKiB ?? 0, peak);
    }
  }, 20);
  const status = await new Promise<number | null>((resolve) => child.once("close", resolve));
  clearInterval(sampler);
  const seconds = (performance.now() - started) / 1000;
  if (status !== 0) throw new Error(`sync exited with ${status}:\n${stderr.slice(-3000)}`);
  return { seconds, sourceKiB: readRss(rssFile), targetKiB };
}

/** The initial mirror of a fresh tree of `files` files (10 per directory), then a no-change re-run. */
async function measure(base: string, files: number): Promise<MemoryRun[]> {
  const src = join(base, `src-${files}`);
  const dst = join(base, `dst-${files}`);
  process.stderr.write(`generating ${files} files in ${files / 10} directories...\n`);
  generateTree(src, {
    files,
    directories: files / 10,
    maxDepth: 6,
    minFileBytes: 512,
    maxFileBytes: 8192,
    seed: 20_240_601,
  });
  const env = { ...process.env, XDG_STATE_HOME: join(base, `state-${files}`) };
  const runs: MemoryRun[] = [];
  for (const pass of ["initial", "no-change"] as const) {
    process.stderr.write(`mirrorlog sync, ${pass} (${files} files)...\n`);
    runs.push({ files, pass, ...(await syncOnce(src, dst, env, join(base, `rss-${files}-${pass}`))) });
  }
  const difference = treeDifference(src, dst);
  if (difference !== null) throw new Error(`the target is no mirror of the source: ${difference}`);
  if (!keep) {
    rmSync(src, { recursive: true, force: true });
    rmSync(dst, { recursive: true, force: true });
  }
  return runs;
}

const mib = (kib: number | undefined): string => (kib === undefined ? "—" : `${(kib / 1024).toFixed(1)} MiB`);

const base = mkdtempSync(join(tmpdir(), "mirrorlog-bench-memory-"));
try {
  const runs: MemoryRun[] = [];
  for (const files of sizes) runs.push(...(await measure(base, files)));
  console.log("| files | pass | sync time | source peak RSS | target peak RSS | source ratio | target ratio |");
  console.log("|---:|---|---:|---:|---:|---:|---:|");
  for (const run of runs) {
    // Each pass is compared with the same pass of the first (smallest) tree.
    const first = runs.find((other) => other.pass === run.pass)!;
    const ratio = (a: number | undefined, b: number | undefined) =>
      a === undefined || b === undefined ? "—" : `${(a / b).toFixed(2)}×`;
    console.log(
      `| ${run.files} | ${run.pass} | ${run.seconds.toFixed(1)} s | ${mib(run.sourceKiB)} | ${mib(run.targetKiB)} | ${ratio(run.sourceKiB, first.sourceKiB)} | ${ratio(run.targetKiB, first.targetKiB)} |`,
    );
  }
} finally {
  if (keep) process.stderr.write(`kept ${base}\n`);
  else rmSync(base, { recursive: true, force: true });
}
