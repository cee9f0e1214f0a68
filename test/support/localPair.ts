// A source and a target directory in a fresh temp directory, and a target on the second answering requests
// in this process as `serve` would (each request a copy, each response validated): for tests that drive a
// StreamingSource without processes.
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Request, type Response, ResponseSchema } from "../../src/events/protocol.js";
import type { DirEntryStat } from "../../src/fs/fileSystem.js";
import { NodeFileSystem } from "../../src/fs/nodeFileSystem.js";
import { ReplicatorTarget } from "../../src/replicator/target.js";

export interface LocalPair {
  src: string;
  dst: string;
  /** The target's answer to `request`. */
  answer(request: Request): Response;
}

/** The pair in a new directory named with `prefix`, pushed on `created` (for the test to remove). */
export function localPair(prefix: string, created: string[]): LocalPair {
  const base = mkdtempSync(join(tmpdir(), prefix));
  created.push(base);
  const src = join(base, "src");
  const dst = join(base, "dst");
  mkdirSync(src);
  mkdirSync(dst);
  const target = new ReplicatorTarget(new NodeFileSystem({ root: dst, onProblem: () => {} }), dst);
  return { src, dst, answer: (request) => ResponseSchema.parse(target.handleRequest(structuredClone(request))) };
}

/** A source file system counting its directory listings (a walk's progress). */
export class CountedListing extends NodeFileSystem {
  listings = 0;
  override listDirStats(path: string): DirEntryStat[] {
    this.listings++;
    return super.listDirStats(path);
  }
}
