/*
 * Layer: projections. Pure folds of the log: the expected target tree (what the target holds,
 * content hashes included; path copying), per-path history (immer, one produce per batch), and lag.
 * Imports only from events; no I/O.
 */
export * from "./expectedTree.js";
export * from "./lag.js";
export * from "./pathHistory.js";
