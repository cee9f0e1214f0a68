// `mirrorlog completion bash|zsh` and `mirrorlog man`, through the real binary: the bash script, sourced
// in bash and driven like readline drives it (COMP_WORDS, COMP_CWORD), completes commands and options;
// the man page renders with man(1) / groff without warnings and lists every command and option --help lists.
import { execFileSync, spawnSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { makeWorkspace, mirrorlogArgs } from "../support/cliRunner.js";

const created: string[] = [];
afterAll(() => {
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

function mirrorlog(args: string[]): string {
  return execFileSync(process.execPath, mirrorlogArgs(args), { encoding: "utf8" });
}

/** The lines of a --help section ("Commands:", "Options:"), up to the next blank line. */
function helpSection(help: string, title: string): string[] {
  const lines = help.split("\n");
  const at = lines.indexOf(title);
  if (at === -1) return [];
  const section: string[] = [];
  for (const line of lines.slice(at + 1)) {
    if (line.trim() === "") break;
    section.push(line);
  }
  return section;
}

/** Command names --help lists (first word of each entry; continuation lines are indented further). */
function helpCommands(help: string): string[] {
  return helpSection(help, "Commands:").flatMap((line) => /^ {2}([a-z][\w-]*)/.exec(line)?.[1] ?? []);
}

/** Option flags --help lists, short and long. */
function helpOptions(help: string): string[] {
  return helpSection(help, "Options:").flatMap((line) => {
    const match = /^ {2}(-\w)?(?:, )?(--[\w-]+)?/.exec(line);
    return [match?.[1], match?.[2]].filter((flag): flag is string => flag !== undefined);
  });
}

describe("shell completion", () => {
  const ws = makeWorkspace("completion", created);
  const script = join(ws.base, "mirrorlog.bash");
  writeFileSync(script, mirrorlog(["completion", "bash"]));

  /** What the completion function offers for a command line whose last word is being completed. */
  function complete(words: string[]): string[] {
    const driver = `
source ${JSON.stringify(script)}
COMP_WORDS=(${words.map((word) => `'${word}'`).join(" ")})
COMP_CWORD=${words.length - 1}
spec=$(complete -p mirrorlog) || exit 3
fn=\${spec##*-F }; fn=\${fn%% *}
"$fn" mirrorlog "\${COMP_WORDS[COMP_CWORD]}" "\${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\\n' "\${COMPREPLY[@]}"`;
    const result = spawnSync("bash", ["--norc", "--noprofile", "-c", driver], { encoding: "utf8" });
    expect(result.status, result.stderr).toBe(0);
    return result.stdout.split("\n").filter((line) => line !== "");
  }

  it("bash: completes `mirrorlog sy` to sync and lists --exclude for `mirrorlog sync --ex`", () => {
    expect(complete(["mirrorlog", "sy"])).toEqual(["sync"]);
    expect(complete(["mirrorlog", "sync", "--ex"])).toEqual(expect.arrayContaining(["--exclude", "--exclude-from"]));
    expect(complete(["mirrorlog", "sync", "--ex"]).every((word) => word.startsWith("--ex"))).toBe(true);
    expect(complete(["mirrorlog", "completion", ""])).toEqual(["bash", "zsh"]);
    // After an option that takes a value, bash's own file-name completion takes over (nothing offered here).
    expect(complete(["mirrorlog", "sync", "--exclude", ""])).toEqual([]);
  });

  it("bash: offers every command and every option of each command that --help lists", () => {
    const commands = helpCommands(mirrorlog(["--help"]));
    expect(commands).toEqual(expect.arrayContaining(["sync", "watch", "serve", "verify", "completion", "man"]));
    expect(complete(["mirrorlog", ""]).sort()).toEqual([...commands].sort());
    for (const command of commands.filter((name) => name !== "help")) {
      const options = helpOptions(mirrorlog([command, "--help"]));
      expect(options.length, command).toBeGreaterThan(0);
      const offered = complete(["mirrorlog", command, "-"]);
      expect(offered.sort(), `mirrorlog ${command} -<TAB>`).toEqual([...options].sort());
    }
  });

  it("zsh: a #compdef script naming every command and option (checked with zsh -n when zsh is installed)", () => {
    const zsh = mirrorlog(["completion", "zsh"]);
    expect(zsh.startsWith("#compdef mirrorlog\n")).toBe(true);
    for (const command of helpCommands(mirrorlog(["--help"]))) expect(zsh).toContain(`'${command}:`);
    for (const option of helpOptions(mirrorlog(["sync", "--help"]))) expect(zsh).toContain(option);
    const check = spawnSync("zsh", ["-n"], { input: zsh, encoding: "utf8" });
    if (check.error === undefined) expect(check.status, check.stderr).toBe(0);
  });
});

describe("man page", () => {
  const roff = mirrorlog(["man"]);

  it("renders with man -l (and groff, without a warning)", () => {
    const groff = spawnSync("groff", ["-man", "-Tutf8", "-ww", "-z"], { input: roff, encoding: "utf8" });
    if (groff.error === undefined) {
      expect(groff.status, groff.stderr).toBe(0);
      expect(groff.stderr).toBe("");
    }
    const rendered = spawnSync("man", ["-l", "-"], {
      input: roff,
      encoding: "utf8",
      env: { ...process.env, MANPAGER: "cat", PAGER: "cat", MANWIDTH: "100" },
    });
    expect(rendered.status, rendered.stderr).toBe(0);
    for (const section of ["NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "EXAMPLES"]) {
      expect(rendered.stdout).toMatch(new RegExp(`^${section}$`, "m"));
    }
    expect(rendered.stdout).toMatch(/^\s+20\s+interrupted/m);
  });

  it("lists every command and every option that --help lists", () => {
    const rendered = spawnSync("man", ["-l", "-"], {
      input: roff,
      encoding: "utf8",
      env: { ...process.env, MANPAGER: "cat", PAGER: "cat", MANWIDTH: "200" },
    }).stdout;
    const topHelp = mirrorlog(["--help"]);
    for (const option of helpOptions(topHelp)) expect(rendered, option).toContain(option);
    for (const command of helpCommands(topHelp)) {
      expect(rendered, command).toMatch(new RegExp(`^\\s+mirrorlog ${command}\\b`, "m"));
      if (command === "help") continue;
      const help = mirrorlog([command, "--help"]);
      for (const option of helpOptions(help)) expect(rendered, `${command} ${option}`).toContain(option);
      for (const sub of helpCommands(help)) {
        expect(rendered, `${command} ${sub}`).toMatch(new RegExp(`mirrorlog ${command} ${sub}\\b`));
      }
    }
  });
});
