// A racer for the stash test: renames every entry at the top of the target's stash directories
// (`.mirrorlog-tmp-*-stash` in the root given as argv[2]) to a new name, over and over, until killed.
// It prints "renamed N" on stdout each time it renamed something, so the test knows it raced.
import { readdirSync, renameSync } from "node:fs";
import { join } from "node:path";

const root = process.argv[2];
let renamed = 0;
for (;;) {
  let names = [];
  try {
    names = readdirSync(root).filter((name) => name.startsWith(".mirrorlog-tmp-") && name.endsWith("-stash"));
  } catch {
    // the root is being changed: look again
  }
  for (const stash of names) {
    let entries = [];
    try {
      entries = readdirSync(join(root, stash));
    } catch {
      continue; // removed meanwhile
    }
    for (const entry of entries) {
      try {
        renameSync(join(root, stash, entry), join(root, stash, `${entry}r`));
        if (++renamed % 100 === 1) process.stdout.write(`renamed ${renamed}\n`);
      } catch {
        // taken back or removed meanwhile
      }
    }
  }
}
