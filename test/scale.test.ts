/**
 * A badly damaged or very large store, and inputs built to exhaust a stack or memory: each must
 * be checked, repaired, collected, merged or refused without a crash (no spread of an unbounded
 * array, no recursion over input depth) and without hanging. Layouts and stores are written
 * directly, so this file needs no Debian tool.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import * as tarStream from 'tar-stream';
import { dumpImage, importImage, openRepository } from '../src/index.ts';
import { mergeLayers } from '../src/merge/merge.ts';
import { type LayerEntry } from '../src/merge/layer-entries.ts';
import { dumpLines } from '../src/merge/dump.ts';
import { cleanup, heavy, ROOT, spawnGuarded, tempDir, veritree } from './helpers.ts';
import { blobFile, LAYER_MEDIA, layoutFromBlobs, plainLayerLayout } from './fixtures/oci.ts';

const dirs: string[] = [];
after(() => dirs.forEach(cleanup));
/** On tmpfs where there is one: these tests make 260,000 files, and the disk is not under test. */
function scratch(prefix: string): string {
  const d = existsSync('/dev/shm') ? mkdtempSync(join('/dev/shm', prefix)) : tempDir(prefix);
  dirs.push(d);
  return d;
}
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const N = 130_000;
/** The hang guard of one command over N entries: longer than the default, within the test's limit. */
const LONG = 290_000;

async function packed(entries: { name: string; type?: 'directory' | 'file' | 'link'; body?: string; linkname?: string; pax?: Record<string, string>; uid?: number }[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const parts: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) parts.push(c as Buffer);
  })();
  for (const e of entries) {
    if (e.type === 'directory') pack.entry({ name: e.name, type: 'directory' });
    else if (e.type === 'link') pack.entry({ name: e.name, type: 'link', linkname: e.linkname ?? '' });
    else pack.entry({ name: e.name, ...(e.pax ? { pax: e.pax } : {}), uid: e.uid ?? 0, gid: 0 }, e.body ?? '');
  }
  pack.finalize();
  await done;
  return Buffer.concat(parts);
}

async function smallStore(root: string): Promise<string> {
  const tar = await packed([{ name: 'etc/hostname', body: 'a file long enough to be stored as an object of its own\n' }]);
  const layout = join(root, 'layout');
  plainLayerLayout(layout, 't', tar);
  const repoPath = join(root, 'repo');
  const repo = await openRepository(repoPath, { create: true });
  await importImage(repo, `oci:${layout}:t`, { tag: 't' });
  return repoPath;
}

test(`gc with ${N.toLocaleString('en')} tags keeps everything they reach`, { skip: heavy(), timeout: 300_000 }, async () => {
  const repo = await smallStore(scratch('veritree-tags-'));
  const tags = join(repo, 'streams', 'refs', 'oci');
  const target = readlinkSync(join(tags, 't'));
  for (let i = 0; i < N; i++) symlinkSync(target, join(tags, `tag-${i}`));
  const r = veritree(['gc', '--repo', repo, '--json'], { timeout: LONG });
  assert.equal(r.status, 0, r.stderr.slice(0, 2000));
  const g = JSON.parse(r.stdout) as { roots: number; objectsRemoved: number };
  assert.equal(g.roots, N + 1);
  assert.equal(g.objectsRemoved, 0);
});

test(`fsck and fsck --repair with ${N.toLocaleString('en')} damaged objects and as many stray tmp files`, { skip: heavy(), timeout: 600_000 }, async () => {
  const repo = await smallStore(scratch('veritree-damage-'));
  const objects = join(repo, 'objects');
  for (let i = 0; i < N; i++) {
    // A name that is a digest, a content that is not its digest's.
    const name = createHash('sha256').update(`bogus ${i}`).digest('hex');
    const d = join(objects, name.slice(0, 2));
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, name.slice(2)), `not the content of ${name}`);
    writeFileSync(join(objects, `.tmp-stray-${i}`), 'left by a crash');
  }
  const r = veritree(['fsck', '--repo', repo, '--json'], { timeout: LONG });
  assert.equal(r.status, 1, r.stderr.slice(0, 2000));
  const report = JSON.parse(r.stdout) as { issues: { type: string }[] };
  const count = (t: string): number => report.issues.filter((x) => x.type === t).length;
  assert.equal(count('object-digest-mismatch'), N);
  assert.equal(count('stray-tmp'), N);
  const fixed = veritree(['fsck', '--repair', '--repo', repo], { timeout: LONG });
  assert.equal(fixed.status, 1, 'problems were found (and repaired): exit 1, as documented');
  const again = veritree(['fsck', '--repo', repo, '--json'], { timeout: LONG });
  assert.equal(again.status, 0, again.stdout.slice(0, 2000));
  assert.deepEqual(readdirSync(objects).filter((n) => n.startsWith('.tmp-')), []);
});

test('a folder 7,000 deep removed by a whiteout: merge, dump and checkout', { skip: heavy(), timeout: 300_000 }, async () => {
  const depth = 7000;
  const deep = Array.from({ length: depth }, () => 'd').join('/');
  // merge and dump alone (pure)
  const entry = (rawPath: string, type: LayerEntry['type'] = 'dir'): LayerEntry => ({ rawPath, type, mode: 0o755, uid: 0, gid: 0, mtimeSec: 0, mtimeNsec: 0, size: 0, object: null, inline: type === 'file' ? new Uint8Array(0) : null, linkname: '', devmajor: 0, devminor: 0, xattrs: new Map() });
  const tree = mergeLayers([[entry(`${deep}/file`, 'file'), entry('keep', 'file')], [entry('.wh.d', 'file')]]);
  assert.deepEqual([...tree.nodes.keys()].sort(), ['', 'keep']);
  const kept = mergeLayers([[entry(`${deep}/file`, 'file')]]);
  assert.equal([...dumpLines(kept)].length, depth + 2, 'a dump line for every folder of the deep path');
  // end to end
  const root = scratch('veritree-deep-');
  const l1 = await packed([{ name: `${deep}/file`, body: 'deep' }, { name: 'keep', body: 'kept' }]);
  const l2 = await packed([{ name: '.wh.d', body: '' }]);
  const layout = join(root, 'layout');
  layoutFromBlobs(layout, 't', [l1, l2].map((t) => ({ blob: t, mediaType: LAYER_MEDIA.none, diffId: `sha256:${sha(t)}` })));
  const repoPath = join(root, 'repo');
  const repo = await openRepository(repoPath, { create: true });
  await importImage(repo, `oci:${layout}:t`, { tag: 't' });
  const lines = await dumpImage(repo, 't');
  assert.deepEqual(lines.map((x) => x.split(' ')[0]), ['/', '/keep']);
  const out = join(root, 'co');
  const r = veritree(['checkout', 't', out, '--repo', repoPath]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(readdirSync(out), ['keep']);
});

/** A one-layer image of `tar`, imported and checked out; returns the checkout folder. */
async function importAndCheckout(root: string, tar: Buffer): Promise<string> {
  const layout = join(root, 'layout');
  plainLayerLayout(layout, 't', tar);
  const repoPath = join(root, 'repo');
  await importImage(await openRepository(repoPath, { create: true }), `oci:${layout}:t`, { tag: 't' });
  const out = join(root, 'co');
  const r = veritree(['checkout', 't', out, '--repo', repoPath]);
  assert.equal(r.status, 0, r.stderr);
  return out;
}

test('a hard link whose name sorts before its target checks out; both names share an inode', async () => {
  const root = scratch('veritree-link-');
  const tar = await packed([{ name: 'z-target', body: 'shared content of two names, stored as an object\n' }, { name: 'a-link', type: 'link', linkname: 'z-target' }]);
  const out = await importAndCheckout(root, tar);
  const ino = (n: string): string => spawnGuarded('stat', ['-c', '%i %h', join(out, n)], { encoding: 'utf8' }).stdout.trim();
  assert.equal(ino('a-link'), ino('z-target'));
  assert.match(ino('a-link'), / 2$/);
});

const AS_ROOT_WITH_ATTR = process.getuid?.() === 0 && spawnGuarded('sh', ['-c', 'command -v setfattr && command -v getfattr']).status === 0 ? false : 'skipped: needs root and setfattr/getfattr (Debian package attr)';

test('security.capability survives checkout (owner is set before xattrs: chown clears it)', { skip: AS_ROOT_WITH_ATTR }, async () => {
  const root = scratch('veritree-cap-');
  // VFS_CAP_REVISION_2, no effective bit, cap_net_raw (13) permitted: every byte under 0x80.
  const cap = Buffer.from([0x00, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const tar = await packed([{ name: 'usr/bin/ping', body: 'pretend this is ping, long enough to be an object of its own\n', pax: { 'SCHILY.xattr.security.capability': cap.toString('latin1') } }]);
  const out = await importAndCheckout(root, tar);
  const g = spawnGuarded('getfattr', ['-n', 'security.capability', '-e', 'hex', join(out, 'usr/bin/ping')], { encoding: 'utf8' });
  assert.equal(g.status, 0, g.stderr);
  assert.match(g.stdout, new RegExp(`security.capability=0x${cap.toString('hex')}`));
});

test('an index.json of 64 MiB is refused before it is read, and a blob that is /dev/zero or a 16 GiB sparse file never hangs', { timeout: 60_000 }, async () => {
  const root = scratch('veritree-big-');
  const tar = await packed([{ name: 'f', body: 'x'.repeat(100) }]);
  const layout = join(root, 'layout');
  layoutFromBlobs(layout, 't', [{ blob: tar, mediaType: LAYER_MEDIA.gzip, diffId: `sha256:${sha(tar)}` }]);
  // Each import runs in a child with a 30 s limit: a hang guard (a read of /dev/zero or of 16 GiB
  // would run into it), not a speed claim.
  const measure = (source: string): { ok: boolean; code?: string; message?: string } => {
    const r = spawnGuarded(process.execPath, [join(ROOT, 'dist/test/fixtures/import-measure.js'), source, join(root, `repo-${Math.random()}`)], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as ReturnType<typeof measure>;
  };
  // 1: the layer blob is a symlink to /dev/zero (typed gzip)
  const blob = blobFile(layout, `sha256:${sha(tar)}`);
  spawnGuarded('rm', ['-f', blob]);
  symlinkSync('/dev/zero', blob);
  let m = measure(`oci:${layout}:t`);
  assert.equal(m.code, 'OCI_LAYOUT_INVALID', m.message);
  assert.match(m.message ?? '', /is a device, not a regular file/);
  // 2: a sparse 16 GiB file in the blob's place: refused by its size, before a byte is read
  spawnGuarded('rm', ['-f', blob]);
  writeFileSync(blob, '');
  truncateSync(blob, 16 * 2 ** 30);
  m = measure(`oci:${layout}:t`);
  assert.equal(m.code, 'OCI_SIZE_MISMATCH', m.message);
  assert.match(m.message ?? '', new RegExp(`descriptor says ${tar.length} bytes, blob has ${16 * 2 ** 30}`));
  // 3: index.json of 64 MiB
  writeFileSync(join(layout, 'index.json'), Buffer.alloc(64 << 20, 0x20));
  m = measure(`oci:${layout}:t`);
  assert.equal(m.code, 'OCI_LAYOUT_INVALID', m.message);
  assert.match(m.message ?? '', /index\.json: 67108864 bytes is over the \d+-byte limit for JSON/, 'refused by its size, not after reading it');
});
