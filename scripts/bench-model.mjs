#!/usr/bin/env node
// The stage model of the synthetic import workloads alone (the `shapes` part of `npm run bench`
// without the jobs sweep's peers): each workload imported in-process at jobs 1..cores, its
// CPU by thread role, W, C and the predicted speed-ups, each stage alone, and the model checked
// with taskset on one core against two. Writes OUT/report.json in the form bench/run.ts writes,
// so that `node scripts/bench-docs.mjs OUT/report.json` puts its tables into docs/performance.md.
//   node scripts/bench-model.mjs [--quick] [--runs N] [--check-runs N] [--out DIR]   (after npm run build)
// Work files go to ${VERITREE_BENCH_DIR:-/dev/shm/veritree-model} (tmpfs: the disk must not decide).
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { shapes, buildShape } from '../dist/bench/synthetic.js';
import { ThreadMeter } from '../dist/bench/threads.js';
import { importWorkload } from '../dist/bench/workloads.js';
import { stageCosts } from '../dist/bench/stages.js';
import { checkModel, medianSpan, stageModel } from '../dist/bench/model.js';
import { modelRows, pointRows, stageRows } from '../dist/bench/report-md.js';
import { filesystemOf, hostFacts } from '../dist/bench/lib.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, runs: { type: 'string', default: '1' }, 'check-runs': { type: 'string', default: '5' }, out: { type: 'string', default: 'docs/bench/model' } } });
const work = resolve(process.env.VERITREE_BENCH_DIR ?? '/dev/shm/veritree-model');
const out = resolve(values.out);
mkdirSync(work, { recursive: true });
mkdirSync(out, { recursive: true });
const signal = AbortSignal.timeout(4 * 3600_000);
const say = (s) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);
const meter = await ThreadMeter.start();
const workloads = [];
try {
  for (const [i, shape] of shapes(values.quick).entries()) {
    say(`building ${shape.name}`);
    const dir = join(work, `shape-${i}`);
    const built = await buildShape(shape, dir);
    const sources = built.layouts.map((l) => `oci:${l}:bench`);
    const w = await importWorkload(shape.name, sources, work, [], { meter, runs: Number(values.runs), say, signal }, {});
    const model = stageModel(medianSpan(w.atCores), w.bytes);
    say(`${shape.name}: each stage alone`);
    const { stages } = await stageCosts({ tars: built.tars, blobs: built.blobs, compression: shape.compression, sources }, work, meter, signal);
    const runs = Number(values['check-runs']);
    if (runs > 0) say(`${shape.name}: the model on one core against two`);
    const check = runs > 0 ? checkModel(shape.images.length > 1 ? ['--all', dir] : sources, work, runs, model) : null;
    workloads.push({ name: shape.name, bytes: w.bytes, runs: Number(values.runs), points: w.points, peers: [], model, stages, ...(check ? { check } : {}) });
    rmSync(dir, { recursive: true, force: true });
  }
} finally {
  await meter.close();
}
const args = process.argv.slice(2).join(' ');
const report = {
  host: hostFacts(),
  quick: values.quick,
  runs: Number(values.runs),
  date: new Date().toISOString(),
  // The variable decides the configuration measured: a big host's (layer threads on) on a small one.
  command: `${process.env.VERITREE_LAYER_THREADS ? `VERITREE_LAYER_THREADS=${process.env.VERITREE_LAYER_THREADS} ` : ''}node scripts/bench-model.mjs${args ? ` ${args}` : ''}`,
  workDir: `${work} (${filesystemOf(work)})`,
  'synthetic images at jobs 1..cores': workloads.flatMap(pointRows),
  'synthetic imports: the stage model': workloads.flatMap(modelRows),
  'synthetic imports: each stage alone': workloads.flatMap(stageRows),
  workloads,
};
writeFileSync(join(out, 'report.json'), JSON.stringify(report, null, 2) + '\n');
say(`wrote ${join(out, 'report.json')}`);
