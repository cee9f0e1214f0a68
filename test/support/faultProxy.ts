// The typed side of the transport fault proxy (faultProxy.mjs, an ssh stand-in that mangles frames):
// the fault plan it reads, the environment that makes mirrorlog use it, what it recorded, and seeded
// random faults. mirrorlog reaches `host:DST` through `$MIRRORLOG_SSH ... -T -- host '<command>'`; the
// proxy runs the command locally and sits between the pipes.
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** Absolute path of the proxy script. */
export const FAULT_PROXY_SCRIPT = fileURLToPath(new URL("./faultProxy.mjs", import.meta.url));

/** Which way a frame travels: "up" from the source (requests), "down" from the target (responses). */
export type FrameDirection = "up" | "down";

/** One fault the proxy applies to one connection. `frame` counts frames of that direction from 0 (the hello). */
export type FrameFault =
  | { kind: "drop" | "duplicate" | "reorder"; direction: FrameDirection; frame: number }
  | { kind: "delay"; direction: FrameDirection; frame: number; ms: number }
  | { kind: "truncate"; direction: FrameDirection; frame: number; keep: number }
  | { kind: "cut"; direction: FrameDirection; afterBytes: number }
  | { kind: "flipLength"; direction: FrameDirection; frame: number; byte: 0 | 1 | 2 | 3; bit: number }
  | { kind: "flipPayload"; direction: FrameDirection; frame: number; at: number; bit: number };

/** Every fault kind the proxy knows. */
export type FaultKind = FrameFault["kind"];

/** The faults of each successive connection through one fault directory; later connections are clean. */
export interface FaultPlan {
  connections: FrameFault[][];
}

/** What the proxy wrote when it applied a fault (the fault plus what it saw), or "cut-done" when it cut. */
export type FaultRecord = (FrameFault | { kind: "cut-done"; reason: string }) & {
  connection: number;
  frameBytes?: number;
  lengthBefore?: number;
  lengthAfter?: number;
};

/**
 * Environment variables that make mirrorlog reach its target through the proxy with `plan`;
 * `faultDir` numbers the connections and collects the records (one directory per planned run).
 */
export function faultProxyEnvironment(plan: FaultPlan, faultDir: string): Record<string, string> {
  mkdirSync(faultDir, { recursive: true });
  return {
    MIRRORLOG_SSH: `${process.execPath} ${FAULT_PROXY_SCRIPT}`,
    MIRRORLOG_FAULT_PLAN: JSON.stringify(plan),
    MIRRORLOG_FAULT_DIR: faultDir,
  };
}

/** The `--remote-command` that runs this checkout's mirrorlog on the proxy's "remote" side. */
export function localRemoteCommand(mirrorlogBin: string): string {
  return `${process.execPath} ${mirrorlogBin}`;
}

/** Everything the proxy recorded in `faultDir`, connection by connection. */
export function readFaultRecords(faultDir: string): FaultRecord[] {
  if (!existsSync(faultDir)) return [];
  const records: FaultRecord[] = [];
  for (const name of readdirSync(faultDir).sort()) {
    if (!name.endsWith(".jsonl")) continue;
    for (const line of readFileSync(join(faultDir, name), "utf8").split("\n")) {
      if (line !== "") records.push(JSON.parse(line) as FaultRecord);
    }
  }
  return records;
}

/** Frames the records show as mangled (every applied fault except the bookkeeping "cut-done"). */
export function mangledFrames(records: readonly FaultRecord[]): number {
  return records.filter((r) => r.kind !== "cut-done").length;
}

/** A source of random numbers in [0, 1) (a seeded PRNG in tests). */
export interface RandomSource {
  next(): number;
  int(min: number, max: number): number;
  pick<T>(items: readonly T[]): T;
}

/**
 * A random fault of one of `kinds`, on one of the first frames of a sync (frame 1 on: the hello is
 * frame 0). `flipLength` flips a bit of the length's top byte, unless `lowLengthBytes` lets it pick any
 * byte (a length grown by less than the cap leaves the receiver waiting for bytes that never come).
 */
export function randomFault(random: RandomSource, kinds: readonly FaultKind[], lowLengthBytes = false): FrameFault {
  const kind = random.pick(kinds);
  const direction: FrameDirection = random.next() < 0.6 ? "up" : "down";
  const frame = random.int(1, 5);
  switch (kind) {
    case "drop":
    case "duplicate":
    case "reorder":
      return { kind, direction, frame };
    case "delay":
      return { kind, direction, frame, ms: random.int(50, 1_500) };
    case "truncate":
      return { kind, direction, frame, keep: random.int(0, 4_000) };
    case "cut":
      return { kind, direction, afterBytes: random.int(1, direction === "up" ? 200_000 : 5_000) };
    case "flipLength":
      // The top byte: any set bit makes the length exceed the 16 MiB cap, which must be refused at once.
      return {
        kind,
        direction,
        frame,
        byte: lowLengthBytes ? (random.int(0, 3) as 0 | 1 | 2 | 3) : 0,
        bit: random.int(0, 7),
      };
    case "flipPayload":
      return { kind, direction, frame, at: random.next(), bit: random.int(0, 7) };
  }
}
