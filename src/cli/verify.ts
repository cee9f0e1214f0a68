// `mirrorlog verify SRC DST`: compares the target with the source, changing nothing on either side.
import { existsSync } from "node:fs";
import { ATTRIBUTE_KEYS, type Attributes, type Operation } from "../events/operation.js";
import { OperationLog } from "../events/operationLog.js";
import { type DirNode, nodeAt, type TreeNode } from "../events/tree.js";
import { NodeFileSystem } from "../fs/nodeFileSystem.js";
import type { Problem } from "../replicator/scan.js";
import { SourceSession } from "../replicator/sourceSession.js";
import { CliError } from "./cliError.js";
import { exclusionRules } from "./ignoreRules.js";
import { connectTarget, disconnectTarget, resolvePair } from "./mirror.js";
import { quoteText, terminalSafeJson } from "./terminalText.js";

/** Options of `mirrorlog verify`. */
export interface VerifyOptions {
  exclude: string[];
  json: boolean;
  remoteCommand: string;
  /** Compare hard-link groups too (-H): a name that should be a link to another and is not is drift. */
  hardLinks?: boolean;
  /** Compare owners / groups (default true) where the target could set them (it runs as root), as sync does. */
  owner?: boolean;
  group?: boolean;
}

/**
 * How the target differs at a path: `missing` (absent there), `extra` (absent at the source),
 * `differs` (content or symlink text), `metadata` (mode or mtime), `kind` (file vs dir vs symlink).
 */
export type DriftKind = "missing" | "extra" | "differs" | "metadata" | "kind";

/** One difference between source and target; field names are the stable `--json` interface. */
export interface Drift {
  drift: DriftKind;
  /** Relative to the roots ("" is the root itself). */
  path: string;
  /** What the source has at the path (null: nothing). */
  source: TreeNode["kind"] | null;
  /** What the target has at the path (null: nothing; "unknown": something it cannot describe, such as a FIFO). */
  target: TreeNode["kind"] | null;
  /** What differs, for `differs` and `metadata`. */
  detail: string | null;
}

/** The `--json` result of verify. */
export interface VerifyReport {
  identical: boolean;
  filesCompared: number;
  drift: Drift[];
  /** Paths that could not be compared (unreadable, special files, names that cannot travel). */
  problems: Problem[];
}

const KIND_WRITTEN: Record<Operation["type"], TreeNode["kind"] | null> = {
  ensureDir: "dir",
  writeFile: "file",
  writeSymlink: "symlink",
  remove: null,
};

function octal(mode: number | undefined): string {
  return mode === undefined ? "-" : mode.toString(8).padStart(4, "0");
}

/** An exact mtime as ISO time with nanoseconds ("-" when not known). */
function timeText(time: Attributes["mtime"]): string {
  if (time === undefined) return "-";
  const iso = new Date(time.sec * 1000).toISOString().replace(".000Z", "");
  return `${iso}.${time.nsec.toString().padStart(9, "0")}Z`;
}

/** Each attribute the source states that the target holds otherwise, as "name source ≠ target". */
function attributeDifferences(source: Attributes, target: Attributes): string[] {
  const details: string[] = [];
  for (const key of ATTRIBUTE_KEYS) {
    const want = source[key];
    const have = target[key];
    if (want === undefined) continue;
    if (key === "mtime") {
      const [a, b] = [want as Attributes["mtime"], have as Attributes["mtime"]];
      if (b === undefined || a!.sec !== b.sec || a!.nsec !== b.nsec)
        details.push(`mtime ${timeText(a)} ≠ ${timeText(b)}`);
    } else if (want !== have) {
      details.push(
        key === "mode" ? `mode ${octal(want as number)} ≠ ${octal(have as number)}` : `${key} ${want} ≠ ${have ?? "-"}`,
      );
    }
  }
  return details;
}

/**
 * Classifies the operations that would make the target (`targetTree`, as its manifest describes it)
 * equal the source: each is one difference. Pure. Children of a missing directory are each missing.
 */
export function driftOf(targetTree: DirNode, operations: readonly Operation[]): Drift[] {
  return operations.map((operation) => {
    const before = nodeAt(targetTree, operation.path);
    const source = KIND_WRITTEN[operation.type];
    const target = before?.kind ?? null;
    const drift = (kind: DriftKind, detail: string | null = null): Drift => ({
      drift: kind,
      path: operation.path,
      source,
      target,
      detail,
    });
    if (operation.type === "remove") return drift("extra");
    if (before === undefined) return drift("missing");
    if (before.kind !== source || before.kind === "unknown") return drift("kind");
    if (operation.type === "writeSymlink" && before.kind === "symlink" && before.target !== operation.target) {
      return drift("differs", `symlink ${quoteText(operation.target)} ≠ ${quoteText(before.target)}`);
    }
    if (operation.type === "writeFile" && before.kind === "file") {
      if (before.hash !== operation.hash || before.size !== operation.size) {
        return drift("differs", `size ${operation.size} ≠ ${before.size}, content differs`);
      }
      if (operation.linkTo !== undefined && before.linkTo !== operation.linkTo) {
        return drift(
          "metadata",
          `hard link to ${quoteText(operation.linkTo)} ≠ ${before.linkTo === undefined ? "none" : quoteText(before.linkTo)}`,
        );
      }
    }
    return drift("metadata", attributeDifferences(operation, before).join(", "));
  });
}

/** One text line per difference: the drift kind, the quoted path, and what differs. */
export function formatDrift(d: Drift): string {
  const sides = `source ${d.source ?? "none"}, target ${d.target ?? "none"}`;
  return `${d.drift.padEnd(8)}  ${quoteText(d.path === "" ? "." : d.path)}  (${d.detail ?? sides})`;
}

/**
 * `mirrorlog verify SRC DST`: reads the target's manifest through a read-only (dry-run) serve, scans
 * the source hashing every file, and reports each difference. Nothing is written on either side,
 * not even a state file. Exit code like diff: 0 identical, 1 drift, 2 trouble (including paths that
 * could not be compared).
 */
export async function runVerify(
  src: string,
  dst: string,
  options: VerifyOptions,
  stdout: (text: string) => void,
): Promise<number> {
  const { sourceRoot, spec } = resolvePair(src, dst, undefined);
  const targetAbsent = spec.kind === "local" && !existsSync(spec.path);
  const problems: Problem[] = [];
  const fs = new NodeFileSystem({ root: sourceRoot, onProblem: (problem) => problems.push(problem) });
  const isExcluded = exclusionRules(fs, sourceRoot, options.exclude);
  // No content index: verify reads and hashes every source file, as the dry-run target does its own.
  const session = new SourceSession({
    fs,
    root: sourceRoot,
    log: new OperationLog(),
    hardLinks: options.hardLinks ?? false,
    preserveOwner: options.owner ?? true,
    preserveGroup: options.group ?? true,
    ...(isExcluded === undefined ? {} : { isExcluded }),
  });
  let connection: Awaited<ReturnType<typeof connectTarget>>;
  try {
    connection = await connectTarget(spec, dst, { dryRun: true, remoteCommand: options.remoteCommand });
  } catch (error) {
    fs.close();
    throw error;
  }
  let report: VerifyReport;
  try {
    // The hello (to a read-only serve, in an in-memory log) tells whether the target can hold owners:
    // verify then compares exactly what sync would replicate.
    session.acceptHello(await connection.client.request(session.beginEpoch("verify")));
    while (!session.acceptManifest(await connection.client.request(session.manifestRequest()))) {}
    const targetTree = session.expectedTree();
    const operations = session.planPath("", "initial").map((entry) => entry.operation);
    let drift = driftOf(targetTree, operations);
    // A target that does not exist is served as an empty directory: say that once, not as a mode difference.
    if (targetAbsent)
      drift = [
        { drift: "missing", path: "", source: "dir", target: null, detail: null },
        ...drift.filter((d) => d.path !== ""),
      ];
    for (const p of session.stats.problems) {
      if (!problems.some((q) => q.path === p.path && q.reason === p.reason)) problems.push(p);
    }
    report = { identical: drift.length === 0, filesCompared: session.stats.filesScanned, drift, problems };
  } catch (error) {
    throw new CliError(`verifying ${sourceRoot} against ${dst} failed: ${(error as Error).message}`);
  } finally {
    await disconnectTarget(connection);
    fs.close();
  }
  if (options.json) {
    stdout(`${terminalSafeJson(report)}\n`);
  } else {
    const lines = report.drift.map(formatDrift);
    for (const p of report.problems) lines.push(`problem   ${quoteText(p.path)}: ${quoteText(p.reason)}`);
    lines.push(
      report.identical
        ? `identical: ${report.filesCompared} files compared`
        : `${report.drift.length} differences (${report.filesCompared} files compared)`,
    );
    stdout(`${lines.join("\n")}\n`);
  }
  if (report.problems.length > 0) return 2;
  return report.identical ? 0 : 1;
}
