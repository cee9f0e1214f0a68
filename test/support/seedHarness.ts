import { OperationLog } from "../../src/events/operationLog.js";
import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { ReplicatorSource } from "../../src/replicator/source.js";
import { ReplicatorTarget } from "../../src/replicator/target.js";
import { connectInProcess, type InProcessTransport } from "../../src/transport/inProcess.js";

/** Two machines as the seed's tests build them: a source and a target MemoryFileSystem. */
export interface SeedMachines {
  sourceFs: MemoryFileSystem;
  targetFs: MemoryFileSystem;
  sourceDir: string;
  targetDir: string;
}

/** A source and target wired through the in-process transport. */
export interface Replication extends SeedMachines {
  source: ReplicatorSource;
  target: ReplicatorTarget;
  transport: InProcessTransport;
  log: OperationLog;
}

/** Fresh machines with the seed's directory names. */
export function seedMachines(): SeedMachines {
  return {
    sourceFs: new MemoryFileSystem(),
    targetFs: new MemoryFileSystem(),
    sourceDir: "/a/b/c",
    targetDir: "/x/y/z",
  };
}

/** Starts replication between the machines (the source constructor runs the initial sync). */
export function startReplication(machines: SeedMachines): Replication {
  if (!machines.sourceFs.exists(machines.sourceDir)) machines.sourceFs.makeDirs(machines.sourceDir);
  if (!machines.targetFs.exists(machines.targetDir)) machines.targetFs.makeDirs(machines.targetDir);
  const target = new ReplicatorTarget(machines.targetFs, machines.targetDir);
  const transport = connectInProcess(target);
  const log = new OperationLog();
  const source = new ReplicatorSource(machines.sourceFs, machines.sourceDir, transport.rpcHandle, { log });
  return { ...machines, source, target, transport, log };
}

/** The two trees rendered for comparison; equal trees render equally apart from their root lines. */
export function renderedTrees(r: SeedMachines): { source: string; target: string } {
  const strip = (s: string) => s.split("\n").slice(1).join("\n");
  return { source: strip(r.sourceFs.debugString(r.sourceDir)), target: strip(r.targetFs.debugString(r.targetDir)) };
}
