/*
 * Layer: projections. Pure immer folds of the log: the expected target tree (what the target holds,
 * content hashes included), per-path history, and lag. One produce per batch. Imports only from
 * events; no I/O.
 */
export * from "./expectedTree.js";
export * from "./lag.js";
export * from "./pathHistory.js";
