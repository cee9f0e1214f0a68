import { createHash } from "node:crypto";

/**
 * Incompressible bytes that are the same on every run (sha256 in counter mode): where content-defined
 * chunk boundaries fall depends on the bytes, so a byte budget is only reproducible for fixed content.
 */
export function fixedRandomBytes(size: number, seed: string): Buffer {
  const out = Buffer.alloc(size);
  for (let offset = 0, i = 0; offset < size; offset += 32, i++) {
    createHash("sha256").update(`${seed}:${i}`).digest().copy(out, offset);
  }
  return out;
}
