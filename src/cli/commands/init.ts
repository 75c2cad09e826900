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
      .option('--insecure', 'do not enable fs-verity on meta.json: objects are not required to have fs-verity, and mount does not pass verity=require')
  ).action(async (o: { repo?: string; hash: HashAlgorithm; erofsVersion?: ErofsVersion; insecure?: boolean }) => {
    const repo = await initRepository(resolveRepo(o.repo), {
      hash: o.hash,
      insecure: o.insecure === true,
      ...(o.erofsVersion !== undefined ? { erofsFormats: { default: o.erofsVersion, extra: [] } } : {}),
    });
    // Secure iff meta.json has fs-verity; an insecure one says why, on stdout with the rest.
    const mode = repo.secure
      ? 'secure: meta.json has fs-verity'
      : o.insecure === true
        ? 'insecure, as asked'
        : 'insecure: meta.json has no fs-verity (the filesystem has none, or the repository was made without it)';
    process.stdout.write(`initialised ${repo.alg} repository at ${repo.root} (EROFS format V${repo.erofsFormats.default}; ${mode})\n`);
  });
}
