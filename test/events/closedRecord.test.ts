// A state file mirrorlog closed cleanly and nothing touched since is not read whole (quick_check) when it is
// next opened; anything that wrote to it since, a leftover WAL, or a copy of it elsewhere, and it is.
import { closeSync, mkdtempSync, openSync, rmSync, statSync, utimesSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  closedAsRecorded,
  closedRecordPath,
  OperationLog,
  recordClosedStateFile,
  StateFileError,
} from "../../src/events/operationLog.js";
import { StateStore } from "../../src/events/stateStore.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A state file with a log of a few hundred operations, closed as a run closes it (and recorded so). */
function closedStateFile(): string {
  const dir = mkdtempSync(join(tmpdir(), "mirrorlog-closed-"));
  dirs.push(dir);
  const path = join(dir, "state.db");
  const log = new OperationLog(path, { verify: true });
  log.startEpoch("test", 1);
  const entries = Array.from({ length: 400 }, (_, i) => ({
    operation: { type: "writeFile" as const, path: `dir/file-${i}`, hash: "ab".repeat(32), size: i },
    detectedBy: "initial" as const,
  }));
  log.append(entries, 2);
  const state = new StateStore(path);
  state.close();
  log.close();
  recordClosedStateFile(path);
  return path;
}

describe("a state file's closed record", () => {
  it("vouches for a file closed cleanly and untouched since, also after it was opened and closed again", () => {
    const path = closedStateFile();
    expect(closedAsRecorded(path)).toBe(true);
    // Opening it (for writing, checked) and closing it without a change leaves it as recorded.
    new OperationLog(path, { verify: true }).close();
    expect(closedAsRecorded(path)).toBe(true);
  });

  it("does not vouch once the file was written to, even with its mtime put back", () => {
    const path = closedStateFile();
    const { size, atime, mtime } = statSync(path);
    const fd = openSync(path, "r+");
    try {
      writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, Math.floor(size / 2 / 4096) * 4096);
    } finally {
      closeSync(fd);
    }
    utimesSync(path, atime, mtime); // the ctime still moved
    expect(closedAsRecorded(path)).toBe(false);
    // So the damage is found at the open, as without the record.
    let failure: unknown;
    try {
      new OperationLog(path, { verify: true }).close();
    } catch (error) {
      failure = error;
    }
    expect(failure).toBeInstanceOf(StateFileError);
    expect((failure as StateFileError).problem).toBe("damaged");
  });

  it("does not vouch with a WAL beside the file (a run that crashed), nor without the record", () => {
    const path = closedStateFile();
    writeFileSync(`${path}-wal`, Buffer.alloc(32));
    expect(closedAsRecorded(path)).toBe(false);
    rmSync(`${path}-wal`);
    expect(closedAsRecorded(path)).toBe(true);
    rmSync(closedRecordPath(path));
    expect(closedAsRecorded(path)).toBe(false);
  });
});
