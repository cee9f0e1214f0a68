// The target lists its manifest ahead a directory per turn, between requests. A write that comes meanwhile
// must not go through a handle that listing opened: a directory a racer moved away and replaced with a
// symlink is refused, not written through a handle that followed the real directory. The source, too,
// keeps handles across a watch batch's turns: a directory replaced meanwhile is listed anew, not through them.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { contentIdOf } from "../../src/content/contentId.js";
import { DEFAULT_LIMITS } from "../../src/events/limits.js";
import { OperationLog } from "../../src/events/operationLog.js";
import { PROTOCOL_VERSION, ResponseSchema } from "../../src/events/protocol.js";
import { nodeAt } from "../../src/events/tree.js";
import { FileSystemEventType } from "../../src/fs/fileSystem.js";
import { NodeFileSystem } from "../../src/fs/nodeFileSystem.js";
import { SourceSession } from "../../src/replicator/sourceSession.js";
import { ReplicatorTarget } from "../../src/replicator/target.js";

const LOG_ID = "0123456789abcdef";
const bases: string[] = [];
afterEach(() => {
  for (const base of bases.splice(0)) rmSync(base, { recursive: true, force: true });
});

it("a write after the manifest listed ahead does not go through a handle the listing kept", async () => {
  const base = mkdtempSync(join(tmpdir(), "mirrorlog-listing-handles-"));
  bases.push(base);
  const root = join(base, "dst");
  const outside = join(base, "outside");
  mkdirSync(outside);
  for (const dir of ["a", "b"]) {
    mkdirSync(join(root, dir), { recursive: true });
    writeFileSync(join(root, dir, "f"), dir);
  }
  const fs = new NodeFileSystem({ root, onProblem: () => {} });
  const target = new ReplicatorTarget(fs, root, { limits: { ...DEFAULT_LIMITS, manifestPageEntries: 2 } });
  const send = (request: unknown) => ResponseSchema.parse(target.handleRequest(request));
  expect(send({ type: "hello", version: PROTOCOL_VERSION, logId: LOG_ID, epoch: 1 }).type).toBe("hello");
  // The first page (the root and "a"); the walk then lists "a" on the next turn, keeping its handle.
  expect(send({ type: "manifest", offset: 0 })).toMatchObject({ type: "manifest", complete: false });
  await new Promise((resolve) => setImmediate(resolve));
  renameSync(join(root, "a"), join(root, "a.moved"));
  symlinkSync(outside, join(root, "a"));

  const data = new TextEncoder().encode("new");
  const applied = send({
    type: "apply",
    logId: LOG_ID,
    epoch: 1,
    entries: [
      {
        seq: 1,
        operation: { type: "writeFile", path: "a/g", hash: contentIdOf(data), size: data.length },
        content: { kind: "inline", encoding: "raw", data },
      },
    ],
  });
  expect(applied).toMatchObject({ type: "applied", results: [{ outcome: "failed", code: "unsafe-path" }] });
  expect(readdirSync(join(root, "a.moved"))).toEqual(["f"]);
  expect(readdirSync(outside)).toEqual([]);
  expect(existsSync(join(root, "a.moved", "g"))).toBe(false);
  fs.close();
});

it("the source lists a directory replaced while a batch held its handle: the new one, not the old one", () => {
  // Regression (test/e2e/live.test.ts, seed 2357973622): a watch batch keeps handles across its turns; a
  // directory replaced meanwhile was listed through the old one's handle (deleted: empty), so a file made
  // in the new directory before its watch was added was never mirrored.
  const base = mkdtempSync(join(tmpdir(), "mirrorlog-source-handles-"));
  bases.push(base);
  const src = join(base, "src");
  mkdirSync(join(src, "d"), { recursive: true });
  writeFileSync(join(src, "d", "old"), "old");
  const fs = new NodeFileSystem({ root: src, onProblem: () => {} });
  const log = new OperationLog();
  log.startEpoch("test", 0);
  const session = new SourceSession({ fs, root: src, log });
  session.planPath("", "initial");
  const release = session.holdHandles();
  try {
    writeFileSync(join(src, "d", "old"), "changed");
    // Planned through d's handle, which the batch keeps.
    session.planEvent({ path: join(src, "d", "old"), eventType: FileSystemEventType.FILE_MODIFIED });
    rmSync(join(src, "d"), { recursive: true });
    mkdirSync(join(src, "d"));
    writeFileSync(join(src, "d", "new"), "new");
    const entries = session.planEvent({ path: join(src, "d"), eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
    const planned = entries.map(({ operation }) => `${operation.type} ${operation.path}`);
    expect(planned).toContain("writeFile d/new");
    expect(planned).toContain("remove d/old");
  } finally {
    release();
  }
  expect(nodeAt(session.expectedTree(), "d/new")?.kind).toBe("file");
});
