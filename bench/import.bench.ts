/**
 * Import of a single-layer image of real files (a copy of part of /usr), plain and gzip: veritree
 * with the pool at all cores, with --jobs 1, `ostree commit --tree=tar=` of the same layer into
 * a bare-user repository, and (plain) `mkcomposefs --digest-store` of the tree unpacked. Each run
 * starts from an empty repository.
 */
import { rmSync, mkdirSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { CLI, hasTool, interleaved, mbps, mkcomposefsTool, spread, timeCommand } from './lib.ts';
import { compressed, makeLayout, realFilesTar } from './fixtures.ts';

/**
 * The layers measured: a Debian-sized one (usr/share/doc and usr/share/perl: about 140 MB of
 * mostly small files, the size of a distribution's base layer, where per-file costs and start-up
 * count) and, in a full run, about 1.1 GB of /usr (where bytes count).
 */
const LAYERS = [
  { tag: 'q', tarName: 'usr-quick.tar', paths: ['usr/share/doc', 'usr/share/perl'], quick: true },
  { tag: 'f', tarName: 'usr-1g.tar', paths: ['usr/share', 'usr/local'], quick: false },
];

export async function benchImport(work: string, quick: boolean): Promise<Record<string, string | number>[]> {
  const rows: Record<string, string | number>[] = [];
  for (const l of LAYERS.filter((x) => x.quick || !quick)) rows.push(...(await benchLayer(work, quick, l)));
  return rows;
}

async function benchLayer(work: string, quick: boolean, l: (typeof LAYERS)[number]): Promise<Record<string, string | number>[]> {
  const tar = realFilesTar(join(work, l.tarName), l.paths);
  const tarBytes = statSync(tar).size;
  const repos = join(work, 'repos');
  const rows: Record<string, string | number>[] = [];
  for (const c of ['none', 'gzip'] as const) {
    const layout = join(work, `layout-${l.tag}-${c}`);
    await makeLayout(layout, 'bench', [tar], c);
    // Deleting the last run's repository frees blocks; on a filesystem mounted with `discard`
    // that keeps the journal busy for a while. Delete, sync and let it settle, untimed.
    const fresh = (name: string): string => {
      const p = join(repos, name);
      rmSync(p, { recursive: true, force: true });
      mkdirSync(repos, { recursive: true });
      return p;
    };
    const settle = (): void => {
      rmSync(repos, { recursive: true, force: true });
      spawnSync('sync');
      spawnSync('sleep', ['3']);
    };
    const imp = (jobs: number) => (): number => timeCommand(process.execPath, [CLI, 'import', `oci:${layout}:bench`, '--repo', fresh(`v${jobs}`), '--jobs', String(jobs), '--no-progress'], { VERITREE_QUIET_FALLBACK: '1' });
    const cores = availableParallelism();
    const contenders: Record<string, () => number> = {
      [`veritree import (jobs ${cores})`]: imp(cores),
      'veritree import --jobs 1': imp(1),
    };
    if (hasTool('ostree')) {
      // The same layer as it is in the blob (plain or gzip: ostree reads both through libarchive).
      const layer = compressed(tar, c);
      contenders['ostree commit --tree=tar= (bare-user)'] = () => {
        const repo = fresh('ostree');
        timeCommand('ostree', ['init', `--repo=${repo}`, '--mode=bare-user']);
        return timeCommand('ostree', ['commit', `--repo=${repo}`, '--branch=bench', '--tar-autocreate-parents', `--tree=tar=${layer}`]);
      };
    }
    const mk = mkcomposefsTool();
    if (mk && c === 'none') {
      // The same files unpacked (untimed), then hashed and copied into a digest store: what
      // mkcomposefs does of a tree, the nearest C peer of importing the layer.
      const tree = join(work, 'mkcomposefs-tree');
      rmSync(tree, { recursive: true, force: true });
      mkdirSync(tree, { recursive: true });
      spawnSync('tar', ['-C', tree, '-xf', tar]);
      contenders['mkcomposefs --digest-store (the tree unpacked)'] = () => {
        const store = fresh('cfs');
        return timeCommand(mk.bin, [`--digest-store=${store}`, tree, join(repos, 'image.cfs')], mk.env);
      };
    }
    imp(cores)(); // warm the page cache with the blob
    // The small layer's runs are short and noisy: more of them.
    const t = interleaved(contenders, quick ? 1 : l.quick ? 5 : 3, settle);
    const ostree = t['ostree commit --tree=tar= (bare-user)']?.median;
    const mkc = t['mkcomposefs --digest-store (the tree unpacked)']?.median;
    const one = t['veritree import --jobs 1']?.median as number;
    for (const [name, secs] of Object.entries(t)) {
      rows.push({
        layer: c === 'none' ? 'plain tar' : 'gzip',
        command: name,
        'tar MB': tarBytes / 1e6,
        'seconds, median (range)': spread(secs),
        'MB/s': mbps(tarBytes, secs.median),
        'speed vs jobs 1': one / secs.median,
        'speed vs ostree': ostree ? ostree / secs.median : 'n/a',
        'speed vs mkcomposefs': mkc ? mkc / secs.median : 'n/a',
      });
    }
  }
  return rows;
}
