/**
 * `npm run bench`: veritree's figures on this host, each as a ratio against a reference measured
 * in the same run on the same data (the machines are shared and noisy; absolute MB/s are not
 * comparable between runs, ratios are). Options: --quick, --out DIR (writes report.json/.md),
 * --only digest,blocks,cli,scaling,shapes,fsck,checkout,catlayer,bulk,import.
 */
import { copyFileSync, mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';

import { benchBlocks, benchDigest } from './verity.bench.ts';
import { benchDigestCli, benchScaling } from './digest-cli.bench.ts';
import { benchImport } from './import.bench.ts';
import { benchFsck } from './fsck.bench.ts';
import { benchCheckout } from './checkout.bench.ts';
import { benchCatLayer } from './catlayer.bench.ts';
import { benchBulk } from './bulk.bench.ts';
import { filesystemOf, hostFacts, table } from './lib.ts';
import { runBench, secondsRange } from './report.ts';
import { modelRows, pointRows, stageRows } from './report-md.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const outArg = args.indexOf('--out');
const out = outArg >= 0 ? resolve(args[outArg + 1] ?? '.bench/report') : null;
const onlyArg = args.indexOf('--only');
const only = onlyArg >= 0 ? new Set((args[onlyArg + 1] ?? '').split(',')) : null;
const want = (s: string): boolean => !only || only.has(s);
const work = resolve(process.env.VERITREE_BENCH_DIR ?? '.bench/work');
mkdirSync(work, { recursive: true });

const report: Record<string, unknown> = {
  host: hostFacts(),
  quick,
  runs: quick ? 1 : 3,
  date: new Date().toISOString(),
  command: `${process.env.VERITREE_BENCH_DIR ? `VERITREE_BENCH_DIR=${process.env.VERITREE_BENCH_DIR} ` : ''}npm run bench -- ${args.join(' ')}`.trim(),
  workDir: `${work} (${filesystemOf(work)})`,
};
const md: string[] = [`# veritree benchmark`, '', `Host: ${JSON.stringify(report.host)}`, ''];

function section(title: string, rows: Record<string, string | number>[], note = ''): void {
  report[title] = rows;
  const text = `## ${title}\n${note ? note + '\n' : ''}\n${table(rows)}\n`;
  md.push(text);
  console.log(text);
}

console.log(`host: ${JSON.stringify(report.host)}\n`);
if (want('digest')) section('digest, one core', await benchDigest(quick), 'fs-verity digest of one buffer vs OpenSSL SHA-256 of the same bytes in one call (tinybench).');
if (want('blocks')) section('per 4 KiB block', await benchBlocks(quick));
if (want('cli')) section('veritree digest vs fsverity digest', benchDigestCli(work, quick), 'Wall time of the whole command on the same file, interleaved runs, median.');
if (want('scaling')) section('pool scaling (veritree digest)', benchScaling(work, quick), `Jobs 1..${availableParallelism()}; ratio against --jobs 1.`);
if (want('shapes')) {
  // The synthetic image shapes at jobs 1..cores and I/O limits: the engine of `veritree bench`,
  // its data in the work directory (tmpfs), its report and chart kept beside this one.
  const shapes = join(work, 'shapes');
  const r = await runBench({ quick, out: shapes, onProgress: (l) => process.stderr.write(`  ${l}\n`) });
  if (out) {
    mkdirSync(join(out, 'shapes'), { recursive: true });
    for (const f of ['report.json', 'report.md', 'scaling.svg']) copyFileSync(join(shapes, f), join(out, 'shapes', f));
  }
  section(
    'synthetic images at jobs 1..cores',
    r.workloads.flatMap(pointRows),
    'From the engine of `veritree bench` (its report and scaling.svg are in the shapes/ folder beside this report).'
  );
  section(
    'synthetic imports: the stage model',
    r.workloads.flatMap(modelRows),
    'W: all CPU s/GB; C: the busiest thread outside the pool; speed-up over one core predicted as W / max(C, W/N); checked with `taskset` on one core against two.'
  );
  section(
    'synthetic imports: each stage alone',
    r.workloads.flatMap(stageRows),
    'Each stage on one thread over the workload\'s own layers; per GB of layer tar.'
  );
  section(
    'synthetic images: peers',
    r.workloads.flatMap((w) => w.peers.map((p) => ({ workload: w.name, peer: p.name, 'peer seconds, median (range)': secondsRange(p), 'veritree (best jobs) / peer': p.ratio }))),
    ''
  );
}
if (want('fsck')) section('fsck', await benchFsck(work, quick), 'The store made by importing the import benchmark\'s image; page cache warm.');
if (want('checkout')) section('checkout', await benchCheckout(work, quick), 'The import benchmark\'s image (gzip layer), checked out from the store vs unpacked from its blobs.');
if (want('catlayer')) section('cat-layer', await benchCatLayer(work, quick), 'The import benchmark\'s layer rebuilt from the store (checked against its diff_id) vs `tar -c` of the same tree checked out; output on the work directory\'s filesystem.');
if (want('bulk')) section('bulk import', await benchBulk(work, quick), 'Four layouts sharing a base layer (the quick /usr tar) plus a small layer each, gzip.');
if (want('import')) section('import', await benchImport(work, quick), 'Single-layer image of real files; MB/s of uncompressed layer data.');

if (out) {
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'report.json'), JSON.stringify(report, null, 2));
  writeFileSync(join(out, 'report.md'), md.join('\n'));
  console.log(`wrote ${join(out, 'report.json')} and report.md`);
}
if (process.env.VERITREE_BENCH_KEEP !== '1' && existsSync(join(work, 'repos'))) rmSync(join(work, 'repos'), { recursive: true, force: true });

