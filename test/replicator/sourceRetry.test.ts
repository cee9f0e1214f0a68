// The source decides whether to retry a failed operation from the result's typed code, never from its
// reason text (the regex-on-prose bug: a reason that merely said "missing" was taken for missing content).
// Drift (the target lacked content or a basis, or the bytes did not match) is planned again at once and
// sent in full; anything else (permission, no space, ...) stays an open problem until the path changes.
import { describe, expect, it } from "vitest";
import {
  type ApplyRequest,
  type ApplyResult,
  type FailureCode,
  FailureCodeSchema,
  type Request,
  type Response,
  ResponseSchema,
} from "../../src/events/protocol.js";
import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { ReplicatorSource } from "../../src/replicator/source.js";
import { SourceSession } from "../../src/replicator/sourceSession.js";
import { ReplicatorTarget } from "../../src/replicator/target.js";

const DRIFT: FailureCode[] = ["missing-content", "missing-basis", "hash-mismatch"];
/** Prose that mentions what a regex on the reason would have taken for drift. */
const MISLEADING_REASON = "EPERM: content missing? basis missing? hash mismatch? no: operation not permitted";

function machines() {
  const sourceFs = new MemoryFileSystem();
  sourceFs.makeDirs("/src/d");
  sourceFs.writeFile("/src/d/f", "payload");
  sourceFs.writeFile("/src/g", "other");
  const targetFs = new MemoryFileSystem();
  targetFs.makeDirs("/dst");
  const target = new ReplicatorTarget(targetFs, "/dst", { canSetOwner: false });
  return { sourceFs, targetFs, target };
}

/** The result at `path` in an applied response, replaced by a failure with `code` (the target did apply it). */
function failResultAt(request: ApplyRequest, response: Response, path: string, code: FailureCode): Response {
  if (response.type !== "applied") return response;
  const seq = request.entries.find((e) => e.operation.path === path && e.operation.type === "writeFile")?.seq;
  if (seq === undefined) return response;
  const results = response.results.map(
    (r): ApplyResult =>
      r.seq === seq
        ? { seq, outcome: "failed", wroteFile: false, bytesWritten: 0, code, reason: MISLEADING_REASON }
        : r,
  );
  return { ...response, results };
}

describe("SourceSession.settle decides on the failure code", () => {
  it.each(FailureCodeSchema.options)("code %s", (code) => {
    const { sourceFs, target } = machines();
    const session = new SourceSession({ fs: sourceFs, root: "/src" });
    const send = (request: Request): Response => ResponseSchema.parse(target.handleRequest(request));
    const resumed = session.resume(send(session.openingHello()));
    expect(resumed).toEqual({ replay: [] });
    while (!session.acceptManifest(send(session.manifestRequest()))) {}
    const entries = session.planPath("", "initial");
    const retry: string[] = [];
    for (const request of session.requestsFor(entries)) {
      const response = send(request);
      retry.push(
        ...session.settle(request, request.type === "apply" ? failResultAt(request, response, "d/f", code) : response),
      );
    }
    const drift = DRIFT.includes(code);
    expect(retry).toEqual(drift ? ["d/f"] : []);
    // Either way the path's state on the target is unknown now, and the failure is an open problem.
    expect(session.stats.problems).toEqual([{ path: "d/f", reason: MISLEADING_REASON }]);
    expect(session.expectedTree().children.get("d")).toMatchObject({ kind: "dir" });
  });

  it("the codes that are drift are exactly missing-content, missing-basis and hash-mismatch", () => {
    // A new code must be classified on purpose: this list and the source's switch change together.
    expect(FailureCodeSchema.options).toEqual([
      "missing-content",
      "missing-basis",
      "hash-mismatch",
      "permission",
      "read-only",
      "no-space",
      "unsafe-path",
      "not-found",
      "metadata",
      "limit",
      "io",
    ]);
  });
});

describe("ReplicatorSource re-plans drift at once, and only drift", () => {
  /** Runs the initial sync with the first result for d/f turned into a failure with `code`. */
  function syncWithFailure(code: FailureCode) {
    const { sourceFs, targetFs, target } = machines();
    const writesOfF: number[] = [];
    let failed = false;
    const rpcHandle = (request: Request): Response => {
      const response = ResponseSchema.parse(target.handleRequest(request));
      if (request.type !== "apply") return response;
      const entry = request.entries.find((e) => e.operation.path === "d/f" && e.operation.type === "writeFile");
      if (entry === undefined) return response;
      writesOfF.push(entry.seq);
      if (failed) return response;
      failed = true;
      return failResultAt(request, response, "d/f", code);
    };
    const source = new ReplicatorSource(sourceFs, "/src", rpcHandle);
    return { source, targetFs, writesOfF };
  }

  it("missing-content: d/f is planned and sent again, and the problem is settled", () => {
    const { source, targetFs, writesOfF } = syncWithFailure("missing-content");
    expect(writesOfF).toHaveLength(2);
    expect(writesOfF[1]).toBeGreaterThan(writesOfF[0]!);
    const history = source.log.history("d/f");
    expect(history.map((h) => h.entry.detectedBy)).toEqual(["initial", "retry"]);
    expect(history.map((h) => h.result?.outcome)).toEqual(["failed", "unchanged"]);
    expect(source.stats.problems).toEqual([]);
    expect(new TextDecoder().decode(targetFs.readFile("/dst/d/f"))).toBe("payload");
    source.close();
  });

  it.each(["permission", "no-space", "io"] as const)(
    "%s with a reason that says 'missing': not retried, left as an open problem",
    (code) => {
      const { source, writesOfF } = syncWithFailure(code);
      expect(writesOfF).toHaveLength(1);
      expect(source.log.history("d/f").map((h) => h.entry.detectedBy)).toEqual(["initial"]);
      expect(source.stats.problems).toEqual([{ path: "d/f", reason: MISLEADING_REASON }]);
      source.close();
    },
  );
});
