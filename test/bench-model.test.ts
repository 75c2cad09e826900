/** bench/threads.ts labels each thread by its role; bench/model.ts turns a span into W, C and a prediction. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pbkdf2Sync, pbkdf2 } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { VerityPool } from '../src/pipeline/pool.ts';
import { ThreadMeter } from '../bench/threads.ts';
import { predictedSpeedup, stageModel } from '../bench/model.ts';

/** A worker thread that burns CPU, reports its own schedstat seconds, and ends. */
const BURN = `
const { parentPort } = require('node:worker_threads');
const { readFileSync } = require('node:fs');
const { pbkdf2Sync } = require('node:crypto');
pbkdf2Sync('p', 's', 200000, 32, 'sha256');
parentPort.postMessage(Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e9);
`;

test('ThreadMeter: a thread that ends mid-run is a layer thread, libuv and main work land on theirs, the pool is found', async () => {
  const meter = await ThreadMeter.start();
  const pool = new VerityPool(1);
  try {
    await meter.addPool(pool);
    let burnt = 0;
    const { cpu } = await meter.measure(async () => {
      burnt = await new Promise<number>((resolve, reject) => {
        const w = new Worker(BURN, { eval: true });
        let got = 0;
        w.on('message', (s: number) => (got = s));
        w.on('error', reject);
        w.on('exit', () => resolve(got));
      });
      await new Promise<void>((resolve, reject) => pbkdf2('p', 's', 200_000, 32, 'sha256', (e) => (e ? reject(e) : resolve())));
      pbkdf2Sync('p', 's', 200_000, 32, 'sha256');
      const r = await pool.run({ kind: 'thread-id', holdMs: 1, alg: 'sha256', impl: 'auto' });
      assert.ok(r.ok);
    });
    assert.ok(burnt > 0);
    // The worker ended before the span did: the sampler saw all but its last few milliseconds.
    assert.ok(cpu.byRole.layer >= burnt * 0.5, `layer ${cpu.byRole.layer} s, the worker burnt ${burnt} s`);
    assert.ok(cpu.byRole.layer <= burnt + 0.05, `layer ${cpu.byRole.layer} s, the worker burnt ${burnt} s`);
    assert.ok(cpu.byRole.libuv > 0, 'the async pbkdf2 ran on libuv');
    assert.ok(cpu.byRole.main > 0, 'the sync pbkdf2 ran on the main thread');
    assert.ok(cpu.byRole.pool > 0, 'the pool task ran on the pool');
    const sum = Object.values(cpu.byRole).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(sum - cpu.total) < 1e-6, 'the roles add up to the whole');
    assert.ok(cpu.threads.length >= 3 && cpu.threads.every((t, i) => i === 0 || (cpu.threads[i - 1] as { seconds: number }).seconds >= t.seconds), 'busiest first');
  } finally {
    await pool.close();
    await meter.close();
  }
});

test('predictedSpeedup: W / max(C, W/N)', () => {
  assert.equal(predictedSpeedup(10, 1, 1), 1);
  assert.equal(predictedSpeedup(10, 1, 4), 4);
  assert.equal(predictedSpeedup(10, 1, 16), 10, 'the busiest thread caps it at W/C');
  assert.equal(predictedSpeedup(10, 0, 64), 64, 'no serial thread: every core counts');
});

test('stageModel: C leaves the pool out, shares and speed-ups per GB', () => {
  const span = {
    byRole: { main: 1, layer: 2, pool: 6, libuv: 0.5, other: 0.5 },
    total: 10,
    unseen: 0,
    threads: [
      { tid: 3, role: 'pool' as const, seconds: 6 },
      { tid: 2, role: 'layer' as const, seconds: 2 },
      { tid: 1, role: 'main' as const, seconds: 1 },
    ],
  };
  const m = stageModel(span, 2e9);
  assert.equal(m.w, 5);
  assert.equal(m.c, 1, 'the layer thread, 2 s over 2 GB; not the pool worker');
  assert.equal(m.busiest, 'layer');
  assert.equal(m.mainShare, 0.1);
  assert.equal(m.byRole.pool, 3);
  assert.deepEqual(m.speedup, { 2: 2, 16: 5, 64: 5 });
});
