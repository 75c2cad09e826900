/** The native kernel is optional: a failed build never breaks install, and veritree falls back. */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, cleanup, run, tempDir } from './helpers.ts';

const dirs: string[] = [];
after(() => dirs.forEach(cleanup));

test('a failed native build prints one line and exits 0 (install goes on)', () => {
  const r = run(process.execPath, [join(ROOT, 'scripts', 'build-native.mjs')], { env: { npm_config_node_gyp: '/bin/false' } });
  assert.equal(r.status, 0);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0] ?? '', /^veritree: native hashing kernel not built \(.*\); falling back to node:crypto$/);
});

test('without the kernel, auto falls back to node:crypto with one line on stderr, and digests are the same', () => {
  const d = tempDir();
  dirs.push(d);
  // A copy of the build without native/: what an install where node-gyp failed looks like.
  cpSync(join(ROOT, 'dist'), join(d, 'dist'), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(d, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(d, 'node_modules'));
  const file = join(d, 'data');
  writeFileSync(file, Buffer.alloc(300_000, 7));
  const cli = join(d, 'dist', 'src', 'cli', 'main.js');
  const env = { VERITREE_QUIET_FALLBACK: '' };
  const fallback = run(process.execPath, [cli, 'digest', file], { env });
  assert.equal(fallback.status, 0, fallback.stderr);
  assert.match(fallback.stderr, /^veritree: native hashing kernel unavailable \(.*\); using node:crypto\n$/);
  const native = run(process.execPath, [join(ROOT, 'dist', 'src', 'cli', 'main.js'), 'digest', file]);
  assert.equal(fallback.stdout, native.stdout);
  const asked = run(process.execPath, [cli, 'digest', '--hash-impl', 'native', file], { env });
  assert.equal(asked.status, 2, 'asking for native where it is missing is a usage error');
  assert.match(asked.stderr, /^veritree: --hash-impl native: the native hashing kernel is unavailable/);
});
