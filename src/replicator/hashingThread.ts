import { Worker } from "node:worker_threads";
import { ContentHasher, type ContentId, type WholeContentHasher } from "../content/contentId.js";

/*
 * A large file's whole-content sha256 computed on a helper thread while the scan's own thread cuts and
 * hashes its chunks from the same read. Reading a large file used to cost the scan three passes over
 * every byte on one core (gear hash, chunk sha256, file sha256: 485 + 323 + 318 ms for 512 MiB) with the
 * target idle meanwhile; the helper takes the third onto the core the scan leaves free.
 *
 * The scan is synchronous, so the helper is too, as seen from here: each piece is copied into a slot of
 * shared memory and named to the helper by message; the scan's thread waits (Atomics.wait, with a
 * deadline) only when every slot is still being hashed, and for the digest at the end. One helper per
 * process, started by the first large file and kept (unreferenced: it never holds the process open).
 * One file at a time: a file hashed while another one is (a file uploaded as it is read holds the
 * helper across turns, see readInPieces) hashes on the calling thread.
 */

/**
 * Files from this size on are worth the helper. It saves ≈ 0.5 ms per MiB, but its start costs ≈ 70 ms
 * once, most of which the scan waits out when its slots fill: a first file of 64 MiB took 244–272 ms
 * against 196–235 on one thread, one of 128 MiB 376–403 against 320–410 (5 fresh processes each).
 */
export const HASHING_THREAD_MIN_BYTES = 128 * 1024 * 1024;

/** Bytes per slot: the scan's reads are 4 MiB, and a larger piece is hashed in parts. */
const SLOT_BYTES = 4 * 1024 * 1024;
/** Slots in flight: enough that the scan's thread seldom waits for the helper. */
const SLOTS = 2;
/** How long the scan's thread waits for the helper before it gives up on it (it is wedged or gone). */
const HELPER_DEADLINE_MS = 30_000;

/** Control words: one per slot (1 = being hashed, 0 = free), then the number of digests written. */
const DIGESTS_WRITTEN = SLOTS;

/**
 * The helper's code: hashes the slots it is told of, in order; writes the digest when asked, or starts
 * over when a file was given up before its digest (a read that failed halfway).
 */
const HELPER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const { slots, control, digest } = workerData;
let hash = createHash("sha256");
parentPort.on("message", (message) => {
  if (message.slot !== undefined) {
    hash.update(new Uint8Array(slots, message.slot * ${SLOT_BYTES}, message.length));
    Atomics.store(control, message.slot, 0);
    Atomics.notify(control, message.slot);
  } else if (message.digest) {
    hash.digest().copy(Buffer.from(digest));
    hash = createHash("sha256");
    Atomics.add(control, ${DIGESTS_WRITTEN}, 1);
    Atomics.notify(control, ${DIGESTS_WRITTEN});
  } else {
    hash = createHash("sha256");
  }
});
`;

interface Helper {
  worker: Worker;
  slots: Uint8Array;
  control: Int32Array;
  digest: Uint8Array;
  /** True while a hasher uses it. */
  busy: boolean;
}

let helper: Helper | undefined;
/** Set once the helper failed to start or to answer: every later file hashes on its own thread. */
let helperBroken = false;
/** Bytes hashed on the helper since the process started (what the tests check it was used for). */
let helperBytes = 0;

/** Bytes the helper thread has hashed in this process. */
export function bytesHashedOnHelper(): number {
  return helperBytes;
}

/**
 * A whole-content hasher for a file of `size` bytes: on the helper thread from HASHING_THREAD_MIN_BYTES on
 * (when it can start and is free), else on this thread; the same sha256 either way. `release` frees the
 * helper (a file read across turns holds it until then).
 */
export function wholeContentHasher(size: number): { hasher: WholeContentHasher; release(): void } {
  const usable = size >= HASHING_THREAD_MIN_BYTES && !helperBroken && helper?.busy !== true;
  const started = usable ? (helper ?? startHelper()) : undefined;
  if (started === undefined) return { hasher: new ContentHasher(), release: () => {} };
  const hasher = new HelperHasher(started);
  return { hasher, release: () => hasher.release() };
}

function startHelper(): Helper | undefined {
  try {
    const slots = new Uint8Array(new SharedArrayBuffer(SLOTS * SLOT_BYTES));
    const control = new Int32Array(new SharedArrayBuffer(4 * (SLOTS + 1)));
    const digest = new Uint8Array(new SharedArrayBuffer(32));
    const worker = new Worker(HELPER_SOURCE, {
      eval: true,
      workerData: { slots: slots.buffer, control, digest: digest.buffer },
    });
    worker.unref();
    // A helper that fails or ends is not used again (a hasher waiting on it meanwhile throws at its deadline).
    const giveUp = (): void => {
      helperBroken = true;
    };
    worker.on("error", giveUp);
    worker.on("exit", giveUp);
    helper = { worker, slots, control, digest, busy: false };
    return helper;
  } catch {
    helperBroken = true;
    return undefined;
  }
}

/** Hashes on the helper thread; the caller's bytes are copied, so it may reuse its buffer at once. */
class HelperHasher implements WholeContentHasher {
  #size = 0;
  #next = 0;
  #digested = false;
  readonly #helper: Helper;
  readonly #digestsBefore: number;

  constructor(started: Helper) {
    this.#helper = started;
    started.busy = true;
    this.#digestsBefore = Atomics.load(started.control, DIGESTS_WRITTEN);
  }

  /** Frees the helper; one given up before its digest starts over for the next file. */
  release(): void {
    if (!this.#digested) this.#helper.worker.postMessage({ reset: true });
    this.#helper.busy = false;
  }

  get size(): number {
    return this.#size;
  }

  update(bytes: Uint8Array): this {
    if (this.#digested) throw new Error("hasher updated after its digest");
    const { worker, slots, control } = this.#helper;
    for (let at = 0; at < bytes.length; at += SLOT_BYTES) {
      const piece = bytes.subarray(at, at + SLOT_BYTES);
      const slot = this.#next;
      this.#next = (slot + 1) % SLOTS;
      this.#wait(slot, 1);
      slots.set(piece, slot * SLOT_BYTES);
      Atomics.store(control, slot, 1);
      worker.postMessage({ slot, length: piece.length });
      this.#size += piece.length;
    }
    return this;
  }

  digest(): ContentId {
    if (this.#digested) throw new Error("hasher digested twice");
    this.#digested = true;
    const started = this.#helper;
    started.worker.postMessage({ digest: true });
    this.#wait(DIGESTS_WRITTEN, this.#digestsBefore);
    helperBytes += this.#size;
    return Buffer.from(started.digest).toString("hex");
  }

  /** Waits while control word `index` still holds `value`; a helper that never changes it is given up on. */
  #wait(index: number, value: number): void {
    const { control } = this.#helper;
    const deadline = Date.now() + HELPER_DEADLINE_MS;
    while (Atomics.load(control, index) === value) {
      const left = deadline - Date.now();
      if (helperBroken || left <= 0 || Atomics.wait(control, index, value, left) === "timed-out") {
        helperBroken = true;
        throw new Error("the hashing thread stopped answering");
      }
    }
  }
}
