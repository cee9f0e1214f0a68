// The target lists its manifest ahead a directory per turn, between requests. A write that comes meanwhile
// must not go through a handle that listing opened: a directory a racer moved away and replaced with a
// symlink is refused, not written through a handle that followed the real directory.
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
import { PROTOCOL_VERSION, ResponseSchema } from "../../src/events/protocol.js";
import { NodeFileSystem } from "../../src/fs/nodeFileSystem.js";
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
