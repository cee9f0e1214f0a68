// The racer of symlinkRace.test.ts (catalogue B1-B3): for a fixed time it swaps directories under the
// target root for symlinks to directories outside it and back, as fast as it can:
//   rename(dir, dir.bak); symlink(outside target, dir); hold a moment; unlink(dir); rename(dir.bak, dir)
// Targets alternate between the empty canary and a victim directory holding files, so that writes,
// metadata changes and deletions that escape through a swapped directory all leave a visible trace.
// It only touches a directory that lstat shows as a real directory right before (it never goes through
// a symlink it planted, since it restores each swap before starting the next one), and it ignores every
// failure: the process under test renames and removes these directories too.
// Plain JavaScript: spawned as its own process, outside the test's module graph.
// argv: <root> <durationMs> <holdMicros> <target>[,<target>...] <dir>[,<dir>...] (dirs relative to root)
import { lstatSync, renameSync, symlinkSync, unlinkSync } from "node:fs";

const [root, durationText, holdText, targetsText, dirsText] = process.argv.slice(2);
const deadline = Date.now() + Number(durationText);
const holdNs = BigInt(Math.round(Number(holdText) * 1000));
const targets = targetsText.split(",");
const dirs = dirsText.split(",").map((dir) => `${root}/${dir}`);

function isRealDirectory(path) {
  try {
    return lstatSync(path).isDirectory();
  } catch {
    return false;
  }
}

function attempt(action) {
  try {
    action();
    return true;
  } catch {
    return false;
  }
}

let swaps = 0;
let skipped = 0;
process.stdout.write("ready\n");
while (Date.now() < deadline) {
  for (const dir of dirs) {
    const bak = `${dir}.bak`;
    if (!isRealDirectory(dir) || !attempt(() => renameSync(dir, bak))) {
      skipped += 1;
      continue;
    }
    if (attempt(() => symlinkSync(targets[swaps % targets.length], dir))) {
      swaps += 1;
      const until = process.hrtime.bigint() + holdNs;
      while (process.hrtime.bigint() < until) {
        // Busy-wait: keep the symlink in place long enough to overlap with the other process's calls.
      }
      attempt(() => unlinkSync(dir));
    }
    // Fails when the process under test made a new, non-empty directory here meanwhile: keep both.
    attempt(() => renameSync(bak, dir));
  }
}
process.stdout.write(`${JSON.stringify({ swaps, skipped })}\n`);
