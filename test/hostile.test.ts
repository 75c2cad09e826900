/**
 * Hostile layers, each built by hand from raw header blocks and put into a real umoci layout:
 * each is rejected or contained with a clear error and a stable code, no crash, no hang, bounded
 * memory. (More cases live in import-errors.test.ts and merge.test.ts.)
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, hasTool, heavy, tempDir, veritree } from './helpers.ts';
import { blobFile, buildImage, lines, readManifest, replaceLayer, rewriteManifest, write, writeBlob } from './fixtures/oci.ts';
import { assertConsistent, tags } from './fixtures/store-check.ts';
import { ustarHeader, withChecksum } from './fixtures/hostile-blobs.ts';

const SKIP = ['umoci', 'fsverity'].every(hasTool) ? false : 'skipped: umoci or fsverity not installed';
let dir = '';
let base = '';
let n = 0;

before(() => {
  if (SKIP) return;
  dir = tempDir('veritree-hostile-');
  base = join(dir, 'base');
  buildImage(base, 't', [(root) => write(root, 'a', lines(20, 'a')), (root) => write(root, 'b', lines(20, 'b'))]);
});
after(() => dir && cleanup(dir));

/** A ustar header block; `size` is the raw 12-byte field when a Buffer. */
function header(name: string, size: number | Buffer, type = '0'): Buffer {
  if (typeof size === 'number') return ustarHeader(name, size, type);
  const h = ustarHeader(name, 0, type);
  size.copy(h, 124, 0, 12);
  return withChecksum(h);
}

function file(name: string, content: string, type = '0'): Buffer {
  const body = Buffer.from(content);
  const pad = Buffer.alloc((512 - (body.length % 512)) % 512);
  return Buffer.concat([header(name, body.length, type), body, pad]);
}

const END = Buffer.alloc(1024);

function layoutWith(tar: Buffer, opts: { compress?: boolean } = {}): string {
  const l = join(dir, `case${n++}`);
  cpSync(base, l, { recursive: true });
  replaceLayer(l, 't', 1, tar, opts);
  return l;
}

async function expectRejected(layout: string, code: string, message: RegExp): Promise<void> {
  const repo = join(dir, `repo${n++}`);
  const r = veritree(['import', `oci:${layout}:t`, '--repo', repo, '--json']);
  assert.equal(r.status, 3, r.stderr);
  assert.match(r.stderr, message);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { code: string }).code, code, 'a stable error code');
  assert.deepEqual(tags(repo), []);
  await assertConsistent(repo);
}

test('a PAX header that claims gigabytes is refused before it is read', { skip: SKIP }, async () => {
  const tar = Buffer.concat([header('PaxHeaders/x', 3 * 1024 ** 3, 'x'), Buffer.alloc(512), END]);
  await expectRejected(layoutWith(tar, { compress: false }), 'TAR_LIMIT_EXCEEDED', /tar metadata record at offset 0 is 3221225472 bytes \(limit 1048576\)/);
});

test('a base-256 size field that overflows', { skip: SKIP }, async () => {
  const huge = Buffer.alloc(12, 0xff);
  huge[0] = 0x80;
  const tar = Buffer.concat([header('big', huge), END]);
  await expectRejected(layoutWith(tar), 'TAR_LIMIT_EXCEEDED', /tar header at offset 0: size \d+ is too large/);
});

test('a PAX size record that is not a number', { skip: SKIP }, async () => {
  const rec = '20 size=99999999999999999999\n';
  const tar = Buffer.concat([file('PaxHeaders/f', `${rec.length.toString().padStart(2, '0')}${rec.slice(2)}`, 'x'), file('f', 'x'.repeat(100)), END]);
  await expectRejected(layoutWith(tar), 'TAR_LIMIT_EXCEEDED', /layer 2 .*(size .* is not a usable number|bad record)/);
});

test('a tar that ends in the middle of a header', { skip: SKIP }, async () => {
  const tar = Buffer.concat([file('a', 'x'.repeat(100)), header('b', 10).subarray(0, 300)]);
  await expectRejected(layoutWith(tar), 'TAR_CORRUPT', /layer 2 .*layer tar is truncated: it ends inside a header at offset 1024/);
});

test('garbage after a valid gzip member', { skip: SKIP }, async () => {
  const l = join(dir, `case${n++}`);
  cpSync(base, l, { recursive: true });
  const tar = Buffer.concat([file('a', 'x'.repeat(100)), END]);
  replaceLayer(l, 't', 1, tar);
  const d = readManifest(l, 't').layers[1]?.digest as string;
  const blob = Buffer.concat([readFileSync(blobFile(l, d)), Buffer.from('trailing garbage, not gzip')]);
  const nd = writeBlob(l, blob);
  rewriteManifest(l, 't', (m) => Object.assign(m.layers[1] as object, { digest: nd.digest, size: nd.size }));
  await expectRejected(l, 'LAYER_DECOMPRESS', /layer 2 .*cannot decompress \(gzip\): incorrect header check/);
});

test('duplicate paths within a layer import; the merged tree keeps the last one', { skip: SKIP }, () => {
  const tar = Buffer.concat([file('dup', 'first version of the file, long enough to be an object.....'.repeat(2)), file('dup', 'second version, also long enough to become an object.........'.repeat(2)), END]);
  const l = layoutWith(tar);
  const repo = join(dir, `repo${n++}`);
  assert.equal(veritree(['import', `oci:${l}:t`, '--repo', repo]).status, 0);
  const out = join(dir, `co${n++}`);
  assert.equal(veritree(['checkout', 't', out, '--repo', repo]).status, 0);
  assert.match(readFileSync(join(out, 'dup'), 'utf8'), /^second version/);
});

test('a hardlink to a path that does not exist: import keeps the bytes, checkout refuses the entry', { skip: SKIP }, () => {
  const link = header('ghost-link', 0, '1');
  link.write('no/such/file', 157, 100, 'utf8');
  withChecksum(link);
  const tar = Buffer.concat([file('real', 'r'.repeat(100)), link, END]);
  const l = layoutWith(tar);
  const repo = join(dir, `repo${n++}`);
  assert.equal(veritree(['import', `oci:${l}:t`, '--repo', repo]).status, 0);
  const out = join(dir, `co${n++}`);
  const r = veritree(['checkout', 't', out, '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /\/ghost-link: refused: hardlink to "no\/such\/file"/);
});

test('150,000 empty files and 60,000 small files in a row import (no argument spread of a run of inline records)', { skip: SKIP || heavy() }, () => {
  const parts: Buffer[] = [];
  for (let i = 0; i < 150_000; i++) parts.push(header(`e/${i}`, 0));
  for (let i = 0; i < 60_000; i++) parts.push(file(`s/${i}`, `small ${i}`));
  parts.push(END);
  const l = layoutWith(Buffer.concat(parts));
  const repo = join(dir, `repo${n++}`);
  const r = veritree(['import', `oci:${l}:t`, '--repo', repo, '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(veritree(['fsck', '--deep', '--repo', repo]).status, 0);
});

/** A PAX extended header ('x') carrying `records` (key → value), as its own block(s). */
function pax(records: Record<string, string>): Buffer {
  let body = '';
  for (const [k, v] of Object.entries(records)) {
    const rest = ` ${k}=${v}\n`;
    let len = rest.length + 1;
    while (String(len).length + rest.length !== len) len++;
    body += `${len}${rest}`;
  }
  return file('PaxHeaders/sparse', body, 'x');
}

test('sparse files are refused with TAR_UNSUPPORTED in every GNU encoding (old S, PAX 0.0, 0.1, 1.0)', { skip: SKIP }, async () => {
  const before = file('before', 'b'.repeat(100));
  const cases: [string, Buffer][] = [
    ["old GNU type 'S'", header('holes', 0, 'S')],
    ['PAX 0.0', Buffer.concat([pax({ 'GNU.sparse.size': '1048576', 'GNU.sparse.numblocks': '1', 'GNU.sparse.offset': '0', 'GNU.sparse.numbytes': '100' }), file('holes', 'x'.repeat(100))])],
    ['PAX 0.1', Buffer.concat([pax({ 'GNU.sparse.size': '1048576', 'GNU.sparse.numblocks': '1', 'GNU.sparse.map': '0,100' }), file('holes', 'x'.repeat(100))])],
    ['PAX 1.0', Buffer.concat([pax({ 'GNU.sparse.major': '1', 'GNU.sparse.minor': '0', 'GNU.sparse.name': 'holes', 'GNU.sparse.realsize': '1048576' }), file('GNUSparseFile.0/holes', '1\n0\n100\n' + 'x'.repeat(100))])],
  ];
  for (const [what, entry] of cases) {
    const tar = Buffer.concat([before, entry, END]);
    await expectRejected(layoutWith(tar, { compress: false }), 'TAR_UNSUPPORTED', new RegExp(`layer 2 .*is a sparse file \\(${what.startsWith('PAX') ? `PAX sparse format ${what.slice(4).replace('.', '\\.')}` : "the old GNU type 'S'"}\\); veritree does not import sparse files`));
  }
});

test('an unknown typeflag imports with a warning naming the entry', { skip: SKIP }, () => {
  const tar = Buffer.concat([file('ok', 'o'.repeat(100)), header('volume-label', 0, 'V'), END]);
  const l = layoutWith(tar);
  const repo = join(dir, `repo${n++}`);
  const r = veritree(['import', `oci:${l}:t`, '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /warning: layer 2 .*entry "volume-label" at offset 1024 has the unknown type "V"/);
});

test('tags that cannot be stored (empty, ".", "..", 300 bytes, a newline) are refused before any layer is read', { skip: SKIP }, () => {
  for (const tag of ['', '.', '..', 'x'.repeat(300), 'a\nb']) {
    const repo = join(dir, `repo${n++}`);
    const r = veritree(['import', `oci:${base}:t`, tag, '--repo', repo, '--json']);
    assert.equal(r.status, 2, `${JSON.stringify(tag)}: ${r.stderr}`);
    assert.match(r.stderr, /^veritree: tag .*: (a tag cannot be empty|not a usable name|\d+ bytes once|a tag cannot hold control characters)/m);
    assert.equal((JSON.parse(r.stdout) as { code: string }).code, 'TAG_INVALID');
    const objects = join(repo, 'objects');
    const stored = existsSync(objects) ? readdirSync(objects).filter((d) => d.length === 2) : [];
    assert.deepEqual(stored, [], 'no object was written for a tag that cannot be stored');
  }
});
