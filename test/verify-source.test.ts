/**
 * import --verify-source: a layout whose layer blobs are missing or damaged is refused even when
 * its layers are stored, with the error a fresh store gives; without it stored layers are skipped.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { cleanup, hasTool, randomBytesSeeded, tempDir, veritree } from './helpers.ts';
import { blobFile, buildImage, lines, readManifest, rewriteManifest, write, writeBlob } from './fixtures/oci.ts';
import { tarOf } from './fixtures/tar.ts';

const missing = ['umoci', 'fsverity'].filter((t) => !hasTool(t));
const SKIP = missing.length ? `skipped: ${missing.join(', ')} not installed` : false;
let dir = '';
let base = '';
let stored = '';
let n = 0;

before(() => {
  if (SKIP) return;
  dir = tempDir('veritree-verify-source-');
  base = join(dir, 'base');
  buildImage(base, 't', [
    (root) => write(root, 'one/a.txt', lines(200, 'one')),
    (root) => write(root, 'two/c.bin', randomBytesSeeded(100_000, 1)),
  ]);
  stored = join(dir, 'stored');
  const r = veritree(['import', `oci:${base}:t`, '--repo', stored]);
  assert.equal(r.status, 0, r.stderr);
});
after(() => dir && cleanup(dir));

function copy(): string {
  const p = join(dir, `case${n++}`);
  cpSync(base, p, { recursive: true });
  return p;
}

function imp(layout: string, repo: string, extra: string[] = []): { status: number | null; stderr: string } {
  const r = veritree(['import', `oci:${layout}:t`, `t${n++}`, '--repo', repo, ...extra]);
  return { status: r.status, stderr: r.stderr };
}

/** The store that holds the layers: exit 0 without the flag; with it, what a fresh store says. */
function sameAnswerEverywhere(layout: string, why: RegExp): void {
  const storeCopy = join(dir, `store${n++}`);
  cpSync(stored, storeCopy, { recursive: true, verbatimSymlinks: true });
  const skipped = imp(layout, storeCopy);
  assert.equal(skipped.status, 0, `stored layers are skipped unread: ${skipped.stderr}`);
  const fresh = imp(layout, join(dir, `fresh${n++}`));
  assert.equal(fresh.status, 3, fresh.stderr);
  assert.match(fresh.stderr, why);
  const checked = imp(layout, storeCopy, ['--verify-source']);
  assert.equal(checked.status, fresh.status);
  assert.equal(checked.stderr, fresh.stderr, 'the same error as a fresh store');
}

test('a damaged layer blob of a stored image', { skip: SKIP }, () => {
  const l = copy();
  const f = blobFile(l, readManifest(l, 't').layers[1]?.digest as string);
  const b = readFileSync(f);
  b.writeUInt8(b.readUInt8(b.length >> 1) ^ 0x55, b.length >> 1);
  writeFileSync(f, b);
  sameAnswerEverywhere(l, /layer 2 \(sha256:[0-9a-f]{64}\): blob digest mismatch/);
});

test('a missing layer blob of a stored image', { skip: SKIP }, () => {
  const l = copy();
  rmSync(blobFile(l, readManifest(l, 't').layers[0]?.digest as string));
  sameAnswerEverywhere(l, /layer 1 \(sha256:[0-9a-f]{64}\)/);
});

test('a blob whose digest matches but whose tar is not the diff_id (checked by inflating)', { skip: SKIP }, async () => {
  const l = copy();
  const d = writeBlob(l, gzipSync(await tarOf([{ name: 'other', content: 'not the layer' }])));
  rewriteManifest(l, 't', (m) => {
    Object.assign(m.layers[1] as object, { digest: d.digest, size: d.size });
  });
  sameAnswerEverywhere(l, /diff_id mismatch/);
});

test('--verify-source on a sound layout that is stored: exit 0, nothing imported again', { skip: SKIP }, () => {
  const storeCopy = join(dir, `store${n++}`);
  cpSync(stored, storeCopy, { recursive: true, verbatimSymlinks: true });
  const r = veritree(['import', `oci:${base}:t`, '--repo', storeCopy, '--verify-source', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { status: string; layersImported: number };
  assert.equal(s.status, 'present');
  assert.equal(s.layersImported, 0);
  assert.equal(veritree(['fsck', '--repo', storeCopy]).status, 0);
});

test('in one run, a layer another image read is checked from each image own blob too', { skip: SKIP }, () => {
  const good = copy();
  const bad = copy();
  const f = blobFile(bad, readManifest(bad, 't').layers[1]?.digest as string);
  const b = readFileSync(f);
  b.writeUInt8(b.readUInt8(b.length >> 1) ^ 0x55, b.length >> 1);
  writeFileSync(f, b);
  const both = (extra: string[]): { status: number | null; stdout: string; stderr: string } =>
    veritree(['import', `oci:${good}:t`, `oci:${bad}:t`, '--repo', join(dir, `fresh${n++}`), '--json', ...extra]);
  const unchecked = both([]);
  const checked = both(['--verify-source']);
  assert.equal(checked.status, 3, checked.stderr);
  const results = checked.stdout.trim().split('\n').map((l) => JSON.parse(l) as { ok?: boolean; source?: string; code?: string });
  assert.equal(results.find((r) => r.source === `oci:${good}:t`)?.ok, true, checked.stdout);
  assert.equal(results.find((r) => r.source === `oci:${bad}:t`)?.code, 'OCI_DIGEST_MISMATCH', checked.stdout);
  // Without the flag the damaged copy is served by the sound one's blob (each diff_id read once).
  assert.equal(unchecked.status, 0, unchecked.stderr);
});
