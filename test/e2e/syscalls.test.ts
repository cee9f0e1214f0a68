// The system calls a real mirror makes per file, counted by strace on the real binary (source and its
// local serve child): what the code cannot see itself, an fchown or fchmod that changes nothing (each
// still dirties the inode), is counted where the kernel sees it.
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { makeWorkspace, mirrorlogArgs } from "../support/cliRunner.js";
import { compareTrees, formatDifferences } from "../support/treeOracle.js";

const created: string[] = [];
afterAll(() => {
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

/**
 * The calls of `mirrorlog sync SRC DST` (every process, the given calls only) that name DST or an entry below
 * it (through a descriptor, shown as its path by strace -y, or by path), one per line; the pid and the
 * descriptor's number left out.
 */
function traceMirror(
  src: string,
  dst: string,
  env: NodeJS.ProcessEnv,
  calls: string,
  traceFile: string,
  keep: (line: string) => boolean = (line) => line.includes(`${dst}/`) || line.includes(`${dst}>`),
): string[] {
  // Under the usual umask, whatever the test runner's: a new file's mode is then what it was created with.
  const command = ["strace", "-f", "-qq", "-y", "-e", `trace=${calls}`, "-o", traceFile];
  execFileSync(
    "sh",
    ["-c", 'umask 022 && exec "$@"', "sh", ...command, process.execPath, ...mirrorlogArgs(["sync", src, dst])],
    {
      env,
      timeout: 60_000,
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  return readFileSync(traceFile, "utf8")
    .split("\n")
    .filter(keep)
    .map((line) =>
      line
        .replace(/^\d+\s+/, "")
        .replace(/\(\d+</, "(<")
        .replace(/\s+= /, " = "),
    );
}

it("a new file's temp is created with its mode and owner: no fchown or fchmod changes what it has already", () => {
  const { base, src, dst, env } = makeWorkspace("syscalls", created);
  const plain = 20;
  for (let i = 0; i < plain; i++) writeFileSync(join(src, `plain-${i}`), `plain file ${i}\n`);
  for (const [name, mode] of [
    ["group-only", 0o640], // the group's bits wait for the owner: created 0600, then fchmod
    ["setuid", 0o4755], // special bits come with fchmod
    ["executable", 0o755],
  ] as const) {
    writeFileSync(join(src, name), `${name}\n`);
    chmodSync(join(src, name), mode);
  }
  for (let i = 0; i < plain; i++) chmodSync(join(src, `plain-${i}`), 0o644);

  const trace = traceMirror(src, dst, env, "fchown,fchmod", join(base, "trace"));

  const differences = compareTrees(src, dst);
  expect(differences, formatDifferences(differences)).toEqual([]);
  const fchmods = trace.filter((line) => line.startsWith("fchmod(")).map((line) => line.replace(/<[^>]*>/, "TEMP"));
  // Exactly the two files whose mode a temp cannot be created with; the owner is this user's already.
  expect(fchmods.sort(), trace.join("\n")).toEqual(["fchmod(TEMP, 04755) = 0", "fchmod(TEMP, 0640) = 0"]);
  expect(
    trace.filter((line) => line.startsWith("fchown(")),
    trace.join("\n"),
  ).toEqual([]);
});

it("the target looks a new file's name up once renamed, and before applying it only where it did not create the directory", () => {
  const { base, src, dst, env } = makeWorkspace("syscalls-lookups", created);
  const names = Array.from({ length: 10 }, (_, i) => `new-${i}`);
  mkdirSync(join(src, "dir"));
  for (const name of names) {
    writeFileSync(join(src, "dir", name), `${name}\n`);
    writeFileSync(join(src, name), `${name}\n`);
  }
  mkdirSync(dst); // there before the run, unlike DST/dir

  const trace = traceMirror(src, dst, env, "statx,newfstatat,lstat", join(base, "trace"));

  const differences = compareTrees(src, dst);
  expect(differences, formatDifferences(differences)).toEqual([]);
  // By the parent's descriptor (…<DST/dir>, "new-3", …) or by path ("DST/dir/new-3"): the final name only.
  const lookupsIn = (dir: string) =>
    names.map(
      (name) => trace.filter((line) => line.includes(`${dir}>, "${name}"`) || line.includes(`${dir}/${name}"`)).length,
    );
  // In DST/dir, which this run created: nothing can be there yet, so only the renamed file's own lookup.
  expect(lookupsIn("/dir"), trace.join("\n")).toEqual(names.map(() => 1));
  // In DST, which was there: each name is looked up before it is written too.
  expect(lookupsIn(dst), trace.join("\n")).toEqual(names.map(() => 2));
});

it("a directory written into gets its mtime back alone: its mode is set only where mkdir did not give it", () => {
  const { base, src, dst, env } = makeWorkspace("syscalls-dirs", created);
  const modes = { open: 0o755, "open/deeper": 0o755, closed: 0o700 } as const;
  for (const [dir, mode] of Object.entries(modes)) {
    mkdirSync(join(src, dir), { recursive: true });
    for (let i = 0; i < 5; i++) writeFileSync(join(src, dir, `f${i}`), `${dir} ${i}\n`);
    chmodSync(join(src, dir), mode);
  }
  chmodSync(src, 0o755);

  // A directory's mode is set through its O_PATH handle's /proc/self/fd path (chmod has no no-follow form).
  const trace = traceMirror(src, dst, env, "chmod,fchmodat,utimensat", join(base, "trace"), (line) =>
    /^\d+\s+(chmod\("\/proc\/self\/fd\/|fchmodat\(|utimensat\()/.test(line),
  );

  const differences = compareTrees(src, dst);
  expect(differences, formatDifferences(differences)).toEqual([]);
  // mkdir under umask 022 gives 0755: only "closed" needs its mode, once; every directory gets its mtime.
  const modeChanges = trace.filter((line) => !line.startsWith("utimensat("));
  expect(modeChanges, trace.join("\n")).toEqual([expect.stringMatching(/, 0700\) = 0$/)]);
  expect(trace.filter((line) => line.startsWith("utimensat(")).length).toBeGreaterThanOrEqual(4);
});

it("a sync over ssh starts ssh before it opens its own state file: the connection's set-up is not kept waiting", () => {
  const { base, src, dst, env } = makeWorkspace("syscalls-ssh-first", created);
  writeFileSync(join(src, "file"), "content\n");
  // An ssh that runs the remote command here: `ssh [options] -T -- HOST 'COMMAND'`.
  const ssh = join(base, "ssh");
  writeFileSync(ssh, '#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done\nexec sh -c "$3"\n', { mode: 0o755 });
  const remote = [process.execPath, ...mirrorlogArgs([])].join(" ");
  const trace = join(base, "trace");
  const run = (): string[] => {
    execFileSync(
      "strace",
      [
        "-f",
        "-qq",
        "-e",
        "trace=execve,openat",
        "-o",
        trace,
        process.execPath,
        ...mirrorlogArgs(["sync", "--remote-command", remote, src, `localhost:${dst}`]),
      ],
      { env: { ...env, MIRRORLOG_SSH: ssh }, timeout: 60_000, stdio: ["ignore", "ignore", "pipe"] },
    );
    return readFileSync(trace, "utf8").split("\n");
  };
  run(); // the first sync makes the pair's log; the second is the one that could read it before connecting
  const lines = run();
  const sshStarted = lines.findIndex((line) => line.includes(`execve("${ssh}"`));
  const logOpened = lines.findIndex((line) => /openat\(.*\/source-[^"]*\.db"/.test(line));
  expect(sshStarted, lines.join("\n")).toBeGreaterThan(-1);
  expect(logOpened, lines.join("\n")).toBeGreaterThan(sshStarted);
  const differences = compareTrees(src, dst);
  expect(differences, formatDifferences(differences)).toEqual([]);
});

it("a walk lists each directory through the handle it holds: no /proc/self/fd path opened, getdents64 on the handle", () => {
  const { base, src, dst, env } = makeWorkspace("syscalls-listing", created);
  const dirs = ["a", "a/b", "c", "c/d", "c/d/e"];
  for (const dir of dirs) {
    mkdirSync(join(src, dir), { recursive: true });
    for (let i = 0; i < 3; i++) writeFileSync(join(src, dir, `f${i}`), `${dir} ${i}\n`);
  }
  traceMirror(src, dst, env, "openat", join(base, "first")); // the initial mirror
  // A run with nothing to do: both sides list both trees, every directory of them.
  const trace = traceMirror(src, dst, env, "openat,getdents64", join(base, "trace"));
  const all = readFileSync(join(base, "trace"), "utf8").split("\n");
  expect(
    all.filter((line) => line.includes('"/proc/self/fd/')),
    all.join("\n"),
  ).toEqual([]);
  // The target's listings: each directory read by getdents64 on a descriptor naming it (strace -y).
  for (const dir of ["", ...dirs].map((d) => (d === "" ? dst : `${dst}/${d}`))) {
    expect(
      trace.some((line) => line.startsWith(`getdents64(<${dir}>`)),
      `${dir}\n${trace.join("\n")}`,
    ).toBe(true);
  }
});

it("a large file's bytes go to the disk as they are written: writeback starts every 8 MiB, not at the final flush", () => {
  const { base, src, dst, env } = makeWorkspace("syscalls-writeback", created);
  const size = 20 * 1024 * 1024 + 3;
  writeFileSync(join(src, "big.bin"), Buffer.alloc(size, 7));
  writeFileSync(join(src, "small"), "small\n");

  const trace = traceMirror(src, dst, env, "sync_file_range", join(base, "trace"));

  const differences = compareTrees(src, dst);
  expect(differences, formatDifferences(differences)).toEqual([]);
  // On the upload's temp beside big.bin: 0-8 MiB and 8-16 MiB while the rest was still coming.
  const ranges = trace
    .filter((line) => /^sync_file_range\(<[^>]*\/\.mirrorlog-tmp-[^>]*>/.test(line))
    .map((line) => line.replace(/<[^>]*>/, "TEMP"));
  expect(ranges, trace.join("\n")).toEqual([
    "sync_file_range(TEMP, 0, 8388608, SYNC_FILE_RANGE_WRITE) = 0",
    "sync_file_range(TEMP, 8388608, 8388608, SYNC_FILE_RANGE_WRITE) = 0",
  ]);
});
