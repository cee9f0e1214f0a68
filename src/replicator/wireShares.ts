// Which operation of an apply request the request's wire bytes belong to, for the per-operation
// accounting of the log (`mirrorlog log` shows it as "wire"). An even split was wrong: a 6-byte file
// sharing a request with a 1 MiB file was charged half a mebibyte.

/** One entry of an apply request as the accounting sees it. */
export interface WireEntry {
  /** Content bytes this entry's file put on the wire (literal plus compressed, packed share included). */
  contentWire: number;
  /** True when those bytes travelled in this request (false: in upload requests ahead of it). */
  inRequest: boolean;
}

/**
 * Each entry's wire bytes: its own content's wire bytes, plus an equal share of what the request spent
 * on everything else (framing, operations, paths, hashes). Content that travelled in earlier uploads is
 * charged to its entry too, though it is not part of `requestWireBytes`. Shares are whole bytes.
 */
export function wireShares(entries: readonly WireEntry[], requestWireBytes: number): number[] {
  if (entries.length === 0) return [];
  const carried = entries.reduce((n, e) => n + (e.inRequest ? e.contentWire : 0), 0);
  const overhead = Math.max(0, requestWireBytes - carried) / entries.length;
  return entries.map((e) => Math.round(e.contentWire + overhead));
}
