/** `veritree init`: create a repository. */
import type { Command } from 'commander';
import { initRepository } from '../../index.ts';
import type { ErofsVersion } from '../../store/meta.ts';
import type { HashAlgorithm } from '../../verity/constants.ts';
import { parseErofsVersion, parseHash } from '../options.ts';
import { repoOption, resolveRepo } from '../repo-option.ts';

export function registerInit(program: Command): void {
  repoOption(
    program
      .command('init')
      .description('create a repository (meta.json, objects/, streams/); an existing one is left as it is')
      .option('--hash <alg>', 'fs-verity hash of the repository: sha256 or sha512', parseHash, 'sha256')
      .option(
        '--erofs-version <n>',
        "EROFS format of its images, as cfsctl init's: 0 (mkcomposefs), 1 (mkcomposefs --min-version=1; the default), 2 (composefs-rs's legacy format)",
        parseErofsVersion
      )
  ).action(async (o: { repo?: string; hash: HashAlgorithm; erofsVersion?: ErofsVersion }) => {
    const repo = await initRepository(resolveRepo(o.repo), {
      hash: o.hash,
      ...(o.erofsVersion !== undefined ? { erofsFormats: { default: o.erofsVersion, extra: [] } } : {}),
    });
    process.stdout.write(`initialised ${repo.alg} repository at ${repo.root} (EROFS format V${repo.erofsFormats.default})\n`);
  });
}
