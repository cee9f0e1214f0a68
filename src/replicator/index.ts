/*
 * Layer: replicator. The shells that wire the ports to the pure core: the scanner, the source session
 * (scan, plan, log, watch) and its drivers (the seed's synchronous ReplicatorSource, the streaming
 * source of the CLI), content shipping on the source and its assembly on the target, and the
 * ReplicatorTarget. It must not import from cli.
 */
export { type ChunkLists, type ContentBytes, ContentShipping } from "./contentShipping.js";
export { describeError, isMirrorFileSystem, type Problem, type ScanResult, scanPath } from "./scan.js";
export { ReplicatorSource, type ReplicatorSourceOptions, type RpcHandle } from "./source.js";
export {
  requestContentBytes,
  SessionRefusedError,
  SourceRootEmptyError,
  SourceRootMissingError,
  SourceSession,
  type SourceSessionOptions,
  type SyncStats,
} from "./sourceSession.js";
export { StreamingSource, type StreamingSourceOptions, type TargetConnection } from "./streamingSource.js";
export { ReplicatorTarget, type ReplicatorTargetOptions } from "./target.js";
export { ContentError, TargetContent } from "./targetContent.js";
