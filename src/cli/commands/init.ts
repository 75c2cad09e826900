/** `veritree init`: create a repository. */
import type { Command } from 'commander';
import { initRepository } from '../../index.ts';
import type { HashAlgorithm } from '../../verity/constants.ts';
import { parseHash } from '../options.ts';
import { repoOption, resolveRepo } from '../repo-option.ts';

export function registerInit(program: Command): void {
  repoOption(
    program
      .command('init')
      .description('create a repository (meta.json, objects/, streams/); an existing one is left as it is')
      .option('--hash <alg>', 'fs-verity hash of the repository: sha256 or sha512', parseHash, 'sha256')
  ).action(async (o: { repo?: string; hash: HashAlgorithm }) => {
    const repo = await initRepository(resolveRepo(o.repo), { hash: o.hash });
    process.stdout.write(`initialised ${repo.alg} repository at ${repo.root}\n`);
  });
}
