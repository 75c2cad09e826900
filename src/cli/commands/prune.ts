/** `veritree prune`: tags past an age or count removed, then gc (as ostree prune). */
import type { Command } from 'commander';
import { openRepository } from '../../index.ts';
import { ERROR_CODES, VeritreeError } from '../../errors.ts';
import { parsePositiveInt } from '../options.ts';
import { liveLine } from '../progress.ts';
import { progressWanted } from '../startup-line.ts';
import { lockTimeoutOption, lockWaitOptions, repoOption, resolveRepo } from '../repo-option.ts';
import { interruptSignal } from '../signals.ts';

export function registerPrune(program: Command): void {
  lockTimeoutOption(repoOption(
    program
      .command('prune')
      .description('remove the tags past an age or a count, then what only they kept alive (gc)')
      .option('--keep-newer-than <duration>', 'keep tags set less than this long ago: 30d, 12h, 2w, 1d12h (s, m, h, d, w)')
      .option('--keep-last <n>', 'keep the N tags set most recently', parsePositiveInt)
      .option('--dry-run', 'say which tags would go; remove nothing')
      .option('--json', 'print the report as one JSON object')
      .option('--no-progress', 'no live progress, even on a terminal')
      .addHelpText('after', "\nA tag's time is when it was last set (its import, or a move). A tag is kept when either policy\nkeeps it. Then gc runs as `veritree gc` does (exclusive lock).")
  )).action(async (o: { repo?: string; keepNewerThan?: string; keepLast?: number; dryRun?: boolean; json?: boolean; progress: boolean; lockTimeout?: number }) => {
    const [{ prune, parseDuration }, { printGc }] = await Promise.all([import('../../verify/prune.ts'), import('./verify.ts')]);
    if (o.keepNewerThan === undefined && o.keepLast === undefined) throw new VeritreeError(ERROR_CODES.USAGE, 'prune: give --keep-last N or --keep-newer-than DURATION (or both)');
    const repo = await openRepository(resolveRepo(o.repo));
    const line = liveLine(progressWanted(o.progress && !o.json));
    line.show('prune: reading tags');
    let r;
    try {
      r = await prune(repo, {
        ...(o.keepLast !== undefined ? { keepLast: o.keepLast } : {}),
        ...(o.keepNewerThan !== undefined ? { keepNewerThanMs: parseDuration(o.keepNewerThan) } : {}),
        dryRun: o.dryRun === true,
        signal: interruptSignal(),
        ...lockWaitOptions(o.lockTimeout),
        onProgress: (p) => line.show(p.phase === 'mark' ? `prune: gc marking, ${p.done} of ${p.total} streams read` : `prune: gc sweeping, ${p.done} of ${p.total} folders of objects/`),
      });
    } finally {
      line.done();
    }
    if (o.json) {
      process.stdout.write(JSON.stringify(r) + '\n');
      return;
    }
    const verb = o.dryRun ? 'would untag' : 'untagged';
    process.stdout.write(`${verb} ${r.untagged.length} tag${r.untagged.length === 1 ? '' : 's'}${r.untagged.length ? `: ${r.untagged.join(', ')}` : ''}; kept ${r.kept.length}\n`);
    printGc(r.gc);
  });
}
