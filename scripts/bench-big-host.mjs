// Scaling on a big host: imports of a real tree (WORKDIR/tree.tar, as a plain and a gzip OCI
// layout), fsck of the store, and digest of a 2 GiB file, at jobs 1, 2, 4, ... cores, two runs
// each, interleaved; each figure the median, with its ratio to jobs 1. Writes OUTDIR/big-host.txt.
// Usage (after npm run build): node scripts/bench-big-host.mjs WORKDIR OUTDIR
// The run in docs/bench/big-host/ made WORKDIR/tree.tar of six site-packages folders (scipy,
// sklearn, pandas, sympy, transformers, numpy: 392 MB) on a 16-core host, WORKDIR on tmpfs.
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { existsSync, mkdirSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
const [work, out] = process.argv.slice(2);
const CLI = join(process.cwd(), 'dist/src/cli/veritree.cjs');
const cores = availableParallelism();
const jobsList = [1, 2, 4, 8, 16].filter((j) => j <= cores);
const log = [];
const say = (s) => { console.log(s); log.push(s); writeFileSync(join(out, 'big-host.txt'), log.join('\n') + '\n'); };
const time = (args, env = {}) => {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 64 << 20 });
  const t = (performance.now() - t0) / 1000;
  if (r.status !== 0 && r.status !== 1) say(`FAILED ${args.join(' ')}: ${r.stderr.slice(-400)}`);
  return { t, stdout: r.stdout };
};
const { makeLayout } = await import(join(process.cwd(), 'dist/bench/fixtures.js'));
for (const c of ['none', 'gzip']) {
  const layout = join(work, `layout-${c}`);
  if (!existsSync(join(layout, 'index.json'))) await makeLayout(layout, 'big', [join(work, 'tree.tar')], c);
}
const tarMB = statSync(join(work, 'tree.tar')).size / 1e6;
say(`host: ${cores} cores, node ${process.version}, tree.tar ${tarMB.toFixed(0)} MB`);
const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const c of ['none', 'gzip']) {
  const times = new Map(jobsList.map((j) => [j, []]));
  for (let run = 0; run < 2; run++) {
    for (const j of jobsList) {
      const repo = join(work, `repo-${c}-${j}`);
      rmSync(repo, { recursive: true, force: true });
      times.get(j).push(time(['import', `oci:${join(work, `layout-${c}`)}:big`, '--repo', repo, '--no-progress', '--jobs', String(j)]).t);
    }
  }
  const base = med(times.get(1));
  for (const j of jobsList) { const m = med(times.get(j)); say(`import ${c} jobs ${j}: ${m.toFixed(2)} s (${times.get(j).map((x) => x.toFixed(2)).join(', ')}), ${(tarMB / m).toFixed(0)} MB/s, ${(base / m).toFixed(2)}x jobs 1`); }
}
const repo = join(work, 'repo-none-1');
for (const env of [{}]) {
  const times = new Map(jobsList.map((j) => [j, []]));
  for (let run = 0; run < 2; run++) for (const j of jobsList) times.get(j).push(time(['fsck', '--repo', repo, '--no-progress', '--jobs', String(j)], env).t);
  const base = med(times.get(1));
  for (const j of jobsList) { const m = med(times.get(j)); say(`fsck ${JSON.stringify(env)} jobs ${j}: ${m.toFixed(2)} s, ${(base / m).toFixed(2)}x jobs 1`); }
}
const big = join(work, 'big.bin');
spawnSync('sh', ['-c', `head -c 2147483648 /dev/urandom > ${big}`]);
for (const env of [{}]) {
  const times = new Map(jobsList.map((j) => [j, []]));
  for (let run = 0; run < 2; run++) for (const j of jobsList) times.get(j).push(time(['digest', big, '--jobs', String(j)], env).t);
  const base = med(times.get(1));
  for (const j of jobsList) { const m = med(times.get(j)); say(`digest 2 GiB ${JSON.stringify(env)} jobs ${j}: ${m.toFixed(2)} s, ${(2048 / m).toFixed(0)} MiB/s, ${(base / m).toFixed(2)}x jobs 1`); }
}

