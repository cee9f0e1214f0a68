// serve applies each request whole and reads nothing meanwhile, so its input pipe is all the sender (sshd,
// over ssh) can hand over before it waits: serve asks for a 1 MiB pipe instead of the default 64 KiB.
// The real binary, with a FIFO (a pipe with a name) as its stdin: the test holds the same pipe and asks the
// kernel how large it is once serve has greeted.
import { execFileSync, spawn } from "node:child_process";
import { closeSync, constants, mkdirSync, openSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { makeWorkspace, mirrorlogArgs, pollUntil, testEnvironment } from "../support/cliRunner.js";

const created: string[] = [];
afterAll(() => {
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

/** fcntl(fd, F_GETPIPE_SZ): the size of the pipe `fd` (koffi, as src/fs/nativeCalls.ts uses it). */
function pipeSize(fd: number): number {
  const koffi = createRequire(import.meta.url)("koffi");
  const fcntl = koffi.load("libc.so.6").func("fcntl", "int", ["int", "int", "..."]);
  const F_GETPIPE_SZ = 1032;
  return fcntl(fd, F_GETPIPE_SZ, "int", 0) as number;
}

it("serve enlarges its input pipe to 1 MiB before it greets", async () => {
  const ws = makeWorkspace("serve-pipe", created);
  const fifo = join(ws.base, "input.fifo");
  execFileSync("mkfifo", [fifo]);
  // Read and write: opening a FIFO this way does not wait for the other end.
  const fd = openSync(fifo, constants.O_RDWR);
  const defaultSize = pipeSize(fd);
  mkdirSync(ws.dst, { recursive: true });
  const child = spawn(process.execPath, mirrorlogArgs(["serve", "--stdio", "--root", ws.dst]), {
    env: testEnvironment(ws.stateHome),
    stdio: [fd, "pipe", "pipe"],
  });
  let greeted = false;
  child.stdout!.once("data", () => {
    greeted = true;
  });
  try {
    await pollUntil(() => greeted, { deadlineMs: 20_000, describe: () => "serve wrote no hello frame" });
    expect(defaultSize).toBeLessThan(1024 * 1024);
    expect(pipeSize(fd)).toBe(1024 * 1024);
  } finally {
    child.kill("SIGKILL");
    closeSync(fd);
  }
});
