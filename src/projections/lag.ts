import type { Position } from "../events/operation.js";

/** How far the target trails the log. */
export interface Lag {
  lastLogged: Position;
  lastApplied: Position | null;
  /** Operations logged but not yet applied (the whole current epoch when the target is on another one). */
  pendingOperations: number;
}

/** The lag of a target at `lastApplied` behind a log whose head is `lastLogged`. */
export function lagOf(lastLogged: Position, lastApplied: Position | null): Lag {
  const pendingOperations =
    lastApplied === null || lastApplied.epoch !== lastLogged.epoch
      ? lastLogged.seq
      : Math.max(0, lastLogged.seq - lastApplied.seq);
  return { lastLogged, lastApplied, pendingOperations };
}
