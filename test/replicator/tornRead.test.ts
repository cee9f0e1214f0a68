// B5: a source file that changes while it is being read is detected (size/mtime/inode before and after
// the read differ) and read again; one that never holds still is reported and left as it was on the
// target. Never is a mix of two versions shipped, and other files go on.
import { describe, expect, test } from "vitest";
import { OperationLog } from "../../src/events/operationLog.js";
import { FileSystemEventType } from "../../src/fs/fileSystem.js";
import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { ReplicatorSource } from "../../src/replicator/source.js";
import { ReplicatorTarget } from "../../src/replicator/target.js";
import { connectInProcess } from "../../src/transport/inProcess.js";

/** A source disk where a writer appends to `path` during each of its next `times` reads. */
class AppendingWhileRead extends MemoryFileSystem {
  times = 0;
  constructor(private readonly path: string) {
    super();
  }
  override readFile(path: string): Uint8Array {
    const bytes = super.readFile(path);
    if (path === this.path && this.times > 0) {
      this.times--;
      super.writeFile(path, Buffer.concat([bytes, Buffer.from(" + more")]));
    }
    return bytes;
  }
}

function replicate(sourceFs: MemoryFileSystem) {
  const targetFs = new MemoryFileSystem();
  targetFs.makeDirs("/dst");
  const transport = connectInProcess(new ReplicatorTarget(targetFs, "/dst"));
  const source = new ReplicatorSource(sourceFs, "/src", transport.rpcHandle, { log: new OperationLog() });
  return { targetFs, source };
}

describe("a file that changes while it is read", () => {
  test("is read again, and the version shipped is a whole one", () => {
    const sourceFs = new AppendingWhileRead("/src/growing.log");
    sourceFs.makeDirs("/src");
    sourceFs.writeFile("/src/growing.log", "line 1");
    sourceFs.writeFile("/src/other.txt", "unaffected");
    sourceFs.times = 2; // the first two reads race with a writer; the third holds still
    const { targetFs, source } = replicate(sourceFs);
    const shipped = Buffer.from(targetFs.readFile("/dst/growing.log")).toString();
    expect(shipped).toBe(Buffer.from(sourceFs.readFile("/src/growing.log")).toString());
    expect(shipped).toBe("line 1 + more + more");
    expect(Buffer.from(targetFs.readFile("/dst/other.txt")).toString()).toBe("unaffected");
    expect(source.stats.problems).toEqual([]);
  });

  test("that never holds still is reported, left as it was on the target, and the rest goes on", () => {
    const sourceFs = new AppendingWhileRead("/src/busy.log");
    sourceFs.makeDirs("/src");
    sourceFs.writeFile("/src/busy.log", "v1");
    const { targetFs, source } = replicate(sourceFs);
    expect(Buffer.from(targetFs.readFile("/dst/busy.log")).toString()).toBe("v1");
    sourceFs.times = 100; // a writer that never stops
    sourceFs.writeFile("/src/new.txt", "new");
    source.handleEvent({ path: "/src", eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });
    expect(source.stats.problems).toEqual([
      { path: "busy.log", reason: expect.stringMatching(/changed while being read/) },
    ]);
    expect(Buffer.from(targetFs.readFile("/dst/busy.log")).toString()).toBe("v1");
    expect(Buffer.from(targetFs.readFile("/dst/new.txt")).toString()).toBe("new");
    // Once the writer stops, the next hint ships the file whole and the problem is gone.
    sourceFs.times = 0;
    source.handleEvent({ path: "/src/busy.log", eventType: FileSystemEventType.FILE_MODIFIED });
    expect(Buffer.from(targetFs.readFile("/dst/busy.log")).toString()).toBe(
      Buffer.from(sourceFs.readFile("/src/busy.log")).toString(),
    );
    expect(source.stats.problems).toEqual([]);
  });
});
