// End-to-end tests of `mirrorlog sync/watch SRC localhost:DST` through the system ssh client and a
// real OpenSSH sshd on 127.0.0.1; the far side runs this checkout's bin/mirrorlog.
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  MIRRORLOG_BIN,
  pollUntil,
  processesMentioning,
  runMirrorlog,
  startWatch,
  testEnvironment,
  waitForMirror,
} from "../support/cliRunner.js";
import { sshEnvironment, startSshd, type TestSshServer } from "../support/sshd.js";
import { compareTrees, findTempFiles, formatDifferences } from "../support/treeOracle.js";

let server: TestSshServer;
let base: string;

beforeAll(async () => {
  server = await startSshd();
  base = mkdtempSync(join(tmpdir(), "mirrorlog-e2e-ssh-"));
});

afterAll(async () => {
  await server?.stop();
  if (base) rmSync(base, { recursive: true, force: true });
});

/** A pair of trees and environments for one test; the far side's state also lives in a temp dir. */
function workspace(name: string) {
  const src = join(base, `${name}-src`);
  const dst = join(base, `${name}-dst`);
  const stateHome = join(base, `${name}-state`);
  const remoteStateHome = join(base, `${name}-remote-state`);
  mkdirSync(src);
  // `env` so that the remote serve keeps its state in a temp dir too, never in the real home.
  const remoteCommand = ["env", `XDG_STATE_HOME=${remoteStateHome}`, process.execPath, MIRRORLOG_BIN].join(" ");
  return {
    src,
    dst,
    env: testEnvironment(stateHome, sshEnvironment(server)),
    args: ["--remote-command", remoteCommand],
    target: `localhost:${dst}`,
    remoteStateHome,
  };
}

function sampleTree(src: string): void {
  mkdirSync(join(src, "docs/deep"), { recursive: true });
  writeFileSync(join(src, "docs/readme.txt"), "hello over ssh\n");
  writeFileSync(join(src, "docs/deep/data.bin"), Buffer.alloc(50_000, 7));
  writeFileSync(join(src, "empty"), "");
  symlinkSync("docs/readme.txt", join(src, "link"));
}

describe("mirrorlog over ssh", () => {
  it("sync SRC localhost:DST mirrors the tree; a second run writes nothing", async () => {
    const { src, dst, env, args, target, remoteStateHome } = workspace("sync");
    sampleTree(src);
    const first = await runMirrorlog(["sync", "--json", ...args, src, target], { env });
    expect(first.code, first.stderr).toBe(0);
    const differences = compareTrees(src, dst, { mtimes: true });
    expect(differences, formatDifferences(differences)).toEqual([]);
    expect(JSON.parse(first.stdout)).toMatchObject({ filesWritten: 3, dirsCreated: 2, problems: [] });
    // The far side kept its state where --remote-command told it to.
    expect(
      readdirSync(join(remoteStateHome, "mirrorlog")).filter((n) => n.startsWith("target-") && n.endsWith(".db")),
    ).toHaveLength(1);

    const second = await runMirrorlog(["sync", "--json", ...args, src, target], { env });
    expect(second.code, second.stderr).toBe(0);
    expect(JSON.parse(second.stdout)).toMatchObject({ filesWritten: 0, operationsLogged: 0, problems: [] });
    expect(compareTrees(src, dst, { mtimes: true })).toEqual([]);
  });

  it("watch SRC localhost:DST follows creates, modifications, renames and deletes; SIGTERM ends ssh too", async () => {
    const { src, dst, env, args, target } = workspace("watch");
    sampleTree(src);
    const watch = await startWatch(src, target, { env, args });
    const context = () => `watch stderr:\n${watch.stderr()}`;
    try {
      await waitForMirror(src, dst, { context });
      // The ssh client and the remote serve both name the root: the check after SIGTERM means something.
      expect(processesMentioning(`--root=${dst}`).length).toBeGreaterThanOrEqual(2);

      writeFileSync(join(src, "new.txt"), "created while watching");
      mkdirSync(join(src, "fresh/inner"), { recursive: true });
      writeFileSync(join(src, "fresh/inner/f.txt"), "in a new dir");
      await waitForMirror(src, dst, { context });

      writeFileSync(join(src, "docs/readme.txt"), "modified\n");
      renameSync(join(src, "docs/deep"), join(src, "moved-deep"));
      symlinkSync("moved-deep/data.bin", join(src, "link2"));
      await waitForMirror(src, dst, { context });

      rmSync(join(src, "fresh"), { recursive: true });
      rmSync(join(src, "empty"));
      rmSync(join(src, "docs"), { recursive: true });
      writeFileSync(join(src, "docs"), "docs is a file now");
      await waitForMirror(src, dst, { context });
    } finally {
      const stopped = await watch.stop(10_000);
      expect(stopped.code, stopped.stderr).toBe(0);
      expect(stopped.elapsedMs).toBeLessThan(5_000);
    }
    // Neither the ssh client nor the remote `mirrorlog serve` for this root outlives the watch.
    await pollUntil(() => processesMentioning(`--root=${dst}`).length === 0, {
      deadlineMs: 5_000,
      describe: () => `still running: ${processesMentioning(`--root=${dst}`).join(", ")}`,
    });
    expect(findTempFiles(dst)).toEqual([]);
    expect(compareTrees(src, dst, { mtimes: true })).toEqual([]);
  });
});
