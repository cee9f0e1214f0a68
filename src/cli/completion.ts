// Shell completion scripts, generated from the command definitions: commander's own command and option
// objects, as its help shows them (Help.visibleCommands / visibleOptions), so a new command or option is
// completed without anyone editing a list. `mirrorlog man` (manPage.ts) walks the same tree.
import type { Command, Help, Option } from "commander";

/** One option as --help lists it. */
export interface OptionSpec {
  /** As help shows it, e.g. "-H, --hard-links" or "--exclude <PATTERN>". */
  term: string;
  short?: string;
  long?: string;
  description: string;
  /** Takes a value (the next word, or after "="). */
  takesValue: boolean;
  /** The name of its value, e.g. "PATTERN". */
  valueName?: string;
  /** May be given more than once (it collects into a list). */
  repeatable: boolean;
  /** The values it accepts, when they are a fixed set. */
  choices?: readonly string[];
}

/** One positional argument of a command. */
export interface ArgumentSpec {
  name: string;
  required: boolean;
  choices?: readonly string[];
}

/** One command as --help lists it, with everything below it. */
export interface CommandSpec {
  name: string;
  /** The usage line after the command's name, e.g. "[options] <SRC> <DST>". */
  usage: string;
  description: string;
  options: OptionSpec[];
  args: ArgumentSpec[];
  commands: CommandSpec[];
  /** Text the command prints after its help (examples), as it prints it. */
  after: string;
}

/** The command tree of `program` as its --help shows it: visible commands and options only. */
export function commandTree(program: Command): CommandSpec {
  return specOf(program, program.createHelp());
}

function specOf(command: Command, help: Help): CommandSpec {
  return {
    name: command.name(),
    usage: command.usage(),
    description: help.commandDescription(command),
    options: help.visibleOptions(command).map((option) => optionSpec(option, help)),
    args: command.registeredArguments.map((argument) => ({
      name: argument.name(),
      required: argument.required,
      ...(argument.argChoices === undefined ? {} : { choices: argument.argChoices }),
    })),
    // The implicit `help` command comes back too: it is listed, so it is completed and documented.
    commands: help.visibleCommands(command).map((sub) => specOf(sub, help)),
    after: helpAfter(command),
  };
}

function optionSpec(option: Option, help: Help): OptionSpec {
  const takesValue = option.required || option.optional;
  const valueName = /[<[]([^>\]]+)[>\]]/.exec(option.flags)?.[1];
  return {
    term: help.optionTerm(option),
    ...(option.short === undefined ? {} : { short: option.short }),
    ...(option.long === undefined ? {} : { long: option.long }),
    description: help.optionDescription(option),
    takesValue,
    ...(valueName === undefined ? {} : { valueName }),
    repeatable: option.variadic || Array.isArray(option.defaultValue),
    ...(option.argChoices === undefined ? {} : { choices: option.argChoices }),
  };
}

/** What `command` prints after its generated help (addHelpText "after"), captured from its own output. */
function helpAfter(command: Command): string {
  const saved = command.configureOutput();
  let written = "";
  command.configureOutput({ ...saved, writeOut: (text) => (written += text), getOutHelpWidth: () => 100 });
  try {
    command.outputHelp();
  } finally {
    command.configureOutput(saved);
  }
  const generated = command.helpInformation();
  const at = written.indexOf(generated);
  return (at === -1 ? "" : written.slice(at + generated.length)).trim();
}

/** Every word a command line of `spec` may hold as an option. */
function optionWords(spec: CommandSpec): string[] {
  return spec.options.flatMap((option) => [option.short, option.long].filter((word) => word !== undefined));
}

/** Words that take the next word as their value. */
function valueOptionWords(spec: CommandSpec): string[] {
  return spec.options
    .filter((option) => option.takesValue)
    .flatMap((option) => [option.short, option.long].filter((word) => word !== undefined));
}

/** A word as a bash single-quoted string. */
function bashQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * The bash completion script: `source <(mirrorlog completion bash)`, or save it as
 * /etc/bash_completion.d/mirrorlog. Completes commands, each command's options, the fixed choices of
 * arguments, and file names everywhere else (after an option that takes a value, for SRC and DST).
 */
export function bashCompletion(program: Command): string {
  const tree = commandTree(program);
  const name = tree.name;
  const fn = `_${name.replace(/[^A-Za-z0-9_]/g, "_")}_complete`;
  const cases = tree.commands.map((command) => {
    const choices = command.args.flatMap((arg) => arg.choices ?? []);
    return [
      `    ${bashQuote(command.name)})`,
      `      opts=${bashQuote(optionWords(command).join(" "))}`,
      `      valued=${bashQuote(valueOptionWords(command).join(" "))}`,
      `      choices=${bashQuote(choices.join(" "))}`,
      `      subcommands=${bashQuote(command.commands.map((sub) => sub.name).join(" "))}`,
      "      ;;",
    ].join("\n");
  });
  return `# bash completion for ${name}: generated by \`${name} completion bash\` from its command definitions.
# Use: source <(${name} completion bash)   or save it as /etc/bash_completion.d/${name}
${fn}() {
  local cur prev cmd opts valued choices subcommands i
  COMPREPLY=()
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev=""
  if ((COMP_CWORD > 0)); then prev="\${COMP_WORDS[COMP_CWORD-1]}"; fi
  # The command is the first word after ${name} that is not an option (top-level options take no value).
  cmd=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in
      -*) ;;
      *) cmd="\${COMP_WORDS[i]}"; break ;;
    esac
  done
  if [[ -z "$cmd" ]]; then
    if [[ "$cur" == -* ]]; then
      COMPREPLY=($(compgen -W ${bashQuote(optionWords(tree).join(" "))} -- "$cur"))
    else
      COMPREPLY=($(compgen -W ${bashQuote(tree.commands.map((command) => command.name).join(" "))} -- "$cur"))
    fi
    return 0
  fi
  case "$cmd" in
${cases.join("\n")}
    *)
      return 0
      ;;
  esac
  # After an option that takes a value: file names (bash's default completion).
  if [[ -n "$prev" && " $valued " == *" $prev "* ]]; then
    return 0
  fi
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    return 0
  fi
  if [[ -n "$subcommands$choices" ]]; then
    COMPREPLY=($(compgen -W "$subcommands $choices" -- "$cur"))
  fi
  return 0
}
complete -o bashdefault -o default -F ${fn} ${name}
`;
}

/** A string inside a zsh single-quoted word. */
function zshQuoted(text: string): string {
  return text.replace(/'/g, `'\\''`);
}

/** An _arguments description: one line, with the brackets and colons zsh would read escaped. */
function zshDescription(text: string): string {
  return zshQuoted(text.replace(/\s+/g, " ").replace(/([[\]:\\])/g, "\\$1"));
}

/** The _arguments spec of one option. */
function zshOptionSpec(option: OptionSpec): string {
  const words = [option.short, option.long].filter((word) => word !== undefined);
  const value = option.takesValue
    ? option.choices !== undefined
      ? `:${option.valueName ?? "value"}:(${option.choices.join(" ")})`
      : `:${option.valueName ?? "value"}:_files`
    : "";
  const repeat = option.repeatable ? "*" : "";
  const equals = option.takesValue ? "=" : "";
  const description = `[${zshDescription(option.description)}]${value}`;
  if (words.length === 1) return `'${repeat}${words[0]}${equals}${description}'`;
  // A short and a long spelling of one option exclude each other (unless it is repeatable).
  const exclusion = option.repeatable ? "" : `(${words.join(" ")})`;
  return `'${exclusion}'${repeat}{${words.map((word) => `${word}${equals}`).join(",")}}'${description}'`;
}

/** The zsh completion script: save it as _mirrorlog on $fpath, or `source <(mirrorlog completion zsh)`. */
export function zshCompletion(program: Command): string {
  const tree = commandTree(program);
  const name = tree.name;
  const commandLines = tree.commands.map(
    (command) => `    '${zshQuoted(command.name)}:${zshDescription(command.description)}'`,
  );
  const cases = tree.commands.map((command) => {
    const args = command.args.map((arg, index) => {
      const action = arg.choices !== undefined ? `(${arg.choices.join(" ")})` : "_files";
      return `'${arg.required ? "" : ":"}${index + 1}:${zshDescription(arg.name)}:${action}'`;
    });
    const specs = [...command.options.map(zshOptionSpec), ...args];
    return `        ${zshQuoted(command.name)})\n          _arguments -s \\\n            ${specs.join(" \\\n            ")}\n          ;;`;
  });
  return `#compdef ${name}
# zsh completion for ${name}: generated by \`${name} completion zsh\` from its command definitions.
# Use: save it as _${name} in a directory on $fpath, or source <(${name} completion zsh)
_${name}() {
  local curcontext="$curcontext" state line
  local -a commands
  commands=(
${commandLines.join("\n")}
  )
  _arguments -C \\
    ${tree.options.map(zshOptionSpec).join(" \\\n    ")} \\
    '1: :->command' \\
    '*:: :->args'
  case $state in
    command)
      _describe -t commands '${name} command' commands
      ;;
    args)
      case $words[1] in
${cases.join("\n")}
      esac
      ;;
  esac
}
if [[ "\${funcstack[1]}" == "_${name}" ]]; then
  _${name} "$@"
else
  compdef _${name} ${name}
fi
`;
}
