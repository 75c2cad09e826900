/**
 * gc never loses data, whatever it is handed: every stream, image, config and manifest object is
 * used only once it hashes to its name; every link is followed by one resolver (store/links.ts)
 * that every command shares; a read error is never "no roots". Each test here failed on the code
 * that trusted those bytes and links (docs/guarantees.md names each).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, cleanup, hasTool, must, tempDir, veritree } from './helpers.ts';
import { buildImage, write } from './fixtures/oci.ts';
import { buildGcStore, copyStore, objectFile, objectIds, storeEntries, streamObjectId, type GcStore } from './fixtures/gc-store.ts';
import { Repository } from '../src/store/repository.ts';
import { readRefs, readSplitStream } from '../src/store/splitstream-reader.ts';
import { composefsImageObjects } from '../src/erofs/reader.ts';
import { checkoutImage, dumpImage, fsck, gc, isVeritreeError, listImages, untagImage, ERROR_CODES } from '../src/index.ts';
import { taggedImage } from '../src/store/images.ts';
import { imageIdOf } from '../src/erofs/mount.ts';
import { replaceFile } from './fixtures/damage.ts';

const SKIP = hasTool('umoci') ? false : 'skipped: umoci not installed';
let dir = '';
let store: GcStore;

before(async () => {
  if (SKIP) return;
  dir = tempDir('veritree-gc-trust-');
  store = await buildGcStore(dir);
});

after(() => cleanup(dir));

let copies = 0;
function fresh(): string {
  return copyStore(store.repo, join(dir, `t${copies++}`));
}

function corrupt(e: unknown, ...words: string[]): boolean {
  assert.ok(isVeritreeError(e), String(e));
  assert.equal(e.code, ERROR_CODES.STORE_CORRUPT, e.message);
  for (const w of words) assert.ok(e.message.includes(w), `${JSON.stringify(w)} in: ${e.message}`);
  return true;
}

/** gc must refuse (STORE_CORRUPT, naming `words`) and leave every file where it was. */
async function gcRefuses(repo: string, ...words: string[]): Promise<void> {
  const before = storeEntries(repo);
  await assert.rejects(gc(await Repository.open(repo)), (e) => corrupt(e, 'nothing removed', ...words));
  assert.deepEqual(storeEntries(repo), before, 'gc removed nothing');
}

function tagLink(repo: string, tag: string): string {
  return join(repo, 'streams/refs/oci', tag);
}

test('a layer stream with one bit flipped in an object reference: gc stops with nothing removed, naming the stream', { skip: SKIP }, async () => {
  const repo = fresh();
  // b's own layer: only tag b keeps it and the objects it names.
  const { diffIds } = await taggedImage(await Repository.open(repo), 'b');
  const layer = `oci-layer-sha256:${(diffIds.at(-1) as string).replace(/^sha256:/, '')}`;
  const id = streamObjectId(repo, layer);
  const bytes = readFileSync(objectFile(repo, id));
  const ref = Buffer.from(readRefs(bytes).objectRefs[0] as string, 'hex');
  const at = bytes.indexOf(ref);
  assert.ok(at > 0, 'the reference is stored as its digest');
  bytes[at + 5] = (bytes[at + 5] as number) ^ 0x10;
  replaceFile(objectFile(repo, id), bytes);
  await gcRefuses(repo, id, 'streams/refs/oci/b');
});

test('a composefs image kept only by images/refs, with one byte flipped in a redirect: gc stops with nothing removed', { skip: SKIP }, async () => {
  const repo = fresh();
  const id = store.images.c;
  const bytes = readFileSync(objectFile(repo, id));
  const named = [...composefsImageObjects(bytes).objects][0] as string;
  const at = bytes.indexOf(Buffer.from(`${named.slice(0, 2)}/${named.slice(2)}`));
  assert.ok(at > 0, 'the image names its objects by path');
  bytes[at + 10] = bytes[at + 10] === 0x30 ? 0x31 : 0x30;
  replaceFile(objectFile(repo, id), bytes);
  // It still parses: only its digest tells it is not the image its name says.
  assert.ok(composefsImageObjects(bytes).objects.size > 0);
  await gcRefuses(repo, id, 'images/refs/c-img');
});

test('a tag stored as an absolute symlink is refused alike by gc (nothing removed), images, checkout/dump and fsck', { skip: SKIP }, async () => {
  const repo = fresh();
  const link = tagLink(repo, 'b');
  const target = readlinkSync(link);
  unlinkSync(link);
  symlinkSync(join(repo, 'streams', target.split('/').pop() as string), link);
  await gcRefuses(repo, 'streams/refs/oci/b', 'not ../../<stream>');
  const r = await Repository.open(repo);
  await assert.rejects(listImages(r), (e) => corrupt(e, 'streams/refs/oci/b'));
  await assert.rejects(taggedImage(r, 'b'), (e) => corrupt(e, 'streams/refs/oci/b'));
  await assert.rejects(dumpImage(r, 'b'), (e) => corrupt(e, 'streams/refs/oci/b'));
  await assert.rejects(checkoutImage(r, 'b', join(dir, `co${copies}`)), (e) => corrupt(e, 'streams/refs/oci/b'));
  // Another tag is not stopped by it.
  assert.ok((await taggedImage(r, 'a')).diffIds.length === 2);
  const report = await fsck(r);
  assert.ok(report.issues.some((i) => i.type === 'broken-symlink' && i.path === link), JSON.stringify(report.issues));
});

test('root links of every other form are refused the same way: dangling, looping, through ./, a second hop, an image ref by absolute path', { skip: SKIP }, async () => {
  const cases: [string, (repo: string) => void][] = [
    ['dangling', (repo) => { unlinkSync(tagLink(repo, 'a')); symlinkSync(`../../oci-manifest-sha256:${'0'.repeat(64)}`, tagLink(repo, 'a')); }],
    ['looping', (repo) => { unlinkSync(tagLink(repo, 'a')); symlinkSync('a', tagLink(repo, 'a')); }],
    ['dot', (repo) => { const t = readlinkSync(tagLink(repo, 'a')); unlinkSync(tagLink(repo, 'a')); symlinkSync(`./${t}`, tagLink(repo, 'a')); }],
    ['hop', (repo) => { unlinkSync(tagLink(repo, 'a')); symlinkSync('b', tagLink(repo, 'a')); }],
    ['image-abs', (repo) => { unlinkSync(join(repo, 'images/refs/c-img')); symlinkSync(join(repo, 'images', store.images.c), join(repo, 'images/refs/c-img')); }],
    ['stream-abs', (repo) => {
      const name = readlinkSync(tagLink(repo, 'a')).split('/').pop() as string;
      const p = join(repo, 'streams', name);
      const t = readlinkSync(p);
      unlinkSync(p);
      symlinkSync(join(repo, 'streams', t), p);
    }],
  ];
  for (const [what, damage] of cases) {
    const repo = fresh();
    damage(repo);
    await gcRefuses(repo, what === 'image-abs' ? 'images/refs/c-img' : 'streams/refs/oci/a');
    const report = await fsck(await Repository.open(repo));
    assert.ok(report.issues.some((i) => i.type === 'broken-symlink' && i.path.includes('/refs/')), `${what}: ${JSON.stringify(report.issues)}`);
  }
});

test('root discovery never turns a read error into "no roots": an unreadable refs folder or a FIFO tag stops gc', { skip: SKIP }, async () => {
  let repo = fresh();
  // readdir of streams/refs fails with ENOTDIR: not "no tags".
  rmSync(join(repo, 'streams/refs'), { recursive: true });
  writeFileSync(join(repo, 'streams/refs'), '');
  const before = storeEntries(repo);
  await assert.rejects(gc(await Repository.open(repo)), (e) => isVeritreeError(e) && /streams\/refs/.test(e.message));
  assert.deepEqual(storeEntries(repo), before);
  repo = fresh();
  unlinkSync(tagLink(repo, 'b'));
  must('mkfifo', [tagLink(repo, 'b')]);
  await gcRefuses(repo, 'streams/refs/oci/b', 'not a symlink');
});

test('a damaged config or manifest JSON object is never used: images and checkout fail naming it and who named it', { skip: SKIP }, async () => {
  const repo = fresh();
  const r = await Repository.open(repo);
  const manifestStream = (await taggedImage(r, 'a')).manifestStream;
  const s = readSplitStream(readFileSync(objectFile(repo, streamObjectId(repo, manifestStream))));
  const jsonId = s.objectRefs[0] as string;
  const text = readFileSync(objectFile(repo, jsonId), 'utf8');
  // Still valid JSON, with the same length: only the digest tells.
  replaceFile(objectFile(repo, jsonId), text.replace('"schemaVersion":2', '"schemaVersion":3'));
  assert.notEqual(readFileSync(objectFile(repo, jsonId), 'utf8'), text);
  await assert.rejects(listImages(r), (e) => corrupt(e, jsonId, `named by streams/${manifestStream}`));
  await assert.rejects(taggedImage(r, 'a'), (e) => corrupt(e, jsonId));
});

test('untag and dump take the repository lock; a repository opened read-only refuses untag', { skip: SKIP }, async () => {
  const repo = fresh();
  const r = await Repository.open(repo);
  const held = await r.lockExclusive();
  try {
    await assert.rejects(untagImage(r, 'a', { lockTimeoutMs: 100 }), (e) => isVeritreeError(e) && e.code === ERROR_CODES.STORE_LOCKED);
    await assert.rejects(dumpImage(r, 'a', undefined, 'composefs', { lockTimeoutMs: 100 }), (e) => isVeritreeError(e) && e.code === ERROR_CODES.STORE_LOCKED);
    const cli = veritree(['untag', 'a', '--repo', repo, '--lock-timeout', '0']);
    assert.equal(cli.status, 4, cli.stderr);
    assert.match(cli.stderr, /is locked/);
  } finally {
    await held.release();
  }
  readlinkSync(tagLink(repo, 'a'));
  const meta = JSON.parse(readFileSync(join(repo, 'meta.json'), 'utf8')) as { features: Record<string, string[]> };
  meta.features['read-only-compatible'] = ['x-from-the-future'];
  writeFileSync(join(repo, 'meta.json'), JSON.stringify(meta));
  const ro = await Repository.open(repo);
  await assert.rejects(untagImage(ro, 'a'), (e) => isVeritreeError(e) && e.code === ERROR_CODES.STORE_UNSUPPORTED && /read-only-compatible/.test(e.message));
  await assert.rejects(ro.removeTag('a'), (e) => isVeritreeError(e) && e.code === ERROR_CODES.STORE_UNSUPPORTED);
  const cli = veritree(['untag', 'a', '--repo', repo]);
  assert.equal(cli.status, 4, cli.stderr);
  readlinkSync(tagLink(repo, 'a'));
  // Reading is still allowed.
  assert.equal((await dumpImage(ro, 'a')).length > 0, true);
});

test('an undamaged store: gc keeps every root whole and removes nothing', { skip: SKIP }, async () => {
  const repo = fresh();
  const before = objectIds(repo);
  const report = await gc(await Repository.open(repo));
  assert.equal(report.objectsRemoved, 0);
  assert.deepEqual(objectIds(repo), before);
  mkdirSync(join(repo, 'streams/refs/empty-folder'));
  assert.equal((await gc(await Repository.open(repo))).objectsRemoved, 0);
});

test('mount and fsck judge images/<hex> by the same form: only the link composefs-rs writes names an image', { skip: SKIP }, async () => {
  const repo = fresh();
  const r = await Repository.open(repo);
  const id = store.images.a;
  assert.equal(await imageIdOf(r, id), id);
  const p = join(repo, 'images', id);
  unlinkSync(p);
  symlinkSync(objectFile(repo, id), p);
  await assert.rejects(imageIdOf(r, id), (e) => corrupt(e, `images/${id}`));
  // fsck judges it by the same form.
  assert.ok((await fsck(r)).issues.some((i) => i.type === 'broken-symlink' && i.path === p));
  unlinkSync(p);
  await assert.rejects(imageIdOf(r, id), (e) => isVeritreeError(e) && e.code === ERROR_CODES.TAG_NOT_FOUND);
});

test('gc never removes a stream link whose object it keeps, whatever the link\'s form; fsck reports the form', { skip: SKIP }, async () => {
  const repo = fresh();
  const { diffIds } = await taggedImage(await Repository.open(repo), 'b');
  const name = `oci-layer-sha256:${(diffIds.at(-1) as string).replace(/^sha256:/, '')}`;
  const p = join(repo, 'streams', name);
  const id = streamObjectId(repo, name);
  unlinkSync(p);
  symlinkSync(objectFile(repo, id), p);
  const report = await gc(await Repository.open(repo));
  assert.deepEqual(report.streamsRemoved, []);
  assert.equal(readlinkSync(p), objectFile(repo, id));
  const f = await fsck(await Repository.open(repo));
  assert.ok(f.issues.some((i) => i.type === 'broken-symlink' && i.path === p), JSON.stringify(f.issues));
});

test('an image shipping copies of another image\'s streams as files: gc still reads those streams and keeps what they name', { skip: SKIP }, () => {
  // The carrier is popped first (roots are a stack, tags in name order): its layer marks the
  // victim's stream objects as file contents before the victim's manifest names them as streams.
  const repo = join(dir, 'carrier-repo');
  assert.equal(veritree(['import', `oci:${join(ROOT, 'example', 'oci')}:latest`, 'aaa-victim', '--repo', repo]).status, 0);
  const streams = join(repo, 'streams');
  const layout = join(dir, 'carrier-layout');
  buildImage(layout, 'carrier', [
    (rootfs) => {
      for (const n of readdirSync(streams)) {
        if (n !== 'refs') write(rootfs, `copy/${n.replace(/:/g, '_')}`, readFileSync(join(streams, readlinkSync(join(streams, n)))));
      }
    },
  ]);
  assert.equal(veritree(['import', `oci:${layout}:carrier`, 'zzz-carrier', '--repo', repo]).status, 0);
  const before = objectIds(repo);
  const r = veritree(['gc', '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(objectIds(repo), before, 'every object is live: nothing removed');
  const f = veritree(['fsck', '--repo', repo]);
  assert.equal(f.status, 0, f.stdout + f.stderr);
  assert.equal(veritree(['checkout', 'aaa-victim', join(dir, 'carrier-co'), '--repo', repo]).status, 0);
});
