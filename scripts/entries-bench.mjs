#!/usr/bin/env node
// Peak memory and time of import, checkout, dump, image and mkfs against the number of entries:
// for each size N, one plain layer of N entries (folders of 1,000 under usr/, half of them empty
// files, half 1 to 64 bytes of content, a few hard links), imported into a fresh store, then each
// command run through the CLI under /usr/bin/time -v. Prints one row per command and size: peak
// RSS (MiB), seconds, entries per second. Not a test: nothing is asserted.
//   npm run bench:entries -- [SIZES=100000,500000] [DIR=/dev/shm/veritree-entries]
// VERITREE_STEPS=import,dump,image,mkfs runs only those commands (mkfs reads dump's output);
// VERITREE_KEEP=1 keeps each size's store and dumpfile.
import { createWriteStream, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { makeLayout } from '../dist/bench/fixtures.js';

const CLI = new URL('../dist/src/cli/veritree.cjs', import.meta.url).pathname;
const [sizesArg = '100000,500000', base = '/dev/shm/veritree-entries'] = process.argv.slice(2);
const sizes = sizesArg.split(',').map(Number);
if (!existsSync('/usr/bin/time')) {
  console.error('entries-bench: needs /usr/bin/time (GNU time)');
  process.exit(2);
}

/** One ustar header block. */
function header(name, type, size, mode, link = '') {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'latin1');
  h.write(`${mode.toString(8).padStart(7, '0')}\0`, 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write('14000000000\0', 136);
  h.write('        ', 148);
  h.write(type, 156);
  h.write(link, 157, 100, 'latin1');
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

/** A tar of n entries (folders included in the count). */
async function writeTar(path, n) {
  const out = createWriteStream(path);
  const put = (b) => (out.write(b) ? Promise.resolve() : new Promise((r) => out.once('drain', r)));
  await put(header('usr/', '5', 0, 0o755));
  let made = 1;
  for (let d = 0; made < n; d++) {
    const dir = `usr/d${Math.floor(d / 100)}/d${d}/`;
    if (d % 100 === 0) {
      await put(header(`usr/d${Math.floor(d / 100)}/`, '5', 0, 0o755));
      made++;
    }
    await put(header(dir, '5', 0, 0o755));
    made++;
    for (let f = 0; f < 999 && made < n; f++, made++) {
      const name = `${dir}file-${f}`;
      if (f % 100 === 99) {
        await put(header(name, '1', 0, 0o644, `${dir}file-${f - 1}`));
        continue;
      }
      const size = f % 2 === 0 ? 0 : 1 + (f % 64);
      await put(header(name, '0', size, 0o644));
      if (size > 0) {
        const block = Buffer.alloc(512);
        block.fill(f & 0xff, 0, size);
        await put(block);
      }
    }
  }
  await put(Buffer.alloc(1024));
  await new Promise((r, j) => out.end((e) => (e ? j(e) : r())));
}

/** Runs the CLI under GNU time: peak RSS in MiB and wall seconds. */
function measured(args, stdout) {
  const r = spawnSync('sh', ['-c', `/usr/bin/time -v "${process.execPath}" "${CLI}" ${args.map((a) => `'${a}'`).join(' ')} > ${stdout}`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`veritree ${args.join(' ')} failed:\n${r.stderr.slice(-2000)}`);
  const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)?.[1]) / 1024;
  const wall = /Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)/.exec(r.stderr);
  const seconds = wall ? Number(wall[1] ?? 0) * 3600 + Number(wall[2]) * 60 + Number(wall[3]) : NaN;
  return { rss, seconds };
}

const rows = [];
for (const n of sizes) {
  const dir = join(base, String(n));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const tar = join(dir, 'layer.tar');
  await writeTar(tar, n);
  await makeLayout(join(dir, 'layout'), 't', [tar], 'gzip');
  rmSync(tar);
  const repo = join(dir, 'repo');
  spawnSync(process.execPath, [CLI, 'init', '--repo', repo], { stdio: 'inherit' });
  const steps = [
    ['import', ['import', '--repo', repo, `oci:${join(dir, 'layout')}`, 't'], '/dev/null'],
    ['checkout', ['checkout', '--repo', repo, 't', join(dir, 'out')], '/dev/null'],
    ['dump', ['dump', '--repo', repo, 't'], join(dir, 'dump')],
    ['image', ['image', '--repo', repo, 't'], '/dev/null'],
    ['mkfs', ['mkfs', join(dir, 'dump'), join(dir, 'mkfs.img')], '/dev/null'],
  ];
  const only = process.env.VERITREE_STEPS?.split(',');
  for (const [name, args, stdout] of steps.filter(([name]) => only === undefined || only.includes(name))) {
    const m = measured(args, stdout);
    rows.push({ entries: n, command: name, rssMiB: Math.round(m.rss), seconds: m.seconds, perSecond: Math.round(n / m.seconds) });
    console.log(`${String(n).padStart(8)} ${name.padEnd(9)} ${String(Math.round(m.rss)).padStart(5)} MiB ${m.seconds.toFixed(2).padStart(7)} s ${String(Math.round(n / m.seconds)).padStart(8)} entries/s`);
    if (name === 'checkout') rmSync(join(dir, 'out'), { recursive: true, force: true });
  }
  if (!process.env.VERITREE_KEEP) rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify(rows));
if (!process.env.VERITREE_KEEP) rmSync(base, { recursive: true, force: true });

