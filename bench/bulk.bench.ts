/**
 * Bulk import: N layouts that share a base layer, imported in one run (`import --all`) against N
 * separate `veritree import` commands, on the same data, each run into a fresh repository.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { CLI, interleaved, timeCommand, spread, type Timing } from './lib.ts';
import { makeLayout, realFilesTar } from './fixtures.ts';

const N = 4;

function smallTar(path: string, i: number): string {
  if (!existsSync(path)) {
    const d = `${path}.d`;
    mkdirSync(join(d, `app${i}`), { recursive: true });
    for (let k = 0; k < 200; k++) writeFileSync(join(d, `app${i}`, `f${k}`), `image ${i} file ${k}\n`.repeat(20 + k));
    spawnSync('tar', ['-C', d, '-cf', path, `app${i}`]);
    rmSync(d, { recursive: true, force: true });
  }
  return path;
}

export async function benchBulk(work: string, quick: boolean): Promise<Record<string, string | number>[]> {
  const base = realFilesTar(join(work, 'usr-quick.tar'), ['usr/share/doc', 'usr/share/perl']);
  const mirror = join(work, `mirror-${quick ? 'q' : 'f'}`);
  for (let i = 0; i < N; i++) {
    const layout = join(mirror, `img${i}`);
    if (!existsSync(join(layout, 'index.json'))) await makeLayout(layout, 'v1', [base, smallTar(join(work, `app${i}.tar`), i)], 'gzip');
  }
  const repos = join(work, 'bulk-repos');
  const settle = (): void => {
    rmSync(repos, { recursive: true, force: true });
    spawnSync('sync');
    spawnSync('sleep', ['2']);
  };
  const t = interleaved(
    {
      [`one run: import --all (${N} layouts)`]: () => timeCommand(process.execPath, [CLI, 'import', '--all', mirror, '--repo', join(repos, 'all'), '--no-progress']),
      [`${N} separate imports`]: () => {
        let s = 0;
        for (let i = 0; i < N; i++) s += timeCommand(process.execPath, [CLI, 'import', `oci:${join(mirror, `img${i}`)}:v1`, '--repo', join(repos, 'sep'), '--no-progress']);
        return s;
      },
    },
    quick ? 1 : 3,
    settle
  );
  const sep = (t[`${N} separate imports`] as Timing).median;
  return Object.entries(t).map(([name, secs]) => ({ command: name, 'seconds, median (range)': spread(secs), 'speed vs separate commands': sep / secs.median }));
}
