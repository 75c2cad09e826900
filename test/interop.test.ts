/**
 * A repository laid out as composefs-rs writes it, built here from the format (composefs-rs's
 * repository.rs, splitstream.rs and composefs-oci's oci_image.rs): an image whose config stream
 * carries the `composefs.image` named ref to an EROFS object linked from images/ and
 * images/refs/, a named ref of a kind veritree does not know, a manifest stream with the header
 * layout bootc <= 1.15 wrote, and meta.json feature flags. veritree must read it, report nothing
 * as damage, repair nothing away, never collect what it cannot see, and still check out and
 * import into it. No Debian tool is needed.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkcomposefs, type Mkcomposefs } from './fixtures/mkcomposefs.ts';
import { join } from 'node:path';
import * as tarStream from 'tar-stream';
import { openRepository, toHex, verityDigest } from '../src/index.ts';
import { SplitStreamBuilder } from '../src/store/splitstream.ts';
import { readSplitStream } from '../src/store/splitstream-reader.ts';
import { writeObject } from '../src/store/objects.ts';
import { toOldHeaderLayout } from './fixtures/splitstream-old-header.ts';
import { cleanup, tempDir, veritree } from './helpers.ts';
import { plainLayerLayout } from './fixtures/oci.ts';

const dirs: string[] = [];
/** mkcomposefs (built from ../shared/tools where it is not installed): real EROFS images. */
const oracle = mkcomposefs();
after(() => dirs.forEach(cleanup));

async function tarOf(files: Record<string, string>): Promise<Buffer> {
  const pack = tarStream.pack();
  const parts: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) parts.push(c as Buffer);
  })();
  for (const [name, body] of Object.entries(files)) pack.entry({ name }, body);
  pack.finalize();
  await done;
  return Buffer.concat(parts);
}

async function layout(root: string, name: string, files: Record<string, string>): Promise<string> {
  const tar = await tarOf(files);
  const l = join(root, name);
  plainLayerLayout(l, 't', tar);
  return l;
}

/** Writes `bytes` as an object of the repository; returns its id. */
async function put(repoPath: string, bytes: Uint8Array): Promise<string> {
  const repo = await openRepository(repoPath);
  const id = toHex(verityDigest(bytes, 'sha256', 'node'));
  await writeObject(repo.target, id, bytes);
  return id;
}

function relink(repoPath: string, stream: string, id: string): void {
  const link = join(repoPath, 'streams', stream);
  rmSync(link);
  symlinkSync(`../objects/${id.slice(0, 2)}/${id.slice(2)}`, link);
}

/** Re-writes a config or manifest stream with extra named refs, keeping its JSON object. */
async function withNamedRefs(repoPath: string, stream: string, kind: 'config' | 'manifest', extra: [string, string][], replace: Record<string, string> = {}): Promise<string> {
  const old = readSplitStream(readFileSync(join(repoPath, 'streams', stream)));
  const json = old.chunks[0];
  assert.ok(json?.kind === 'object');
  const b = new SplitStreamBuilder('sha256', kind);
  b.addObject(old.objectRefs[json.index] as string, old.streamSize);
  for (const r of old.namedRefs) b.addNamedRef(r.name, replace[r.name] ?? (old.streamRefs[r.index] as string));
  for (const [name, id] of extra) b.addNamedRef(name, id);
  const id = await put(repoPath, b.finish());
  relink(repoPath, stream, id);
  return id;
}

function objectList(repoPath: string): string[] {
  const out: string[] = [];
  for (const d of readdirSync(join(repoPath, 'objects'))) if (d.length === 2) for (const f of readdirSync(join(repoPath, 'objects', d))) out.push(d + f);
  return out.sort();
}

/** The composefs-rs-style repository (see the module comment). */
/** `realImage`: the EROFS image made by mkcomposefs from the image's dump; else a stand-in that is not EROFS. */
async function composefsRsRepo(realImage = typeof oracle !== 'string'): Promise<{ root: string; repo: string; image: string }> {
  const root = tempDir('veritree-interop-');
  dirs.push(root);
  const l = await layout(root, 'l1', { 'usr/bin/tool': 'a tool, long enough to be an object in the store\n', 'etc/os-release': 'ID=test\n' });
  const repo = join(root, 'repo');
  assert.equal(veritree(['import', `oci:${l}:t`, 'img', '--repo', repo]).status, 0);
  const streams = readdirSync(join(repo, 'streams'));
  const config = streams.find((s) => s.startsWith('oci-config-')) as string;
  const manifest = streams.find((s) => s.startsWith('oci-manifest-')) as string;
  // The EROFS image, linked as composefs-rs links it.
  const erofs = realImage
    ? (() => {
        const file = join(root, 'img.cfs');
        (oracle as Mkcomposefs).run(['--from-file', '-', file], veritree(['dump', 'img', '--repo', repo]).stdout);
        return readFileSync(file);
      })()
    : Buffer.from('EROFS image bytes stand-in: composefs-rs writes images/<id> and images/refs/<name>');
  const image = await put(repo, erofs);
  mkdirSync(join(repo, 'images', 'refs'), { recursive: true });
  symlinkSync(`../objects/${image.slice(0, 2)}/${image.slice(2)}`, join(repo, 'images', image));
  symlinkSync(`../${image}`, join(repo, 'images', 'refs', 'img'));
  const sbom = await put(repo, Buffer.from('{"some":"document a newer tool refers to"}'));
  const configId = await withNamedRefs(repo, config, 'config', [
    ['composefs.image', image],
    ['org.example.sbom', sbom],
  ]);
  const manifestId = await withNamedRefs(repo, manifest, 'manifest', [], { [`config:sha256:${config.slice('oci-config-sha256:'.length)}`]: configId });
  // The manifest stream in the header layout bootc <= 1.15 wrote.
  const oldLayout = toOldHeaderLayout(readFileSync(join(repo, 'objects', manifestId.slice(0, 2), manifestId.slice(2))));
  relink(repo, manifest, await put(repo, oldLayout));
  // meta.json as composefs-rs writes it, with a compatible feature this veritree does not know.
  const meta = JSON.parse(readFileSync(join(repo, 'meta.json'), 'utf8')) as { features: { compatible: string[] } };
  meta.features.compatible.push('some-future-compatible-feature');
  writeFileSync(join(repo, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
  return { root, repo, image };
}

test('meta.json is written as cfsctl init 0.9 writes it (pretty JSON, version, algorithm, the three feature lists, erofs_formats V1), folders with its modes', async () => {
  const root = tempDir('veritree-meta-');
  dirs.push(root);
  await openRepository(join(root, 'r'), { create: true });
  assert.equal(
    readFileSync(join(root, 'r', 'meta.json'), 'utf8'),
    '{\n  "version": 1,\n  "algorithm": "fsverity-sha256-12",\n  "features": {\n    "compatible": [],\n    "read-only-compatible": [\n      "v1_erofs"\n    ],\n    "incompatible": []\n  },\n  "erofs_formats": {\n    "default": 1\n  }\n}\n'
  );
  // Folder modes as composefs-rs makes them (the umask may only take bits away).
  const mode = (p: string): number => statSync(p).mode & 0o777;
  assert.equal(mode(join(root, 'r')) & ~0o700, 0, 'the repository folder is 0700');
  assert.equal(mode(join(root, 'r', 'objects')) & ~0o755, 0, 'objects/ is 0755');
});

test('the old (bootc <= 1.15) stream header is read as composefs-rs reads it', async () => {
  const b = new SplitStreamBuilder('sha256', 'layer');
  b.addInline(Buffer.from('inline bytes'));
  b.addObject('ab'.repeat(32), 10);
  b.addNamedRef('sha256:' + 'cd'.repeat(32), 'ef'.repeat(32));
  const bytes = b.finish();
  const old = toOldHeaderLayout(bytes);
  assert.notDeepEqual(Buffer.from(old.subarray(0, 32)), Buffer.from(bytes.subarray(0, 32)));
  const a = readSplitStream(bytes);
  const o = readSplitStream(old);
  assert.deepEqual(o, a);
});

test('a composefs-rs-style repository: fsck is clean and names the unknown ref; --repair removes nothing', { skip: typeof oracle === 'string' ? oracle : false }, async () => {
  const { repo } = await composefsRsRepo();
  const before = objectList(repo);
  const streamsBefore = readdirSync(join(repo, 'streams')).sort();
  const r = veritree(['fsck', '--repo', repo, '--json']);
  assert.equal(r.status, 0, r.stdout);
  const report = JSON.parse(r.stdout) as { issues: unknown[]; unknownRefs: { ref: string }[] };
  assert.deepEqual(report.issues, []);
  assert.deepEqual(report.unknownRefs.map((u) => u.ref), ['org.example.sbom']);
  const text = veritree(['fsck', '--repo', repo]);
  assert.match(text.stdout, /note: stream oci-config-sha256:\w+ has the named ref "org.example.sbom"/);
  const fix = veritree(['fsck', '--repair', '--repo', repo]);
  assert.equal(fix.status, 0, fix.stdout);
  assert.deepEqual(objectList(repo), before);
  assert.deepEqual(readdirSync(join(repo, 'streams')).sort(), streamsBefore);
  assert.deepEqual(readdirSync(join(repo, 'streams', 'refs', 'oci')), ['img']);
});

test('a composefs-rs-style repository: gc removes nothing while a kept image cannot be read (fail closed)', async () => {
  const { repo } = await composefsRsRepo(false);
  const f = JSON.parse(veritree(['fsck', '--repo', repo, '--json']).stdout) as { issues: { type: string }[] };
  assert.deepEqual(f.issues.map((i) => i.type), ['image-corrupt'], 'fsck names the image it cannot read');
  const before = objectList(repo);
  for (const args of [['gc'], ['gc', '--dry-run']]) {
    const r = veritree([...args, '--repo', repo]);
    assert.equal(r.status, 4, r.stderr);
    // The stand-in image is not an EROFS image: it is named, and nothing is removed.
    assert.match(r.stderr, /gc stopped, nothing removed: the composefs image \w+ \(from images\/refs\/img\) cannot be read: composefs image: no EROFS superblock/);
  }
  assert.deepEqual(objectList(repo), before);
});

test('gc keeps every object a composefs image names (images/refs), after the OCI image is untagged; unreferenced images/ links go', { skip: typeof oracle === 'string' ? oracle : false }, async () => {
  const root = tempDir('veritree-gcimage-');
  dirs.push(root);
  const l = await layout(root, 'l', { 'usr/bin/one': 'the first file, long enough to be an object of the store: more than 64 bytes\n', 'usr/lib/two': 'the second file, also long enough to be an object here: more than 64 bytes\n', 'etc/small': 'x\n' });
  const repo = join(root, 'repo');
  assert.equal(veritree(['import', `oci:${l}:t`, 'img', '--repo', repo]).status, 0);
  const dump = veritree(['dump', 'img', '--repo', repo]);
  const imageFile = join(root, 'img.cfs');
  (oracle as Mkcomposefs).run(['--from-file', '-', imageFile], dump.stdout);
  const image = await put(repo, readFileSync(imageFile));
  mkdirSync(join(repo, 'images', 'refs'), { recursive: true });
  symlinkSync(`../objects/${image.slice(0, 2)}/${image.slice(2)}`, join(repo, 'images', image));
  symlinkSync(`../${image}`, join(repo, 'images', 'refs', 'img'));
  // An image nobody refers to: gc removes it and its images/ link.
  const stray = await put(repo, readFileSync(imageFile).subarray(0, 8192));
  symlinkSync(`../objects/${stray.slice(0, 2)}/${stray.slice(2)}`, join(repo, 'images', stray));
  const named = dump.stdout.split('\n').map((x) => x.split(' ')).filter((f) => f.length > 10 && f[10] !== '-').map((f) => f[10] as string);
  assert.ok(named.length >= 2);
  assert.equal(veritree(['untag', 'img', '--repo', repo]).status, 0);
  const r = veritree(['gc', '--repo', repo, '--json']);
  assert.equal(r.status, 0, r.stderr);
  const g = JSON.parse(r.stdout) as { objectsRemoved: number; streamsRemoved: string[]; imagesRemoved: string[] };
  assert.ok(g.streamsRemoved.length >= 3, 'the untagged image\'s streams went');
  assert.deepEqual(g.imagesRemoved, [stray]);
  const left = new Set(objectList(repo));
  for (const id of [...named, image]) assert.ok(left.has(id), `object ${id}, named by the kept image, is kept`);
  assert.ok(!left.has(stray));
  assert.equal(veritree(['fsck', '--repo', repo]).status, 0);
  // fsck checks what the image names: one object gone is named.
  const gone = named[0] as string;
  rmSync(join(repo, 'objects', gone.slice(0, 2), gone.slice(2)));
  const f = JSON.parse(veritree(['fsck', '--repo', repo, '--json']).stdout) as { issues: { type: string; detail: string }[] };
  assert.ok(f.issues.some((i) => i.type === 'missing-object' && i.detail === `image ${image} names object ${gone}, which is missing`), JSON.stringify(f.issues));
  // And a damaged image is read or refused, never a crash or a hang.
  const bytes = readFileSync(imageFile);
  const { composefsImageObjects } = await import('../src/erofs/reader.ts');
  let refused = 0;
  for (let i = 0; i < 400; i++) {
    const d = Buffer.from(bytes);
    for (let k = 0; k < 1 + (i % 4); k++) d[(i * 7919 + k * 104729) % d.length] = (i * 31 + k) & 0xff;
    try {
      composefsImageObjects(i % 5 === 0 ? d.subarray(0, (i * 977) % d.length) : d);
    } catch (e) {
      assert.ok(e instanceof Error && (e as { code?: string }).code === 'STORE_CORRUPT', String(e));
      refused++;
    }
  }
  assert.ok(refused > 0);
});

test('a composefs-rs-style repository: checkout and dump work, and another image imports into it', async () => {
  const { root, repo } = await composefsRsRepo();
  const out = join(root, 'co');
  const c = veritree(['checkout', 'img', out, '--repo', repo]);
  assert.equal(c.status, 0, c.stderr);
  assert.equal(readFileSync(join(out, 'etc/os-release'), 'utf8'), 'ID=test\n');
  assert.equal(veritree(['dump', 'img', '--repo', repo]).status, 0);
  const l2 = await layout(root, 'l2', { 'srv/data': 'another image, imported into a composefs-rs repository\n' });
  const i = veritree(['import', `oci:${l2}:t`, 'second', '--repo', repo]);
  assert.equal(i.status, 0, i.stderr);
  if (typeof oracle !== 'string') assert.equal(veritree(['fsck', '--repo', repo]).status, 0);
  assert.deepEqual(readlinkSync(join(repo, 'images', 'refs', 'img')).startsWith('../'), true, 'images/refs untouched');
});

test('meta.json feature flags: an unknown incompatible feature refuses the repository; an unknown read-only one allows reading only', async () => {
  const root = tempDir('veritree-features-');
  dirs.push(root);
  const l = await layout(root, 'l', { 'a/file': 'content long enough to be stored as an object, yes\n' });
  const repo = join(root, 'repo');
  assert.equal(veritree(['import', `oci:${l}:t`, 'x', '--repo', repo]).status, 0);
  const meta = JSON.parse(readFileSync(join(repo, 'meta.json'), 'utf8')) as { features: Record<string, string[]> };
  const write = (k: string, v: string[]): void => {
    meta.features[k] = v;
    writeFileSync(join(repo, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
  };
  write('read-only-compatible', ['future-ro']);
  assert.equal(veritree(['fsck', '--repo', repo]).status, 0, 'reading is allowed');
  const imp = veritree(['import', `oci:${l}:t`, 'y', '--repo', repo]);
  assert.equal(imp.status, 4);
  assert.match(imp.stderr, /can only be read by this veritree: .*read-only-compatible features it does not know \(future-ro\)/);
  const gc = veritree(['gc', '--repo', repo]);
  assert.equal(gc.status, 4, gc.stderr);
  write('read-only-compatible', []);
  write('incompatible', ['future-incompat']);
  const f = veritree(['fsck', '--repo', repo]);
  assert.equal(f.status, 4);
  assert.match(f.stderr, /requires features this veritree does not know: future-incompat/);
});
