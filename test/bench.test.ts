/** `veritree bench --quick`: the report holds every workload at every jobs value, each import's stage model, and the SVG renders. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { cleanup, hasTool, heavy, run, tempDir, veritree } from './helpers.ts';

let dir = '';
let out = '';
let status: number | null = null;
let stderr = '';

before(() => {
  dir = tempDir('veritree-bench-');
  out = join(dir, 'report');
  const r = veritree(['bench', '--quick', '--out', out]);
  status = r.status;
  stderr = r.stderr;
});
after(() => cleanup(dir));

interface Report {
  host: Record<string, string | number>;
  limitMBps: number;
  backends: { impl: string; mbps: number }[];
  workloads: {
    name: string;
    points: { jobs: number; ioLimit?: number; mbps: number; cpuPerGB?: Record<string, number> }[];
    peers: { name: string; mbps: number; ratio: number }[];
    model?: { w: number; c: number; busiest: string; mainShare: number; byRole: Record<string, number>; speedup: Record<string, number> };
    stages?: { stage: string; sPerGB: number; usPerFile: number }[];
    check?: { runs: number; measured: number; predicted: number };
  }[];
}

const ROLES = ['main', 'layer', 'pool', 'libuv', 'other'];

test('veritree bench --quick writes report.json, report.md and scaling.svg with every workload at every jobs value', () => {
  assert.equal(status, 0, stderr);
  assert.match(stderr, /\[ *\d+ s\] /, 'a progress line');
  const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as Report;
  for (const k of ['cpu', 'cores', 'shaExtensions', 'node', 'openssl', 'filesystem', 'device']) assert.ok(k in report.host, k);
  assert.ok(report.limitMBps > 0);
  assert.ok(report.backends.some((b) => b.impl === 'noble' && b.mbps > 0));
  const cores = availableParallelism();
  const jobs = [...new Set([1, 2, 4, 8, 16, 32, 64, 128].filter((j) => j < cores).concat([cores]))];
  assert.ok(report.workloads.length >= 6);
  for (const w of report.workloads) {
    assert.deepEqual(w.points.filter((p) => p.ioLimit === undefined).map((p) => p.jobs), jobs, w.name);
    assert.ok(w.points.every((p) => p.mbps > 0), w.name);
    for (const p of w.peers) assert.ok(p.mbps > 0 && p.ratio > 0, `${w.name} vs ${p.name}`);
  }
  const imports = report.workloads.filter((w) => w.name.startsWith('import'));
  assert.deepEqual(
    imports.map((w) => w.name.replace(/\d+ layers/, 'N layers')),
    ['import: many small files, one layer, gzip', 'import: few big files, one layer, plain', 'import: N layers, zstd', 'import --all: 4 images sharing a base layer, gzip']
  );
  for (const w of imports) {
    for (const p of w.points) assert.deepEqual(Object.keys(p.cpuPerGB ?? {}), ROLES, `${w.name} jobs ${p.jobs}: CPU by role`);
    const m = w.model;
    assert.ok(m, `${w.name}: a stage model`);
    assert.deepEqual(Object.keys(m.byRole), ROLES);
    assert.ok(m.w > 0 && m.c > 0 && m.c <= m.w, `${w.name}: 0 < C <= W`);
    assert.ok(m.mainShare > 0 && m.mainShare <= 1);
    for (const n of ['16', '64']) assert.ok(m.speedup[n] === m.w / Math.max(m.c, m.w / Number(n)), `${w.name}: speed-up at ${n} cores`);
    const stages = (w.stages ?? []).map((s) => s.stage);
    for (const s of ['blob SHA-256', 'diff_id SHA-256', 'tar walk (null sink)', 'store (fs-verity digest + write)', 'null-pool import, all threads']) assert.ok(stages.includes(s), `${w.name}: stage ${s}`);
    if (!w.name.includes('plain')) assert.ok(stages.some((s) => / inflate$/.test(s)), `${w.name}: its inflate`);
    assert.ok((w.stages ?? []).every((s) => s.sPerGB >= 0 && s.usPerFile >= 0));
    if (cores >= 2 && hasTool('taskset')) assert.ok(w.check && w.check.runs === 1 && w.check.measured > 0 && w.check.predicted === m.speedup['2'], `${w.name}: checked on 1 core against 2`);
  }
  if (hasTool('fsverity')) assert.ok(report.workloads[0]?.peers.some((p) => p.name.startsWith('fsverity digest')));
  if (hasTool('ostree')) assert.ok(report.workloads.some((w) => w.peers.some((p) => p.name.startsWith('ostree'))));
  assert.match(readFileSync(join(out, 'report.md'), 'utf8'), /^# veritree bench/);
});

const chromium = ['chromium', 'chromium-browser', 'google-chrome'].find(hasTool);
test('scaling.svg opens in headless Chromium and shows one series per workload and the limit', { skip: heavy() || (chromium ? false : 'skipped: chromium not installed') }, () => {
  const svg = join(out, 'scaling.svg');
  const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${join(dir, 'profile')}`];
  const dom = run(chromium as string, [...flags, '--dump-dom', `file://${svg}`]);
  assert.equal(dom.status, 0, dom.stderr);
  const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as Report;
  for (const w of report.workloads) assert.ok(dom.stdout.includes(`data-workload="${w.name}"`), `series ${w.name} in the rendered page`);
  assert.equal((dom.stdout.match(/<polyline/g) ?? []).length, report.workloads.length);
  assert.match(dom.stdout, /class="limit"/);
  const png = join(dir, 'scaling.png');
  const shot = run(chromium as string, [...flags, '--window-size=860,500', `--screenshot=${png}`, `file://${svg}`]);
  assert.equal(shot.status, 0, shot.stderr);
  assert.ok(existsSync(png) && statSync(png).size > 5000, 'a screenshot with something drawn');
});

test('scaling.svg: the limit rises with min(jobs, cores), and every label sits beside the plot, none over a line', async () => {
  const { scalingSvg } = await import('../bench/svg.ts');
  const svg = scalingSvg(
    [
      { name: 'digest', points: [{ jobs: 1, mbps: 900 }, { jobs: 2, mbps: 1700 }, { jobs: 4, mbps: 1800 }] },
      { name: 'import', points: [{ jobs: 1, mbps: 200 }, { jobs: 2, mbps: 350 }, { jobs: 4, mbps: 360 }] },
    ],
    { oneCoreMBps: 1000, cores: 2, label: 'limit' },
    'test'
  );
  const path = /<g class="limit"[^>]*><path d="M([^"]+)"/.exec(svg)?.[1];
  assert.ok(path);
  const ys = path.split(' L').map((p) => Number(p.split(',')[1]));
  assert.equal(ys.length, 3, 'one point per jobs value');
  assert.ok((ys[0] as number) > (ys[1] as number), 'the limit rises from 1 to 2 jobs (y grows downwards)');
  assert.equal(ys[1], ys[2], 'and is flat past the cores');
  // The plot ends at x = 920 - 290; every text but the axes' ticks and titles starts right of it.
  const plotRight = 920 - 290;
  for (const m of svg.matchAll(/<text x="([\d.]+)" y="[\d.]+"(?: fill="#555")?>(digest|import|limit)<\/text>/g)) assert.ok(Number(m[1]) > plotRight, `label ${m[2]} at x=${m[1]}`);
  assert.equal([...svg.matchAll(/>(digest|import|limit)<\/text>/g)].length, 3, 'each series and the limit labelled once');
});
