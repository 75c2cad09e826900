/**
 * `mountImage` mounts the very file it hashed: the image is opened once, hashed from that
 * descriptor, and the loop device is set up from the same open file; no loop device outlives a
 * mount or a refusal.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, cleanup, hasTool, tempDir, veritree, spawnGuarded } from './helpers.ts';
import { parseDumpfile } from '../src/erofs/dump-parse.ts';
import { writeComposefsImage } from '../src/erofs/writer.ts';
import { mountImage, mountUnavailable, unmountImage } from '../src/erofs/mount.ts';
import { openRepository } from '../src/index.ts';
import { isVeritreeError } from '../src/errors.ts';
import { replaceFile } from './fixtures/damage.ts';

const whyNoMount = mountUnavailable();
const mountable = whyNoMount !== null ? `skipped: ${whyNoMount}` : !hasTool('umoci') ? 'skipped: umoci not installed' : false;

let dir = '';
before(() => {
  dir = tempDir('veritree-mount-');
});
after(() => dir && !process.env.VERITREE_KEEP && cleanup(dir));

/** Loop devices whose backing file lies under `root`. */
function loopsUnder(root: string): string[] {
  const r = spawnGuarded('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'], { encoding: 'utf8' });
  return r.stdout.split('\n').filter((l) => l.includes(root));
}

/** A store holding example/oci as `ex` with its composefs image; returns the image id. */
function storeWithImage(repo: string): string {
  const example = join(ROOT, 'example', 'oci');
  assert.equal(veritree(['import', `oci:${example}:latest`, 'ex', '--repo', repo]).status, 0);
  const r = veritree(['image', 'ex', '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

test('mount: a file renamed over the image after it was hashed is not what gets mounted', { skip: mountable }, async () => {
  const root = join(dir, 'swap');
  const id = storeWithImage(root);
  const repo = await openRepository(root);
  // A valid EROFS image of other content, to be renamed over the hashed one.
  const other = writeComposefsImage(await parseDumpfile([Buffer.from('/ 4096 40755 2 0 0 0 0.0 - - -\n/evil 3 100644 1 0 0 0 0.0 - abc -\n')], { strict: true })).bytes;
  const mnt = tempDir('veritree-mnt-');
  let swapped = false;
  await mountImage(repo, 'ex', mnt, {
    afterHash: (path) => {
      const tmp = `${path}.swap`;
      writeFileSync(tmp, other);
      renameSync(tmp, path);
      swapped = true;
    },
  });
  try {
    assert.equal(swapped, true, 'the seam ran between hash and mount');
    const names = readdirSync(mnt);
    assert.equal(names.includes('evil'), false, 'the swapped-in image was mounted');
    assert.ok(names.includes('etc'), `the hashed image is mounted: ${names.join(' ')}`);
  } finally {
    unmountImage(mnt);
  }
  assert.deepEqual(readdirSync(mnt), []);
  assert.deepEqual(loopsUnder(root), [], 'the loop device went with the mount');
  // The swapped file is now damaged; mount refuses it and leaves no loop device.
  await assert.rejects(mountImage(repo, id, mnt), (e) => isVeritreeError(e) && e.code === 'STORE_CORRUPT' && /is damaged/.test(e.message));
  assert.deepEqual(readdirSync(mnt), []);
  assert.deepEqual(loopsUnder(root), []);
  cleanup(mnt);
});

test('mount: a damaged image is refused from the descriptor it opened, and a symlink is not followed', { skip: mountable }, async () => {
  const root = join(dir, 'bad');
  const id = storeWithImage(root);
  const repo = await openRepository(root);
  const obj = repo.objectPath(id);
  const good = readFileSync(obj);
  const mnt = tempDir('veritree-mnt-');
  const b = Buffer.from(good);
  b[2000] = (b[2000] ?? 0) ^ 1;
  replaceFile(obj, b);
  await assert.rejects(mountImage(repo, 'ex', mnt), (e) => isVeritreeError(e) && e.code === 'STORE_CORRUPT');
  // A symlink in the image's place is refused, not followed to a good copy.
  const copy = join(root, 'good-copy');
  writeFileSync(copy, good);
  spawnGuarded('ln', ['-sf', copy, obj]);
  await assert.rejects(mountImage(repo, 'ex', mnt), (e) => isVeritreeError(e) && /ELOOP|symbolic link|not a regular/i.test(`${e.code} ${e.message}`));
  assert.deepEqual(readdirSync(mnt), []);
  assert.deepEqual(loopsUnder(root), []);
  cleanup(mnt);
});
