import type { ContentIndex, IndexedFile } from "../events/stateStore.js";

/**
 * `--checksum`: a content index whose rows are never trusted, so every file is read and hashed again
 * (rsync -c) instead of being taken as unchanged on size, mtime, inode and ctime. What is hashed is still
 * recorded, so the next run without -c trusts fresh rows.
 */
export function rehashingIndex(index: ContentIndex): ContentIndex {
  return {
    get: (): IndexedFile | undefined => undefined,
    set: (path, entry) => index.set(path, entry),
    delete: (path) => index.delete(path),
    pathsWithHash: (hash) => index.pathsWithHash(hash),
    entriesBelow: (path) => index.entriesBelow(path),
  };
}
