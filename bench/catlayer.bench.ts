/**
 * `cat-layer` of the import benchmark's layer (rebuilt from the store: its split stream and
 * objects, checked against the diff_id) against `tar -c` of the same tree checked out: what a
 * user would otherwise run to get a tar of it back.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { CLI, interleaved, mbps, spread, timeCommand } from './lib.ts';
import { benchStore } from './fixtures.ts';

export async function benchCatLayer(work: string, quick: boolean): Promise<Record<string, string | number>[]> {
  const { repo } = await benchStore(work, quick, 'gzip', CLI, timeCommand);
  const images = JSON.parse(spawnSync(process.execPath, [CLI, 'images', '--json', '--repo', repo], { encoding: 'utf8', maxBuffer: 64 << 20 }).stdout) as { layers: { diffId: string }[] }[];
  const diffId = images[0]?.layers[0]?.diffId as string;
  const tree = join(work, 'catlayer-tree');
  rmSync(tree, { recursive: true, force: true });
  timeCommand(process.execPath, [CLI, 'checkout', 'bench', tree, '--repo', repo, '--copy']);
  const out = join(work, 'catlayer-out.tar');
  const contenders: Record<string, () => number> = {
    'veritree cat-layer': () => timeCommand('sh', ['-c', `"${process.execPath}" "${CLI}" cat-layer ${diffId} --repo "${repo}" > "${out}"`]),
    'tar -c of the checked-out tree': () => timeCommand('sh', ['-c', `tar -C "${tree}" -cf "${out}" .`]),
  };
  contenders['veritree cat-layer']?.(); // warm the page cache
  // Each writes a fresh file: truncating the last one's 1 GB (a tenth of a second on tmpfs) is
  // neither tool's work, and the shell or tar would do it inside the timing.
  const t = interleaved(contenders, quick ? 1 : 3, () => rmSync(out, { force: true }));
  const bytes = readFileSync(out).length;
  rmSync(tree, { recursive: true, force: true });
  rmSync(out, { force: true });
  const ref = t['tar -c of the checked-out tree']?.median;
  return Object.entries(t).map(([name, secs]) => ({ command: name, 'seconds, median (range)': spread(secs), 'MB/s': mbps(bytes, secs.median), 'speed vs tar -c': ref ? ref / secs.median : 'n/a' }));
}
