// mirrorlog's public API: re-exports only. The seed's contract (FileSystem, MemoryFileSystem,
// ReplicatorSource, ReplicatorTarget, the request/response types), the engine, and CLI-facing pieces.

export * from "./events/operation.js";
export { type Epoch, type LogEntry, type LoggedResult, type NewEntry, OperationLog } from "./events/operationLog.js";
export * from "./events/paths.js";
export { planChanges } from "./events/plan.js";
export * from "./events/protocol.js";
export { type ContentIndex, type IndexedFile, type PositionStore, StateStore } from "./events/stateStore.js";
export * from "./events/tree.js";
export * from "./fs/fileSystem.js";
export { MemoryFileSystem, type MemoryFileSystemOptions } from "./fs/memoryFileSystem.js";
export * from "./projections/expectedTree.js";
export * from "./projections/lag.js";
export * from "./projections/pathHistory.js";
export { type Problem, scanPath } from "./replicator/scan.js";
export { ReplicatorSource, type ReplicatorSourceOptions, type RpcHandle } from "./replicator/source.js";
export {
  SessionRefusedError,
  SourceRootMissingError,
  SourceSession,
  type SyncStats,
} from "./replicator/sourceSession.js";
export { ReplicatorTarget, type ReplicatorTargetOptions } from "./replicator/target.js";
export { connectInProcess, type InProcessTransport, type WireStats } from "./transport/inProcess.js";
