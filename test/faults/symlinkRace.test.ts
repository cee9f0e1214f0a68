// B1-B3 (negative-oracle race loop, RELIABILITY rule 7): a racer process swaps directories under the
// target root for symlinks to directories outside it, thousands of times, while this process drives a
// NodeFileSystem confined to the root through every kind of write the target makes: staged writes and
// commits, atomic writes, mkdir, symlinks, metadata (mode, mtime, owner), renames, removals of files and
// of whole trees, hard-link staging, and the reads of a source. Operations may fail (the racer moves
// their directories away), but nothing outside the root may ever change: the empty canary keeps no
// entry, its mode and times, and the victim directory (files a deletion could take) stays as it was.
// The target's `mirrorlog serve` uses this same class, so this tests the target's own syscalls.
//
// MIRRORLOG_RACE_SEED replays an operation sequence (the racer's timing is not replayable).
// MIRRORLOG_RACE_MODULE runs the same loop against another build of the class (for instance the
// unconfined pre-handle version) to show that the test catches escapes there.
import { type ChildProcess, spawn } from "node:child_process";
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import type { MirrorFileSystem, StagedFile } from "../../src/fs/fileSystem.js";
import { FileSystemError } from "../../src/fs/fileSystem.js";
import { seededRandom } from "../e2e/liveScenario.js";
import { pollUntil } from "../support/cliRunner.js";

/** How long the racer swaps; the operation loop runs as long. */
const RACE_MS = 6000;
/** How long each symlink stays in place, in microseconds (long enough to overlap with a syscall or two). */
const HOLD_MICROS = 40;
/** Directories the racer swaps, relative to the root: nested ones, and one inside a tree that gets removed. */
const RACED_DIRS = ["a", "a/b", "d1", "d2", "d3", "d4", "d4/tree", "d4/tree/x"];
/** Where operations land: every raced directory, and the root itself. */
const WORK_DIRS = ["", "a", "a/b", "d1", "d2", "d3", "d4"];
/** Handles are released every this many operations, as the target does after each request. */
const OPERATIONS_PER_REQUEST = 20;
/** Codes an operation may fail with while the racer moves its directories around. */
const EXPECTED_CODES = new Set(["ENOENT", "ELOOP", "ENOTDIR", "EEXIST", "ENOTEMPTY", "EISDIR", "EINVAL"]);

const racerScript = fileURLToPath(new URL("./symlinkRacer.mjs", import.meta.url));
const bases: string[] = [];
afterAll(() => {
  for (const base of bases) rmSync(base, { recursive: true, force: true });
});

/** Relative path → what it is (and, for a file, its bytes), below `dir`, walking with lstat only. */
function snapshot(dir: string): Record<string, string> {
  const result: Record<string, string> = {};
  const walk = (relative: string): void => {
    for (const name of readdirSync(`${dir}/${relative}`)) {
      const path = relative === "" ? name : `${relative}/${name}`;
      const stat = lstatSync(`${dir}/${path}`, { bigint: true });
      const identity = `mode ${stat.mode.toString(8)} uid ${stat.uid} gid ${stat.gid} mtime ${stat.mtimeNs}`;
      if (stat.isDirectory()) {
        result[path] = `dir ${identity}`;
        walk(path);
      } else if (stat.isFile()) {
        result[path] = `file ${identity} ${readFileSync(`${dir}/${path}`, "latin1")}`;
      } else {
        result[path] = `other ${identity}`;
      }
    }
  };
  walk("");
  return result;
}

/** What must not change about the canary directory itself. */
function canaryIdentity(canary: string): string {
  const stat = lstatSync(canary, { bigint: true });
  return `mode ${stat.mode.toString(8)} uid ${stat.uid} gid ${stat.gid} mtime ${stat.mtimeNs} ctime ${stat.ctimeNs}`;
}

/** Resolves with the racer's report (`{ swaps, skipped }`) once it exits. */
function racerResult(racer: ChildProcess, output: () => string): Promise<{ swaps: number; skipped: number }> {
  return new Promise((resolve, reject) => {
    racer.on("error", reject);
    racer.on("exit", (code) => {
      const last = output().trim().split("\n").at(-1) ?? "";
      if (code !== 0 || !last.startsWith("{")) reject(new Error(`racer exited with ${code}: ${output()}`));
      else resolve(JSON.parse(last) as { swaps: number; skipped: number });
    });
  });
}

async function loadFileSystemClass(): Promise<new (options: object) => MirrorFileSystem & { close(): void }> {
  const module = process.env.MIRRORLOG_RACE_MODULE ?? "../../src/fs/nodeFileSystem.js";
  return (await import(module)).NodeFileSystem;
}

describe("symlink swap race (B1-B3)", () => {
  it("thousands of directory-for-symlink swaps during writes, metadata changes and deletes: nothing outside the root changes", async () => {
    const seed = Number(process.env.MIRRORLOG_RACE_SEED ?? Math.floor(Math.random() * 2 ** 32));
    const random = seededRandom(seed);
    const base = mkdtempSync(`${tmpdir()}/mirrorlog-race-`);
    bases.push(base);
    const root = `${base}/root`;
    const outside = `${base}/outside`;
    const canary = `${outside}/canary`;
    const victim = `${outside}/victim`;
    mkdirSync(canary, { recursive: true, mode: 0o755 });
    mkdirSync(`${victim}/keep`, { recursive: true });
    writeFileSync(`${victim}/precious.txt`, "precious");
    writeFileSync(`${victim}/keep/deeper.txt`, "deeper");
    for (const dir of [...RACED_DIRS, "d4/tree/x/y"]) mkdirSync(`${root}/${dir}`, { recursive: true });
    const canaryBefore = canaryIdentity(canary);
    const outsideBefore = snapshot(outside);

    const NodeFileSystem = await loadFileSystemClass();
    const fs = new NodeFileSystem({ root, durability: "none", onProblem: () => {} });
    const at = (dir: string, name: string) => [root, dir, name].filter((part) => part !== "").join("/");
    const bytes = new TextEncoder().encode("racing bytes");
    const failures = new Map<string, number>();
    const unexpected: string[] = [];
    let succeeded = 0;
    let operations = 0;
    const run = (what: string, action: () => void): void => {
      operations += 1;
      try {
        action();
        succeeded += 1;
      } catch (error) {
        const code = error instanceof FileSystemError ? error.code : undefined;
        if (code !== undefined && EXPECTED_CODES.has(code)) failures.set(code, (failures.get(code) ?? 0) + 1);
        else if (unexpected.length < 10) unexpected.push(`${what}: ${String(error)}`);
      }
      if (operations % OPERATIONS_PER_REQUEST === 0) fs.releaseHandles();
    };
    const mtime = () => ({ sec: random.int(0, 2_000_000_000), nsec: random.int(0, 999_999_999) });
    const target = () => random.pick([canary, victim, `${victim}/keep`]);
    // Our own ids: chown to them is allowed as any user, and still changes ctime if it escaped.
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;

    let output = "";
    const racer = spawn(
      process.execPath,
      [racerScript, root, String(RACE_MS), String(HOLD_MICROS), [canary, victim].join(","), RACED_DIRS.join(",")],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    racer.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    const finished = racerResult(racer, () => output);
    await pollUntil(() => output.includes("ready"), { deadlineMs: 10_000, intervalMs: 5, describe: () => output });

    const deadline = Date.now() + RACE_MS;
    while (Date.now() < deadline) {
      const dir = random.pick(WORK_DIRS);
      // Mostly files; sometimes one of the hostile symlinks (to the canary or the victim) made below.
      const name = random.int(0, 4) === 0 ? `link${random.int(0, 3)}` : `f${random.int(0, 9)}`;
      switch (random.int(0, 13)) {
        case 0:
        case 1:
          run("stage and commit", () => {
            const staged: StagedFile[] = [];
            for (let index = 0; index < 10; index += 1) {
              const where = random.pick(WORK_DIRS);
              try {
                staged.push(fs.stageFile(at(where, `s${index}`), bytes, { mode: 0o640, mtime: mtime() }));
              } catch (error) {
                if (!(error instanceof FileSystemError)) throw error;
              }
            }
            const failed = fs.commitStaged(staged) ?? [];
            if (failed.length > 0) throw failed[0]!.error;
          });
          break;
        case 2:
          run("writeFile", () => fs.writeFile(at(dir, name), bytes));
          break;
        case 3:
          run("writeFileWith", () => fs.writeFileWith(at(dir, name), bytes, { mode: 0o4755, mtime: mtime() }));
          break;
        case 4:
          run("makeDir", () => fs.makeDir(at(dir, `sub${random.int(0, 3)}`)));
          break;
        case 5:
          run("makeDirs", () => fs.makeDirs(at(dir, `sub${random.int(0, 3)}/m/n`)));
          break;
        case 6:
          run("makeSymlink", () => fs.makeSymlink(at(dir, `link${random.int(0, 3)}`), target()));
          break;
        case 7: {
          // The raced directories themselves and entries in them: a swapped one must never lend its mode or times.
          const path = random.int(0, 1) === 0 ? at("", random.pick(RACED_DIRS)) : at(dir, name);
          run("setMetadata", () => fs.setMetadata(path, { mode: 0o700, mtime: mtime(), uid, gid }));
          break;
        }
        case 8:
          run("rename", () => fs.rename(at(dir, name), at(random.pick(WORK_DIRS), `r${random.int(0, 9)}`)));
          break;
        case 9:
          run("removeFile", () => fs.removeFile(at(dir, random.pick([name, `r${random.int(0, 9)}`, "link0"]))));
          break;
        case 10:
          run("removeDir", () => fs.removeDir(at(dir, `sub${random.int(0, 3)}`)));
          break;
        case 11:
          // A tree the racer swaps parts of while it is removed (B3), then built again.
          run("removeDir tree", () => fs.removeDir(at("d4", "tree")));
          run("rebuild tree", () => {
            fs.makeDirs(at("d4", "tree/x/y"));
            for (const part of ["tree", "tree/x", "tree/x/y"]) fs.writeFile(at("d4", `${part}/f`), bytes);
          });
          break;
        case 12:
          run("stageLink", () => {
            const failed = fs.commitStaged([fs.stageLink(at(dir, name), at(random.pick(WORK_DIRS), `h${name}`))]);
            if (failed.length > 0) throw failed[0]!.error;
          });
          break;
        default:
          run("read", () => {
            fs.listDirStats(at("", dir));
            fs.readFile(at(dir, name));
          });
      }
    }
    const { swaps } = await finished;
    fs.close();

    const escaped = readdirSync(canary);
    const outsideAfter = snapshot(outside);
    const changedOutside = Object.keys({ ...outsideBefore, ...outsideAfter }).filter(
      (path) => outsideBefore[path] !== outsideAfter[path],
    );
    console.log(
      `symlink race (seed ${seed}): ${swaps} swaps, ${operations} operations (${succeeded} succeeded, failures ` +
        `${JSON.stringify(Object.fromEntries(failures))}); ${escaped.length} entries in the canary, ` +
        `${changedOutside.length} changed paths outside the root ${JSON.stringify(changedOutside.slice(0, 6))}`,
    );
    expect(unexpected, `seed ${seed}`).toEqual([]);
    expect(swaps).toBeGreaterThanOrEqual(1000);
    // Each operation costs a real disk's rename and allocation; a loaded 2-core machine still does hundreds.
    expect(succeeded, "the loop must get real work done between swaps").toBeGreaterThanOrEqual(200);
    expect(escaped, `seed ${seed}: entries that escaped into the canary`).toEqual([]);
    expect(canaryIdentity(canary), `seed ${seed}: the canary's mode, owner or times changed`).toBe(canaryBefore);
    expect(changedOutside, `seed ${seed}: paths changed outside the root`).toEqual([]);
    expect(readdirSync(base).sort(), "nothing appears beside the root either").toEqual(["outside", "root"]);
  }, 30_000);
});
