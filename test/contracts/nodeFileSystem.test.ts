import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { NodeFileSystem } from "../../src/fs/nodeFileSystem.js";
import { describeFileSystemContract } from "./fileSystemContract.js";

describeFileSystemContract("NodeFileSystem (confined to a fresh temp dir)", () => {
  const base = mkdtempSync(`${tmpdir()}/mirrorlog-contract-`);
  const root = `${base}/root`;
  mkdirSync(root);
  const fs = new NodeFileSystem({ root });
  return {
    fs,
    root,
    cleanup: () => {
      fs.close();
      rmSync(base, { recursive: true, force: true });
    },
  };
});
