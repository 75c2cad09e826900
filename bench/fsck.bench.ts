/**
 * fsck of a store of about 1 GB (the import benchmark's image, imported once) against
 * `find objects -type f -print0 | xargs -0 -P <cores> fsverity digest` over the same objects: the
 * re-hash alone, done by the tools people would reach for.
 */
import { existsSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { CLI, hasTool, interleaved, timeCommand } from './lib.ts';
import { makeLayout, realFilesTar } from './fixtures.ts';

export async function benchFsck(work: string, quick: boolean): Promise<Record<string, string | number>[]> {
  const paths = quick ? ['usr/share/doc', 'usr/share/perl'] : ['usr/share', 'usr/local'];
  const tar = realFilesTar(join(work, quick ? 'usr-quick.tar' : 'usr-1g.tar'), paths);
  const layout = join(work, `layout-${quick ? 'q' : 'f'}-none`);
  if (!existsSync(join(layout, 'index.json'))) await makeLayout(layout, 'bench', [tar], 'none');
  const repo = join(work, `fsck-store-${quick ? 'q' : 'f'}`);
  if (!existsSync(join(repo, 'meta.json'))) {
    rmSync(repo, { recursive: true, force: true });
    timeCommand(process.execPath, [CLI, 'import', `oci:${layout}:bench`, '--repo', repo, '--no-progress']);
  }
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
  const ref = t[`find | xargs -P ${cores} fsverity digest`];
  return Object.entries(t).map(([name, secs]) => ({ command: name, seconds: secs, 'speed vs find|xargs fsverity': ref ? ref / secs : 'n/a' }));
}
