/** fsck --repair converges on tag links in forms composefs-rs does not write (absolute, `./`). */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readlinkSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, hasTool, tempDir, veritree } from './helpers.ts';
import { buildImage, lines, write } from './fixtures/oci.ts';

const missing = ['umoci', 'fsverity'].filter((t) => !hasTool(t));
const SKIP = missing.length ? `skipped: ${missing.join(', ')} not installed` : false;
let dir = '';
let pristine = '';

interface Report {
  ok: boolean;
  issues: { type: string; path: string }[];
  repair?: { tagsRemoved: { tag: string }[]; tagsRewritten: { tag: string; from: string; to: string }[] };
}

function fsckJson(repo: string, extra: string[] = []): { status: number | null; report: Report } {
  const r = veritree(['fsck', '--repo', repo, '--json', ...extra]);
  return { status: r.status, report: JSON.parse(r.stdout) as Report };
}

before(() => {
  if (SKIP) return;
  dir = tempDir('veritree-repair-tags-');
  const layout = join(dir, 'layout');
  buildImage(layout, 'base', [(root) => write(root, 'a.txt', lines(50, 'a'))]);
  pristine = join(dir, 'pristine');
  const r = veritree(['import', `oci:${layout}:base`, '--repo', pristine]);
  assert.equal(r.status, 0, r.stderr);
});
after(() => dir && cleanup(dir));

test('--repair rewrites an absolute or ./ tag that resolves as ../../<stream>, drops one that does not; then fsck is clean and gc works', { skip: SKIP }, () => {
  const repo = join(dir, 'repo');
  cpSync(pristine, repo, { recursive: true, verbatimSymlinks: true });
  const tags = join(repo, 'streams', 'refs', 'oci');
  const stream = readlinkSync(join(tags, 'base')).split('/').pop() as string;
  unlinkSync(join(tags, 'base'));
  symlinkSync(join(repo, 'streams', stream), join(tags, 'base'));
  symlinkSync(`./../../${stream}`, join(tags, 'dotted'));
  symlinkSync(join(dir, 'elsewhere', 'streams', stream), join(tags, 'astray'));

  const before = fsckJson(repo);
  assert.equal(before.status, 1, 'odd forms are damage: gc would refuse them');
  const r = fsckJson(repo, ['--repair']);
  assert.ok(r.report.repair);
  assert.deepEqual(r.report.repair.tagsRewritten.map((t) => [t.tag, t.to]).sort(), [['base', `../../${stream}`], ['dotted', `../../${stream}`]]);
  assert.deepEqual(r.report.repair.tagsRemoved.map((t) => t.tag), ['astray'], 'a tag naming nothing in this store is dropped');
  assert.equal(readlinkSync(join(tags, 'base')), `../../${stream}`);
  assert.equal(readlinkSync(join(tags, 'dotted')), `../../${stream}`);
  assert.ok(!existsSync(join(tags, 'astray')));

  const after = fsckJson(repo);
  assert.equal(after.status, 0, JSON.stringify(after.report.issues));
  const gc = veritree(['gc', '--repo', repo, '--json']);
  assert.equal(gc.status, 0, gc.stderr);
  assert.equal((JSON.parse(gc.stdout) as { objectsRemoved: number }).objectsRemoved, 0, 'the tagged image keeps all its objects');
  assert.equal(fsckJson(repo, ['--deep']).status, 0);
});

test('--repair removes a folder where a stream link should be (EISDIR), then fsck is clean; a store without images/ is not damaged', { skip: SKIP }, () => {
  const repo = join(dir, 'folder-stream');
  cpSync(pristine, repo, { recursive: true, verbatimSymlinks: true });
  rmSync(join(repo, 'images'), { recursive: true, force: true });
  assert.equal(fsckJson(repo).status, 0, 'no images/ folder is no damage');
  const name = `oci-config-sha256:${'ab'.repeat(32)}`;
  mkdirSync(join(repo, 'streams', name, 'inside'), { recursive: true });
  const before = fsckJson(repo);
  assert.equal(before.status, 1);
  assert.ok(before.report.issues.some((i) => i.type === 'stream-not-symlink' && i.path.endsWith(name)), JSON.stringify(before.report.issues));
  const repaired = fsckJson(repo, ['--repair']);
  assert.equal(existsSync(join(repo, 'streams', name)), false, 'the folder is gone');
  assert.ok(repaired.report.repair, 'a repair ran');
  const after = fsckJson(repo);
  assert.equal(after.status, 0, JSON.stringify(after.report.issues));
});
