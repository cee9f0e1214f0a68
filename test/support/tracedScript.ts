// Runs an ES module script in a child node (with tsx, from the repository) under strace, for tests that
// assert which system calls a piece of the code makes: what it printed, and strace's lines.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const REPOSITORY = fileURLToPath(new URL("../..", import.meta.url));

/** The absolute path of a module of this repository (`src/...`), for a traced script to import. */
export function repositoryModule(path: string): string {
  return fileURLToPath(new URL(`../../${path}`, import.meta.url));
}

/**
 * Runs `script` under `strace -f -qq -y -e trace=SYSCALLS`, writing the trace to `tracePath`: its stdout, and
 * the trace's lines (each begins with the thread's id; `-y` names the file behind each descriptor).
 */
export function traceScript(script: string, syscalls: string, tracePath: string): { output: string; lines: string[] } {
  const output = execFileSync(
    "strace",
    ["-f", "-qq", "-y", "-e", `trace=${syscalls}`, "-o", tracePath, process.execPath, "--import", "tsx"].concat([
      "--input-type=module",
      "-e",
      script,
    ]),
    { cwd: REPOSITORY, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
  );
  return { output, lines: readFileSync(tracePath, "utf8").split("\n") };
}
