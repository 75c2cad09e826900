/**
 * `veritree prune`: tags past an age or a count go (by the time each was last set), then gc frees
 * what only they kept; a dry run removes nothing; a tag either policy keeps stays.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { plainLayerLayout } from './fixtures/oci.ts';
import { ROOT, cleanup, must, tempDir, veritree } from './helpers.ts';
import { parseDuration } from '../src/verify/prune.ts';

const dir = tempDir('veritree-prune-');
after(() => cleanup(dir));

function tags(repo: string): string[] {
  return (JSON.parse(veritree(['images', '--json', '--repo', repo]).stdout) as { tag: string }[]).map((i) => i.tag).sort();
}

test('prune --keep-last and --keep-newer-than untag by when tags were set, then gc', () => {
  const repo = join(dir, 'repo');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'only-in-old'), Buffer.alloc(5000, 1));
  must('tar', ['-C', src, '-cf', join(dir, 'old.tar'), 'only-in-old']);
  plainLayerLayout(join(dir, 'old'), 'latest', readFileSync(join(dir, 'old.tar')));
  assert.equal(veritree(['import', `oci:${join(dir, 'old')}:latest`, 'old', '--repo', repo]).status, 0);
  assert.equal(veritree(['import', `oci:${join(ROOT, 'example', 'oci')}:latest`, 'mid', '--repo', repo]).status, 0);
  assert.equal(veritree(['import', `oci:${join(ROOT, 'example', 'oci')}:latest`, 'new', '--repo', repo]).status, 0);
  const tagDir = join(repo, 'streams', 'refs', 'oci');
  must('touch', ['-h', '-d', '10 days ago', join(tagDir, 'old')]);
  must('touch', ['-h', '-d', '2 days ago', join(tagDir, 'mid')]);

  const dry = veritree(['prune', '--keep-last', '1', '--dry-run', '--repo', repo]);
  assert.equal(dry.status, 0, dry.stderr);
  assert.match(dry.stdout, /^would untag 2 tags: mid, old; kept 1$/m);
  assert.deepEqual(tags(repo), ['mid', 'new', 'old']);

  // Either policy keeps a tag: the last 1, or anything newer than 5 days.
  const r = veritree(['prune', '--keep-last', '1', '--keep-newer-than', '5d', '--json', '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { untagged: string[]; kept: string[]; gc: { objectsRemoved: number } };
  assert.deepEqual(report.untagged, ['old']);
  assert.deepEqual(report.kept.sort(), ['mid', 'new']);
  assert.ok(report.gc.objectsRemoved >= 1, 'the old image\'s 5000-byte file is freed');
  assert.deepEqual(tags(repo), ['mid', 'new']);
  assert.equal(veritree(['fsck', '--repo', repo]).status, 0);
  assert.equal(veritree(['prune', '--repo', repo]).status, 2, 'no policy is a usage error');
});

test('durations: units s m h d w, several at once; anything else refused', () => {
  assert.equal(parseDuration('30d'), 30 * 86400e3);
  assert.equal(parseDuration('1d12h'), 36 * 3600e3);
  assert.equal(parseDuration('2w'), 14 * 86400e3);
  for (const bad of ['', '30', 'd', '1y', '-1d', '1.5h']) assert.throws(() => parseDuration(bad), /expected a number and a unit/);
});
