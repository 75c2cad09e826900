#!/usr/bin/env node
// An OCI layout of one plain layer of many small files, the shape where an import's main thread
// is the ceiling: FOLDERS x FILES files of 100 to 4,000 bytes (random, from a fixed seed, so two
// runs give the same layer), tagged `t`; scripts/import-cpu.mjs measures an import of it.
//   node scripts/small-files-layout.mjs OUT [FOLDERS=100] [FILES=400]      (after npm run build)
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { makeLayout } from '../dist/bench/fixtures.js';

const [out, folders = '100', files = '400'] = process.argv.slice(2);
if (!out) {
  console.error('usage: node scripts/small-files-layout.mjs OUT [FOLDERS] [FILES]');
  process.exit(2);
}
// xorshift32: the same bytes on every machine
let x = 0x9e3779b9;
const next = () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), x >>> 0);
const tree = `${out}.tree`;
rmSync(tree, { recursive: true, force: true });
for (let d = 0; d < Number(folders); d++) {
  mkdirSync(join(tree, `d${d}`), { recursive: true });
  for (let f = 0; f < Number(files); f++) {
    const b = Buffer.allocUnsafe(100 + (next() % 3901));
    for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(next(), Math.min(i, b.length - 4));
    writeFileSync(join(tree, `d${d}`, `f${f}`), b);
  }
}
const tar = `${out}.tar`;
const r = spawnSync('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', tree, '-cf', tar, '.'], { stdio: 'inherit' });
if (r.status !== 0) process.exit(1);
rmSync(out, { recursive: true, force: true });
await makeLayout(out, 't', [tar], 'none');
rmSync(tree, { recursive: true, force: true });
console.log(`${out}: OCI layout, tag t (${tar} is its layer)`);
