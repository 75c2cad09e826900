/** `veritree digest`: prints what `fsverity digest` prints, for many files at once. */
import type { Command } from 'commander';
import { digestFiles, type FileDigest } from '../../index.ts';
import { EXIT } from '../exit-codes.ts';
import { parseHash, parseImpl, parsePositiveInt } from '../options.ts';
import type { HashImpl } from '../../verity/backends.ts';
import type { HashAlgorithm } from '../../verity/constants.ts';
import { warnNativeFallback } from '../output.ts';

interface DigestCliOptions {
  compact?: boolean;
  hash: HashAlgorithm;
  hashImpl: HashImpl;
  jobs?: number;
  ioLimit?: number;
  json?: boolean;
}

export function registerDigest(program: Command): void {
  program
    .command('digest')
    .description('print the fs-verity digest of each FILE, exactly as `fsverity digest` does')
    .argument('<file...>', 'files to digest (output keeps this order)')
    .option('--compact', 'print only the hex digest, like fsverity --compact')
    .option('--hash <alg>', 'sha256 or sha512', parseHash, 'sha256')
    .option('--hash-impl <impl>', 'SHA back end: auto, native, node or noble', parseImpl, 'auto')
    .option('-j, --jobs <n>', 'worker threads (default: min(cores, --io-limit))', parsePositiveInt)
    .option('--io-limit <n>', 'cap on workers reading at once (default: from the device kind)', parsePositiveInt)
    .option('--json', 'print one JSON array of {path, digest, size} / {path, error}')
    .addHelpText('after', '\nFiles of 64 MiB or more are hashed by several workers at once.\nExit status: 0 all digested, 1 some file could not be read.')
    .action(async (files: string[], o: DigestCliOptions) => {
      warnNativeFallback(o.hashImpl);
      const printed: (FileDigest | undefined)[] = [];
      let next = 0;
      const flush = (): void => {
        for (let r = printed[next]; r !== undefined; r = printed[++next]) {
          if (o.json) continue;
          if (r.ok) process.stdout.write(o.compact ? `${r.id}\n` : `${o.hash}:${r.id} ${r.path}\n`);
          else process.stderr.write(`veritree: ${r.path}: ${r.message}\n`);
        }
      };
      const results = await digestFiles(files, {
        hash: o.hash,
        hashImpl: o.hashImpl,
        jobs: o.jobs,
        ioLimit: o.ioLimit,
        onResult: (i, r) => {
          printed[i] = r;
          flush();
        },
      });
      if (o.json) {
        const rows = results.map((r) => (r.ok ? { path: r.path, digest: `${o.hash}:${r.id}`, size: r.size } : { path: r.path, error: r.message, code: r.code }));
        process.stdout.write(JSON.stringify(rows) + '\n');
      }
      if (results.some((r) => !r.ok)) process.exitCode = EXIT.ISSUES;
    });
}
