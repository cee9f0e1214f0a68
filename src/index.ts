// mirrorlog's public API: re-exports only. The seed's contract (FileSystem, MemoryFileSystem,
// ReplicatorSource, ReplicatorTarget, the request/response types), the engine, and CLI-facing pieces.
export * from "./content/index.js";
export * from "./events/index.js";
export * from "./fs/index.js";
export * from "./projections/index.js";
export * from "./replicator/index.js";
export * from "./transport/index.js";
