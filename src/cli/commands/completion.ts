/** `veritree completion SHELL`: the shell completion script, from the program's own definitions. */
import { Argument, type Command } from 'commander';

export function registerCompletion(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script (bash, zsh or fish) for every command and option')
    .addArgument(new Argument('<shell>', 'the shell').choices(['bash', 'zsh', 'fish']))
    .addHelpText('after', '\nbash: veritree completion bash > /etc/bash_completion.d/veritree (or source it from ~/.bashrc)\nzsh:  veritree completion zsh > "${fpath[1]}/_veritree"\nfish: veritree completion fish > ~/.config/fish/completions/veritree.fish\nThe package also ships them under dist/completion/.')
    .action(async (shell: 'bash' | 'zsh' | 'fish') => {
      const [{ buildProgram }, { completionScript }] = await Promise.all([import('../program.ts'), import('../docgen.ts')]);
      process.stdout.write(completionScript(await buildProgram(['node', 'veritree']), shell));
    });
}
