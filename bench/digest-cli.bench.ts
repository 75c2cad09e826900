/** Whole-command digests: veritree digest against fsverity digest (and sha256sum) on the same files. */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { CLI, hasTool, interleaved, mbps, spread, timeCommand, type Timing } from './lib.ts';

function makeFile(path: string, size: number): string {
  if (!existsSync(path)) {
    // Incompressible, deterministic enough: openssl's AES-CTR keystream from a fixed key.
    const r = spawnSync('sh', ['-c', `head -c ${size} /dev/zero | openssl enc -aes-128-ctr -nosalt -pass pass:veritree -pbkdf2 > ${path}.part && mv ${path}.part ${path}`]);
    if (r.status !== 0) throw new Error(`cannot make ${path}`);
  }
  return path;
}

const node = process.execPath;
const veritree = (args: string[]): number => timeCommand(node, [CLI, ...args], { VERITREE_QUIET_FALLBACK: '1' });

export function benchDigestCli(work: string, quick: boolean): Record<string, string | number>[] {
  const size = quick ? 256 << 20 : 1 << 30;
  const file = makeFile(join(work, `file-${size}`), size);
  veritree(['digest', file]); // warm the page cache
  const contenders: Record<string, () => number> = {
    [`veritree digest (jobs ${availableParallelism()})`]: () => veritree(['digest', file]),
    'veritree digest --jobs 1': () => veritree(['digest', '--jobs', '1', file]),
  };
  if (hasTool('fsverity')) contenders['fsverity digest'] = () => timeCommand('fsverity', ['digest', file]);
  contenders['sha256sum'] = () => timeCommand('sha256sum', [file]);
  const t = interleaved(contenders, quick ? 2 : 3);
  const ref = t['fsverity digest']?.median;
  return Object.entries(t).map(([name, secs]) => ({
    command: name,
    file: `${size >> 20} MiB`,
    'seconds, median (range)': spread(secs, 3),
    'MB/s': mbps(size, secs.median),
    'speed vs fsverity digest': ref ? ref / secs.median : 'n/a (fsverity not installed)',
    'time vs fsverity digest': ref ? secs.median / ref : 'n/a',
  }));
}


export function benchScaling(work: string, quick: boolean): Record<string, string | number>[] {
  const cores = availableParallelism();
  const jobsList = [...new Set([1, 2, 4, 8, 16, 32, 64].filter((j) => j < cores).concat([cores]))];
  const count = quick ? 32 : 64;
  const each = quick ? 4 << 20 : 8 << 20;
  const files = Array.from({ length: count }, (_, i) => makeFile(join(work, `many-${each}-${i}`), each));
  const big = makeFile(join(work, `file-${quick ? 256 << 20 : 1 << 30}`), quick ? 256 << 20 : 1 << 30);
  const rows: Record<string, string | number>[] = [];
  for (const [workload, args, bytes] of [
    [`${count} files of ${each >> 20} MiB`, files, count * each],
    [`one file of ${quick ? 256 : 1024} MiB (split)`, [big], quick ? 256 << 20 : 1 << 30],
  ] as [string, string[], number][]) {
    veritree(['digest', ...args]);
    const t = interleaved(Object.fromEntries(jobsList.map((j) => [String(j), () => veritree(['digest', '--jobs', String(j), ...args])])), quick ? 1 : 3);
    const one = (t['1'] as Timing).median;
    for (const j of jobsList) {
      const tj = t[String(j)] as Timing;
      rows.push({ workload, jobs: j, 'seconds, median (range)': spread(tj, 3), 'MB/s': mbps(bytes, tj.median), 'speed-up vs jobs 1': one / tj.median });
    }
  }
  return rows;
}
