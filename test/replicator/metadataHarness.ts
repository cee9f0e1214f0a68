// Shared by the metadata tests: a SourceSession wired straight to a ReplicatorTarget over two
// MemoryFileSystems, and a rendering of a tree with every piece of metadata that replicates.
import { posix } from "node:path";
import { expect } from "vitest";
import type { LogEntry } from "../../src/events/operationLog.js";
import { type Request, type Response, ResponseSchema } from "../../src/events/protocol.js";
import type { FileSystemEventType } from "../../src/fs/fileSystem.js";
import type { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { SourceSession, type SourceSessionOptions } from "../../src/replicator/sourceSession.js";
import { ReplicatorTarget } from "../../src/replicator/target.js";

/** The source root. */
export const SRC = "/src";
/** The target root. */
export const DST = "/dst";

/** Every entry below `root` with its kind, metadata and content; hard-linked names share a group letter. */
export function metadataTree(
  fs: MemoryFileSystem,
  root: string,
  options: { owners?: boolean; links?: boolean } = {},
): string[] {
  const groups = new Map<number, string>();
  const lines: string[] = [];
  const visit = (path: string): void => {
    const absolute = path === "" ? root : posix.join(root, path);
    const stat = fs.lstat(absolute);
    const time = `${stat.mtime.sec}.${stat.mtime.nsec}`;
    const owner = options.owners ? ` ${stat.uid}:${stat.gid}` : "";
    const mode = stat.kind === "symlink" ? "" : ` ${stat.mode.toString(8)}`;
    let what = "";
    if (stat.kind === "file") {
      what = ` "${new TextDecoder().decode(fs.readFile(absolute))}"`;
      if (stat.nlink > 1 && options.links !== false) {
        if (!groups.has(stat.ino)) groups.set(stat.ino, String.fromCharCode(65 + groups.size));
        what += ` link${groups.get(stat.ino)}/${stat.nlink}`;
      }
    }
    if (stat.kind === "symlink") what = ` -> ${fs.readLink(absolute)}`;
    lines.push(`${path === "" ? "." : path} ${stat.kind}${mode} ${time}${owner}${what}`);
    if (stat.kind === "dir")
      for (const name of fs.listDir(absolute).sort()) visit(path === "" ? name : `${path}/${name}`);
  };
  visit("");
  return lines;
}

/** Rounds of re-planning what the target reported as drift, as ReplicatorSource allows. */
const MAX_RETRY_ROUNDS = 3;

/**
 * A source session wired straight to a target (the flow ReplicatorSource runs). Paths the target reports
 * as drift are planned again, as the source does; `retried` lists them, so a test can insist on none.
 */
export function replicate(
  sourceFs: MemoryFileSystem,
  targetFs: MemoryFileSystem,
  options: { canSetOwner?: boolean } & Partial<SourceSessionOptions> = {},
) {
  const { canSetOwner = false, ...sessionOptions } = options;
  const target = new ReplicatorTarget(targetFs, DST, { canSetOwner });
  const session = new SourceSession({ fs: sourceFs, root: SRC, ...sessionOptions });
  const send = (request: Request): Response => ResponseSchema.parse(target.handleRequest(request));
  const retried: string[] = [];
  const ship = (entries: readonly LogEntry[], round = 0): void => {
    const chunks = session.chunksRequestFor(entries);
    if (chunks !== undefined) session.acceptChunks(send(chunks));
    const retry: string[] = [];
    for (const request of session.requestsFor(entries)) retry.push(...session.settle(request, send(request)));
    retried.push(...retry);
    if (retry.length > 0 && round < MAX_RETRY_ROUNDS) {
      ship(
        retry.flatMap((path) => session.planPath(path, "retry")),
        round + 1,
      );
      return;
    }
    expect(session.stats.problems).toEqual([]);
  };
  const resumed = session.resume(send(session.openingHello()));
  if ("hello" in resumed) session.acceptHello(send(resumed.hello));
  while (!session.acceptManifest(send(session.manifestRequest()))) {}
  ship(session.planPath("", "initial"));
  return {
    session,
    target,
    retried,
    /** Plans and ships what a watch event at relative `path` hints at ("" for the root itself). */
    event: (path: string, eventType: FileSystemEventType) =>
      ship(session.planEvent({ path: `${SRC}/${path}`, eventType })),
  };
}

/** Asserts that the target tree renders exactly as the source tree, metadata included. */
export function expectMirrored(
  sourceFs: MemoryFileSystem,
  targetFs: MemoryFileSystem,
  options: { owners?: boolean; links?: boolean } = {},
) {
  const source = metadataTree(sourceFs, SRC, options);
  const target = metadataTree(targetFs, DST, options);
  expect(target, `source:\n${source.join("\n")}\ntarget:\n${target.join("\n")}`).toEqual(source);
}
