/**
 * Shell completion (bash, zsh, fish) and the man page, generated from the same commander
 * definitions the CLI parses with, so they can never list a command or option it lacks.
 * `veritree completion SHELL` prints a script; scripts/gen-docs.mjs writes them and the man page
 * into dist/ at build time, and the package installs the man page (package.json `man`).
 * @module
 */
import type { Command, Option } from 'commander';

interface CommandInfo {
  name: string;
  summary: string;
  usage: string;
  options: { flags: string; long: string | null; short: string | null; takesValue: boolean; description: string }[];
  help: string;
}

function optionInfo(o: Option): CommandInfo['options'][number] {
  return { flags: o.flags, long: o.long ?? null, short: o.short ?? null, takesValue: o.required || o.optional, description: o.description };
}

/** Every command of `program` with its options (the global ones included). */
export function describeProgram(program: Command): { global: CommandInfo['options']; commands: CommandInfo[] } {
  const global = program.options.map(optionInfo);
  const commands = program.commands.map((c) => ({
    name: c.name(),
    summary: c.description(),
    usage: c.usage(),
    options: c.options.map(optionInfo),
    help: c.helpInformation(),
  }));
  return { global, commands };
}

function words(opts: CommandInfo['options']): string[] {
  return opts.flatMap((o) => [o.long, o.short].filter((x): x is string => x !== null));
}

/** Quoted for a POSIX shell's single quotes. */
function sq(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

export function bashCompletion(program: Command): string {
  const { global, commands } = describeProgram(program);
  const cases = commands.map((c) => `    ${c.name}) opts=${sq([...words(c.options), ...words(global), '--help'].join(' '))} ;;`).join('\n');
  return `# bash completion for veritree (generated from its command definitions)
_veritree() {
  local cur cmd opts i
  cur="\${COMP_WORDS[COMP_CWORD]}"
  cmd=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in
      --repo) ((i++)) ;;
      -*) ;;
      *) cmd="\${COMP_WORDS[i]}"; break ;;
    esac
  done
  if [ -z "$cmd" ]; then
    COMPREPLY=($(compgen -W ${sq([...commands.map((c) => c.name), ...words(global), '--help', '--version'].join(' '))} -- "$cur"))
    return
  fi
  case "$cmd" in
${cases}
    *) opts="" ;;
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -o filenames -F _veritree veritree
`;
}

/** zsh's `_arguments` spec of an option: `--name[description]` (with `:value:` when it takes one). */
function zshSpec(o: CommandInfo['options'][number]): string[] {
  const desc = o.description.replace(/[[\]:\\']/g, ' ').slice(0, 120);
  return [o.long, o.short].filter((x): x is string => x !== null).map((f) => `'${f}[${desc}]${o.takesValue ? ':value:_files' : ''}'`);
}

export function zshCompletion(program: Command): string {
  const { global, commands } = describeProgram(program);
  const list = commands.map((c) => `    '${c.name}:${c.summary.replace(/[:\\']/g, ' ').slice(0, 100)}'`).join('\n');
  const cases = commands
    .map((c) => `      ${c.name}) _arguments ${[...c.options, ...global].flatMap(zshSpec).join(' ')} '*:file:_files' ;;`)
    .join('\n');
  return `#compdef veritree
# zsh completion for veritree (generated from its command definitions)
_veritree() {
  local -a commands
  commands=(
${list}
  )
  if (( CURRENT == 2 )); then
    _describe 'command' commands
    return
  fi
  local cmd=\${words[2]}
  shift words
  (( CURRENT-- ))
  case $cmd in
${cases}
  esac
}
_veritree "$@"
`;
}

export function fishCompletion(program: Command): string {
  const { global, commands } = describeProgram(program);
  const names = commands.map((c) => c.name).join(' ');
  const lines = [`# fish completion for veritree (generated from its command definitions)`, `complete -c veritree -f`];
  for (const c of commands) lines.push(`complete -c veritree -n "not __fish_seen_subcommand_from ${names}" -a ${c.name} -d ${sq(c.summary.slice(0, 100))}`);
  const flag = (o: CommandInfo['options'][number]): string =>
    [o.long ? `-l ${o.long.slice(2)}` : '', o.short ? `-s ${o.short.slice(1)}` : '', o.takesValue ? '-r' : '', `-d ${sq(o.description.slice(0, 100))}`].filter(Boolean).join(' ');
  for (const o of global) lines.push(`complete -c veritree ${flag(o)}`);
  for (const c of commands) {
    for (const o of c.options) lines.push(`complete -c veritree -n "__fish_seen_subcommand_from ${c.name}" ${flag(o)}`);
    lines.push(`complete -c veritree -n "__fish_seen_subcommand_from ${c.name}" -F`);
  }
  return lines.join('\n') + '\n';
}

/** roff text: backslashes and leading dots or quotes escaped. */
function roff(s: string): string {
  return s
    .replaceAll('\\', '\\e')
    .split('\n')
    .map((l) => (/^[.']/.test(l) ? `\\&${l}` : l))
    .join('\n');
}

/** veritree(1): every command's usage, summary and help, in one page. */
export function manPage(program: Command, version: string): string {
  const { global, commands } = describeProgram(program);
  const out = [
    `.TH VERITREE 1 "" "veritree ${roff(version)}" "User Commands"`,
    '.SH NAME',
    `veritree \\- ${roff(program.description())}`,
    '.SH SYNOPSIS',
    '.B veritree',
    '[\\fB\\-\\-repo\\fR \\fIDIR\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR]',
    '.SH GLOBAL OPTIONS',
  ];
  for (const o of global) out.push('.TP', `.B ${roff(o.flags)}`, roff(o.description));
  out.push('.SH COMMANDS');
  for (const c of commands) {
    out.push('.SS', `.B veritree ${roff(c.name)} ${roff(c.usage)}`, roff(c.summary), '.PP', '.nf', roff(c.help.trimEnd()), '.fi');
  }
  out.push(
    '.SH ENVIRONMENT',
    '.TP',
    '.B VERITREE_REPO',
    'the repository when \\fB\\-\\-repo\\fR is not given (else $XDG_DATA_HOME/veritree, else ~/.local/share/veritree)',
    '.SH EXIT STATUS',
    '0 success; 1 fsck found problems, or digest could not read a file; 2 usage; 3 bad input; 4 store error or no such tag; 5 the system cannot do it (mount); 70 internal error; 130 interrupted.',
    '.SH SEE ALSO',
    'mkcomposefs(1), cfsctl(1), fsverity(1), skopeo(1), umoci(1)'
  );
  return out.join('\n') + '\n';
}

export type Shell = 'bash' | 'zsh' | 'fish';

export function completionScript(program: Command, shell: Shell): string {
  return shell === 'bash' ? bashCompletion(program) : shell === 'zsh' ? zshCompletion(program) : fishCompletion(program);
}
