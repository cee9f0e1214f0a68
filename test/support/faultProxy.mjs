#!/usr/bin/env node
// A stand-in for ssh that injects transport faults (set MIRRORLOG_SSH="node <this file>").
// mirrorlog runs `<MIRRORLOG_SSH words> [options] -T -- <host> '<remote command>'`: the host is
// ignored and the remote command runs here through `sh -c`, with this process between the two
// pipes. It parses the frames (u32 big-endian length, u32 CRC-32, payload) in both directions and, per the
// plan in MIRRORLOG_FAULT_PLAN, drops, truncates, duplicates, reorders or delays a frame, flips a
// bit in a frame's length field or payload (the checksum is left as it was: a corruption), or cuts the connection after N bytes.
//
// Environment:
//   MIRRORLOG_FAULT_PLAN  JSON { connections: Fault[][] }: the faults of the i-th connection made
//                         with this MIRRORLOG_FAULT_DIR (connections past the list are clean).
//   MIRRORLOG_FAULT_DIR   a directory: connection numbering (mkdir is atomic) and one JSON line per
//                         fault applied, in conn-<i>.jsonl.
// A Fault is { kind, direction: "up" (client -> target) | "down", frame (index, 0 = hello), ... }:
//   drop | duplicate | reorder (held until the next frame, at most 200 ms) | delay {ms}
//   truncate {keep: payload bytes sent before the cut} | cut {afterBytes}
//   flipLength {byte 0-3, bit} | flipPayload {at: 0..1 fraction of the payload, bit}
// Plain JavaScript on purpose: it is spawned as an executable, outside the test's module graph.
import { spawn } from "node:child_process";
import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const SSH_FAILURE_STATUS = 255;
const REORDER_HOLD_MS = 200;
// u32 payload length + u32 CRC-32 (src/transport/frames.ts).
const HEADER_BYTES = 8;
const CHILD_EXIT_GRACE_MS = 5_000;

const remoteCommand = process.argv.at(-1);
if (process.argv.length < 3 || remoteCommand === undefined) {
  process.stderr.write("faultProxy: no remote command\n");
  process.exit(SSH_FAILURE_STATUS);
}
const faultDir = process.env.MIRRORLOG_FAULT_DIR;
const plan = JSON.parse(process.env.MIRRORLOG_FAULT_PLAN ?? '{"connections":[]}');

let connection = 0;
if (faultDir !== undefined) {
  for (; ; connection++) {
    try {
      mkdirSync(join(faultDir, `conn-${connection}`));
      break;
    } catch (error) {
      if (error.code !== "EEXIST") throw error;
    }
  }
}
const faults = plan.connections?.[connection] ?? [];

function record(fault, details) {
  if (faultDir === undefined) return;
  appendFileSync(
    join(faultDir, `conn-${connection}.jsonl`),
    `${JSON.stringify({ connection, ...fault, ...details })}\n`,
  );
}

const child = spawn("sh", ["-c", remoteCommand], { stdio: ["pipe", "pipe", "inherit"] });
child.stdin.on("error", () => {});
let childExit;
const childExited = new Promise((resolve) => {
  child.once("close", (code, signal) => {
    childExit = { code, signal };
    resolve(childExit);
  });
});

let cut = false;

/** Ends the connection as a dropped ssh link does: both directions close, the remote sees EOF. */
async function cutConnection(reason) {
  if (cut) return;
  cut = true;
  record({ kind: "cut-done" }, { reason });
  process.stdin.pause();
  child.stdout.resume(); // discard: the remote must not block on a full pipe
  child.stdin.end();
  process.stdout.end();
  await Promise.race([childExited, new Promise((resolve) => setTimeout(resolve, CHILD_EXIT_GRACE_MS).unref())]);
  if (childExit === undefined) child.kill("SIGKILL");
  process.exit(SSH_FAILURE_STATUS);
}

/**
 * One direction of the link: splits the byte stream into frames (by their true lengths, before any
 * mangling) and forwards each, one at a time and in order, applying the faults planned for it.
 */
function pump(direction, input, output) {
  const mine = faults.filter((f) => f.direction === direction);
  let pending = Buffer.alloc(0);
  let frameIndex = 0;
  let forwarded = 0;
  let held; // a frame held back by "reorder"
  let heldTimer;
  let queue = Promise.resolve();
  let ended = false;

  const write = (bytes) =>
    new Promise((resolve) => {
      if (cut || bytes.length === 0) return resolve();
      const cutFault = mine.find((f) => f.kind === "cut");
      if (cutFault !== undefined && forwarded + bytes.length >= cutFault.afterBytes) {
        const keep = Math.max(0, cutFault.afterBytes - forwarded);
        record(cutFault, { forwardedBytes: forwarded + keep });
        forwarded += keep;
        output.write(bytes.subarray(0, keep), () => {
          void cutConnection(`cut after ${cutFault.afterBytes} bytes ${direction}`);
          resolve();
        });
        return;
      }
      forwarded += bytes.length;
      if (output.write(bytes)) resolve();
      else output.once("drain", resolve);
    });

  const releaseHeld = async () => {
    clearTimeout(heldTimer);
    if (held === undefined) return;
    const frame = held;
    held = undefined;
    await write(frame);
  };

  const forward = async (frame, index) => {
    const fault = mine.find((f) => f.frame === index && f.kind !== "cut");
    if (fault === undefined) {
      await write(frame);
      await releaseHeld();
      return;
    }
    const payloadLength = frame.length - HEADER_BYTES;
    switch (fault.kind) {
      case "drop":
        record(fault, { frameBytes: frame.length });
        await releaseHeld();
        return;
      case "duplicate":
        record(fault, { frameBytes: frame.length });
        await write(frame);
        await write(frame);
        await releaseHeld();
        return;
      case "reorder":
        record(fault, { frameBytes: frame.length });
        await releaseHeld();
        held = frame;
        // Nothing may follow for a while (the sender waits for an answer): then it goes out late.
        heldTimer = setTimeout(() => {
          queue = queue.then(releaseHeld);
        }, REORDER_HOLD_MS);
        return;
      case "delay":
        record(fault, { frameBytes: frame.length });
        await new Promise((resolve) => setTimeout(resolve, fault.ms));
        await write(frame);
        await releaseHeld();
        return;
      case "truncate": {
        const keep = Math.min(payloadLength - 1, fault.keep);
        record(fault, { frameBytes: frame.length, sentBytes: HEADER_BYTES + keep });
        await releaseHeld();
        await write(frame.subarray(0, HEADER_BYTES + keep));
        await cutConnection(`frame ${index} ${direction} truncated`);
        return;
      }
      case "flipLength": {
        const mangled = Buffer.from(frame);
        mangled[fault.byte] ^= 1 << fault.bit;
        record(fault, {
          frameBytes: frame.length,
          lengthBefore: frame.readUInt32BE(0),
          lengthAfter: mangled.readUInt32BE(0),
        });
        await write(mangled);
        await releaseHeld();
        return;
      }
      case "flipPayload": {
        const mangled = Buffer.from(frame);
        const offset = HEADER_BYTES + Math.min(payloadLength - 1, Math.floor(fault.at * payloadLength));
        mangled[offset] ^= 1 << fault.bit;
        record(fault, { frameBytes: frame.length, offset });
        await write(mangled);
        await releaseHeld();
        return;
      }
      default:
        throw new Error(`faultProxy: unknown fault kind ${fault.kind}`);
    }
  };

  input.on("data", (chunk) => {
    if (cut) return;
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    for (;;) {
      if (pending.length < HEADER_BYTES) break;
      const length = pending.readUInt32BE(0);
      if (pending.length < HEADER_BYTES + length) break;
      const frame = pending.subarray(0, HEADER_BYTES + length);
      pending = pending.subarray(HEADER_BYTES + length);
      const index = frameIndex++;
      queue = queue.then(() => forward(frame, index));
    }
    // Keep memory bounded like the real peers: stop reading while frames wait to go out.
    input.pause();
    queue = queue.then(() => {
      if (!cut && !ended) input.resume();
    });
  });
  input.on("end", () => {
    queue = queue.then(async () => {
      await releaseHeld();
      if (pending.length > 0) await write(pending); // a torn tail goes out as it came
      ended = true;
      if (!cut) output.end();
    });
  });
  return () => queue;
}

child.stdout.on("error", () => {});
process.stdout.on("error", () => {});
pump("up", process.stdin, child.stdin);
const downDone = pump("down", child.stdout, process.stdout);

const { code, signal } = await childExited;
await downDone();
if (!cut) process.exit(code ?? (signal ? SSH_FAILURE_STATUS : 0));
