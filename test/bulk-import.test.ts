/** Bulk import: a folder of layouts made by umoci and skopeo, some sharing layers, one broken. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { cleanup, hasTool, randomBytesSeeded, tempDir, veritree } from './helpers.ts';
import { LAYER_MEDIA, blobFile, buildImage, layoutFromBlobs, lines, readConfig, readManifest, skopeoCopy, write } from './fixtures/oci.ts';
import { ustarHeader } from './fixtures/hostile-blobs.ts';
import { importImages, initRepository } from '../src/index.ts';
import { assertConsistent, assertLayersStored, tags } from './fixtures/store-check.ts';

const missing = ['umoci', 'skopeo', 'fsverity'].filter((t) => !hasTool(t));
const SKIP = missing.length ? `skipped: ${missing.join(', ')} not installed` : false;
let dir = '';
let mirror = '';

before(() => {
  if (SKIP) return;
  dir = tempDir('veritree-bulk-');
  mirror = join(dir, 'mirror');
  mkdirSync(mirror);
  // team-a/app: two tags sharing the base layer.
  const a = join(mirror, 'team-a', 'app');
  mkdirSync(join(mirror, 'team-a'));
  buildImage(a, 'base', [(root) => {
    write(root, 'base/big.bin', randomBytesSeeded(400_000, 1));
    write(root, 'base/conf', lines(50, 'base'));
  }]);
  buildImage(a, 'v1', [(root) => write(root, 'app/v1', lines(80, 'v1'))], { from: 'base' });
  // team-b/svc: the same base, copied by skopeo into another layout, with its own layer on top.
  const b = join(mirror, 'team-b', 'svc');
  mkdirSync(join(mirror, 'team-b'));
  skopeoCopy(a, b, 'base');
  buildImage(b, 'v2', [(root) => write(root, 'svc/v2', lines(90, 'v2'))], { from: 'base' });
  // zz-broken: a layout whose only layer blob is damaged.
  const c = join(mirror, 'zz-broken');
  buildImage(c, 'bad', [(root) => write(root, 'x', lines(40, 'x'))]);
  const f = blobFile(c, readManifest(c, 'bad').layers[0]?.digest as string);
  const bytes = readFileSync(f);
  bytes.writeUInt8(bytes.readUInt8(20) ^ 1, 20);
  writeFileSync(f, bytes);
});
after(() => dir && cleanup(dir));

interface Line {
  ok?: boolean;
  tag?: string;
  source?: string;
  code?: string;
  message?: string;
  total?: { images: number; imported: number; failed: number; layersImported: number };
  blobOpens?: Record<string, number>;
}

test('import --all: every good image imports and rebuilds, the broken one is reported, exit non-zero, shared layers read once', { skip: SKIP }, async () => {
  const repo = join(dir, 'repo');
  const r = veritree(['import', '--all', mirror, '--repo', repo, '--json']);
  assert.equal(r.status, 3, r.stderr);
  const out = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Line);
  const total = out.pop() as Line;
  assert.equal(out.length, 5, 'one line per image: app base/v1, svc base/v2, broken bad');
  assert.deepEqual(out.filter((l) => l.ok).map((l) => l.tag).sort(), ['team-a/app:base', 'team-a/app:v1', 'team-b/svc:base', 'team-b/svc:v2']);
  const broken = out.find((l) => !l.ok);
  assert.equal(broken?.code, 'OCI_DIGEST_MISMATCH');
  assert.match(broken?.message ?? '', /blob digest mismatch/);
  assert.match(r.stderr, /zz-broken:bad: layer 1 .*blob digest mismatch/);
  assert.deepEqual(total.total?.images, 5);
  assert.equal(total.total?.failed, 1);
  // base, v1's layer, v2's layer, and the broken one: each blob opened once, the shared base too.
  const opens = Object.values(total.blobOpens ?? {});
  assert.ok(opens.length >= 3);
  assert.ok(opens.every((n) => n === 1), JSON.stringify(total.blobOpens));
  assert.equal(total.total?.layersImported, 3);
  assert.deepEqual(tags(repo), ['team-a%2Fapp:base', 'team-a%2Fapp:v1', 'team-b%2Fsvc:base', 'team-b%2Fsvc:v2']);
  await assertLayersStored(repo, readConfig(join(mirror, 'team-b', 'svc'), 'v2').rootfs.diff_ids);
  await assertLayersStored(repo, readConfig(join(mirror, 'team-a', 'app'), 'v1').rootfs.diff_ids);
  await assertConsistent(repo);
  const again = veritree(['import', '--all', mirror, '--repo', repo, '--json']);
  const total2 = JSON.parse(again.stdout.trim().split('\n').pop() as string) as Line;
  assert.equal(total2.total?.layersImported, 0, 'a second run imports nothing again');
});

test('several sources on the command line, a tag template, and --fail-fast', { skip: SKIP }, () => {
  const repo = join(dir, 'repo2');
  const a = join(mirror, 'team-a', 'app');
  const r = veritree(['import', `oci:${a}:base`, `oci:${a}:v1`, '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /2 images: 2 imported, 0 already present, 0 failed; layers: 2 imported, 1 shared or present/);
  assert.deepEqual(tags(repo), ['base', 'v1']);
  const t = veritree(['import', '--all', join(mirror, 'team-b'), '--tag-template', 'mirror/{ref}', '--repo', repo]);
  assert.equal(t.status, 0, t.stderr);
  assert.ok(tags(repo).includes('mirror%2Fv2'));
  const ff = veritree(['import', '--all', mirror, '--fail-fast', '--repo', join(dir, 'repo3'), '--json']);
  assert.notEqual(ff.status, 0);
  const lines = ff.stdout.trim().split('\n').map((l) => JSON.parse(l) as Line);
  assert.ok(lines.some((l) => l.code === 'OCI_DIGEST_MISMATCH'));
  assert.equal(veritree(['import', `oci:${a}:base`, 'oops', 'extra', '--repo', repo]).status, 2, 'a NAME goes only after one source');
});

/** An uncompressed tar of one file. */
function oneFileTar(name: string, content: Buffer): Buffer {
  const pad = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([ustarHeader(name, content.length), content, pad, Buffer.alloc(1024)]);
}

test('a layout whose config merely claims a good image\'s diff_id fails alone, in either order and with --all', async () => {
  const root = tempDir('veritree-claim-');
  try {
    const goodTar = oneFileTar('good.txt', Buffer.from(lines(20, 'good')));
    const diffId = `sha256:${createHash('sha256').update(goodTar).digest('hex')}`;
    const folder = join(root, 'layouts');
    const good = join(folder, 'good');
    const bad = join(folder, 'liar');
    layoutFromBlobs(good, 't', [{ blob: gzipSync(goodTar), mediaType: LAYER_MEDIA.gzip, diffId }]);
    // A bigger blob (so it is read first) of other content, claiming the good layer's diff_id.
    layoutFromBlobs(bad, 't', [{ blob: gzipSync(oneFileTar('evil.bin', randomBytesSeeded(200_000, 7))), mediaType: LAYER_MEDIA.gzip, diffId }]);
    for (const order of [[bad, good], [good, bad]]) {
      const repo = await initRepository(join(root, `repo-${order[0] === bad ? 'bad-first' : 'good-first'}`));
      const r = await importImages(repo, order.map((l) => ({ source: `oci:${l}:t`, tag: l === good ? 'good' : 'liar' })));
      const byTag = new Map(r.images.map((i) => [i.tag, i]));
      assert.equal(byTag.get('good')?.ok, true, `the good image imports (${order.map((l) => (l === good ? 'good' : 'bad')).join(', ')}): ${JSON.stringify(byTag.get('good'))}`);
      const liar = byTag.get('liar');
      assert.ok(liar && !liar.ok);
      assert.equal(liar.code, 'OCI_DIFF_ID_MISMATCH', liar.message);
      await assertLayersStored(repo.root, [diffId]);
      await assertConsistent(repo.root);
    }
    const cli = veritree(['import', '--all', folder, '--repo', join(root, 'repo-all'), '--json']);
    assert.equal(cli.status, 3, cli.stderr);
    const out = cli.stdout.trim().split('\n').map((l) => JSON.parse(l) as Line);
    out.pop();
    assert.deepEqual(out.filter((l) => l.ok).map((l) => l.tag), ['good:t']);
    assert.deepEqual(out.filter((l) => !l.ok).map((l) => l.code), ['OCI_DIFF_ID_MISMATCH']);
  } finally {
    cleanup(root);
  }
});
