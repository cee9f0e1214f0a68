// --bwlimit: the bytes this side writes to the transport are paced to a rate, like rsync's --bwlimit.

import { Transform, type TransformCallback, type Writable } from "node:stream";
import { InvalidArgumentError } from "commander";
import { monotonicMs } from "../fs/clock.js";

const UNITS: Record<string, number> = { "": 1024, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/**
 * Parses a --bwlimit value to bytes per second: a number of KiB/s, or with a suffix k, m or g (KiB, MiB,
 * GiB per second), as rsync reads it. 0 means no limit (undefined).
 */
export function parseBandwidth(value: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)([kmg]?)(?:i?b)?$/i.exec(value.trim());
  if (match === null) throw new InvalidArgumentError("must be a rate in KiB/s, e.g. 500, 1.5m or 2g");
  const bytes = Number(match[1]) * UNITS[match[2]!.toLowerCase()]!;
  if (bytes === 0) return undefined;
  if (bytes < 512) throw new InvalidArgumentError("must be at least 0.5 KiB/s (or 0 for no limit)");
  return bytes;
}

/** Bytes passed on at once at most: small enough that pacing is smooth, large enough to cost little. */
const SLICE_BYTES = 16 * 1024;

/**
 * A stream that passes what is written to it on to `sink` no faster than `bytesPerSecond` on average
 * (the first slice goes at once; each later one waits until the average allows it). Backpressure holds
 * the writer meanwhile. Errors of the sink end this stream too.
 */
export function paced(sink: Writable, bytesPerSecond: number): Writable {
  const started = monotonicMs();
  let sent = 0;
  const pacer = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      let offset = 0;
      const next = (): void => {
        if (offset >= chunk.length) {
          callback();
          return;
        }
        const slice = chunk.subarray(offset, offset + SLICE_BYTES);
        offset += slice.length;
        // When the slice may leave: once the average over the run, this slice included, stays within the rate.
        const due = started + ((sent + slice.length) / bytesPerSecond) * 1000 - SLICE_BYTES / bytesPerSecond;
        const wait = due - monotonicMs();
        sent += slice.length;
        const go = (): void => {
          this.push(slice);
          next();
        };
        if (wait > 0) setTimeout(go, wait);
        else go();
      };
      next();
    },
  });
  pacer.pipe(sink);
  sink.on("error", (error) => pacer.destroy(error));
  return pacer;
}
