/**
 * fsck of a store of about 1 GB (the import benchmark's image, imported once) against
 * `find objects -type f -print0 | xargs -0 -P <cores> fsverity digest` over the same objects: the
 * re-hash alone, done by the tools people would reach for.
 */
import { availableParallelism } from 'node:os';
import { CLI, hasTool, interleaved, spread, timeCommand } from './lib.ts';
import { benchStore } from './fixtures.ts';

export async function benchFsck(work: string, quick: boolean): Promise<Record<string, string | number>[]> {
  const { repo } = await benchStore(work, quick, 'none', CLI, timeCommand);
  const cores = availableParallelism();
  const contenders: Record<string, () => number> = {
    [`veritree fsck (jobs ${cores})`]: () => timeCommand(process.execPath, [CLI, 'fsck', '--repo', repo, '--no-progress']),
    'veritree fsck --objects-only': () => timeCommand(process.execPath, [CLI, 'fsck', '--objects-only', '--repo', repo, '--no-progress']),
  };
  if (hasTool('fsverity')) {
    contenders[`find | xargs -P ${cores} fsverity digest`] = () => timeCommand('sh', ['-c', `cd ${repo} && find objects -type f -print0 | xargs -0 -P ${cores} fsverity digest > /dev/null`]);
  }
  contenders[`veritree fsck (jobs ${cores})`]?.(); // warm the page cache
  const t = interleaved(contenders, quick ? 1 : 3);
  const ref = t[`find | xargs -P ${cores} fsverity digest`]?.median;
  return Object.entries(t).map(([name, secs]) => ({ command: name, 'seconds, median (range)': spread(secs), 'speed vs find|xargs fsverity': ref ? ref / secs.median : 'n/a' }));
}
