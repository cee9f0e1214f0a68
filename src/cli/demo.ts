/**
 * The seed demo: mirrors a sample tree between two MemoryFileSystems through the seed API, applies a
 * few changes, and prints both trees, the operations logged and the bytes that crossed the RPC boundary.
 */
import { OperationLog } from "../events/operationLog.js";
import { FileSystemEventType } from "../fs/fileSystem.js";
import { MemoryFileSystem } from "../fs/memoryFileSystem.js";
import { ReplicatorSource } from "../replicator/source.js";
import { ReplicatorTarget } from "../replicator/target.js";
import { connectInProcess } from "../transport/inProcess.js";

/** Runs the demo and returns its report as text. */
export function runSeedDemo(): string {
  const sourceFs = new MemoryFileSystem();
  const targetFs = new MemoryFileSystem();
  sourceFs.makeDirs("/src/docs/drafts");
  sourceFs.writeFile("/src/README.md", "# sample\n");
  sourceFs.writeFile("/src/docs/guide.txt", "how to mirror");
  sourceFs.writeFile("/src/docs/drafts/idea.txt", "an idea");
  targetFs.makeDirs("/dst/stale");
  targetFs.writeFile("/dst/README.md", "# sample\n");
  targetFs.writeFile("/dst/stale/old.txt", "left over");

  const target = new ReplicatorTarget(targetFs, "/dst");
  const transport = connectInProcess(target);
  const log = new OperationLog();
  const source = new ReplicatorSource(sourceFs, "/src", transport.rpcHandle, { log });

  sourceFs.writeFile("/src/docs/guide.txt", "how to mirror, revised");
  source.handleEvent({ path: "/src/docs/guide.txt", eventType: FileSystemEventType.FILE_MODIFIED });
  sourceFs.removeDir("/src/docs/drafts");
  source.handleEvent({ path: "/src/docs/drafts", eventType: FileSystemEventType.FILE_OR_SUBDIR_REMOVED });
  sourceFs.makeDirs("/src/new/deep");
  sourceFs.writeFile("/src/new/deep/file.bin", new Uint8Array([0, 1, 2, 255]));
  source.handleEvent({ path: "/src/new", eventType: FileSystemEventType.FILE_OR_SUBDIR_ADDED });

  const lines = [
    "source:",
    sourceFs.debugString("/src"),
    "",
    "target:",
    targetFs.debugString("/dst"),
    "",
    "operations logged:",
  ];
  for (const { entry, result } of log.history("")) {
    const { epoch, seq } = entry.position;
    const op = entry.operation;
    const detail = op.type === "writeFile" ? ` ${op.size} B ${op.hash.slice(0, 12)}` : "";
    lines.push(
      `  ${epoch}:${seq} ${op.type} ${op.path}${detail} (${entry.detectedBy}) -> ${result?.outcome ?? "pending"}`,
    );
  }
  const { stats } = transport;
  lines.push(
    "",
    `rpc: ${stats.requests} requests, ${stats.bytesSent} bytes sent, ${stats.bytesReceived} bytes received`,
    `target writeFile calls: ${targetFs.getNumOperations("writeFile")}; source watches: ${sourceFs.numWatchedDirs()}`,
    `trees equal: ${sourceFs.debugString("/src").split("\n").slice(1).join("\n") === targetFs.debugString("/dst").split("\n").slice(1).join("\n")}`,
  );
  return lines.join("\n");
}
