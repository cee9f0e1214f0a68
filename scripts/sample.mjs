#!/usr/bin/env node
// The README's main job: builds a sample tree on disk, mirrors it with `mirrorlog sync`, changes a few
// things, syncs again, and shows both trees and the summaries. Everything lives under one temp dir.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, lstatSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
// npm ci has built dist/: mirrorlog's argv after node, with the V8 flags it runs with (as by name).
import { mirrorlogArgs } from "../dist/cli/nodeCommand.js";

const base = mkdtempSync(join(tmpdir(), "mirrorlog-sample-"));
const src = join(base, "source");
const dst = join(base, "target");
const env = { ...process.env, XDG_STATE_HOME: join(base, "state") };

mkdirSync(join(src, "docs/notes"), { recursive: true });
mkdirSync(join(src, "data/raw"), { recursive: true });
writeFileSync(join(src, "README.md"), "# sample project\n");
writeFileSync(join(src, "docs/guide.txt"), "how to mirror a tree\n".repeat(50));
writeFileSync(join(src, "docs/notes/empty.txt"), "");
writeFileSync(join(src, "data/raw/blob.bin"), randomBytes(256 * 1024));
writeFileSync(join(src, "run.sh"), "#!/bin/sh\necho hi\n");
chmodSync(join(src, "run.sh"), 0o755);
symlinkSync("docs/guide.txt", join(src, "guide-link"));
writeFileSync(join(src, ".mirrorlogignore"), "*.tmp\n");
writeFileSync(join(src, "scratch.tmp"), "never mirrored");
// The target starts non-empty: a stale file and a directory where the source has a file.
mkdirSync(join(dst, "README.md"), { recursive: true });
writeFileSync(join(dst, "stale.txt"), "left over");

function sync(title, flags = []) {
  console.log(`\n$ mirrorlog sync ${[...flags, src, dst].join(" ")}   # ${title}`);
  console.log(execFileSync(process.execPath, mirrorlogArgs(["sync", ...flags, src, dst]), { env, encoding: "utf8" }).trimEnd());
}

function listing(root, dir = "", depth = 0) {
  const lines = [];
  for (const name of readdirSync(join(root, dir)).sort()) {
    const path = join(root, dir, name);
    const stat = lstatSync(path);
    const mode = (stat.mode & 0o777).toString(8);
    const what = stat.isSymbolicLink() ? `-> ${readlinkSync(path)}` : stat.isDirectory() ? "/" : `${stat.size} B`;
    lines.push(`${"  ".repeat(depth)}${name} ${what} (${mode})`);
    if (stat.isDirectory()) lines.push(...listing(root, join(dir, name), depth + 1));
  }
  return lines;
}

// The first sync into a DST that holds entries SRC lacks deletes them only when told to (--delete).
sync("initial mirror onto a non-empty target", ["--delete"]);
writeFileSync(join(src, "docs/guide.txt"), "how to mirror a tree, revised\n");
rmSync(join(src, "docs/notes"), { recursive: true });
mkdirSync(join(src, "new/deeper"), { recursive: true });
writeFileSync(join(src, "new/deeper/file.txt"), "fresh");
sync("after modifying a file, removing a directory and adding another");
sync("nothing changed");
console.log(`\nsource ${src}:\n  ${listing(src).join("\n  ")}`);
console.log(`\ntarget ${dst}:\n  ${listing(dst).join("\n  ")}`);
const diff = (() => {
  try {
    return execFileSync("diff", ["-r", "--no-dereference", "-x", "*.tmp", src, dst], { encoding: "utf8" }) || "identical";
  } catch (error) {
    return error.stdout || String(error);
  }
})();
console.log(`\ndiff -r source target (excluding *.tmp): ${diff.trim()}`);
