import { MemoryFileSystem } from "../../src/fs/memoryFileSystem.js";
import { describeFileSystemContract } from "./fileSystemContract.js";

describeFileSystemContract("MemoryFileSystem", () => {
  const fs = new MemoryFileSystem();
  fs.makeDir("/work");
  return { fs, root: "/work" };
});
