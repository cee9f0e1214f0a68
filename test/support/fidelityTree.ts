// Trees that exercise everything `rsync -aH --numeric-ids` keeps, and rsync itself as the oracle:
// permission bits with setuid/setgid/sticky, nanosecond mtimes (before 1970, after 2038) of files,
// directories and symlinks, numeric owners and groups, hard-link groups, names and link targets
// that are arbitrary bytes. Plain node:fs with Buffer paths and coreutils only (never the
// project's code), so the replicator cannot share a bug with its oracle.
import { execFileSync, spawnSync } from "node:child_process";
import {
  appendFileSync,
  chmodSync,
  lchownSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";

/** A path below a root: a string, or raw bytes for names that are not UTF-8. */
export type BytePath = string | Buffer;

/** Joins a root and relative components into a Buffer path (each component may be raw bytes). */
export function bytePath(...parts: BytePath[]): Buffer {
  const buffers: Buffer[] = [];
  parts.forEach((part, i) => {
    if (i > 0) buffers.push(Buffer.from("/"));
    buffers.push(typeof part === "string" ? Buffer.from(part) : part);
  });
  return Buffer.concat(buffers);
}

/** True when `path` is valid UTF-8 that survives a round trip through a JS string (so argv can carry it). */
function isPlainText(path: Buffer): boolean {
  return Buffer.from(path.toString("utf8")).equals(path) && !path.includes(0);
}

let stagingCounter = 0;

/**
 * Sets the mtime (and atime) of `path` itself (never following a symlink) to `stamp`, e.g.
 * "-1234567890.123456789" or "4102444800.5": `touch -h -d @STAMP`, the only way to get nanoseconds
 * from node. A name argv cannot carry (not UTF-8) is renamed to a plain staging name beside it,
 * touched, and renamed back: rename changes neither the entry's mtime nor its inode.
 */
export function touchExact(path: BytePath, stamp: string): void {
  const bytes = typeof path === "string" ? Buffer.from(path) : path;
  if (isPlainText(bytes)) {
    execFileSync("touch", ["-h", "-d", `@${stamp}`, "--", bytes.toString("utf8")]);
    return;
  }
  const slash = bytes.lastIndexOf(0x2f);
  const parent = slash < 0 ? Buffer.from(".") : bytes.subarray(0, slash);
  if (!isPlainText(parent)) throw new Error(`touchExact: parent of ${bytes.toString("latin1")} is not plain text`);
  const staging = join(parent.toString("utf8"), `.touch-staging-${process.pid}-${stagingCounter++}`);
  renameSync(bytes, staging);
  try {
    execFileSync("touch", ["-h", "-d", `@${stamp}`, "--", staging]);
  } finally {
    renameSync(staging, bytes);
  }
}

/** A non-UTF-8 name (0xff can never appear in UTF-8). */
export const NAME_FF = Buffer.from([0x66, 0xff, 0x6f]);
/** A Latin-1 "été": invalid UTF-8. */
export const NAME_LATIN1 = Buffer.from([0xe9, 0x74, 0xe9]);
/**
 * Valid UTF-8 holding U+EFFF, a private-use code point: beside NAME_FF it catches a byte-name encoding
 * that maps invalid bytes into the private use area without escaping real private-use characters.
 */
export const NAME_PRIVATE_USE = "f\u{efff}o";
/** A symlink target that is not UTF-8. */
export const TARGET_NON_UTF8 = Buffer.from([0x74, 0xfe, 0x2f, 0x78, 0xff]);
/** 255 bytes: 127 two-byte "é" and one "x" (NAME_MAX exactly, multibyte). */
export const NAME_255 = `${"é".repeat(127)}x`;

/** Owners used by the fixture (numeric; no such users need to exist). */
export const OWNER_A = { uid: 1234, gid: 5678 };
export const OWNER_B = { uid: 0, gid: 1234 };

/** Paths (relative to the root) the fidelity fixture holds, for mutation steps of the tests. */
export const FIXTURE = {
  hardLinkGroup: ["links/h1", "links/h2", "other/h3"],
  hardLinkPair: ["pair/p1", "pair/p2"],
  readOnlyDir: "ro",
  stickyDir: "sticky",
  setgidDir: "shared",
  setuidFile: "bin/setuid",
  plainFile: "bin/plain",
  ownedDir: "owned",
  bigFile: "big.bin",
} as const;

/** Deterministic bytes (no randomness needed; a counter pattern compresses badly enough). */
function patternBytes(size: number, seed: number): Buffer {
  const bytes = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    // xorshift32: cheap, deterministic, incompressible enough for transfer paths.
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

/**
 * Builds the fidelity fixture in `root` (which must exist and be empty). Order matters: owners before
 * modes (chown clears setuid/setgid), content before modes, names renamed into place before their
 * parent's mtime, and every directory's mtime last, deepest first, root included.
 */
export function buildFidelityTree(root: string): void {
  const at = (...parts: BytePath[]) => bytePath(root, ...parts);
  const dirs: { path: BytePath[]; mode: number; stamp: string }[] = [
    { path: ["bin"], mode: 0o755, stamp: "1500000000.100000001" },
    { path: ["private"], mode: 0o700, stamp: "1500000001.200000002" },
    { path: [FIXTURE.readOnlyDir], mode: 0o555, stamp: "1500000002.300000003" },
    { path: [FIXTURE.stickyDir], mode: 0o1777, stamp: "1500000003.400000004" },
    { path: [FIXTURE.setgidDir], mode: 0o2775, stamp: "1500000004.500000005" },
    { path: [FIXTURE.setgidDir, "inner"], mode: 0o2755, stamp: "-1234567890.123456789" },
    { path: ["links"], mode: 0o755, stamp: "4102444800.5" },
    { path: ["other"], mode: 0o750, stamp: "1500000005.600000006" },
    { path: ["pair"], mode: 0o755, stamp: "1500000006.700000007" },
    { path: ["names"], mode: 0o755, stamp: "1500000007.800000008" },
    { path: ["names", "deep"], mode: 0o755, stamp: "1500000008.900000009" },
    { path: ["empty-dir"], mode: 0o755, stamp: "1500000009.000000010" },
    { path: [FIXTURE.ownedDir], mode: 0o755, stamp: "1500000010.111111111" },
    { path: ["names", NAME_LATIN1], mode: 0o755, stamp: "1500000011.222222222" },
  ];
  for (const dir of dirs) mkdirSync(at(...dir.path));

  const files: { path: BytePath[]; content: Buffer | string; mode: number; stamp?: string }[] = [
    { path: [FIXTURE.setuidFile], content: "#!/bin/sh\necho setuid\n", mode: 0o4755, stamp: "1600000000.987654321" },
    { path: ["bin", "setgid"], content: "#!/bin/sh\necho setgid\n", mode: 0o2755, stamp: "1600000001.000000001" },
    { path: [FIXTURE.plainFile], content: "plain\n", mode: 0o755 },
    { path: ["private", "secret"], content: "secret\n", mode: 0o600, stamp: "-1234567890.123456789" },
    { path: ["private", "readonly"], content: "read only\n", mode: 0o444, stamp: "4102444800.5" },
    { path: [FIXTURE.readOnlyDir, "r1"], content: "inside a 0555 dir\n", mode: 0o644 },
    { path: [FIXTURE.readOnlyDir, "r2"], content: "also inside\n", mode: 0o444, stamp: "1000000000.000000001" },
    { path: [FIXTURE.stickyDir, "s1"], content: "sticky child\n", mode: 0o666 },
    { path: [FIXTURE.setgidDir, "g1"], content: "setgid child\n", mode: 0o664 },
    { path: [FIXTURE.setgidDir, "inner", "g2"], content: "deeper\n", mode: 0o644, stamp: "-1.5" },
    { path: ["empty"], content: "", mode: 0o644, stamp: "0.000000001" },
    { path: [FIXTURE.bigFile], content: patternBytes(3 * 1024 * 1024, 7), mode: 0o640 },
    // Over 4 MiB: travels as a streamed upload in pieces, a separate path for metadata to get lost on.
    {
      path: ["names", "streamed.bin"],
      content: patternBytes(5 * 1024 * 1024 + 3, 11),
      mode: 0o4750,
      stamp: "-86400.000000007",
    },
    { path: [NAME_FF], content: "non-UTF-8 name at the top\n", mode: 0o644, stamp: "1700000000.111111111" },
    { path: [NAME_PRIVATE_USE], content: "a real U+EFFF in the name\n", mode: 0o600, stamp: "1700000000.222222222" },
    { path: ["names", NAME_LATIN1, NAME_FF], content: "non-UTF-8 all the way\n", mode: 0o600 },
    { path: ["names", "back\\slash"], content: "backslash\n", mode: 0o644 },
    { path: ["names", "new\nline"], content: "newline\n", mode: 0o644, stamp: "1700000001.5" },
    { path: ["names", "-dash"], content: "leading dash\n", mode: 0o644 },
    { path: [".mirrorlog-tmp-user-data"], content: "looks like a temp, is user data\n", mode: 0o644 },
    { path: ["names", "deep", ".mirrorlog-tmp-x"], content: "nested reserved-looking name\n", mode: 0o600 },
    { path: ["names", NAME_255], content: "255 bytes of name\n", mode: 0o644, stamp: "1700000002.999999999" },
    { path: [FIXTURE.ownedDir, "by-a"], content: "owned by 1234:5678\n", mode: 0o640 },
    { path: [FIXTURE.ownedDir, "by-b"], content: "owned by 0:1234\n", mode: 0o2750 },
    { path: [FIXTURE.hardLinkGroup[0]], content: "one inode, three names\n", mode: 0o644, stamp: "1650000000.1" },
    { path: [FIXTURE.hardLinkPair[0]], content: "one inode, two names\n", mode: 0o600, stamp: "1650000001.2" },
  ];
  for (const file of files) writeFileSync(at(...file.path), file.content);

  const symlinks: { path: BytePath[]; target: BytePath; stamp?: string; owner?: typeof OWNER_A }[] = [
    { path: ["link-to-plain"], target: "bin/plain", stamp: "1600000002.123456789", owner: OWNER_A },
    { path: ["dangling"], target: "no/such/thing", stamp: "-1234567890.123456789" },
    { path: ["names", "non-utf8-target"], target: TARGET_NON_UTF8, stamp: "4102444800.5" },
    { path: ["names", NAME_LATIN1, "link-ff"], target: NAME_FF, owner: OWNER_B },
    { path: ["absolute"], target: "/etc/hostname" },
  ];
  for (const link of symlinks) symlinkSync(link.target, at(...link.path));

  // Hard links after the first name exists.
  linkSync(at(FIXTURE.hardLinkGroup[0]), at(FIXTURE.hardLinkGroup[1]));
  linkSync(at(FIXTURE.hardLinkGroup[0]), at(FIXTURE.hardLinkGroup[2]));
  linkSync(at(FIXTURE.hardLinkPair[0]), at(FIXTURE.hardLinkPair[1]));

  // Owners first (chown clears setuid/setgid), then modes, then times.
  lchownSync(at(FIXTURE.ownedDir, "by-a"), OWNER_A.uid, OWNER_A.gid);
  lchownSync(at(FIXTURE.ownedDir, "by-b"), OWNER_B.uid, OWNER_B.gid);
  lchownSync(at(FIXTURE.ownedDir), OWNER_A.uid, OWNER_A.gid);
  lchownSync(at(FIXTURE.hardLinkPair[0]), OWNER_A.uid, OWNER_A.gid);
  lchownSync(at("names", "-dash"), OWNER_B.uid, OWNER_B.gid);
  lchownSync(at(FIXTURE.setgidDir), OWNER_B.uid, OWNER_B.gid);
  lchownSync(at(FIXTURE.setuidFile), OWNER_A.uid, OWNER_A.gid);
  lchownSync(at("names", "streamed.bin"), OWNER_B.uid, OWNER_B.gid);
  for (const link of symlinks) if (link.owner) lchownSync(at(...link.path), link.owner.uid, link.owner.gid);

  for (const file of files) chmodSync(at(...file.path), file.mode);
  for (const file of files) if (file.stamp) touchExact(at(...file.path), file.stamp);
  for (const link of symlinks) if (link.stamp) touchExact(at(...link.path), link.stamp);

  // Directories last, deepest first, then the root: nothing below changes them afterwards.
  const deepestFirst = [...dirs].sort((a, b) => b.path.length - a.path.length);
  for (const dir of deepestFirst) chmodSync(at(...dir.path), dir.mode);
  for (const dir of deepestFirst) touchExact(at(...dir.path), dir.stamp);
  chmodSync(root, 0o755);
  touchExact(root, "1400000000.424242424");
}

/** The result of one rsync comparison. */
export interface RsyncComparison {
  /** rsync's exit status (0 when it could compare everything). */
  code: number | null;
  /** The itemized differences, one per line; empty when DST mirrors SRC. */
  itemized: string;
  stderr: string;
}

/**
 * `rsync -ainc -H --numeric-ids --delete --modify-window=-1 SRC/ DST/` (as the calling user, root
 * in this suite): a dry run that itemizes every difference in content (checksums), size, mtime to
 * the nanosecond (rsync's default window ignores sub-second differences of files: -1 makes it
 * exact), permissions with setuid/setgid/sticky, owner, group, symlink target, hard links and
 * missing or extra entries, the roots included. `extraArgs` go before the paths (e.g. --no-o).
 */
export function rsyncCompare(src: string, dst: string, extraArgs: readonly string[] = []): RsyncComparison {
  const result = spawnSync(
    "rsync",
    ["-ainc", "-H", "--numeric-ids", "--delete", "--modify-window=-1", ...extraArgs, `${src}/`, `${dst}/`],
    { encoding: "utf8", maxBuffer: 64 * 1024 * 1024, timeout: 60_000 },
  );
  if ((result.error as NodeJS.ErrnoException | undefined)?.code === "ENOENT") {
    throw new Error("rsync not found: the fidelity oracle needs it (apt-get install -y rsync)");
  }
  if (result.error) throw result.error;
  return { code: result.status, itemized: result.stdout, stderr: result.stderr };
}

/** True when rsync sees no difference at all (exit 0 and nothing itemized). */
export function rsyncSeesNoDifference(comparison: RsyncComparison): boolean {
  return comparison.code === 0 && comparison.itemized === "" && comparison.stderr === "";
}

/**
 * A listing of a tree for failure messages, one sorted line per entry: type and mode, owner, link
 * count, inode, exact mtime, size, the name and a symlink's target (odd bytes escaped as \xNN).
 */
export function listTreeExact(root: string): string {
  const result = spawnSync("find", [root, "-printf", "%M %U:%G n%n i%i %T@ %s %P -> %l\\0"], {
    maxBuffer: 64 * 1024 * 1024,
    timeout: 30_000,
  });
  if (result.error) return `find failed: ${result.error.message}`;
  // One entry per NUL. Valid UTF-8 shows as text; control characters and invalid bytes as \\xNN.
  const entries: string[] = [];
  let start = 0;
  for (let i = 0; i < result.stdout.length; i++) {
    if (result.stdout[i] !== 0) continue;
    entries.push(printable(result.stdout.subarray(start, i)));
    start = i + 1;
  }
  const stderr = result.stderr.toString("utf8");
  return entries.sort().join("\n") + (stderr.length > 0 ? `\nfind: ${stderr}` : "");
}

/** Bytes as text for a message: UTF-8 when valid (control characters escaped), else every odd byte escaped. */
function printable(bytes: Buffer): string {
  const hex = (byte: number) => `\\x${byte.toString(16).padStart(2, "0")}`;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return Array.from(text, (c) =>
      c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f ? hex(c.charCodeAt(0)) : c,
    ).join("");
  } catch {
    return Array.from(bytes, (byte) => (byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : hex(byte))).join("");
  }
}

/** The rsync output and both trees, for an assertion message. */
export function describeComparison(comparison: RsyncComparison, src: string, dst: string, context = ""): string {
  return [
    `rsync exit ${comparison.code}; itemized differences:`,
    comparison.itemized === "" ? "(none)" : comparison.itemized,
    comparison.stderr === "" ? "" : `rsync stderr:\n${comparison.stderr}`,
    `--- source ${src}`,
    listTreeExact(src),
    `--- target ${dst}`,
    listTreeExact(dst),
    context,
  ]
    .filter((s) => s !== "")
    .join("\n");
}

/** Writes through an existing name in place (the inode, and so every hard link, keeps it). */
export function appendInPlace(path: BytePath, text: string): void {
  appendFileSync(path, text);
}

/**
 * A directory where `chattr +i` works: `base` itself when its file system supports it, else an
 * ext4 image loop-mounted below `base` (root only; `forceLoopMount` takes this path anyway). `release()` unmounts (after `chattr -i` of
 * anything left immutable by the caller) and is safe to call twice.
 */
export function immutableCapableDir(
  base: string,
  options: { forceLoopMount?: boolean } = {},
): { dir: string; loopMounted: boolean; release(): void } {
  const probeDir = mkdtempSync(join(base, "chattr-probe-"));
  const probe = join(probeDir, "probe");
  writeFileSync(probe, "");
  const chattr = spawnSync("chattr", ["+i", probe]);
  if ((chattr.error as NodeJS.ErrnoException | undefined)?.code === "ENOENT") {
    rmSync(probeDir, { recursive: true, force: true });
    throw new Error("chattr not found: immutable-file tests need e2fsprogs (apt-get install -y e2fsprogs)");
  }
  const supported = chattr.status === 0;
  if (supported) spawnSync("chattr", ["-i", probe]);
  rmSync(probeDir, { recursive: true, force: true });
  if (supported && !options.forceLoopMount) return { dir: base, loopMounted: false, release: () => {} };

  const image = join(base, "ext4.img");
  const mountPoint = join(base, "ext4");
  mkdirSync(mountPoint);
  execFileSync("truncate", ["-s", "64M", image]);
  execFileSync("mkfs.ext4", ["-q", "-F", image]);
  execFileSync("mount", ["-o", "loop", image, mountPoint]);
  let mounted = true;
  return {
    dir: mountPoint,
    loopMounted: true,
    release: () => {
      if (!mounted) return;
      spawnSync("chattr", ["-R", "-i", mountPoint]);
      const umount = spawnSync("umount", [mountPoint]);
      if (umount.status !== 0) spawnSync("umount", ["-l", mountPoint]);
      mounted = false;
    },
  };
}

/** `chattr +i` / `chattr -i` of one path; throws with chattr's message when it fails. */
export function setImmutable(path: string, immutable: boolean): void {
  execFileSync("chattr", [immutable ? "+i" : "-i", path]);
}

/** Sets mode bits exactly (chmod(2) on the path; node keeps setuid/setgid/sticky bits as given). */
export function setMode(path: BytePath, mode: number): void {
  chmodSync(path, mode);
}

/** lchown by numeric ids (never follows a symlink). */
export function setOwner(path: BytePath, uid: number, gid: number): void {
  lchownSync(path, uid, gid);
}
