/**
 * How many files hold each content hash, kept in typed arrays keyed by a 64-bit digest of the hash
 * string: about 20 bytes per hash outside the JavaScript heap, where a Map of the 64-character strings
 * took about 100 on it (200,000 files: 4 MiB instead of 20 MiB that the collector walks). Two hashes
 * with the same 64-bit digest (about 1 in 10^9 for 200,000 hashes) share a count, so a count is a hint:
 * a source that references content the target turns out to lack is told `missing-content` and sends the
 * bytes whole.
 */
export class HashCounts {
  /** Open addressing, linear probing: slot i holds the digest (hi[i], lo[i]) and its count. */
  private hi = new Uint32Array(INITIAL_SLOTS);
  private lo = new Uint32Array(INITIAL_SLOTS);
  private counts = new Int32Array(INITIAL_SLOTS);
  private used = new Uint8Array(INITIAL_SLOTS);
  /** Slots in use (a count that went back to 0 keeps its slot; they are few). */
  private size = 0;

  get(hash: string): number {
    const slot = this.find(hash, false);
    return slot < 0 ? 0 : this.counts[slot]!;
  }

  /** Adds `delta` to the count of `hash` (never below 0). */
  add(hash: string, delta: number): void {
    const slot = this.find(hash, true);
    this.counts[slot] = Math.max(0, this.counts[slot]! + delta);
  }

  clear(): void {
    this.hi = new Uint32Array(INITIAL_SLOTS);
    this.lo = new Uint32Array(INITIAL_SLOTS);
    this.counts = new Int32Array(INITIAL_SLOTS);
    this.used = new Uint8Array(INITIAL_SLOTS);
    this.size = 0;
  }

  /** The slot of `hash`, or -1 when absent and not `create`d. */
  private find(hash: string, create: boolean): number {
    if (create && (this.size + 1) * 2 > this.used.length) this.grow();
    const [h, l] = digest(hash);
    const mask = this.used.length - 1;
    for (let slot = (h ^ l) & mask; ; slot = (slot + 1) & mask) {
      if (this.used[slot] === 0) {
        if (!create) return -1;
        this.used[slot] = 1;
        this.hi[slot] = h;
        this.lo[slot] = l;
        this.size++;
        return slot;
      }
      if (this.hi[slot] === h && this.lo[slot] === l) return slot;
    }
  }

  private grow(): void {
    const { hi, lo, counts, used } = this;
    const slots = used.length * 2;
    this.hi = new Uint32Array(slots);
    this.lo = new Uint32Array(slots);
    this.counts = new Int32Array(slots);
    this.used = new Uint8Array(slots);
    const mask = slots - 1;
    for (let old = 0; old < used.length; old++) {
      if (used[old] === 0) continue;
      let slot = (hi[old]! ^ lo[old]!) & mask;
      while (this.used[slot] !== 0) slot = (slot + 1) & mask;
      this.used[slot] = 1;
      this.hi[slot] = hi[old]!;
      this.lo[slot] = lo[old]!;
      this.counts[slot] = counts[old]!;
    }
  }
}

const INITIAL_SLOTS = 1024;

/** Two independent 32-bit FNV-1a style digests of a string. */
function digest(text: string): [number, number] {
  let h = 0x811c9dc5;
  let l = 0x01000193;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h = Math.imul(h ^ c, 0x01000193);
    l = Math.imul(l ^ c, 0x5bd1e995) ^ (l >>> 13);
  }
  return [h >>> 0, l >>> 0];
}
