#!/usr/bin/env node
// CPU of one import per thread group (main thread, pool workers, the rest: V8's compiler and
// garbage collector helpers, libuv's threads), measured from /proc in this process: the pool is
// booted first and left out, then each run imports LAYOUT into a fresh store.
//   node scripts/import-cpu.mjs LAYOUT[:REF] [JOBS=2] [RUNS=5]      (after npm run build)
// Stores go to ${VERITREE_BENCH_DIR:-/dev/shm/veritree-cpu}. Each run is a new process's first
// import only when RUNS is 1; run it several times for cold figures (what the CLI sees).
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { VerityPool } from '../dist/src/pipeline/pool.js';
import { CpuMeter } from '../dist/bench/cpu.js';
import { importImage, openRepository } from '../dist/src/index.js';

const [source, jobs = '2', runs = '5'] = process.argv.slice(2);
if (!source) {
  console.error('usage: node scripts/import-cpu.mjs LAYOUT[:REF] [JOBS] [RUNS]');
  process.exit(2);
}
const work = process.env.VERITREE_BENCH_DIR ?? '/dev/shm/veritree-cpu';
mkdirSync(work, { recursive: true });
const pool = new VerityPool(Number(jobs));
const meter = await CpuMeter.forPool(pool);
const rows = [];
for (let i = 0; i < Number(runs); i++) {
  const dir = join(work, 'repo');
  rmSync(dir, { recursive: true, force: true });
  const repo = await openRepository(dir, { create: true });
  const start = meter.sample();
  const t0 = performance.now();
  await importImage(repo, `oci:${source}`, { pool });
  const wall = performance.now() - t0;
  const d = meter.since(start);
  rows.push({ wall, main: d.main * 1e3, pool: d.pool * 1e3, other: d.other * 1e3 });
  const r = rows[rows.length - 1];
  console.log(`run ${i + 1}: wall ${r.wall.toFixed(0)} ms, CPU main ${r.main.toFixed(0)} ms, pool ${r.pool.toFixed(0)} ms, other ${r.other.toFixed(0)} ms`);
}
await pool.close();
rmSync(join(work, 'repo'), { recursive: true, force: true });
const med = (k) => rows.map((r) => r[k]).sort((a, b) => a - b)[rows.length >> 1];
console.log(`median of ${rows.length}: wall ${med('wall').toFixed(0)} ms, CPU main ${med('main').toFixed(0)} ms, pool ${med('pool').toFixed(0)} ms, other ${med('other').toFixed(0)} ms`);
