import { enableMapSet, produce } from "immer";
import type { Operation, Position } from "../events/operation.js";
import { isAtOrBelow } from "../events/paths.js";
import type { ApplyOutcome } from "../events/protocol.js";

enableMapSet();

/** One step in the life of a path: the operation logged for it and, once known, what the target did. */
export interface HistoryStep {
  position: Position;
  operation: Operation;
  outcome?: ApplyOutcome;
}

/** Per-path history: every path's steps, oldest first. */
export type PathHistory = ReadonlyMap<string, readonly HistoryStep[]>;

/** A logged operation or an apply result, as the history fold consumes them. */
export type HistoryEvent =
  | { kind: "logged"; position: Position; operation: Operation }
  | { kind: "result"; position: Position; path: string; outcome: ApplyOutcome };

/** Folds a batch of log events into the per-path history (one produce per batch). */
export function foldPathHistory(history: PathHistory, events: readonly HistoryEvent[]): PathHistory {
  if (events.length === 0) return history;
  return produce(history as Map<string, HistoryStep[]>, (draft) => {
    for (const event of events) {
      if (event.kind === "logged") {
        const steps = draft.get(event.operation.path);
        const step = { position: event.position, operation: event.operation };
        if (steps === undefined) draft.set(event.operation.path, [step]);
        else steps.push(step);
      } else {
        const step = draft
          .get(event.path)
          ?.find((s) => s.position.epoch === event.position.epoch && s.position.seq === event.position.seq);
        if (step !== undefined) step.outcome = event.outcome;
      }
    }
  });
}

/** The steps of `path` and of everything below it, in log order. */
export function historyOf(history: PathHistory, path: string): HistoryStep[] {
  const steps: HistoryStep[] = [];
  for (const [p, s] of history) if (isAtOrBelow(path, p)) steps.push(...s);
  return steps.sort((a, b) => a.position.epoch - b.position.epoch || a.position.seq - b.position.seq);
}
