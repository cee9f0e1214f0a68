// The no-change floor (`npm run bench -- nochange modified`): node's start, mirrorlog's file-system layer
// loaded, and a bare walk of each tree named — every directory listed and every entry stated with the calls
// mirrorlog's scan and manifest make (getdents64 and statx through held directory handles) — and nothing
// else: no state, no comparison, no protocol. Prints each root's entry count, which the benchmark checks.
// Plain JavaScript on the compiled dist/, so it starts as a user's `mirrorlog` does (no TypeScript loader).
import { resolve } from "node:path";
import { NodeFileSystem } from "../dist/fs/index.js";

for (const argument of process.argv.slice(2)) {
  const root = resolve(argument);
  const fileSystem = new NodeFileSystem({ root, durability: "none" });
  let entries = 0;
  const walk = (dir) => {
    for (const { name, stat } of fileSystem.listDirStats(dir)) {
      entries++;
      if (stat.kind === "dir") walk(`${dir}/${name}`);
    }
  };
  walk(root);
  fileSystem.close();
  process.stdout.write(`${root} ${entries}\n`);
}
