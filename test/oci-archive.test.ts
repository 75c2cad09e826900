/**
 * `oci-archive:FILE`: an OCI layout as one tar, read in place. An archive written by skopeo and
 * one written by GNU tar must import to exactly the store the folder imports to; a damaged or
 * hostile archive must fail with one clear line, no tag and a consistent store.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tarStream from 'tar-stream';
import { cleanup, hasTool, must, tempDir, veritree } from './helpers.ts';
import { assertConsistent, layerStreams, tags } from './fixtures/store-check.ts';
import { scanOciArchive } from '../src/oci/archive.ts';
import { openInLayout } from '../src/oci/layout-files.ts';

/** The example image that ships in the repository: a layout no tool is needed to read. */
const EXAMPLE = join(import.meta.dirname, '..', '..', 'example', 'oci');
const dirs: string[] = [];
let dir = '';
let n = 0;
before(() => {
  dir = tempDir('veritree-archive-');
  dirs.push(dir);
});
after(() => (process.env.KEEP ? undefined : dirs.forEach(cleanup)));

interface Entry {
  name: string;
  content?: Buffer;
  type?: 'file' | 'symlink' | 'directory';
  linkname?: string;
}

/** The example layout's files as archive entries, in skopeo's order (blobs first). */
function exampleEntries(prefix = ''): Entry[] {
  const out: Entry[] = [{ name: `${prefix}blobs/`, type: 'directory' }, { name: `${prefix}blobs/sha256/`, type: 'directory' }];
  for (const f of readdirSync(join(EXAMPLE, 'blobs', 'sha256')).sort()) {
    out.push({ name: `${prefix}blobs/sha256/${f}`, content: readFileSync(join(EXAMPLE, 'blobs', 'sha256', f)) });
  }
  for (const f of ['index.json', 'oci-layout']) out.push({ name: `${prefix}${f}`, content: readFileSync(join(EXAMPLE, f)) });
  return out;
}

async function pack(entries: Entry[]): Promise<Buffer> {
  const p = tarStream.pack();
  for (const e of entries) {
    if (e.type === 'directory') p.entry({ name: e.name, type: 'directory' });
    else if (e.type === 'symlink') p.entry({ name: e.name, type: 'symlink', linkname: e.linkname ?? '' });
    else p.entry({ name: e.name }, e.content ?? Buffer.alloc(0));
  }
  p.finalize();
  const parts: Buffer[] = [];
  for await (const c of p) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

function readDiffIds(): string[] {
  const blob = (d: string): unknown => JSON.parse(readFileSync(join(EXAMPLE, 'blobs', 'sha256', d.slice(7)), 'utf8'));
  const index = JSON.parse(readFileSync(join(EXAMPLE, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  const manifest = blob(index.manifests[0]?.digest as string) as { config: { digest: string } };
  return ((blob(manifest.config.digest) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids).map((d) => d.slice(7));
}

function archiveFile(bytes: Buffer): string {
  const p = join(dir, `a${n++}.tar`);
  writeFileSync(p, bytes);
  return p;
}

/** Every file of a store with its bytes' length, tags left out (they name the image). */
function storeFiles(repo: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (r !== 'streams/refs') walk(join(d, e.name), r);
      } else out.push(`${r} ${statSync(join(d, e.name)).size}`);
    }
  };
  walk(repo, '');
  return out.filter((f) => !f.startsWith('meta.json') && !f.startsWith('.lock')).sort();
}

function importOk(source: string): string {
  const repo = join(dir, `repo${n++}`);
  const r = veritree(['import', source, '--repo', repo, '--no-progress']);
  assert.equal(r.status, 0, r.stderr);
  return repo;
}

/**
 * Fails with one line matching `pattern`, no tag, and no layer recorded but some of those in
 * `kept`: a sound layer before the failure may or may not have finished when the bad one stops
 * the import, as layers are imported at once.
 */
async function expectFailure(source: string, pattern: RegExp, kept: string[] = []): Promise<void> {
  const repo = join(dir, `repo${n++}`);
  const r = veritree(['import', source, '--repo', repo, '--no-progress']);
  assert.equal(r.status, 3, `exit status of ${source}; stderr: ${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l && !l.includes('warning:'));
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0] as string, pattern);
  assert.deepEqual(tags(repo), [], 'no tag');
  const extra = layerStreams(repo).filter((s) => !kept.includes(s));
  assert.deepEqual(extra, [], 'no layer recorded but those before the failure');
  await assertConsistent(repo);
}

test('an archive imports to the same store as its folder, with or without ./ before the names; the tag is its ref', async () => {
  const want = storeFiles(importOk(`oci:${EXAMPLE}`));
  for (const prefix of ['', './']) {
    const a = archiveFile(await pack(exampleEntries(prefix)));
    const repo = importOk(`oci-archive:${a}:latest`);
    assert.deepEqual(storeFiles(repo), want, `prefix ${JSON.stringify(prefix)}`);
    assert.deepEqual(tags(repo), ['latest']);
    const fsck = veritree(['fsck', '--repo', repo]);
    assert.equal(fsck.status, 0, fsck.stdout + fsck.stderr);
  }
});

test('archives written by skopeo (oci-archive:) and GNU tar import as their folder does', { skip: hasTool('skopeo') ? false : 'skipped: skopeo not installed' }, () => {
  const want = storeFiles(importOk(`oci:${EXAMPLE}:latest`));
  const bySkopeo = join(dir, 'skopeo.tar');
  must('skopeo', ['copy', '-q', `oci:${EXAMPLE}:latest`, `oci-archive:${bySkopeo}:demo`]);
  const repo = importOk(`oci-archive:${bySkopeo}`);
  assert.deepEqual(storeFiles(repo), want);
  assert.deepEqual(tags(repo), ['demo']);
  const byTar = join(dir, 'gnu.tar');
  must('tar', ['-C', EXAMPLE, '-cf', byTar, '.']);
  assert.deepEqual(storeFiles(importOk(`oci-archive:${byTar}:latest`)), want);
});

test('a compressed, truncated or ambiguous archive is refused, saying what is wrong', async () => {
  const whole = await pack(exampleEntries());
  await expectFailure(`oci-archive:${archiveFile(gzipSync(whole))}`, /is not an OCI archive: it is gzip-compressed; an oci-archive is a plain tar/);
  // Cut inside the first blob: its entry claims more bytes than the file has.
  await expectFailure(`oci-archive:${archiveFile(whole.subarray(0, 3 * 512 + 100))}`, /is not an OCI archive: truncated: the entry at offset 1024 claims \d+ bytes, past the archive's end/);
  const entries = exampleEntries();
  const blob = entries.find((e) => /^blobs\/sha256\/[0-9a-f]{64}$/.test(e.name)) as Entry;
  await expectFailure(`oci-archive:${archiveFile(await pack([...entries, { ...blob }]))}`, new RegExp(`holds "${blob.name}" twice`));
  const noIndex = entries.filter((e) => e.name !== 'index.json');
  await expectFailure(`oci-archive:${archiveFile(await pack([...noIndex, { name: 'index.json', type: 'symlink', linkname: '/etc/passwd' }]))}`, /"index.json" at offset \d+ is not a regular file \(tar type "2"\)/);
  await expectFailure(`oci-archive:${archiveFile(await pack(entries.filter((e) => e.name !== 'oci-layout')))}`, /is not an OCI archive: it has no oci-layout file/);
  await expectFailure(`oci-archive:${archiveFile(await pack(entries.filter((e) => e.name !== 'index.json')))}`, /is not an OCI archive: it has no index.json file/);
});

test('a layout name spelled another way counts as that name: a second copy is refused however it is spelled', async () => {
  const entries = exampleEntries();
  const index = entries.find((e) => e.name === 'index.json') as Entry;
  const blob = entries.find((e) => /^blobs\/sha256\/[0-9a-f]{64}$/.test(e.name)) as Entry;
  const hex = blob.name.slice('blobs/sha256/'.length);
  // A second index.json naming nothing: tar and skopeo would extract it over the first.
  const other = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] }));
  for (const name of ['.//index.json', 'blobs/../index.json', '/index.json', './/./index.json']) {
    await expectFailure(`oci-archive:${archiveFile(await pack([...entries, { name, content: other }]))}`, new RegExp(`holds "index.json" twice \\(as "index.json" and "${name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}"\\)`));
  }
  for (const name of [`./blobs//sha256/${hex}`, `blobs/sha256/./${hex}`, `blobs/x/../sha256/${hex}`]) {
    await expectFailure(`oci-archive:${archiveFile(await pack([...entries, { name, content: blob.content as Buffer }]))}`, new RegExp(`holds "blobs/sha256/${hex}" twice`));
  }
  // Spelled oddly but once, it is that file: the image imports.
  const odd = entries.map((e) => (e === index ? { ...e, name: './/index.json' } : e === blob ? { ...e, name: `blobs/./sha256//${hex}` } : e));
  assert.deepEqual(tags(importOk(`oci-archive:${archiveFile(await pack(odd))}:latest`)), ['latest']);
  // A name that climbs above the archive's top is not a layout name: skipped as before.
  const scan = await scanOciArchive(archiveFile(await pack([...entries, { name: '../index.json', content: other }, { name: 'blobs/../../index.json', content: other }])));
  assert.equal(scan.entries.get('index.json')?.size, (index.content as Buffer).length);
});

test("a blob of the archive that is damaged or missing fails as a folder's would; hostile names are never used as paths", async () => {
  const entries = exampleEntries();
  const manifest = JSON.parse(readFileSync(join(EXAMPLE, 'blobs', 'sha256', (JSON.parse(readFileSync(join(EXAMPLE, 'index.json'), 'utf8')) as { manifests: { digest: string }[] }).manifests[0]?.digest.slice(7) as string), 'utf8')) as { layers: { digest: string }[] };
  const layerName = `blobs/sha256/${manifest.layers[1]?.digest.slice(7)}`;
  const damaged = entries.map((e) => (e.name === layerName ? { ...e, content: Buffer.from((e.content as Buffer).map((b, i) => (i === 20 ? b ^ 1 : b))) } : e));
  // Layer 1 is sound and may be kept; layer 2, the bad one, never is.
  const first = layerStreams(importOk(`oci:${EXAMPLE}`)).filter((s) => s.endsWith(readDiffIds()[0] as string));
  await expectFailure(`oci-archive:${archiveFile(await pack(damaged))}`, /layer 2 \(sha256:[0-9a-f]{64}\): blob digest mismatch/, first);
  await expectFailure(`oci-archive:${archiveFile(await pack(entries.filter((e) => e.name !== layerName)))}`, /layer 2 .*: blob .*\.tar:blobs\/sha256\/[0-9a-f]{64} is missing/, first);
  // Names that would escape a folder if extracted: skipped, the image imports, nothing is written.
  const hostile = [{ name: '../../escaped', content: Buffer.from('x') }, { name: '/abs/escaped', content: Buffer.from('y') }, ...entries];
  const repo = importOk(`oci-archive:${archiveFile(await pack(hostile))}:latest`);
  assert.deepEqual(tags(repo), ['latest']);
  assert.throws(() => statSync(join(dir, '..', 'escaped')));
});

test('an archive changed after it was scanned is not read at the old offsets; a FIFO is refused without blocking', async () => {
  const a = archiveFile(await pack(exampleEntries()));
  const archive = await scanOciArchive(a);
  const region = await openInLayout(archive, 'index.json', 'index.json');
  await region.fh.close();
  appendFileSync(a, Buffer.alloc(512));
  await assert.rejects(openInLayout(archive, 'index.json', 'index.json'), /changed while it was being imported/);
  const fifo = join(dir, 'fifo.tar');
  must('mkfifo', [fifo]);
  await expectFailure(`oci-archive:${fifo}`, /is a FIFO, not a regular file/);
});
