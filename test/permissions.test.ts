/**
 * A store made by root, used by another user: a read command names the folder it cannot enter
 * (its mode and owner), never "not writable"; only a command that writes says "not writable".
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, cleanup, hasTool, run, tempDir, veritree } from './helpers.ts';
import { buildImage, lines, write } from './fixtures/oci.ts';

const AS_ROOT = process.getuid?.() === 0;
const missing = ['umoci', 'setpriv'].filter((t) => !hasTool(t));
const SKIP = !AS_ROOT ? 'skipped: making a store as root and using it as nobody needs root' : missing.length ? `skipped: ${missing.join(', ')} not installed` : false;
let dir = '';
let repo = '';

/** The CLI as nobody (uid and gid 65534, no supplementary groups). */
function asNobody(args: string[]): { status: number | null; stdout: string; stderr: string } {
  return run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, ...args]);
}

before(() => {
  if (SKIP) return;
  dir = tempDir('veritree-perm-');
  // The test's own folder may be entered by anyone: the store's is the one in question.
  chmodSync(dir, 0o755);
  const layout = join(dir, 'layout');
  buildImage(layout, 'base', [(root) => write(root, 'a.txt', lines(20, 'a'))]);
  repo = join(dir, 'repo');
  const r = veritree(['import', `oci:${layout}:base`, '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
});
after(() => dir && cleanup(dir));

test('read commands on a 0700 root store name the folder nobody cannot enter, with its mode and owner', { skip: SKIP }, () => {
  for (const cmd of [['images'], ['fsck'], ['ls', 'base']]) {
    const r = asNobody([...cmd, '--repo', repo]);
    assert.equal(r.status, 4, `${cmd[0]}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^veritree: cannot enter ${repo} \\(mode 0700, owner uid 0 gid 0\\): this user \\(uid 65534\\) may not search it: Permission denied`, 'm'), cmd[0]);
    assert.doesNotMatch(r.stderr, /not writable/, cmd[0]);
  }
});

test('once the store may be entered, reads work and only a write says "not writable"', { skip: SKIP }, () => {
  chmodSync(repo, 0o755);
  try {
    const images = asNobody(['images', '--repo', repo]);
    assert.equal(images.status, 0, images.stderr);
    assert.match(images.stdout, /base/);
    const gc = asNobody(['gc', '--repo', repo]);
    assert.equal(gc.status, 4, gc.stderr);
    assert.match(gc.stderr, new RegExp(`^veritree: ${repo} is not writable: Permission denied \\(.*mode 0755, owner uid 0 gid 0, this user uid 65534\\)`, 'm'));
  } finally {
    chmodSync(repo, 0o700);
  }
});
