/**
 * `veritree export IMAGE oci:DIR[:REF]`: a stored image written back as an OCI layout that skopeo
 * copies and umoci unpacks to the tree checkout writes; re-imported, it is the same image (same
 * config, same layers by diff_id, same dump). A damaged store fails the export and leaves the
 * layout's index as it was.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, cleanup, must, skipUnless, tempDir, veritree } from './helpers.ts';

const dir = tempDir('veritree-export-');
after(() => cleanup(dir));
const example = join(ROOT, 'example', 'oci');

/** Every entry under `root`: type, mode, size and content hash or link target (not times: umoci and checkout date implicit folders differently). */
function describeTree(root: string): string[] {
  const out: string[] = [];
  const stack = [''];
  for (let rel = stack.pop(); rel !== undefined; rel = stack.pop()) {
    for (const name of readdirSync(join(root, rel))) {
      const p = rel === '' ? name : `${rel}/${name}`;
      const st = lstatSync(join(root, p));
      const what = st.isFile() ? createHash('sha256').update(readFileSync(join(root, p))).digest('hex') : st.isSymbolicLink() ? `-> ${readlinkSync(join(root, p))}` : '';
      out.push(`${p} ${(st.mode & 0o170777).toString(8)} ${st.uid}:${st.gid} ${st.isFile() ? st.size : ''} ${what}`);
      if (st.isDirectory()) stack.push(p);
    }
  }
  return out.sort();
}

test('export: skopeo copies it, umoci unpacks it to the checkout, and it re-imports as the same image', { skip: skipUnless('skopeo') || skipUnless('umoci') }, () => {
  const repo = join(dir, 'repo');
  assert.equal(veritree(['import', `oci:${example}:latest`, 'ex', '--repo', repo]).status, 0);
  const layout = join(dir, 'out');
  for (const compression of ['gzip', 'none']) {
    const r = veritree(['export', 'ex', `oci:${layout}:${compression}`, '--compression', compression, '--json', '--repo', repo]);
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { config: string; layers: { diffId: string; digest: string }[] };
    const images = JSON.parse(veritree(['images', '--json', '--repo', repo]).stdout) as { config: string; layers: { diffId: string }[] }[];
    assert.equal(report.config, images[0]?.config, 'the config blob is the stored one, byte for byte');
    assert.deepEqual(report.layers.map((l) => l.diffId), images[0]?.layers.map((l) => l.diffId));
    must('skopeo', ['copy', '-q', `oci:${layout}:${compression}`, `oci:${join(dir, `copy-${compression}`)}:x`]);
    const bundle = join(dir, `bundle-${compression}`);
    must('umoci', ['unpack', '--image', `${layout}:${compression}`, bundle]);
    const co = join(dir, `co-${compression}`);
    assert.equal(veritree(['checkout', '--copy', 'ex', co, '--repo', repo]).status, 0);
    assert.deepEqual(describeTree(join(bundle, 'rootfs')), describeTree(co));
    const back = join(dir, `back-${compression}`);
    const imp = veritree(['import', `oci:${layout}:${compression}`, 'back', '--repo', back]);
    assert.equal(imp.status, 0, imp.stderr);
    assert.equal(veritree(['dump', 'back', '--repo', back]).stdout, veritree(['dump', 'ex', '--repo', repo]).stdout);
  }
  // Both refs are in the one index.
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: { annotations: Record<string, string> }[] };
  assert.deepEqual(index.manifests.map((m) => m.annotations['org.opencontainers.image.ref.name']), ['gzip', 'none']);
});

test('export of a damaged store fails naming the damage, and the layout index is unchanged', () => {
  const repo = join(dir, 'damaged');
  assert.equal(veritree(['import', `oci:${example}:latest`, 'ex', '--repo', repo]).status, 0);
  const layout = join(dir, 'out-damaged');
  assert.equal(veritree(['export', 'ex', `oci:${layout}:first`, '--repo', repo]).status, 0);
  const indexBefore = readFileSync(join(layout, 'index.json'));
  // Flip a byte of every object of 2 KiB or more (file contents; streams are smaller here or are also caught).
  const objects = join(repo, 'objects');
  for (const d of readdirSync(objects)) {
    for (const f of readdirSync(join(objects, d))) {
      const p = join(objects, d, f);
      const b = readFileSync(p);
      if (b.length < 2048) continue;
      b[100] = (b[100] ?? 0) ^ 1;
      writeFileSync(p, b);
    }
  }
  const r = veritree(['export', 'ex', `oci:${layout}:second`, '--repo', repo]);
  assert.equal(r.status, 4, r.stderr);
  assert.match(r.stderr, /damaged|does not hash|rebuilds to/);
  assert.deepEqual(readFileSync(join(layout, 'index.json')), indexBefore);
  assert.deepEqual(readdirSync(join(layout, 'blobs', 'sha256')).filter((n) => n.startsWith('.tmp-')), [], 'no temporary blob is left');
});

test('export writes nothing outside DIR: a symlinked oci-layout or index.json is replaced, a symlinked blobs folder refused', () => {
  const repo = join(dir, 'repo-links');
  assert.equal(veritree(['import', `oci:${example}:latest`, 'ex', '--repo', repo]).status, 0);
  const outside = join(dir, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'victim'), 'precious');
  writeFileSync(join(outside, 'index.json'), '{"schemaVersion":2,"manifests":[]}');
  const layout = join(dir, 'links-files');
  mkdirSync(layout);
  symlinkSync(join(outside, 'victim'), join(layout, 'oci-layout'));
  symlinkSync(join(outside, 'index.json'), join(layout, 'index.json'));
  const r = veritree(['export', 'ex', `oci:${layout}:x`, '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(readFileSync(join(outside, 'victim'), 'utf8'), 'precious');
  assert.equal(readFileSync(join(outside, 'index.json'), 'utf8'), '{"schemaVersion":2,"manifests":[]}');
  assert.ok(lstatSync(join(layout, 'oci-layout')).isFile());
  assert.ok(lstatSync(join(layout, 'index.json')).isFile());
  for (const [name, link] of [['links-blobs', 'blobs'], ['links-sha', join('blobs', 'sha256')]] as const) {
    const l = join(dir, name);
    const target = join(outside, name);
    mkdirSync(target);
    mkdirSync(join(l, 'blobs'), { recursive: true });
    if (link === 'blobs') rmSync(join(l, 'blobs'), { recursive: true });
    symlinkSync(target, join(l, link));
    const x = veritree(['export', 'ex', `oci:${l}:x`, '--repo', repo]);
    assert.equal(x.status, 3, x.stderr);
    assert.match(x.stderr, /is not a folder/);
    assert.deepEqual(readdirSync(target).filter((n) => n !== 'sha256'), [], 'nothing written through the link');
    if (link === 'blobs') assert.ok(!existsSync(join(target, 'sha256')) || readdirSync(join(target, 'sha256')).length === 0);
  }
});

test('export to oci-archive:FILE: one tar that skopeo reads and that re-imports as the same image; FILE replaced whole', { skip: skipUnless('skopeo') }, () => {
  const repo = join(dir, 'repo-archive');
  assert.equal(veritree(['import', `oci:${example}:latest`, 'ex', '--repo', repo]).status, 0);
  const file = join(dir, 'ex.tar');
  writeFileSync(file, 'an older file');
  const r = veritree(['export', 'ex', `oci-archive:${file}`, '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^exported ex to oci-archive:.*ex\.tar:ex: manifest sha256:[0-9a-f]{64}, 2 layers \(gzip\)$/m);
  must('skopeo', ['copy', '-q', `oci-archive:${file}:ex`, `oci:${join(dir, 'from-archive')}:ex`]);
  const back = join(dir, 'back-archive');
  assert.equal(veritree(['import', `oci-archive:${file}:ex`, 'back', '--repo', back]).status, 0);
  assert.equal(veritree(['dump', 'back', '--repo', back]).stdout, veritree(['dump', 'ex', '--repo', repo]).stdout);
  assert.deepEqual(readdirSync(dir).filter((n) => n.includes('ex.tar') && n !== 'ex.tar'), [], 'no temporary file or folder is left');
});
