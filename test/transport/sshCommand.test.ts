import { execFileSync } from "node:child_process";
import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import {
  describeTarget,
  parseTargetSpec,
  quoteForRemoteShell,
  remoteShellCommand,
  SSH_COMMAND_ENV,
  splitCommandWords,
  sshArgv,
  TargetSpecError,
} from "../../src/transport/sshCommand.js";

describe("parseTargetSpec", () => {
  it.each([
    ["host:dir", { kind: "ssh", host: "host", path: "dir" }],
    ["user@host:/abs", { kind: "ssh", user: "user", host: "host", path: "/abs" }],
    ["host:", { kind: "ssh", host: "host", path: "." }],
    ["u_1.x@my-host.example.com:a:b", { kind: "ssh", user: "u_1.x", host: "my-host.example.com", path: "a:b" }],
    ["host:path with spaces/'quote'", { kind: "ssh", host: "host", path: "path with spaces/'quote'" }],
    ["10.0.0.1:/srv", { kind: "ssh", host: "10.0.0.1", path: "/srv" }],
    ["[::1]:/srv", { kind: "ssh", host: "::1", path: "/srv" }],
    ["root@[fe80::1]:", { kind: "ssh", user: "root", host: "fe80::1", path: "." }],
    ["./local:with:colons", { kind: "local", path: "./local:with:colons" }],
    ["/abs/path", { kind: "local", path: "/abs/path" }],
    ["/abs/pa:th", { kind: "local", path: "/abs/pa:th" }],
    ["relative/dir", { kind: "local", path: "relative/dir" }],
    ["plain", { kind: "local", path: "plain" }],
    ["-dash-local", { kind: "local", path: "-dash-local" }],
    ["C:/x", { kind: "local", path: "C:/x" }],
    ["c:\\x", { kind: "local", path: "c:\\x" }],
  ])("%s", (spec, expected) => {
    expect(parseTargetSpec(spec)).toEqual(expected);
  });

  it.each([
    ["-oProxyCommand=x:path", /invalid host "-oProxyCommand=x".*must not start with "-"/],
    ["-lroot:path", /must not start with "-"/],
    ["a;b:path", /invalid host "a;b".*character ";"/],
    ["a b:path", /invalid host "a b".*character " "/],
    ["$(reboot):x", /invalid host/],
    ["`id`:x", /invalid host/],
    ["a|b:x", /invalid host/],
    ["a&b:x", /invalid host/],
    ["'a':x", /invalid host/],
    ['"a":x', /invalid host/],
    ["h%h:x", /invalid host/],
    ["us;er@host:x", /invalid user "us;er"/],
    ["-user@host:x", /invalid user "-user".*must not start with "-"/],
    ["us er@host:x", /invalid user/],
    ["$USER@host:x", /invalid user/],
    ["@host:x", /empty user/],
    [":path", /empty host/],
    ["user@:path", /empty host/],
    ["[::1;id]:x", /invalid host/],
    ["", /empty target/],
    ["host:a\0b", /NUL/],
  ])("rejects %j", (spec, message) => {
    expect(() => parseTargetSpec(spec)).toThrow(TargetSpecError);
    expect(() => parseTargetSpec(spec)).toThrow(message);
  });

  it("describes targets back in spec form", () => {
    expect(describeTarget(parseTargetSpec("u@h:/x"))).toBe("u@h:/x");
    expect(describeTarget(parseTargetSpec("[::1]:x"))).toBe("[::1]:x");
    expect(describeTarget(parseTargetSpec("/x"))).toBe("/x");
  });
});

describe("remote command quoting", () => {
  it.each([
    ["plain", "plain"],
    ["--root=/srv/data", "--root=/srv/data"],
    ["", "''"],
    ["a b", "'a b'"],
    ["it's", "'it'\\''s'"],
    ["$(reboot)", "'$(reboot)'"],
    ["`id`", "'`id`'"],
    ["~/x", "'~/x'"],
    ["a;b", "'a;b'"],
    ["*", "'*'"],
    ["line\nbreak", "'line\nbreak'"],
  ])("quotes %j as %s", (word, quoted) => {
    expect(quoteForRemoteShell(word)).toBe(quoted);
  });

  // The real test of quoting: a POSIX shell must read back exactly the words we quoted.
  test.prop(
    [
      fc.array(
        fc.string({ unit: "binary", minLength: 0, maxLength: 20 }).map((s) => s.replaceAll("\0", "")),
        { minLength: 1, maxLength: 30 },
      ),
    ],
    {
      numRuns: 40,
    },
  )("/bin/sh reads every quoted word back unchanged", (words) => {
    const script = `printf '%s\\0' ${remoteShellCommand(words)}`;
    const output = execFileSync("/bin/sh", ["-c", script]).toString("utf8");
    expect(output.split("\0").slice(0, -1)).toEqual(words);
  });

  it("refuses an empty command or a NUL byte", () => {
    expect(() => remoteShellCommand([])).toThrow(/empty/);
    expect(() => remoteShellCommand(["a\0b"])).toThrow(/NUL/);
  });
});

describe("splitCommandWords", () => {
  it.each([
    ["ssh", ["ssh"]],
    ["  ssh   -F  /tmp/cfg ", ["ssh", "-F", "/tmp/cfg"]],
    ["ssh -F '/tmp/my dir/cfg'", ["ssh", "-F", "/tmp/my dir/cfg"]],
    ['ssh -o "ProxyJump=a b"', ["ssh", "-o", "ProxyJump=a b"]],
    ["ssh -i my\\ key", ["ssh", "-i", "my key"]],
    ["ssh ''", ["ssh", ""]],
    ["ssh $HOME", ["ssh", "$HOME"]],
  ])("%j", (line, words) => {
    expect(splitCommandWords(line)).toEqual(words);
  });

  it("rejects an unbalanced quote", () => {
    expect(() => splitCommandWords("ssh -F 'x")).toThrow(/unbalanced/);
  });
});

describe("sshArgv", () => {
  const remote = ["mirrorlog", "serve", "--stdio", "--root=/srv/my data"];

  it("builds ssh -T [-l user] -- host 'command' with no local shell", () => {
    expect(sshArgv("alice@box:/srv", remote, { env: {} })).toEqual({
      file: "ssh",
      args: ["-T", "-l", "alice", "--", "box", "mirrorlog serve --stdio '--root=/srv/my data'"],
    });
  });

  it("leaves the user to ssh's config when the spec has none", () => {
    expect(sshArgv("box:", ["true"], { env: {} }).args).toEqual(["-T", "--", "box", "true"]);
  });

  it("takes the ssh command from MIRRORLOG_SSH, and an explicit option over it", () => {
    const env = { [SSH_COMMAND_ENV]: "ssh -F '/tmp/a b/config'" };
    expect(sshArgv("h:x", ["true"], { env })).toEqual({
      file: "ssh",
      args: ["-F", "/tmp/a b/config", "-T", "--", "h", "true"],
    });
    expect(
      sshArgv("h:x", ["true"], { env, sshCommand: "/usr/bin/ssh -p 2222", sshOptions: ["-o", "Compression=yes"] }),
    ).toEqual({
      file: "/usr/bin/ssh",
      args: ["-p", "2222", "-o", "Compression=yes", "-T", "--", "h", "true"],
    });
  });

  it("refuses local targets and unsafe hosts", () => {
    expect(() => sshArgv("/local", ["true"], { env: {} })).toThrow(/not a remote target/);
    expect(() => sshArgv("-oProxyCommand=touch /tmp/pwned:x", ["true"], { env: {} })).toThrow(TargetSpecError);
  });
});
