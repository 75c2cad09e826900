#!/usr/bin/env node
// CPU of one import by thread role (main, layer threads, pool workers, libuv, other: V8's
// compiler and garbage collector helpers), measured from /proc in this process (bench/threads.ts),
// and the stage model of it (bench/model.ts): W, C and the predicted speed-up at 16 and 64 cores.
// The pool is booted first and left out; each run imports the sources into a fresh store.
//   node scripts/import-cpu.mjs [--jobs N] [--runs N] LAYOUT[:REF]...      (after npm run build)
// Stores go to ${VERITREE_BENCH_DIR:-/dev/shm/veritree-cpu}.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { VerityPool } from '../dist/src/pipeline/pool.js';
import { ThreadMeter, THREAD_ROLES } from '../dist/bench/threads.js';
import { medianSpan, stageModel } from '../dist/bench/model.js';
import { importImages, openRepository } from '../dist/src/index.js';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { jobs: { type: 'string', default: '2' }, runs: { type: 'string', default: '5' } } });
if (positionals.length === 0) {
  console.error('usage: node scripts/import-cpu.mjs [--jobs N] [--runs N] LAYOUT[:REF]...');
  process.exit(2);
}
const work = process.env.VERITREE_BENCH_DIR ?? '/dev/shm/veritree-cpu';
mkdirSync(work, { recursive: true });
const meter = await ThreadMeter.start();
const pool = new VerityPool(Number(values.jobs));
await meter.addPool(pool);
const spans = [];
let bytes = 0;
const dir = join(work, 'repo');
for (let i = 0; i < Number(values.runs); i++) {
  rmSync(dir, { recursive: true, force: true });
  const repo = await openRepository(dir, { create: true });
  const t0 = performance.now();
  const { value, cpu } = await meter.measure(() => importImages(repo, positionals.map((s) => `oci:${s}`), { pool, failFast: true }));
  const wall = performance.now() - t0;
  bytes = value.total.tarBytes;
  spans.push(cpu);
  const roles = THREAD_ROLES.map((r) => `${r} ${(cpu.byRole[r] * 1e3).toFixed(0)}`).join(', ');
  console.log(`run ${i + 1}: wall ${wall.toFixed(0)} ms, CPU ms: ${roles}; busiest ${cpu.threads[0]?.role} ${((cpu.threads[0]?.seconds ?? 0) * 1e3).toFixed(0)}`);
}
await pool.close();
await meter.close();
rmSync(dir, { recursive: true, force: true });
const m = stageModel(medianSpan(spans), bytes);
console.log(`median run, per GB of tar (${(bytes / 1e6).toFixed(0)} MB): ${THREAD_ROLES.map((r) => `${r} ${m.byRole[r].toFixed(2)}`).join(', ')} s/GB`);
console.log(`W ${m.w.toFixed(2)} s/GB, C ${m.c.toFixed(2)} s/GB (${m.busiest}), main ${(m.mainShare * 100).toFixed(1)}%; predicted x${m.speedup[16].toFixed(2)} at 16 cores, x${m.speedup[64].toFixed(2)} at 64`);
