// How far a target trails the log.
import { describe, expect, it } from "vitest";
import { lagOf } from "../../src/projections/lag.js";

describe("lagOf", () => {
  it("counts the operations after the applied position in the same epoch", () => {
    expect(lagOf({ epoch: 3, seq: 10 }, { epoch: 3, seq: 4 })).toEqual({
      lastLogged: { epoch: 3, seq: 10 },
      lastApplied: { epoch: 3, seq: 4 },
      pendingOperations: 6,
    });
    expect(lagOf({ epoch: 3, seq: 10 }, { epoch: 3, seq: 10 }).pendingOperations).toBe(0);
  });

  it("counts the whole current epoch for a target that has applied nothing or follows another epoch", () => {
    expect(lagOf({ epoch: 2, seq: 7 }, null).pendingOperations).toBe(7);
    expect(lagOf({ epoch: 2, seq: 7 }, { epoch: 1, seq: 100 }).pendingOperations).toBe(7);
  });

  it("never reports a negative lag", () => {
    expect(lagOf({ epoch: 1, seq: 2 }, { epoch: 1, seq: 5 }).pendingOperations).toBe(0);
  });
});
