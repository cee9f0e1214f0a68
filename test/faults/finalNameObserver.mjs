// Worker thread of the "never a partial file under a final name" observer (see faultScenarios.ts).
// It walks the target over and over while replication runs, and checks that every regular file at a
// final name (anything not starting with the reserved temp prefix) holds one of the complete versions
// the source ever had for that path. It runs in its own thread so that reading and hashing do not
// delay the test's kill timers. Plain JavaScript: a worker is loaded outside the test's module graph.
import { createHash } from "node:crypto";
import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { parentPort, workerData } from "node:worker_threads";

const TEMP_PREFIX = ".mirrorlog-tmp-";
const root = workerData.root;
/** path -> set of sha256 hex of every version the source ever had. */
const versions = new Map();
/** What was already checked: "ino:size:mtime:ctime" per path (a file replaced by rename gets a new inode). */
const checked = new Map();
const violations = [];
const reported = new Set();
let filesRead = 0;
let walks = 0;
let running = true;

parentPort.on("message", (message) => {
  if (message.type === "versions") {
    for (const [path, hash] of message.entries) {
      const set = versions.get(path) ?? new Set();
      set.add(hash);
      versions.set(path, set);
    }
    parentPort.postMessage({ type: "ack", id: message.id });
  } else if (message.type === "stop") {
    running = false;
  }
});

function readIfExists(read) {
  try {
    return read();
  } catch (error) {
    if (error.code === "ENOENT" || error.code === "ENOTDIR") return undefined; // replaced meanwhile
    throw error;
  }
}

function walk(dir, prefix) {
  const names = readIfExists(() => readdirSync(dir));
  if (names === undefined) return;
  for (const name of names) {
    if (name.startsWith(TEMP_PREFIX)) continue;
    const path = prefix === "" ? name : `${prefix}/${name}`;
    const absolute = `${dir}/${name}`;
    const stat = readIfExists(() => lstatSync(absolute));
    if (stat === undefined) continue;
    if (stat.isDirectory()) {
      walk(absolute, path);
      continue;
    }
    if (!stat.isFile()) continue;
    const key = `${stat.ino}:${stat.size}:${stat.mtimeMs}:${stat.ctimeMs}`;
    if (checked.get(path) === key) continue;
    const bytes = readIfExists(() => readFileSync(absolute));
    if (bytes === undefined) continue;
    filesRead++;
    const hash = createHash("sha256").update(bytes).digest("hex");
    // Judge what was read: the stat may be older than the bytes, so re-stat before caching.
    if (versions.get(path)?.has(hash)) {
      const after = readIfExists(() => lstatSync(absolute));
      if (after !== undefined && after.ino === stat.ino) checked.set(path, key);
    } else if (!reported.has(`${path}:${hash}`) && violations.length < 50) {
      reported.add(`${path}:${hash}`);
      violations.push({ path, size: bytes.length, sha256: hash, knownVersions: versions.get(path)?.size ?? 0 });
    }
  }
}

while (running) {
  walk(root, "");
  walks++;
  await sleep(5);
}
parentPort.postMessage({ type: "report", violations, filesRead, walks });
