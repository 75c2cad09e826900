/**
 * Bad input: each case breaks exactly one check of a real umoci layout. Each must give a clear
 * one-line error naming the blob and the check, a non-zero exit, no tag, no stream for the bad
 * layer, and a store with nothing half-written.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync, rmSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, hasTool, randomBytesSeeded, tempDir, veritree } from './helpers.ts';
import { blobFile, buildImage, lines, readConfig, readManifest, replaceLayer, rewriteConfig, rewriteManifest, write, writeBlob } from './fixtures/oci.ts';
import { tarOf } from './fixtures/tar.ts';
import { assertConsistent, fsverityCompact, layerStreams, tags } from './fixtures/store-check.ts';

const missing = ['umoci', 'fsverity'].filter((t) => !hasTool(t));
const SKIP = missing.length ? `skipped: ${missing.join(', ')} not installed` : false;
let dir = '';
let base = '';
let n = 0;

before(() => {
  if (SKIP) return;
  dir = tempDir('veritree-bad-');
  base = join(dir, 'base');
  buildImage(base, 't', [
    (root) => write(root, 'one/a.txt', lines(200, 'one')),
    (root) => {
      write(root, 'two/b.txt', lines(300, 'two'));
      write(root, 'two/c.bin', randomBytesSeeded(100_000, 1));
    },
  ]);
});
after(() => dir && cleanup(dir));

/** A fresh copy of the base layout to break. */
function copy(): string {
  const p = join(dir, `case${n++}`);
  cpSync(base, p, { recursive: true });
  return p;
}

async function expectFailure(layout: string, pattern: RegExp, opts: { status?: number; ref?: string } = {}): Promise<string> {
  const repo = join(dir, `repo${n++}`);
  const r = veritree(['import', `oci:${layout}:${opts.ref ?? 't'}`, '--repo', repo]);
  assert.equal(r.status, opts.status ?? 3, `exit status; stderr: ${r.stderr}`);
  const errLines = r.stderr.split('\n').filter((l) => l && !l.includes('warning:'));
  assert.equal(errLines.length, 1, `one line: ${r.stderr}`);
  assert.match(errLines[0] as string, pattern);
  assert.deepEqual(tags(repo), [], 'no tag');
  await assertConsistent(repo);
  return repo;
}

function layerDigest(layout: string, i: number): string {
  return readManifest(layout, 't').layers[i]?.digest as string;
}

test('a blob whose bytes do not match its digest', { skip: SKIP }, async () => {
  const l = copy();
  const d = layerDigest(l, 1);
  const f = blobFile(l, d);
  const b = readFileSync(f);
  const mid = Math.floor(b.length / 2);
  b.writeUInt8(b.readUInt8(mid) ^ 0x55, mid);
  writeFileSync(f, b);
  const repo = await expectFailure(l, new RegExp(`layer 2 \\(${d}\\): blob digest mismatch: expected ${d}, found sha256:[0-9a-f]{64}`));
  assert.equal(layerStreams(repo).filter((s) => s.includes(readConfig(l, 't').rootfs.diff_ids[1]?.slice(7) as string)).length, 0);
});

test('a size that lies (the descriptor says more than the blob has)', { skip: SKIP }, async () => {
  const l = copy();
  const d = layerDigest(l, 0);
  rewriteManifest(l, 't', (m) => {
    (m.layers[0] as { size: number }).size += 10;
  });
  await expectFailure(l, new RegExp(`layer 1 \\(${d}\\): blob size mismatch: descriptor says \\d+ bytes, blob has \\d+`));
});

test('a size that lies (the blob is longer than the descriptor says)', { skip: SKIP }, async () => {
  const l = copy();
  rewriteManifest(l, 't', (m) => {
    (m.layers[1] as { size: number }).size -= 1;
  });
  await expectFailure(l, /layer 2 .*blob size mismatch: descriptor says \d+ bytes, blob has (more than )?\d+/);
});

test('a truncated layer (its descriptor and digest updated to match, so decompression is what fails)', { skip: SKIP }, async () => {
  const l = copy();
  const old = blobFile(l, layerDigest(l, 1));
  const cut = readFileSync(old).subarray(0, Math.floor(statSync(old).size / 2));
  const d = writeBlob(l, cut);
  rewriteManifest(l, 't', (m) => {
    Object.assign(m.layers[1] as object, { digest: d.digest, size: d.size });
  });
  await expectFailure(l, new RegExp(`layer 2 \\(${d.digest}\\): cannot decompress \\(gzip\\): unexpected end of file`));
});

test('a truncated blob file (the descriptor unchanged)', { skip: SKIP }, async () => {
  const l = copy();
  const d = layerDigest(l, 1);
  truncateSync(blobFile(l, d), 100);
  await expectFailure(l, new RegExp(`layer 2 \\(${d}\\): blob size mismatch: descriptor says \\d+ bytes, blob has 100`));
});

test('a wrong diff_id', { skip: SKIP }, async () => {
  const l = copy();
  const wrong = `sha256:${'ab'.repeat(32)}`;
  rewriteConfig(l, 't', (c) => {
    c.rootfs.diff_ids[0] = wrong;
  });
  const repo = await expectFailure(l, new RegExp(`layer 1 \\(sha256:[0-9a-f]{64}\\): diff_id mismatch: the config says ${wrong}, the layer's tar is sha256:[0-9a-f]{64}`));
  assert.ok(!layerStreams(repo).some((s) => s.endsWith('ab'.repeat(32))));
});

test('a missing blob (a layer, then the config)', { skip: SKIP }, async () => {
  const l = copy();
  const d = layerDigest(l, 0);
  rmSync(blobFile(l, d));
  await expectFailure(l, new RegExp(`layer 1 \\(${d}\\): blob .*${d.slice(7)} is missing`));
  const l2 = copy();
  const c = readManifest(l2, 't').config.digest;
  rmSync(blobFile(l2, c));
  await expectFailure(l2, new RegExp(`config ${c}: blob .* is missing`));
});

test('an index.json that is not JSON, and a folder that is not a layout', { skip: SKIP }, async () => {
  const l = copy();
  writeFileSync(join(l, 'index.json'), '{"manifests": [');
  await expectFailure(l, /index\.json is not JSON/);
  const l2 = copy();
  rmSync(join(l2, 'oci-layout'));
  await expectFailure(l2, /is not an OCI image layout: it has no oci-layout file/);
});

test('an unsupported media type', { skip: SKIP }, async () => {
  const l = copy();
  rewriteManifest(l, 't', (m) => {
    (m.layers[1] as { mediaType: string }).mediaType = 'application/vnd.example.squashfs';
  });
  await expectFailure(l, /layer 2 \(sha256:[0-9a-f]{64}\): unsupported media type application\/vnd\.example\.squashfs/);
});

test('a media type that lies about the compression', { skip: SKIP }, async () => {
  const l = copy();
  rewriteManifest(l, 't', (m) => {
    (m.layers[0] as { mediaType: string }).mediaType = 'application/vnd.oci.image.layer.v1.tar+zstd';
  });
  await expectFailure(l, /layer 1 .*media type .*tar\+zstd says zstd, but the blob is gzip/);
});

test('a layer that is not a tar at all', { skip: SKIP }, async () => {
  const l = copy();
  replaceLayer(l, 't', 1, randomBytesSeeded(5000, 3));
  await expectFailure(l, /layer 2 .*tar header at offset 0: not a tar archive \(bad header checksum\)/);
});

test('garbage that is not gzip under a gzip media type', { skip: SKIP }, async () => {
  const l = copy();
  const d = writeBlob(l, Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytesSeeded(3000, 4)]));
  rewriteManifest(l, 't', (m) => Object.assign(m.layers[1] as object, { digest: d.digest, size: d.size }));
  await expectFailure(l, /layer 2 .*cannot decompress \(gzip\)/);
});

/** tar-stream refuses unpadded tars, so here the check is the rebuild and each content's object. */
async function assertRebuilds(repo: string, diffId: string, contents: Buffer[]): Promise<void> {
  const r = veritree(['cat-layer', diffId, '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
  const work = tempDir();
  try {
    const paths = contents.map((c, i) => {
      const p = join(work, String(i));
      writeFileSync(p, c);
      return p;
    });
    for (const id of fsverityCompact(paths)) assert.ok(statSync(join(repo, 'objects', id.slice(0, 2), id.slice(2))).isFile());
  } finally {
    cleanup(work);
  }
  await assertConsistent(repo);
}

test('layers from the wild: ../ and absolute paths, and an entry beneath a symlink, import with a warning naming the entry', { skip: SKIP }, async () => {
  const l = copy();
  const tar = await tarOf([
    { name: '../../etc/evil', content: 'x'.repeat(100) },
    { name: '/etc/abs', content: 'y'.repeat(100) },
    { name: 'link', type: 'symlink', linkname: '/etc' },
    { name: 'link/passwd', content: 'z'.repeat(100) },
    { name: 'fine/file', content: 'ok' },
  ]);
  replaceLayer(l, 't', 1, tar);
  const repo = join(dir, `repo${n++}`);
  const before = new Set(readFileSync('/etc/passwd', 'utf8'));
  const r = veritree(['import', `oci:${l}:t`, '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /warning: layer 2 .*entry "\.\.\/\.\.\/etc\/evil" at offset 0 points outside the image root/);
  assert.match(r.stderr, /warning: layer 2 .*entry "\/etc\/abs" at offset \d+ points outside the image root/);
  assert.match(r.stderr, /warning: layer 2 .*entry "link\/passwd" at offset \d+ lies beneath the symlink "link"/);
  assert.deepEqual(new Set(readFileSync('/etc/passwd', 'utf8')), before);
  await assertConsistent(repo);
  const diffId = readConfig(l, 't').rootfs.diff_ids[1] as string;
  const { assertLayersStored } = await import('./fixtures/store-check.ts');
  await assertLayersStored(repo, [diffId]);
});

test('a tar without end-of-archive blocks or final padding (umoci insert) imports with a warning and rebuilds exactly', { skip: SKIP }, async () => {
  const l = copy();
  const full = await tarOf([{ name: 'a', content: 'a'.repeat(700) }, { name: 'b', content: 'b'.repeat(100) }]);
  // Cut after b's content: no padding after it, no end-of-archive blocks (what umoci 0.4.7's insert writes).
  const cut = full.subarray(0, 512 + 1024 + 512 + 100);
  replaceLayer(l, 't', 1, cut);
  const repo = join(dir, `repo${n++}`);
  const r = veritree(['import', `oci:${l}:t`, '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /warning: layer 2 .*not padded to a 512-byte block/);
  await assertRebuilds(repo, readConfig(l, 't').rootfs.diff_ids[1] as string, [Buffer.from('a'.repeat(700)), Buffer.from('b'.repeat(100))]);
  // Padded but without end blocks: a different warning, same guarantee.
  const l2 = copy();
  replaceLayer(l2, 't', 1, full.subarray(0, 512 + 1024 + 512 + 512));
  const repo2 = join(dir, `repo${n++}`);
  const r2 = veritree(['import', `oci:${l2}:t`, '--repo', repo2]);
  assert.equal(r2.status, 0, r2.stderr);
  assert.match(r2.stderr, /warning: layer 2 .*ends without its end-of-archive blocks/);
  await assertRebuilds(repo2, readConfig(l2, 't').rootfs.diff_ids[1] as string, [Buffer.from('a'.repeat(700)), Buffer.from('b'.repeat(100))]);
});

test('a tar that ends inside a file content is an error, not a warning', { skip: SKIP }, async () => {
  const l = copy();
  const full = await tarOf([{ name: 'a', content: 'a'.repeat(700) }]);
  replaceLayer(l, 't', 1, full.subarray(0, 512 + 300));
  await expectFailure(l, /layer 2 .*layer tar is truncated: it ends inside the content of "a" \(300 of 700 bytes\)/);
});

test('nested indexes deeper than the limit are refused (the guard that also stops a loop)', { skip: SKIP }, async () => {
  const l = copy();
  const idxPath = join(l, 'index.json');
  const index = JSON.parse(readFileSync(idxPath, 'utf8')) as { manifests: object[] };
  const indexType = 'application/vnd.oci.image.index.v1+json';
  // Content addressing makes a true cycle unbuildable (a blob cannot hold its own digest), so a
  // chain of indexes is what a hostile layout can do; resolution also refuses a digest seen twice.
  let inner: object = { ...writeBlob(l, Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] }))), mediaType: indexType };
  for (let i = 0; i < 10; i++) inner = { ...writeBlob(l, Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [inner] }))), mediaType: indexType };
  index.manifests = [{ ...inner, annotations: { 'org.opencontainers.image.ref.name': 't' } }];
  writeFileSync(idxPath, JSON.stringify(index));
  await expectFailure(l, /image indexes nest deeper than 8/);
});

test('a manifest with 10,000 layers is refused before any blob is read', { skip: SKIP }, async () => {
  const l = copy();
  rewriteManifest(l, 't', (m) => {
    const one = m.layers[0];
    m.layers = Array.from({ length: 10_000 }, () => ({ ...(one as object) })) as typeof m.layers;
  });
  await expectFailure(l, /has 10000 layers \(limit 500\)/);
});

test('gzip bomb: --max-layer-size stops a layer that inflates too far', { skip: SKIP }, async () => {
  const l = copy();
  const tar = await tarOf([{ name: 'zeros', content: '\0'.repeat(4 << 20) }]);
  replaceLayer(l, 't', 1, tar);
  const repo = join(dir, `repo${n++}`);
  const r = veritree(['import', `oci:${l}:t`, '--repo', repo, '--max-layer-size', String(1 << 20)]);
  assert.equal(r.status, 3);
  assert.match(r.stderr, /layer 2 .*inflates past --max-layer-size \(1048576 bytes\)/);
  assert.deepEqual(tags(repo), []);
});

test('a wrong diff_id on an uncompressed layer (where the blob digest doubles as the diff_id)', { skip: SKIP }, async () => {
  const l = copy();
  const tar = await tarOf([{ name: 'plain', content: 'p'.repeat(1000) }]);
  replaceLayer(l, 't', 1, tar, { compress: false });
  const wrong = `sha256:${'cd'.repeat(32)}`;
  rewriteConfig(l, 't', (c) => {
    c.rootfs.diff_ids[1] = wrong;
  });
  await expectFailure(l, new RegExp(`layer 2 .*diff_id mismatch: the config says ${wrong}`));
});
