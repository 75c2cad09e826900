/**
 * Checkout of the import benchmark's image (gzip layer) against `umoci unpack` of the same image:
 * the merged filesystem from the store (hard links where safe) vs from the blobs.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { CLI, hasTool, interleaved, timeCommand } from './lib.ts';
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
    'veritree checkout (hard links)': () => timeCommand(process.execPath, [CLI, 'checkout', 'bench', fresh('v'), '--repo', repo]),
    'veritree checkout --copy': () => timeCommand(process.execPath, [CLI, 'checkout', 'bench', fresh('c'), '--repo', repo, '--copy']),
  };
  if (hasTool('umoci')) contenders['umoci unpack'] = () => timeCommand('umoci', ['unpack', '--image', `${layout}:bench`, fresh('u')]);
  const t = interleaved(contenders, quick ? 1 : 3, settle);
  const ref = t['umoci unpack'];
  return Object.entries(t).map(([name, secs]) => ({ command: name, seconds: secs, 'speed vs umoci unpack': ref ? ref / secs : 'n/a' }));
}
