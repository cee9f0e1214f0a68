// A single file as SRC (rsync's `rsync FILE DST`): the file is copied to DST/NAME when DST is a directory,
// else to DST itself, with its mode and exact mtime, atomically (temp, fsync, rename). The replication engine
// mirrors directories; one file needs none of its log, so this path is local and direct. A remote DST is
// refused with one line (the engine's target would have to list the whole remote directory).
import { randomBytes } from "node:crypto";
import {
  type BigIntStats,
  closeSync,
  copyFileSync,
  constants as fsConstants,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import { posix } from "node:path";
import { contentIdOf } from "../content/contentId.js";
import { monotonicMs } from "../fs/clock.js";
import { NodeFileSystem } from "../fs/nodeFileSystem.js";
import { BackupDir } from "../replicator/backupDir.js";
import { parseTargetSpec } from "../transport/sshCommand.js";
import { CliError } from "./cliError.js";
import { EXIT } from "./exitCodes.js";
import { changeLines } from "./itemize.js";
import type { MirrorOptions, MirrorOutput } from "./mirror.js";
import { formatSummary, type RunSummary } from "./report.js";

/** Where a single-file SRC goes: the destination file and the directory holding it. */
export function singleFileDestination(source: string, dst: string): { dir: string; file: string } {
  const spec = parseTargetSpec(dst);
  if (spec.kind !== "local") {
    throw new CliError(
      `source ${source} is a file: a single file is copied to a local DST only (mirror its directory instead)`,
    );
  }
  const target = posix.resolve(spec.path);
  let isDir = dst.endsWith("/");
  try {
    isDir = statSync(target).isDirectory();
  } catch {
    // missing: a name ending in "/" is a directory to create, anything else the file itself
  }
  const file = isDir ? posix.join(target, posix.basename(source)) : target;
  return { dir: posix.dirname(file), file };
}

/** Copies the file `source` (real path) onto DST as `sync` does; returns the exit code. */
export function copySingleFile(source: string, dst: string, options: MirrorOptions, output: MirrorOutput): number {
  const started = monotonicMs();
  const { dir, file } = singleFileDestination(source, dst);
  if (file === source) throw new CliError(`source ${source} and target ${file} are the same file`);
  // DST/ itself may be created; the parent of the directory that holds the file must exist unless --mkpath.
  if (!exists(dir)) {
    const parent = dst.endsWith("/") ? posix.dirname(dir) : dir;
    if (!options.mkpath && !exists(parent)) {
      throw new CliError(`target ${file}: parent ${parent} does not exist (use --mkpath to create it)`);
    }
  }
  const from = lstatSync(source, { bigint: true });
  const to = lstatIfExists(file);
  if (to?.isDirectory()) throw new CliError(`target ${file} is a directory; a file cannot replace it`);
  const mode = Number(from.mode) & 0o7777;
  const mtime = timestampOf(from.mtimeNs);
  const size = Number(from.size);
  // Like rsync: same size and mtime is the same file, unless --checksum asks to compare the bytes.
  const quick = to?.isFile() === true && Number(to.size) === size && to.mtimeNs === from.mtimeNs;
  const contentSame =
    to?.isFile() === true &&
    Number(to.size) === size &&
    (options.checksum ? contentIdOf(readFileSync(source)) === contentIdOf(readFileSync(file)) : quick);
  // Hashes stand for "same" or "differs" only (itemize's c): the bytes are never read for that.
  const hash = contentSame ? "same" : "new";
  const held =
    to === undefined
      ? undefined
      : to.isFile()
        ? {
            kind: "file" as const,
            hash: contentSame ? "same" : "old",
            size: Number(to.size),
            mode: Number(to.mode) & 0o7777,
            mtime: timestampOf(to.mtimeNs),
          }
        : { kind: "unknown" as const };
  const operation = { type: "writeFile" as const, path: posix.basename(file), hash, size, mode, mtime };
  const metadataSame = contentSame && held?.kind === "file" && held.mode === mode && to?.mtimeNs === from.mtimeNs;
  const lines = metadataSame ? [] : changeLines(held, operation, options.itemizeChanges ? "itemize" : "names");
  const listed = !options.quiet && (options.itemizeChanges || (options.verbose ?? 0) > 0);
  if (listed) for (const line of lines) (options.json ? output.stderr : output.stdout)(`${line}\n`);
  const wrote = !metadataSame && !contentSame;
  if (!options.dryRun && !metadataSame) {
    mkdirSync(dir, { recursive: true });
    if (wrote) {
      if (to !== undefined && options.backupDir !== undefined) {
        new BackupDir(posix.resolve(dir, options.backupDir)).keep(posix.basename(file), file);
      }
      replaceFile(source, file);
    }
    const fs = new NodeFileSystem({ root: dir });
    try {
      fs.setMetadata(file, { mode, mtime });
    } finally {
      fs.close?.();
    }
  }
  const summary: RunSummary = {
    filesScanned: 1,
    filesWritten: wrote && !options.dryRun ? 1 : 0,
    filesDeleted: 0,
    dirsCreated: 0,
    dirsDeleted: 0,
    bytesWritten: wrote && !options.dryRun ? size : 0,
    wireBytesSent: 0,
    wireBytesReceived: 0,
    operationsLogged: 0,
    content: { literal: 0, compressed: 0, matched: 0, reused: 0 },
    durationMs: Math.round(monotonicMs() - started),
    problems: [],
  };
  if (options.json) output.stdout(`${JSON.stringify(summary)}\n`);
  else if (!options.quiet && !options.dryRun) output.stdout(`${formatSummary(summary)}\n`);
  return EXIT.ok;
}

/** Copies `source` over `file` atomically: a temp beside it (a reflink where the file system can), fsync, rename. */
function replaceFile(source: string, file: string): void {
  const temp = posix.join(posix.dirname(file), `.mirrorlog-tmp-${randomBytes(6).toString("hex")}`);
  try {
    copyFileSync(source, temp, fsConstants.COPYFILE_FICLONE);
    const fd = openSync(temp, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, file);
  } catch (error) {
    rmSync(temp, { force: true });
    throw new CliError(`cannot write ${file}: ${(error as Error).message}`, EXIT.partial);
  }
}

function timestampOf(ns: bigint): { sec: number; nsec: number } {
  const sec = ns / 1_000_000_000n - (ns % 1_000_000_000n < 0n ? 1n : 0n);
  return { sec: Number(sec), nsec: Number(ns - sec * 1_000_000_000n) };
}

function exists(path: string): boolean {
  return lstatIfExists(path) !== undefined;
}

function lstatIfExists(path: string): BigIntStats | undefined {
  try {
    return lstatSync(path, { bigint: true });
  } catch {
    return undefined;
  }
}
