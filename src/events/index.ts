/*
 * Layer: events. The operation language (zod schemas of operations and of every request and
 * response, the protocol version, canonical paths), the planner that turns two trees into
 * operations, and the durable stores (the append-only OperationLog and the StateStore) on SQLite.
 * Pure apart from the two stores; it may import types from fs and content, nothing from
 * projections, transport, replicator or cli.
 */
export * from "./operation.js";
export {
  type ContentSplit,
  type Epoch,
  type LogEntry,
  type LoggedResult,
  type NewEntry,
  OperationLog,
} from "./operationLog.js";
export * from "./paths.js";
export { operationOf, type PlanOptions, planChanges } from "./plan.js";
export * from "./protocol.js";
export { type ContentIndex, ContentIndexMap, type IndexedFile, type PositionStore, StateStore } from "./stateStore.js";
export * from "./tree.js";
