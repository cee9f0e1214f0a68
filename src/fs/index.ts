/*
 * Layer: fs. The only code that knows what a file system is: the FileSystem port (the seed's, plus
 * metadata, symlinks, staged writes and listings with stats), MemoryFileSystem (the seed's mock, with
 * its counters) and NodeFileSystem (a real disk: no-follow, confined, atomic, kernel-watched).
 * It imports nothing from the other layers.
 */
export * from "./fileSystem.js";
export { MemoryFileSystem, type MemoryFileSystemOptions } from "./memoryFileSystem.js";
export { type Durability, NodeFileSystem, type NodeFileSystemOptions } from "./nodeFileSystem.js";
