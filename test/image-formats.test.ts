/**
 * `veritree image` in the repository's EROFS format (meta.json's erofs_formats, as composefs-rs
 * 0.9 decides it): V0 and V1 byte for byte what mkfs (mkcomposefs) writes at --min-version=0 and
 * =1, V2 as composefs-rs's legacy writer writes it, extra formats beside the default; and a repository cfsctl made keeps
 * its meta.json unchanged through import, image, gc and fsck.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openRepository } from '../src/index.ts';
import { readSplitStream } from '../src/store/splitstream-reader.ts';
import { taggedImage } from '../src/store/images.ts';
import { cleanup, tempDir, veritree } from './helpers.ts';
import { CFSCTL_META } from './fixtures/cfsctl-meta.ts';
import { plainLayerLayout } from './fixtures/oci.ts';
import { tarOf } from './fixtures/tar.ts';

const dirs: string[] = [];
after(() => dirs.forEach(cleanup));

const root = tempDir('veritree-image-formats-');
dirs.push(root);

let layoutPath: string | null = null;
async function layout(): Promise<string> {
  if (layoutPath === null) {
    layoutPath = join(root, 'layout');
    plainLayerLayout(layoutPath, 't', await tarOf([{ name: 'etc/hello', content: 'hello, a file long enough to be an object of its own\n' }, { name: 'bin/x', content: 'x\n' }]));
  }
  return layoutPath;
}

/** A repository with this meta.json, as cfsctl init leaves it (meta.json and the folders). */
function repoWithMeta(name: string, meta: string): string {
  const dir = join(root, name);
  for (const d of ['objects', 'streams', 'images']) mkdirSync(join(dir, d), { recursive: true });
  writeFileSync(join(dir, 'meta.json'), meta);
  return dir;
}

interface Report {
  image: string;
  format: number;
  version: number;
  extra: { format: number; image: string }[];
  skipped: number[];
}

function image(repo: string, tag: string, ...args: string[]): Report {
  const r = veritree(['image', tag, '--json', '--repo', repo, ...args]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Report;
}

/** What mkfs writes for the tag's dumpfile at this --min-version. */
function mkfsOf(repo: string, tag: string, minVersion: number): Buffer {
  const dump = veritree(['dump', tag, '--repo', repo]);
  assert.equal(dump.status, 0, dump.stderr);
  const dumpPath = join(root, `${tag}-${minVersion}.dump`);
  writeFileSync(dumpPath, dump.stdout);
  const out = join(root, `${tag}-${minVersion}.erofs`);
  const m = veritree(['mkfs', '--min-version', String(minVersion), dumpPath, out]);
  assert.equal(m.status, 0, m.stderr);
  return readFileSync(out);
}

async function configRefs(repoPath: string, tag: string): Promise<Record<string, string>> {
  const repo = await openRepository(repoPath);
  const config = readSplitStream(await repo.readStreamBytes((await taggedImage(repo, tag)).configStream));
  return Object.fromEntries(config.namedRefs.filter((r) => r.name.startsWith('composefs.image')).map((r) => [r.name, config.streamRefs[r.index] as string]));
}

const objectBytes = (repo: string, id: string): Buffer => readFileSync(join(repo, 'objects', id.slice(0, 2), id.slice(2)));

test('V0 and V1 repositories: the image is what mkfs writes at --min-version=0 and =1, under its format\'s config ref', async () => {
  const l = await layout();
  for (const [v, ref] of [[0, 'composefs.image'], [1, 'composefs.image.v1']] as const) {
    const repo = join(root, `v${v}`);
    assert.equal(veritree(['init', '--repo', repo, '--erofs-version', String(v)]).status, 0);
    assert.equal(veritree(['import', `oci:${l}:t`, 'img', '--repo', repo]).status, 0);
    const r = image(repo, 'img');
    assert.equal(r.format, v);
    assert.equal(r.version, v, 'composefs_version: 0 for V0 (no whiteouts), 1 for V1');
    assert.deepEqual(objectBytes(repo, r.image), mkfsOf(repo, 'img', v));
    assert.deepEqual(await configRefs(repo, 'img'), { [ref]: r.image });
    assert.equal(image(repo, 'img').image, r.image, 'a second run finds the same image');
    const mounted = veritree(['fsck', '--repo', repo]);
    assert.equal(mounted.status, 0, mounted.stdout + mounted.stderr);
  }
  const v0 = image(join(root, 'v0'), 'img').image;
  const v1 = image(join(root, 'v1'), 'img').image;
  assert.notEqual(v0, v1, 'the two formats give two ids, as in composefs-rs');
});

test('a V2 repository cfsctl made: image writes V2 under composefs.image; --erofs-version 1 writes V1', async () => {
  const l = await layout();
  const repo = repoWithMeta('v2', CFSCTL_META.sha256v2);
  assert.equal(veritree(['import', `oci:${l}:t`, 'img', '--repo', repo]).status, 0);
  const r = image(repo, 'img');
  assert.equal(r.format, 2);
  assert.equal(r.version, 2);
  assert.deepEqual(await configRefs(repo, 'img'), { 'composefs.image': r.image });
  const forced = image(repo, 'img', '--erofs-version', '1');
  assert.equal(forced.format, 1);
  assert.deepEqual(objectBytes(repo, forced.image), mkfsOf(repo, 'img', 1));
  assert.deepEqual(await configRefs(repo, 'img'), { 'composefs.image.v1': forced.image });
});

test('extra formats are written beside the default as commit_images does, V2 among them', async () => {
  const l = await layout();
  const meta = CFSCTL_META.sha256v1extra2.replace('      2\n', '      0,\n      2\n');
  const repo = repoWithMeta('extra', meta);
  assert.equal(veritree(['import', `oci:${l}:t`, 'img', '--repo', repo]).status, 0);
  const cli = veritree(['image', 'img', '--json', '--repo', repo]);
  assert.equal(cli.status, 0, cli.stderr);
  assert.doesNotMatch(cli.stderr, /not written/);
  const r = JSON.parse(cli.stdout) as Report;
  assert.equal(r.format, 1);
  assert.deepEqual(r.skipped, []);
  assert.deepEqual(r.extra.map((x) => x.format), [0, 2]);
  const [x0, x2] = r.extra as [{ format: number; image: string }, { format: number; image: string }];
  assert.deepEqual(objectBytes(repo, x0.image), mkfsOf(repo, 'img', 0));
  assert.equal(objectBytes(repo, x2.image).readUInt32LE(12), 2, 'composefs_version 2');
  for (const x of [x0, x2]) assert.equal(readFileSync(join(repo, 'images', x.image)).length > 0, true, 'the extra image is linked under images/');
  assert.equal(veritree(['compute-id', 'img', '--erofs-version', '2', '--repo', repo]).stdout.trim(), x2.image);
  assert.deepEqual(await configRefs(repo, 'img'), { 'composefs.image.v1': r.image, 'composefs.image': x2.image }, 'V1 and V2 as composefs-oci names them; no V0 ref');
  assert.equal(readFileSync(join(repo, 'meta.json'), 'utf8'), meta);
});

test("a repository cfsctl init made is fully usable and its meta.json is never rewritten", async () => {
  const l = await layout();
  for (const [name, meta] of Object.entries(CFSCTL_META)) {
    const repo = repoWithMeta(`cfs-${name}`, meta);
    const steps: string[][] = [['import', `oci:${l}:t`, 'img'], ['gc'], ['fsck']];
    steps.splice(1, 0, ['image', 'img']);
    for (const s of steps) {
      const r = veritree([...s, '--repo', repo]);
      assert.equal(r.status, 0, `${name}: ${s.join(' ')}: ${r.stderr}`);
      assert.equal(readFileSync(join(repo, 'meta.json'), 'utf8'), meta, `${name}: meta.json after ${s[0]}`);
    }
  }
});

test('compute-id prints the image id in the repository\'s format and writes nothing; images --json shows it when written or asked for', async () => {
  const l = await layout();
  const repo = join(root, 'ids');
  assert.equal(veritree(['init', '--repo', repo]).status, 0);
  assert.equal(veritree(['import', `oci:${l}:t`, 'img', '--repo', repo]).status, 0);
  const counts = (): unknown => {
    const f = JSON.parse(veritree(['fsck', '--json', '--repo', repo]).stdout) as { objects: number; bytes: number; streams: number; images: number };
    return [f.objects, f.bytes, f.streams, f.images];
  };
  const objectsBefore = counts();
  const id = veritree(['compute-id', 'img', '--repo', repo]);
  assert.equal(id.status, 0, id.stderr);
  const v1 = mkfsOf(repo, 'img', 1);
  const { toHex, verityDigest } = await import('../src/index.ts');
  assert.equal(id.stdout, `${toHex(verityDigest(v1, 'sha256'))}\n`, 'the V1 image id, as cfsctl oci compute-id gives it');
  const v0 = veritree(['compute-id', 'img', '--erofs-version', '0', '--repo', repo]);
  assert.equal(v0.stdout, `${toHex(verityDigest(mkfsOf(repo, 'img', 0), 'sha256'))}\n`);
  assert.deepEqual(counts(), objectsBefore, 'compute-id wrote nothing');
  type Rec = { tag: string; imageId?: string };
  const list = (...a: string[]): Rec[] => JSON.parse(veritree(['images', '--json', '--repo', repo, ...a]).stdout) as Rec[];
  assert.equal(list()[0]?.imageId, undefined, 'not computed by default');
  assert.equal(list('--image-id')[0]?.imageId, id.stdout.trim(), 'computed when asked for');
  assert.equal(image(repo, 'img').image, id.stdout.trim(), 'veritree image writes the image compute-id named');
  assert.equal(list()[0]?.imageId, id.stdout.trim(), 'read from the config once written');
  assert.match(veritree(['images', '--repo', repo]).stdout, new RegExp(`\\n  image    ${id.stdout.trim()}\\n`));
  const v2 = repoWithMeta('ids-v2', CFSCTL_META.sha256v2);
  assert.equal(veritree(['import', `oci:${l}:t`, 'img', '--repo', v2]).status, 0);
  const v2id = veritree(['compute-id', 'img', '--repo', v2]);
  assert.equal(v2id.status, 0, v2id.stderr);
  const listed = veritree(['images', '--json', '--image-id', '--repo', v2]);
  assert.equal(listed.status, 0, listed.stderr);
  assert.equal((JSON.parse(listed.stdout) as Rec[])[0]?.imageId, v2id.stdout.trim(), 'the V2 id, worked out');
  assert.equal(image(v2, 'img').image, v2id.stdout.trim());
});
