// A malicious-peer library (RELIABILITY.md rule 7): starts the real `mirrorlog serve --stdio --root DIR`
// (bin/mirrorlog over dist/), speaks the wire protocol to it directly, and measures what each hostile
// request made it spend: the child's peak RSS (VmHWM) and the temp bytes staged under the root.
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { ContentHasher } from "../../src/content/contentId.js";
import { PROTOCOL_VERSION, type Request, type Response, ResponseSchema } from "../../src/events/protocol.js";
import { StreamClient } from "../../src/transport/streamConnection.js";
import { MIRRORLOG_BIN, testEnvironment } from "./cliRunner.js";

/** The log id every hostile session claims (any hex id is as good as another to the target). */
export const HOSTILE_LOG_ID = "0123456789abcdef";

/** A running `serve` child and a protocol client on its stdio. */
export interface HostileServe {
  readonly child: ChildProcess;
  readonly root: string;
  readonly client: StreamClient<Request, Response>;
  /** What the child wrote to stderr so far. */
  stderr(): string;
}

/** Starts `mirrorlog serve --stdio --root root` with its state under `stateHome`, and completes the frame handshake. */
export async function startServe(root: string, stateHome: string): Promise<HostileServe> {
  // MIRRORLOG_HOSTILE_BIN runs the same requests against another build (to measure an unfixed one).
  const bin = process.env.MIRRORLOG_HOSTILE_BIN ?? MIRRORLOG_BIN;
  const child = spawn(process.execPath, [bin, "serve", "--stdio", "--root", root], {
    env: testEnvironment(stateHome),
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const client = await StreamClient.connect<Request, Response>({
    input: child.stdout!,
    output: child.stdin!,
    version: PROTOCOL_VERSION,
    validateResponse: (value) => ResponseSchema.parse(value),
    answersInOrder: true,
    handshakeTimeoutMs: 20_000,
  });
  return { child, root, client, stderr: () => stderr };
}

/** Says hello as a source of HOSTILE_LOG_ID at `epoch`; the answer must be a hello. */
export async function hello(serve: HostileServe, epoch = 1): Promise<Response> {
  return serve.client.request({ type: "hello", version: PROTOCOL_VERSION, logId: HOSTILE_LOG_ID, epoch });
}

/** The child's peak resident set so far, in bytes (VmHWM of /proc/PID/status). */
export function peakRssBytes(serve: HostileServe): number {
  const status = readFileSync(`/proc/${serve.child.pid}/status`, "utf8");
  const kib = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kib === undefined) throw new Error(`no VmHWM in /proc/${serve.child.pid}/status`);
  return Number(kib) * 1024;
}

/** Bytes of the target's own temp files (`.mirrorlog-tmp-*` and everything below such a name) under `root`. */
export function tempBytes(root: string): number {
  let total = 0;
  const walk = (dir: string, inTemp: boolean) => {
    let entries: import("node:fs").Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch (error) {
      // A temp directory (the stash) removed while we walk it: nothing left to count.
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      throw error;
    }
    for (const entry of entries) {
      const temp = inTemp || entry.name.startsWith(".mirrorlog-tmp-");
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path, temp);
      else if (temp && entry.isFile()) total += statSize(path);
    }
  };
  walk(root, false);
  return total;
}

function statSize(path: string): number {
  try {
    return statSync(path).size;
  } catch (error) {
    // A temp removed between the listing and the stat holds nothing any more: not an error here.
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw error;
  }
}

/**
 * Sends `request` and, while it is answered, samples the temp bytes under the root (as often as the
 * event loop allows). Returns the answer (or the transport's error), the peak temp bytes seen and the
 * child's peak RSS afterwards.
 */
export async function sendMeasured(
  serve: HostileServe,
  request: Request,
): Promise<{ response: Response | Error; peakTempBytes: number; peakRssBytes: number }> {
  let peakTemp = 0;
  let done = false;
  const answer = serve.client.request(request).then(
    (response) => response,
    (error: Error) => error,
  );
  void answer.finally(() => {
    done = true;
  });
  while (!done) {
    peakTemp = Math.max(peakTemp, tempBytes(serve.root));
    await new Promise((resolve) => setImmediate(resolve));
  }
  const response = await answer;
  peakTemp = Math.max(peakTemp, tempBytes(serve.root));
  return { response, peakTempBytes: peakTemp, peakRssBytes: peakRssBytes(serve) };
}

/** Ends the session and waits for the child to exit; returns its exit code. */
export async function stopServe(serve: HostileServe): Promise<number | null> {
  const exited = new Promise<number | null>((resolve) => {
    if (serve.child.exitCode !== null) resolve(serve.child.exitCode);
    else serve.child.once("exit", (code) => resolve(code));
  });
  await serve.client.close().catch(() => serve.child.kill("SIGKILL"));
  return exited;
}

/**
 * A zstd frame that inflates to `size` zero bytes while being tiny: RLE blocks of 128 KiB (4 bytes
 * each), no content size in the header, no checksum. 3 GiB cost about 98 KB: a decompression bomb.
 */
export function zeroBomb(size: number): Uint8Array {
  const blockMax = 128 * 1024;
  const blocks = Math.max(1, Math.ceil(size / blockMax));
  const frame = new Uint8Array(6 + blocks * 4);
  // Magic 0xFD2FB528 (little-endian), frame header descriptor 0 (no content size, no checksum),
  // window descriptor 0x38: a 2^17-byte window, enough for 128 KiB blocks.
  frame.set([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38]);
  let left = size;
  for (let i = 0; i < blocks; i++) {
    const length = Math.min(blockMax, left);
    left -= length;
    const last = i === blocks - 1 ? 1 : 0;
    // Block header (3 bytes, little-endian): last-block bit, type 1 (RLE), size in bits 3..23.
    const header = last | (1 << 1) | (length << 3);
    const at = 6 + i * 4;
    frame[at] = header & 0xff;
    frame[at + 1] = (header >>> 8) & 0xff;
    frame[at + 2] = (header >>> 16) & 0xff;
    frame[at + 3] = 0; // the byte repeated
  }
  return frame;
}

/** The content hash of `size` zero bytes (streamed: an honest declaration of what a zero bomb holds). */
export function zeroHash(size: number): string {
  const hasher = new ContentHasher();
  const zeros = new Uint8Array(Math.min(size, 1024 * 1024));
  for (let left = size; left > 0; left -= zeros.length) hasher.update(zeros.subarray(0, Math.min(left, zeros.length)));
  return hasher.digest();
}
