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
  const wireRate = seconds > 0 ? (summary.wireBytesSent + summary.wireBytesReceived) / seconds : 0;
  const lines = [
    `Number of files scanned: ${count(summary.filesScanned)}`,
    `Number of files written: ${count(summary.filesWritten)} (${bytes(summary.bytesWritten)})`,
    `Number of files deleted: ${count(summary.filesDeleted)}`,
    `Number of directories created: ${count(summary.dirsCreated)}`,
    `Number of directories deleted: ${count(summary.dirsDeleted)}`,
    `Operations logged: ${count(summary.operationsLogged)}`,
    `File bytes sent literally: ${bytes(summary.content.literal)}, compressed: ${bytes(summary.content.compressed)}`,
    `File bytes matched by deltas: ${bytes(summary.content.matched)}, reused on the target: ${bytes(summary.content.reused)}`,
    `Total bytes sent: ${exactBytes(summary.wireBytesSent)}`,
    `Total bytes received: ${exactBytes(summary.wireBytesReceived)}`,
    `Duration: ${seconds.toFixed(3)} s (${rate(wireRate)} on the wire)`,
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

/**
 * A count with thousands separated by commas ("20,000"), as toLocaleString("en-US") writes it, without its
 * first call's cost (ICU sets up the locale: ≈ 15 ms at the end of every run that printed a summary).
 */
export function count(n: number): string {
  if (!Number.isSafeInteger(n)) return n.toLocaleString("en-US");
  const digits = String(Math.abs(n));
  let grouped = digits.slice(0, ((digits.length - 1) % 3) + 1);
  for (let i = grouped.length; i < digits.length; i += 3) grouped += `,${digits.slice(i, i + 3)}`;
  return n < 0 ? `-${grouped}` : grouped;
}

/**
 * Bytes in binary units for people: whole bytes below 1 KiB ("395 B"), else three significant digits
 * ("1.50 KiB", "12.3 MiB", "512 GiB"). A fraction of a byte (an average, a rate) is rounded, never printed raw.
 */
export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  if (!Number.isFinite(n)) return "- B";
  let value = Math.abs(n);
  let unit = 0;
  // Rounded before choosing the unit: 1023.7 B reads "1.00 KiB", not "1024 B".
  while (unit < units.length - 1 && (unit === 0 ? Math.round(value) : Number(value.toPrecision(3))) >= 1024) {
    value /= 1024;
    unit++;
  }
  const sign = n < 0 ? "-" : "";
  if (unit === 0) return `${sign}${Math.round(value)} B`;
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${sign}${value.toFixed(digits)} ${units[unit]}`;
}

/** A transfer rate for people: `bytes(n)` per second, e.g. "395 B/s", "1.20 MiB/s". */
export function rate(bytesPerSecond: number): string {
  return `${bytes(bytesPerSecond)}/s`;
}

/** Bytes as an exact count with its readable form when that says more, e.g. "1,234,567 (1.18 MiB)". */
export function exactBytes(n: number): string {
  return n < 1024 ? `${count(n)} B` : `${count(n)} B (${bytes(n)})`;
}
