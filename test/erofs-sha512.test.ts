/**
 * Composefs images of a SHA-512 repository, as composefs-rs writes them for one
 * (crates/composefs/src/erofs/composefs.rs OverlayMetacopy, fsverity/hashvalue.rs
 * to_object_pathname): each file's `trusted.overlay.metacopy` is {0, 68, 0, 2} and its 64-byte
 * SHA-512 fs-verity digest, its `trusted.overlay.redirect` `/XX/<126 hex>`, and the image's id is
 * its own SHA-512 fs-verity digest. Mounted with the kernel's erofs and overlayfs where this
 * process may mount; the seal of such an image is written and checked in SHA-512.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, cleanup, tempDir, veritree } from './helpers.ts';
import { composefsImageObjects } from '../src/erofs/reader.ts';
import { parseDumpfile } from '../src/erofs/dump-parse.ts';
import { writeComposefsImage } from '../src/erofs/writer.ts';
import { mountImage, mountUnavailable, unmountImage } from '../src/erofs/mount.ts';
import { openRepository } from '../src/index.ts';
import { isVeritreeError } from '../src/errors.ts';
import { toHex, verityDigest } from '../src/verity/index.ts';

const whyNoMount = mountUnavailable();
const hasGetfattr = spawnSync('getfattr', ['--version'], { stdio: 'ignore' }).status === 0;
const mountable = whyNoMount !== null ? `skipped: ${whyNoMount}` : !hasGetfattr ? 'skipped: getfattr not installed' : false;

let dir = '';
let repo = '';
let image = '';
before(() => {
  dir = tempDir('veritree-sha512-');
  repo = join(dir, 'repo');
  assert.equal(veritree(['init', '--repo', repo, '--hash', 'sha512']).status, 0);
  const i = veritree(['import', `oci:${join(ROOT, 'example', 'oci')}:latest`, 'ex', '--repo', repo]);
  assert.equal(i.status, 0, i.stderr);
  const r = veritree(['image', 'ex', '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
  image = r.stdout.trim();
});
after(() => dir && !process.env.VERITREE_KEEP && cleanup(dir));

/** The metacopy value of a SHA-512 digest (hex). */
const metacopy512 = (hex: string): Buffer => Buffer.concat([Buffer.from([0, 68, 0, 2]), Buffer.from(hex, 'hex')]);

test('sha512 image: named by its SHA-512 fs-verity digest; every file redirects to /XX/<126 hex> and carries its SHA-512 metacopy', () => {
  assert.match(image, /^[0-9a-f]{128}$/);
  const bytes = readFileSync(join(repo, 'images', image));
  assert.equal(toHex(verityDigest(bytes, 'sha512')), image, 'the id is the SHA-512 fs-verity digest of the image');
  assert.equal(veritree(['compute-id', 'ex', '--repo', repo]).stdout.trim(), image);
  const { objects, foreign } = composefsImageObjects(bytes);
  assert.equal(foreign, 0);
  assert.equal(objects.size, 2, 'the example has two files kept outside the image');
  for (const id of objects) {
    assert.match(id, /^[0-9a-f]{128}$/);
    const object = readFileSync(join(repo, 'objects', id.slice(0, 2), id.slice(2)));
    assert.equal(toHex(verityDigest(object, 'sha512')), id);
    assert.ok(bytes.includes(metacopy512(id)), `the image holds the metacopy of ${id}`);
    assert.ok(bytes.includes(Buffer.from(`/${id.slice(0, 2)}/${id.slice(2)}`)), `the image holds the redirect of ${id}`);
  }
  // SHA-256 metacopy heads are nowhere in it.
  assert.equal(bytes.includes(Buffer.from([0, 0x24, 0, 1])), false);
  const f = veritree(['fsck', '--repo', repo]);
  assert.equal(f.status, 0, f.stdout + f.stderr);
  assert.match(f.stdout, /1 composefs image/);
});

test('writer: a digest of the other hash is refused, not written with a wrong metacopy', async () => {
  const dump = `/ 4096 40755 2 0 0 0 0.0 - - -\n/f 5000 100644 1 0 0 0 0.0 ab/${'c'.repeat(62)} - ab${'c'.repeat(62)}\n`;
  // The writer consumes its tree: each image gets a fresh one.
  const tree = async (): Promise<Parameters<typeof writeComposefsImage>[0]> => parseDumpfile([Buffer.from(dump)], { strict: true });
  const plain = writeComposefsImage(await tree());
  assert.ok(plain.bytes.includes(Buffer.concat([Buffer.from([0, 0x24, 0, 1, 0xab]), Buffer.alloc(31, 0xcc)])), 'SHA-256 is the default');
  assert.deepEqual(writeComposefsImage(await tree(), { hash: 'sha256' }).bytes, plain.bytes);
  const t = await tree();
  assert.throws(() => writeComposefsImage(t, { hash: 'sha512' }), (e) => isVeritreeError(e) && e.code === 'DUMPFILE_INVALID' && /a digest of 32 bytes in an image of 64-byte digests/.test(e.message));
});

test('sha512 image, mounted: erofs shows the SHA-512 metacopy and redirect; overlayfs serves the objects', { skip: mountable }, async () => {
  const bytes = readFileSync(join(repo, 'images', image));
  const objects = [...composefsImageObjects(bytes).objects];
  const at = join(dir, 'erofs');
  mkdirSync(at);
  const m = spawnSync('mount', ['-t', 'erofs', '-o', 'ro,loop', join(repo, 'images', image), at], { encoding: 'utf8' });
  assert.equal(m.status, 0, m.stderr);
  try {
    const file = join(at, 'usr', 'share', 'doc', 'veritree', 'numbers.txt');
    const get = (name: string): Buffer => {
      const r = spawnSync('getfattr', ['--only-values', '-n', name, file]);
      assert.equal(r.status, 0, r.stderr.toString());
      return r.stdout;
    };
    const redirect = get('trusted.overlay.redirect').toString('latin1');
    const found = /^\/([0-9a-f]{2})\/([0-9a-f]{126})$/.exec(redirect);
    assert.ok(found, `a /XX/<126 hex> redirect: ${redirect}`);
    const id = `${found[1]}${found[2]}`;
    assert.ok(objects.includes(id));
    assert.deepEqual(get('trusted.overlay.metacopy'), metacopy512(id));
  } finally {
    spawnSync('umount', [at]);
    rmdirSync(at);
  }
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  const r = await openRepository(repo);
  const report = await mountImage(r, 'ex', mnt);
  try {
    assert.equal(report.image, image);
    for (const name of ['numbers.txt', 'big.txt']) {
      const served = readFileSync(join(mnt, 'usr', 'share', 'doc', 'veritree', name));
      const id = toHex(verityDigest(served, 'sha512'));
      assert.ok(objects.includes(id), `${name} is served from its object`);
      assert.deepEqual(served, readFileSync(join(repo, 'objects', id.slice(0, 2), id.slice(2))));
    }
  } finally {
    unmountImage(mnt);
  }
  // By its id too: a 128-hex name is an image id in a SHA-512 repository.
  await mountImage(r, image, mnt);
  try {
    assert.ok(existsSync(join(mnt, 'etc', 'os-release')));
  } finally {
    unmountImage(mnt);
  }
});

test('seal in a SHA-512 repository: sha512 digests, checked on import into a SHA-512 store, unchecked in a SHA-256 one', () => {
  const out = join(dir, 'sealed');
  const s = veritree(['seal', 'ex', '--out', `oci:${out}:sealed`, '--json', '--repo', repo]);
  assert.equal(s.status, 0, s.stderr);
  const digests = (JSON.parse(s.stdout) as { digests: Record<string, string> }).digests;
  const merged = 'composefs.merged.erofs.v1.fsverity-sha512-12';
  assert.match(digests[merged] ?? '', /^[0-9a-f]{128}$/);
  assert.equal(veritree(['compute-id', 'ex', '--erofs-version', '1', '--repo', repo]).stdout.trim(), digests[merged]);
  const statuses = (store: string): string[] => {
    const r = veritree(['import', `oci:${out}:sealed`, 'x', '--json', '--repo', store]);
    assert.equal(r.status, 0, r.stderr);
    const checks = (JSON.parse(r.stdout) as { seals: { checks: { key: string; status: string; layer?: number }[] } }).seals.checks;
    return checks.map((c) => `${c.key}${c.layer ?? ''}:${c.status}`).sort();
  };
  const fresh = join(dir, 'fresh512');
  assert.equal(veritree(['init', '--repo', fresh, '--hash', 'sha512']).status, 0);
  assert.deepEqual(statuses(fresh), [
    'composefs.config.fsverity-sha512-12:ok',
    'composefs.layer.erofs.v1.fsverity-sha512-120:ok',
    'composefs.layer.erofs.v1.fsverity-sha512-121:ok',
    `${merged}:ok`,
  ]);
  const v = veritree(['verify', 'x', '--repo', fresh]);
  assert.equal(v.status, 0, v.stdout + v.stderr);
  // A SHA-256 store computes the config's claim (any hash), not an image of SHA-512 digests.
  assert.deepEqual(statuses(join(dir, 'fresh256')), [
    'composefs.config.fsverity-sha512-12:ok',
    'composefs.layer.erofs.v1.fsverity-sha512-120:unchecked',
    'composefs.layer.erofs.v1.fsverity-sha512-121:unchecked',
    `${merged}:unchecked`,
  ]);
});
