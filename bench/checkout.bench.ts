/**
 * Checkout of the import benchmark's image (gzip layer) against `umoci unpack` of the same image:
 * the merged filesystem from the store (reflinks or copies in the pool by default; hard links to
 * objects with --hardlink) vs from the blobs.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { CLI, hasTool, interleaved, spread, timeCommand } from './lib.ts';
import { benchStore } from './fixtures.ts';

export async function benchCheckout(work: string, quick: boolean): Promise<Record<string, string | number>[]> {
  const { layout, repo } = await benchStore(work, quick, 'gzip', CLI, timeCommand);
  const out = join(work, 'checkouts');
  const fresh = (name: string): string => {
    const p = join(out, name);
    rmSync(p, { recursive: true, force: true });
    return p;
  };
  const settle = (): void => {
    rmSync(out, { recursive: true, force: true });
    spawnSync('sync');
    spawnSync('sleep', ['2']);
  };
  const contenders: Record<string, () => number> = {
    'veritree checkout (default: reflink or copy)': () => timeCommand(process.execPath, [CLI, 'checkout', 'bench', fresh('v'), '--repo', repo]),
    'veritree checkout --hardlink': () => timeCommand(process.execPath, [CLI, 'checkout', 'bench', fresh('h'), '--repo', repo, '--hardlink']),
  };
  if (hasTool('umoci')) contenders['umoci unpack'] = () => timeCommand('umoci', ['unpack', '--image', `${layout}:bench`, fresh('u')]);
  const t = interleaved(contenders, quick ? 1 : 3, settle);
  const ref = t['umoci unpack']?.median;
  return Object.entries(t).map(([name, secs]) => ({ command: name, 'seconds, median (range)': spread(secs), 'speed vs umoci unpack': ref ? ref / secs.median : 'n/a' }));
}
