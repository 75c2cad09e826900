/** The --repo option every store command takes, with its documented default. */
import { InvalidArgumentError, type Command } from 'commander';
import { defaultRepoPath } from '../store/layout.ts';

const REPO_HELP = 'repository (default: $VERITREE_REPO, else $XDG_DATA_HOME/veritree, else ~/.local/share/veritree)';

export function repoOption(cmd: Command): Command {
  return cmd.option('--repo <dir>', REPO_HELP);
}

/** `veritree --repo R images` as cfsctl and ostree users write it: --repo before the command too. */
let beforeCommand: string | undefined;

export function globalRepoOption(program: Command): Command {
  return program.option('--repo <dir>', `${REPO_HELP}; also accepted before the command`).hook('preAction', (p) => {
    beforeCommand = (p.opts() as { repo?: string }).repo;
  });
}

export function resolveRepo(repo: string | undefined): string {
  return repo ?? beforeCommand ?? defaultRepoPath();
}

/** --lock-timeout, for every command that takes the repository lock. */
export function lockTimeoutOption(cmd: Command): Command {
  return cmd.option('--lock-timeout <seconds>', 'give up (exit 4) if the repository lock is not free within this many seconds (default: wait, saying what for)', parseSeconds);
}

function parseSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number of seconds >= 0');
  return n;
}

/** The library's lock options from --lock-timeout, with the waiting notice on stderr. */
export function lockWaitOptions(seconds: number | undefined): { lockTimeoutMs?: number; onLockWait: (m: string) => void } {
  return {
    ...(seconds !== undefined ? { lockTimeoutMs: seconds * 1000 } : {}),
    onLockWait: (m) => process.stderr.write(`veritree: ${m}${seconds === undefined ? ' (--lock-timeout bounds the wait)' : ''}\n`),
  };
}
