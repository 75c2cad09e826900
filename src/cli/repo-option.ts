/** The --repo option every store command takes, with its documented default. */
import type { Command } from 'commander';
import { defaultRepoPath } from '../store/repository.ts';

export function repoOption(cmd: Command): Command {
  return cmd.option('--repo <dir>', 'repository (default: $VERITREE_REPO, else $XDG_DATA_HOME/veritree, else ~/.local/share/veritree)');
}

export function resolveRepo(repo: string | undefined): string {
  return repo ?? defaultRepoPath();
}
