/** Import of real OCI layouts made by umoci and skopeo, checked with tar-stream and fsverity-utils. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ImportSummary } from '../src/index.ts';
import { cleanup, hasTool, randomBytesSeeded, run, tempDir, veritree } from './helpers.ts';
import { buildImage, hardlink, lines, readConfig, readIndex, skopeoCopy, skopeoUncompressed, symlink, write, writeBlob, type Descriptor } from './fixtures/oci.ts';
import { assertConsistent, assertLayersStored, layerStreams, tags } from './fixtures/store-check.ts';

const missing = ['umoci', 'skopeo', 'fsverity'].filter((t) => !hasTool(t));
const SKIP = missing.length ? `skipped: ${missing.join(', ')} not installed` : false;
let dir = '';

before(() => {
  dir = tempDir('veritree-import-');
});
after(() => cleanup(dir));

type Summary = ImportSummary;

function importJson(repo: string, source: string, extra: string[] = []): Summary {
  const r = veritree(['import', source, ...extra, '--repo', repo, '--json']);
  assert.equal(r.status, 0, `import ${source} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Summary;
}

async function checkImported(layout: string, ref: string, repo: string): Promise<number> {
  const diffIds = readConfig(layout, ref).rootfs.diff_ids;
  const n = await assertLayersStored(repo, diffIds);
  await assertConsistent(repo);
  return n;
}

function setxattr(path: string, name: string, value: string): boolean {
  return run('python3', ['-c', `import os,sys; os.setxattr(sys.argv[1], sys.argv[2], sys.argv[3].encode())`, path, name, value]).status === 0;
}

test('an image with many layers: every file is an object fsverity confirms; every layer rebuilds to its diff_id', { skip: SKIP }, async () => {
  const layout = join(dir, 'many');
  const steps = Array.from({ length: 6 }, (_, i) => (root: string) => {
    write(root, `layer${i}/data.txt`, lines(50 + i * 30, `layer ${i}`));
    write(root, `layer${i}/tiny`, `t${i}`);
    write(root, 'shared/changing.txt', lines(20, `version ${i}`));
    write(root, `layer${i}/bin.dat`, randomBytesSeeded(5000 + i * 777, i));
  });
  buildImage(layout, 'v1', steps);
  const repo = join(dir, 'repo-many');
  const s = importJson(repo, `oci:${layout}:v1`);
  assert.equal(s.layersImported, 6);
  assert.equal(s.tag, 'v1');
  assert.ok(s.objectsWritten >= 12, JSON.stringify(s));
  assert.ok(s.inlined >= 6);
  assert.ok((await checkImported(layout, 'v1', repo)) >= 18);
  assert.deepEqual(tags(repo), ['v1']);
});

test('re-importing is quick and writes nothing: layers and image already present, blobs not opened', { skip: SKIP }, () => {
  const repo = join(dir, 'repo-many');
  const again = importJson(repo, `oci:${join(dir, 'many')}:v1`, ['again']);
  assert.equal(again.status, 'present');
  assert.equal(again.layersImported, 0);
  assert.equal(again.objectsWritten, 0);
  assert.deepEqual(again.layers.map((l) => l.blobOpens), [0, 0, 0, 0, 0, 0]);
  assert.deepEqual(tags(repo), ['again', 'v1']);
});

/** The one-large-layer image, built on first use (tests may run alone, by name). */
function largeLayout(): string {
  const layout = join(dir, 'large');
  if (existsSync(layout)) return layout;
  buildImage(layout, 'big', [
    (root) => {
      write(root, 'opt/huge.bin', randomBytesSeeded(70 << 20, 99));
      write(root, 'opt/medium.bin', randomBytesSeeded(3 << 20, 98));
      // 100 files of at most 64 bytes (inlined), 200 larger ones (objects).
      for (let i = 0; i < 300; i++) write(root, `many/f${i}`, i % 3 === 0 ? `s${i}` : lines(5 + (i % 40), `file ${i}`));
    },
  ]);
  return layout;
}

test('one large layer: a file past the spool threshold, past the split threshold, and many small ones', { skip: SKIP }, async () => {
  const layout = largeLayout();
  const repo = join(dir, 'repo-large');
  const s = importJson(repo, `oci:${layout}:big`, ['--jobs', '2']);
  assert.equal(s.layersImported, 1);
  assert.ok(s.tarBytes > 73 << 20, String(s.tarBytes));
  assert.equal(s.inlined, 100);
  assert.equal(await checkImported(layout, 'big', repo), 202);
});

test('layer threads (VERITREE_LAYER_THREADS=1): the large layer imports in a thread of its own, the same objects and stream', { skip: SKIP }, async () => {
  const layout = largeLayout();
  const repo = join(dir, 'repo-large-threads');
  const r = veritree(['import', `oci:${layout}:big`, '--jobs', '2', '--repo', repo, '--json'], { env: { ...process.env, VERITREE_LAYER_THREADS: '1' } });
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout) as Summary;
  assert.equal(s.layersImported, 1);
  assert.equal(s.inlined, 100);
  assert.equal(await checkImported(layout, 'big', repo), 202);
  // The same layer stream object as the import on the main thread made.
  const stream = (root: string): string => readlinkSync(join(root, 'streams', readdirSync(join(root, 'streams')).find((n) => n.startsWith('oci-layer-')) as string));
  const plain = join(dir, 'repo-large');
  if (!existsSync(plain)) importJson(plain, `oci:${layout}:big`, ['--jobs', '2']);
  assert.equal(stream(repo), stream(plain));
});

test('zstd layers (skopeo --dest-compress-format zstd) and uncompressed layers (skopeo, plain tar)', { skip: SKIP }, async () => {
  const src = join(dir, 'src-z');
  buildImage(src, 'z', [(root) => write(root, 'a/one.txt', lines(100, 'one')), (root) => write(root, 'b/two.txt', lines(200, 'two'))]);
  const zst = join(dir, 'zstd');
  skopeoCopy(src, zst, 'z', ['--dest-compress-format', 'zstd']);
  const plain = join(dir, 'plain');
  skopeoUncompressed(src, plain, 'z', join(dir, 'plain-dir'));
  const repo = join(dir, 'repo-z');
  const a = importJson(repo, `oci:${zst}:z`, ['zst']);
  assert.equal(a.layersImported, 2);
  await checkImported(zst, 'z', repo);
  // Same diff_ids: the plain copy's layers are already present.
  const b = importJson(repo, `oci:${plain}:z`, ['plain']);
  assert.equal(b.layersPresent, 2);
  const repo2 = join(dir, 'repo-plain');
  assert.equal(importJson(repo2, `oci:${plain}:z`).layersImported, 2);
  await checkImported(plain, 'z', repo2);
});

test('whiteouts and opaque directories (umoci unpack, delete, repack)', { skip: SKIP }, async () => {
  const layout = join(dir, 'wh');
  buildImage(layout, 'w', [
    (root) => {
      write(root, 'etc/keep.conf', lines(10, 'keep'));
      write(root, 'etc/gone.conf', lines(10, 'gone'));
      for (let i = 0; i < 3; i++) write(root, `var/cache/c${i}`, lines(10, `cache ${i}`));
    },
    (root) => {
      rmSync(join(root, 'etc/gone.conf'));
      rmSync(join(root, 'var/cache'), { recursive: true });
      write(root, 'var/cache/new', lines(10, 'fresh'));
    },
  ]);
  const repo = join(dir, 'repo-wh');
  importJson(repo, `oci:${layout}:w`);
  await checkImported(layout, 'w', repo);
  const diffIds = readConfig(layout, 'w').rootfs.diff_ids;
  const tarList = run('sh', ['-c', `node ${JSON.stringify(join(process.cwd(), 'dist/src/cli/main.js'))} cat-layer --repo ${repo} ${diffIds[1]} | tar t`]).stdout;
  assert.match(tarList, /etc\/\.wh\.gone\.conf/);
  assert.match(tarList, /var\/cache\/\.wh\.(\.wh\.\.opq|c0)/);
});

test('hardlinks, symlinks, PAX long names and xattrs', { skip: SKIP }, async () => {
  const layout = join(dir, 'links');
  const longDir = Array.from({ length: 6 }, (_, i) => `a-rather-long-directory-name-${i}`).join('/');
  let xattrs = false;
  buildImage(layout, 'l', [
    (root) => {
      write(root, 'usr/bin/tool', lines(30, 'tool'), 0o755);
      hardlink(root, 'usr/bin/tool-alias', 'usr/bin/tool');
      symlink(root, 'usr/bin/t', 'tool');
      symlink(root, 'etc/abs', '/usr/bin/tool');
      write(root, `${longDir}/with-a-long-file-name-that-needs-pax-records.txt`, lines(40, 'long'));
      write(root, 'data/tagged.bin', randomBytesSeeded(1000, 5));
      xattrs = setxattr(join(root, 'data/tagged.bin'), 'user.veritree.test', 'yes');
    },
  ]);
  const repo = join(dir, 'repo-links');
  importJson(repo, `oci:${layout}:l`);
  await checkImported(layout, 'l', repo);
  const diffId = readConfig(layout, 'l').rootfs.diff_ids[0] as string;
  const raw = run('sh', ['-c', `node ${JSON.stringify(join(process.cwd(), 'dist/src/cli/main.js'))} cat-layer --repo ${repo} ${diffId} | tar tv`]).stdout;
  assert.match(raw, /usr\/bin\/tool-alias link to usr\/bin\/tool/);
  assert.match(raw, /usr\/bin\/t -> tool/);
  assert.ok(raw.includes('with-a-long-file-name-that-needs-pax-records.txt'));
  if (xattrs) {
    const pax = run('sh', ['-c', `node ${JSON.stringify(join(process.cwd(), 'dist/src/cli/main.js'))} cat-layer --repo ${repo} ${diffId} | grep -ac SCHILY.xattr.user.veritree.test`]).stdout.trim();
    assert.equal(pax, '1');
  }
});

test('a layout with two tags sharing layers: the shared layers are stored once', { skip: SKIP }, async () => {
  const layout = join(dir, 'two');
  buildImage(layout, 'base', [(root) => write(root, 'base/file.txt', lines(100, 'base'))]);
  buildImage(layout, 'app', [(root) => write(root, 'app/file.txt', lines(100, 'app'))], { from: 'base' });
  const repo = join(dir, 'repo-two');
  const a = importJson(repo, `oci:${layout}:base`);
  const b = importJson(repo, `oci:${layout}:app`);
  assert.equal(a.layersImported, 1);
  assert.equal(b.layersImported, 1);
  assert.equal(b.layersPresent, 1);
  assert.equal(layerStreams(repo).length, 2);
  assert.deepEqual(tags(repo), ['app', 'base']);
  await checkImported(layout, 'app', repo);
  const images = JSON.parse(veritree(['images', '--repo', repo, '--json']).stdout) as { tag: string; layers: unknown[] }[];
  assert.deepEqual(images.map((i) => [i.tag, i.layers.length]), [['app', 2], ['base', 1]]);
});

test('REF may be omitted when the layout holds one image; it is required (with the refs listed) otherwise', { skip: SKIP }, () => {
  const repo = join(dir, 'repo-ref');
  const one = importJson(repo, `oci:${join(dir, 'wh')}`);
  assert.equal(one.tag, 'w');
  const r = veritree(['import', `oci:${join(dir, 'two')}`, '--repo', repo]);
  assert.equal(r.status, 3);
  assert.match(r.stderr, /holds 2 images: name one .*refs: (base, app|app, base)/);
  const nf = veritree(['import', `oci:${join(dir, 'two')}:nope`, '--repo', repo]);
  assert.equal(nf.status, 3);
  assert.match(nf.stderr, /no image named "nope"/);
});

test('the shipped example imports (what npm start does)', { skip: SKIP }, async () => {
  const repo = join(dir, 'repo-example');
  const s = importJson(repo, 'oci:example/oci:latest', ['example']);
  assert.equal(s.layersImported, 2);
  await checkImported('example/oci', 'latest', repo);
});

test('library API: importImage with a progress callback and an AbortSignal', { skip: SKIP }, async () => {
  const { importImage, openRepository } = await import('../src/index.ts');
  const repo = await openRepository(join(dir, 'repo-lib'), { create: true });
  const seen = new Set<string>();
  const s = await importImage(repo, `oci:${join(dir, 'many')}:v1`, { tag: 'lib', onProgress: (p) => seen.add(p.type) });
  assert.equal(s.layersImported, 6);
  assert.deepEqual([...seen].sort(), ['image', 'image-done', 'image-publishing', 'layer-bytes', 'layer-done', 'layer-finishing', 'layer-start', 'run']);
  const ac = new AbortController();
  ac.abort();
  const repo2 = await openRepository(join(dir, 'repo-lib2'), { create: true });
  await assert.rejects(importImage(repo2, `oci:${join(dir, 'many')}:v1`, { signal: ac.signal }), /interrupted/);
  assert.deepEqual(tags(join(dir, 'repo-lib2')), []);
});

test('umoci insert (0.4.7) writes a layer without padding or end blocks: it imports with a warning and rebuilds exactly', { skip: SKIP }, async () => {
  const layout = join(dir, 'insert');
  buildImage(layout, 'i', [(root) => write(root, 'etc/base.txt', lines(10, 'base'))]);
  const file = join(dir, 'inserted.txt');
  writeFileSync(file, lines(30, 'inserted'));
  run('umoci', ['insert', '--image', `${layout}:i`, file, '/opt/inserted.txt']);
  const repo = join(dir, 'repo-insert');
  const r = veritree(['import', `oci:${layout}:i`, '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
  // Depending on the umoci version the layer is padded or not; either way it must rebuild exactly.
  const diffIds = readConfig(layout, 'i').rootfs.diff_ids;
  assert.equal(diffIds.length, 2);
  for (const d of diffIds) {
    const cat = run('sh', ['-c', `node dist/src/cli/main.js cat-layer --repo ${repo} ${d} | sha256sum`]);
    assert.equal(cat.stdout.split(' ')[0], d.slice(7));
  }
  if (/not padded|end-of-archive/.test(r.stderr)) assert.match(r.stderr, /warning: layer 2/);
  await assertConsistent(repo);
});

test('a multi-platform index: the host platform is chosen by default, --platform overrides, a missing one is listed', { skip: SKIP }, () => {
  const layout = join(dir, 'multiarch');
  buildImage(layout, 'amd', [(root) => write(root, 'arch', lines(10, 'amd64'))]);
  buildImage(layout, 'arm', [(root) => write(root, 'arch', lines(10, 'arm64'))]);
  const index = readIndex(layout);
  const byRef = (ref: string): Descriptor => index.manifests.find((d) => d.annotations?.['org.opencontainers.image.ref.name'] === ref) as Descriptor;
  const entry = (d: Descriptor, architecture: string): object => ({ mediaType: d.mediaType, digest: d.digest, size: d.size, platform: { os: 'linux', architecture } });
  const host = { x64: 'amd64', arm64: 'arm64' }[process.arch as 'x64' | 'arm64'] ?? 'amd64';
  const other = host === 'amd64' ? 'arm64' : 'amd64';
  const nested = writeBlob(layout, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [entry(byRef('amd'), 'amd64'), entry(byRef('arm'), 'arm64')] })));
  index.manifests.push({ mediaType: 'application/vnd.oci.image.index.v1+json', digest: nested.digest, size: nested.size, annotations: { 'org.opencontainers.image.ref.name': 'multi' } });
  writeFileSync(join(layout, 'index.json'), JSON.stringify(index));
  const repo = join(dir, 'repo-multi');
  const hostPick = importJson(repo, `oci:${layout}:multi`);
  assert.equal(hostPick.manifest, byRef(host === 'amd64' ? 'amd' : 'arm').digest, 'the host platform by default');
  const otherPick = importJson(repo, `oci:${layout}:multi`, ['multi-other', '--platform', `linux/${other}`]);
  assert.equal(otherPick.manifest, byRef(other === 'amd64' ? 'amd' : 'arm').digest);
  const none = veritree(['import', `oci:${layout}:multi`, '--platform', 'linux/s390x', '--repo', repo]);
  assert.equal(none.status, 3);
  assert.match(none.stderr, /no image for platform linux\/s390x \(available: linux\/amd64, linux\/arm64\); use --platform/);
});
