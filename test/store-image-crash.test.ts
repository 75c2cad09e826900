/**
 * `veritree image` killed at any step: the store it leaves is one fsck accepts and gc keeps
 * whole, and the next `veritree image` finishes it to the very store a clean run writes.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readlinkSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, hasTool, heavy, ROOT, spawnGuarded, tempDir, veritree } from './helpers.ts';
import { fsck, gc, openRepository, writeStoreImage } from '../src/index.ts';
import { storedImageOf, type StoreImageStep } from '../src/erofs/store-image.ts';

const importable = hasTool('umoci') ? false : 'skipped: umoci not installed';
let dir = '';
before(() => {
  dir = tempDir('veritree-image-crash-');
});
after(() => dir && !process.env.VERITREE_KEEP && cleanup(dir));

/** Every link under streams/ and images/ (not refs/), with its target. */
function links(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const sub of ['streams', 'images']) {
    for (const n of readdirSync(join(root, sub))) if (n !== 'refs') out[`${sub}/${n}`] = readlinkSync(join(root, sub, n));
  }
  return out;
}

const STEPS: StoreImageStep[] = ['objects', 'image-link', 'manifest-holds-both', 'config', 'manifest'];

test('image: killed after each step, fsck is clean, gc keeps it whole, and the next run finishes it', { skip: importable }, async () => {
  const template = join(dir, 'template');
  const r = veritree(['import', `oci:${join(ROOT, 'example', 'oci')}:latest`, 'ex', '--repo', template]);
  assert.equal(r.status, 0, r.stderr);
  const clean = join(dir, 'clean');
  spawnGuarded('cp', ['-a', template, clean]);
  const want = await writeStoreImage(await openRepository(clean), 'ex');
  const wantLinks = links(clean);
  const seen: StoreImageStep[] = [];
  for (const at of STEPS) {
    const root = join(dir, `crash-${at}`);
    spawnGuarded('cp', ['-a', template, root]);
    const repo = await openRepository(root);
    const crash = new Error(`killed after ${at}`);
    await assert.rejects(
      writeStoreImage(repo, 'ex', {
        afterStep: (s) => {
          seen.push(s);
          if (s === at) throw crash;
        },
      }),
      (e) => e === crash,
      `the run reached step ${at}`
    );
    const f1 = await fsck(repo);
    assert.deepEqual(f1.issues, [], `fsck after a crash at ${at}`);
    await gc(repo);
    const f2 = await fsck(repo);
    assert.deepEqual(f2.issues, [], `fsck after gc after a crash at ${at}`);
    const again = await writeStoreImage(repo, 'ex');
    assert.equal(again.image, want.image, at);
    assert.equal(await storedImageOf(repo, 'ex'), want.image);
    assert.deepEqual(links(root), wantLinks, `the finished store is a clean run's (${at})`);
    const g = await gc(repo);
    assert.deepEqual([g.streamsRemoved, g.imagesRemoved], [[], []], at);
    assert.deepEqual((await fsck(repo)).issues, [], at);
  }
  assert.deepEqual([...new Set(seen)], STEPS);
});

test('image of one tag moves every manifest of the same config with it: fsck is clean after it and after a crash at each step', { skip: importable || heavy() || (hasTool('skopeo') ? false : 'skipped: skopeo not installed') }, async () => {
  // The same image with zstd layers: another manifest, the same config stream.
  const zstd = join(dir, 'zstd-layout');
  assert.equal(spawnGuarded('skopeo', ['copy', '-q', '--dest-compress-format', 'zstd', `oci:${join(ROOT, 'example', 'oci')}:latest`, `oci:${zstd}:latest`]).status, 0);
  const template = join(dir, 'shared-template');
  assert.equal(veritree(['import', `oci:${join(ROOT, 'example', 'oci')}:latest`, 'gz', '--repo', template]).status, 0);
  assert.equal(veritree(['import', `oci:${zstd}:latest`, 'zst', '--repo', template]).status, 0);
  for (const at of [...STEPS, null]) {
    const root = join(dir, `shared-${at ?? 'whole'}`);
    spawnGuarded('cp', ['-a', template, root]);
    const repo = await openRepository(root);
    const crash = new Error(`killed after ${at}`);
    const run = writeStoreImage(repo, 'gz', { afterStep: (s) => { if (s === at) throw crash; } });
    if (at === null) await run;
    else await assert.rejects(run, (e) => e === crash);
    assert.deepEqual((await fsck(repo)).issues, [], `fsck after image gz stopped at ${at ?? 'the end'}`);
    await gc(repo);
    assert.deepEqual((await fsck(repo)).issues, [], `fsck after gc (${at ?? 'the end'})`);
    const again = await writeStoreImage(repo, 'gz');
    assert.equal(await storedImageOf(repo, 'zst'), again.image, 'the other tag sees the image too');
    assert.deepEqual((await fsck(repo)).issues, [], `fsck after the next run (${at ?? 'the end'})`);
    const g = await gc(repo);
    assert.deepEqual([g.streamsRemoved, g.imagesRemoved], [[], []]);
    assert.equal(veritree(['checkout', 'zst', join(dir, `shared-co-${at ?? 'whole'}`), '--repo', root]).status, 0);
  }
});
