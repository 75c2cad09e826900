/**
 * Progress on a terminal from the first moment, for every command that can take over a second,
 * and none with --quiet or off a terminal. Run under script(1), which gives the command a pty.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { checkoutImage, openRepository } from '../src/index.ts';
import { CLI, cleanup, hasTool, run, spawnWatched, tempDir, veritree } from './helpers.ts';
import { buildImage, lines, readConfig, write } from './fixtures/oci.ts';

const missing = ['umoci', 'script'].filter((t) => !hasTool(t));
const SKIP = missing.length ? `skipped: ${missing.join(', ')} not installed` : false;
let dir = '';
let layout = '';
let repo = '';
let diffId = '';
let n = 0;

before(() => {
  if (SKIP) return;
  dir = tempDir('veritree-progress-');
  layout = join(dir, 'layout');
  buildImage(layout, 'base', [(root) => write(root, 'a.txt', lines(200, 'a'))]);
  repo = join(dir, 'repo');
  const r = veritree(['import', `oci:${layout}:base`, '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
  diffId = readConfig(layout, 'base').rootfs.diff_ids[0] as string;
});
after(() => dir && cleanup(dir));

const q = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;

/** Runs `args` on a pty; all it wrote, and its exit status (a hang fails, see spawnWatched). */
async function onTerminal(args: string[], redirect = ''): Promise<{ out: string; code: number | null }> {
  const cmd = [process.execPath, CLI, ...args].map(q).join(' ') + redirect;
  const { child, done } = spawnWatched('script', ['-qfec', cmd, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  const { code } = await done;
  return { out, code };
}

/** Each command that can take over a second, with what it needs (a fresh target where it writes). */
function commands(): { name: string; args: string[]; redirect?: string }[] {
  const fresh = (): string => join(dir, `t${n++}`);
  return [
    { name: 'import', args: ['import', `oci:${layout}:base`, '--repo', fresh()] },
    { name: 'cat-layer', args: ['cat-layer', diffId, '--repo', repo], redirect: ` > ${q(fresh())}` },
    { name: 'checkout', args: ['checkout', 'base', fresh(), '--repo', repo] },
    { name: 'fsck', args: ['fsck', '--deep', '--repo', repo] },
    { name: 'gc', args: ['gc', '--dry-run', '--repo', repo] },
    { name: 'image', args: ['image', 'base', '--repo', repo] },
  ];
}

test('on a terminal the first thing every long command draws is its progress line, before any module of the command loads', { skip: SKIP }, async () => {
  // What is judged is the order, not a time: the line is drawn by main.ts before the command's
  // modules load (how soon that is, on a quiet machine, is a figure for the notes, not a test).
  for (const c of commands()) {
    const r = await onTerminal(c.args, c.redirect);
    assert.equal(r.code, 0, `${c.name}: ${r.out}`);
    assert.ok(r.out.startsWith(`\r\x1b[Kveritree ${c.name}: running, `), `${c.name} starts with its progress line: ${JSON.stringify(r.out.slice(0, 80))}`);
  }
});

test('--quiet (before or after the command) draws no progress on a terminal; errors still show', { skip: SKIP }, async () => {
  for (const c of commands()) {
    const args = n % 2 === 0 ? ['--quiet', ...c.args] : [...c.args, '-q'];
    const r = await onTerminal(args, c.redirect);
    assert.equal(r.code, 0, `${c.name}: ${r.out}`);
    assert.ok(!r.out.includes('\x1b[K') && !r.out.includes('running'), `${c.name}: ${JSON.stringify(r.out.slice(0, 120))}`);
  }
  const bad = await onTerminal(['fsck', '-q', '--repo', join(dir, 'nothing-here')]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.out, /veritree: no repository at/);
});

test('off a terminal nothing is drawn', { skip: SKIP }, () => {
  for (const c of commands()) {
    if (c.redirect) continue;
    const r = run(process.execPath, [CLI, ...c.args]);
    assert.equal(r.status, 0, `${c.name}: ${r.stderr}`);
    assert.ok(!r.stderr.includes('\x1b[') && !r.stderr.includes('running'), `${c.name}: ${JSON.stringify(r.stderr.slice(0, 120))}`);
  }
});

test('checkout reports each entry it writes, done of total, to the end', { skip: SKIP }, async () => {
  const seen: { done: number; total: number }[] = [];
  const r = await checkoutImage(await openRepository(repo), 'base', join(dir, `t${n++}`), { onProgress: (p) => seen.push(p) });
  const total = seen[0]?.total ?? 0;
  assert.ok(total >= r.files + r.dirs - 1, `total ${total} counts every entry`);
  assert.deepEqual(seen.map((p) => p.done), [...Array(total).keys()], 'one call per entry, in order');
});
