import { createHash, type Hash, hash } from "node:crypto";

/** A content id: the lowercase hex sha256 of a byte string (64 characters). */
export type ContentId = string;

/** The content id of zero bytes; an empty file has this id. */
export const EMPTY_CONTENT_ID: ContentId = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const CONTENT_ID_PATTERN = /^[0-9a-f]{64}$/;

/** The content id of `bytes`, hashed in one call (for data already in memory). */
export function contentIdOf(bytes: Uint8Array): ContentId {
  return hash("sha256", bytes, "hex");
}

/** True when `value` has the shape of a content id (64 lowercase hex digits). */
export function isContentId(value: unknown): value is ContentId {
  return typeof value === "string" && CONTENT_ID_PATTERN.test(value);
}

/** A streaming content id: bytes in order, then the id once (ContentHasher, or one on another thread). */
export interface WholeContentHasher {
  /** Adds the next bytes; the caller may reuse its buffer once this returns. */
  update(bytes: Uint8Array): unknown;
  /** The content id of everything added; callable once. */
  digest(): ContentId;
  /** Number of bytes added so far. */
  readonly size: number;
}

/**
 * Streaming sha256 for content too large to hold in memory: feed it read buffers in order,
 * then take the id once. Reusing it after `digest()` is a programming error and throws.
 */
export class ContentHasher implements WholeContentHasher {
  #hash: Hash = createHash("sha256");
  #size = 0;
  #digested = false;

  /** Adds the next bytes of the content; returns `this` so calls chain. */
  update(bytes: Uint8Array): this {
    if (this.#digested) throw new Error("ContentHasher.update called after digest");
    this.#hash.update(bytes);
    this.#size += bytes.length;
    return this;
  }

  /** Number of bytes hashed so far. */
  get size(): number {
    return this.#size;
  }

  /** The content id of everything passed to `update`; callable once. */
  digest(): ContentId {
    if (this.#digested) throw new Error("ContentHasher.digest called twice");
    this.#digested = true;
    return this.#hash.digest("hex");
  }
}
