import { escapeForDisplay } from "../events/paths.js";
import type { Problem } from "../replicator/scan.js";
import type { SyncStats } from "../replicator/sourceSession.js";

/** The `--json` summary of a run; field names are part of the CLI's stable interface. */
export interface RunSummary {
  filesScanned: number;
  filesWritten: number;
  filesDeleted: number;
  dirsCreated: number;
  dirsDeleted: number;
  /** Bytes written to target files. */
  bytesWritten: number;
  wireBytesSent: number;
  wireBytesReceived: number;
  operationsLogged: number;
  /** Written files' bytes by how they travelled: literal, compressed (wire size), matched by deltas, reused. */
  content: { literal: number; compressed: number; matched: number; reused: number };
  durationMs: number;
  problems: Problem[];
}

/** Builds the summary of a run from the session's totals and the connection's byte counters. */
export function summarize(
  stats: SyncStats,
  wire: { bytesSent: number; bytesReceived: number },
  durationMs: number,
): RunSummary {
  return {
    filesScanned: stats.filesScanned,
    filesWritten: stats.filesWritten,
    filesDeleted: stats.filesDeleted,
    dirsCreated: stats.dirsCreated,
    dirsDeleted: stats.dirsDeleted,
    bytesWritten: stats.bytesWritten,
    wireBytesSent: wire.bytesSent,
    wireBytesReceived: wire.bytesReceived,
    operationsLogged: stats.operationsLogged,
    content: stats.content,
    durationMs: Math.round(durationMs),
    problems: dedupeProblems(stats.problems),
  };
}

/** The human summary, in the spirit of rsync's --stats. */
export function formatSummary(summary: RunSummary): string {
  const seconds = summary.durationMs / 1000;
  const rate = seconds > 0 ? (summary.wireBytesSent + summary.wireBytesReceived) / seconds : 0;
  const lines = [
    `Number of files scanned: ${count(summary.filesScanned)}`,
    `Number of files written: ${count(summary.filesWritten)} (${bytes(summary.bytesWritten)})`,
    `Number of files deleted: ${count(summary.filesDeleted)}`,
    `Number of directories created: ${count(summary.dirsCreated)}`,
    `Number of directories deleted: ${count(summary.dirsDeleted)}`,
    `Operations logged: ${count(summary.operationsLogged)}`,
    `File bytes sent literally: ${count(summary.content.literal)}, compressed: ${count(summary.content.compressed)}`,
    `File bytes matched by deltas: ${count(summary.content.matched)}, reused on the target: ${count(summary.content.reused)}`,
    `Total bytes sent: ${count(summary.wireBytesSent)}`,
    `Total bytes received: ${count(summary.wireBytesReceived)}`,
    `Duration: ${seconds.toFixed(3)} s (${bytes(rate)}/s on the wire)`,
  ];
  if (summary.problems.length > 0) {
    lines.push(`Problems (${summary.problems.length}):`);
    // Reasons quote paths too (errno messages name the file): both are escaped, one problem per line.
    for (const p of summary.problems) lines.push(`  ${escapeForDisplay(p.path)}: ${escapeForDisplay(p.reason)}`);
  }
  return lines.join("\n");
}

function dedupeProblems(problems: readonly Problem[]): Problem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.path}\0${p.reason}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function count(n: number): string {
  return n.toLocaleString("en-US");
}

/** Bytes in binary units, e.g. "1.50 MiB". */
export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(2)} ${units[unit]}`;
}
