/** fsck, --repair, gc and untag on stores filled by real imports of umoci-made images. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { toHex, verityDigest } from '../src/index.ts';
import { SplitStreamBuilder } from '../src/store/splitstream.ts';
import { readRefs } from '../src/store/splitstream-reader.ts';
import { cleanup, hasTool, randomBytesSeeded, run, tempDir, veritree } from './helpers.ts';
import { mkcomposefs, type Mkcomposefs } from './fixtures/mkcomposefs.ts';
import { buildImage, lines, readConfig, write } from './fixtures/oci.ts';
import { assertLayersStored } from './fixtures/store-check.ts';
import { replaceFile, truncateFile } from './fixtures/damage.ts';

const missing = ['umoci', 'fsverity'].filter((t) => !hasTool(t));
const SKIP = missing.length ? `skipped: ${missing.join(', ')} not installed` : false;
let dir = '';
let layout = '';
let pristine = '';
let n = 0;

interface Issue {
  type: string;
  path: string;
  detail: string;
  expected?: string;
  found?: string;
}
interface Report {
  ok: boolean;
  objects: number;
  streams: number;
  tags: number;
  layersRebuilt: number;
  issues: Issue[];
  repair?: { quarantined: string[]; streamsRemoved: string[]; tagsRemoved: { tag: string }[]; tmpRemoved: number };
}

function fsckJson(repo: string, extra: string[] = []): { status: number | null; report: Report } {
  const r = veritree(['fsck', '--repo', repo, '--json', ...extra]);
  return { status: r.status, report: JSON.parse(r.stdout) as Report };
}

function imp(repo: string, ref: string): void {
  const r = veritree(['import', `oci:${layout}:${ref}`, '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
}

before(() => {
  if (SKIP) return;
  dir = tempDir('veritree-fsck-');
  layout = join(dir, 'layout');
  buildImage(layout, 'base', [
    (root) => {
      write(root, 'base/a.txt', lines(200, 'a'));
      write(root, 'base/b.bin', randomBytesSeeded(50_000, 1));
      write(root, 'base/small', 'tiny');
    },
  ]);
  buildImage(layout, 'app', [(root) => write(root, 'app/c.txt', lines(300, 'c'))], { from: 'base' });
  buildImage(layout, 'other', [(root) => write(root, 'other/d.txt', lines(100, 'd'))], { from: 'base' });
  pristine = join(dir, 'pristine');
  imp(pristine, 'app');
  imp(pristine, 'other');
});
after(() => dir && cleanup(dir));

function copyRepo(): string {
  const p = join(dir, `repo${n++}`);
  cpSync(pristine, p, { recursive: true, verbatimSymlinks: true });
  return p;
}

function objectPath(repo: string, id: string): string {
  return join(repo, 'objects', id.slice(0, 2), id.slice(2));
}

function streamObject(repo: string, name: string): string {
  return readlinkSync(join(repo, 'streams', name)).replace('../objects/', '').replace('/', '');
}

function streamNames(repo: string, prefix: string): string[] {
  return readdirSync(join(repo, 'streams')).filter((s) => s.startsWith(prefix)).sort();
}

test('a clean store: exit 0, every object re-hashed, every stream and tag checked; --deep rebuilds every layer', { skip: SKIP }, () => {
  const { status, report } = fsckJson(pristine);
  assert.equal(status, 0, JSON.stringify(report.issues));
  assert.equal(report.ok, true);
  assert.equal(report.tags, 2);
  assert.equal(report.streams, 3 + 2 + 2);
  assert.ok(report.objects >= 10);
  const deep = fsckJson(pristine, ['--deep']);
  assert.equal(deep.status, 0);
  assert.equal(deep.report.layersRebuilt, 3);
  const text = veritree(['fsck', '--repo', pristine]);
  assert.match(text.stdout, /^ok: \d+ objects \(.*\) re-hashed, 7 streams, 2 tags, in /);
});

test('every kind of damage is found in one run, each with its type, and exit 1', { skip: SKIP }, () => {
  const repo = copyRepo();
  const layers = streamNames(repo, 'oci-layer-');
  // Objects named by the layer streams, by what they are.
  const contentOf = (stream: string): string[] => readRefs(readFileSync(objectPath(repo, streamObject(repo, stream)))).objectRefs;
  // The base layer holds two objects, the other two one each.
  const [l0, l1, l2] = [...layers].sort((a, b) => contentOf(b).length - contentOf(a).length) as [string, string, string];
  const flip = contentOf(l0)[0] as string;
  const trunc = contentOf(l0)[1] as string;
  const gone = contentOf(l1)[0] as string;

  // 1. flip a byte in an object
  const fp = objectPath(repo, flip);
  const b = readFileSync(fp);
  b.writeUInt8(b.readUInt8(10) ^ 1, 10);
  replaceFile(fp, b);
  // 2. truncate one
  truncateFile(objectPath(repo, trunc), 3);
  // 3. delete one that a stream needs
  unlinkSync(objectPath(repo, gone));
  // 4. break a symlink
  unlinkSync(join(repo, 'streams', l2));
  symlinkSync(`../objects/00/${'0'.repeat(62)}`, join(repo, 'streams', l2));
  // 5. corrupt a stream header: a well-named object that is not a split stream, linked as one
  const garbage = randomBytesSeeded(300, 9);
  const gid = toHex(verityDigest(garbage));
  mkdirSync(join(repo, 'objects', gid.slice(0, 2)), { recursive: true });
  writeFileSync(objectPath(repo, gid), garbage);
  symlinkSync(`../objects/${gid.slice(0, 2)}/${gid.slice(2)}`, join(repo, 'streams', 'oci-layer-sha256:' + 'ee'.repeat(32)));
  // 6. leave a tmp file (old enough not to belong to a running import)
  const tmp = join(repo, 'objects', '.tmp-12345-deadbeefdeadbeef');
  writeFileSync(tmp, 'partial');
  utimesSync(tmp, new Date(Date.now() - 3600_000), new Date(Date.now() - 3600_000));
  // 7a. edit a config JSON (a file renamed over it)
  const configs = streamNames(repo, 'oci-config-');
  const cjson = (name: string): string => {
    const refs = readRefs(readFileSync(objectPath(repo, streamObject(repo, name))));
    return refs.objectRefs[0] as string;
  };
  const c0 = objectPath(repo, cjson(configs[0] as string));
  replaceFile(c0, readFileSync(c0, 'utf8').replace('"os":"linux"', '"os":"plan9"'));
  // 7b. and one edited and stored properly: the object is sound, the JSON no longer matches the stream's name
  const c1name = configs[1] as string;
  const edited = Buffer.from(readFileSync(objectPath(repo, cjson(c1name)), 'utf8').replace('"os":"linux"', '"os":"hurd"'));
  const eid = toHex(verityDigest(edited));
  mkdirSync(join(repo, 'objects', eid.slice(0, 2)), { recursive: true });
  writeFileSync(objectPath(repo, eid), edited);
  const sb = new SplitStreamBuilder('sha256', 'config');
  sb.addObject(eid, edited.length);
  const sbytes = Buffer.from(sb.finish());
  const sid = toHex(verityDigest(sbytes));
  mkdirSync(join(repo, 'objects', sid.slice(0, 2)), { recursive: true });
  writeFileSync(objectPath(repo, sid), sbytes);
  unlinkSync(join(repo, 'streams', c1name));
  symlinkSync(`../objects/${sid.slice(0, 2)}/${sid.slice(2)}`, join(repo, 'streams', c1name));
  // 8. a tag whose stream is gone
  symlinkSync('../../oci-manifest-sha256:' + 'ab'.repeat(32), join(repo, 'streams', 'refs', 'oci', 'dangling'));

  const { status, report } = fsckJson(repo);
  assert.equal(status, 1);
  assert.equal(report.ok, false);
  const has = (type: string, path: string): Issue | undefined => report.issues.find((i) => i.type === type && i.path === path);
  assert.equal(has('object-digest-mismatch', fp)?.expected, flip);
  assert.ok(has('object-digest-mismatch', objectPath(repo, trunc)));
  assert.ok(report.issues.some((i) => i.type === 'missing-object' && i.expected === gone && i.path === join(repo, 'streams', l1)));
  assert.ok(has('broken-symlink', join(repo, 'streams', l2)));
  assert.ok(has('stream-corrupt', join(repo, 'streams', 'oci-layer-sha256:' + 'ee'.repeat(32))));
  assert.ok(has('stray-tmp', tmp));
  assert.ok(has('object-digest-mismatch', c0), 'the config edited in place');
  const jm = has('json-digest-mismatch', join(repo, 'streams', c1name));
  assert.equal(jm?.expected, `sha256:${c1name.slice('oci-config-sha256:'.length)}`);
  assert.ok(has('broken-symlink', join(repo, 'streams', 'refs', 'oci', 'dangling')));
  // The text form lists each problem on a line of its own, then the summary.
  const text = veritree(['fsck', '--repo', repo]);
  assert.equal(text.status, 1);
  assert.match(text.stdout, /^object-digest-mismatch: /m);
  assert.match(text.stdout, new RegExp(`^${report.issues.length} problems: `, 'm'));
});

test('fsck hashing on libuv\'s thread pool and in the worker pool finds the same damage, in the same words', { skip: SKIP }, () => {
  const repo = copyRepo();
  const layers = streamNames(repo, 'oci-layer-');
  const ids = layers.flatMap((l) => readRefs(readFileSync(objectPath(repo, streamObject(repo, l)))).objectRefs);
  const [flip, link, fifo] = ids as [string, string, string];
  const fp = objectPath(repo, flip);
  const b = readFileSync(fp);
  b.writeUInt8(b.readUInt8(0) ^ 1, 0);
  writeFileSync(fp, b);
  unlinkSync(objectPath(repo, link));
  symlinkSync('/etc/passwd', objectPath(repo, link));
  unlinkSync(objectPath(repo, fifo));
  assert.equal(run('mkfifo', [objectPath(repo, fifo)]).status, 0);
  const sub = join(repo, 'objects', flip.slice(0, 2));
  writeFileSync(join(sub, 'not-an-object'), 'x');
  writeFileSync(join(sub, Buffer.from([0x66, 0xff, 0x2e, 0x62, 0x69, 0x6e]).toString('latin1')), 'a name that is not UTF-8');
  mkdirSync(join(sub, 'f'.repeat(62)));
  const tmp = join(sub, '.tmp-1-00ff00ff00ff00ff');
  writeFileSync(tmp, 'partial');
  utimesSync(tmp, new Date(Date.now() - 3600_000), new Date(Date.now() - 3600_000));
  // --jobs 5 is more than libuv's four threads: fsck then hashes in the worker pool.
  const runs = [[], ['--jobs', '5'], ['--jobs', '1']].map((extra) => fsckJson(repo, extra));
  for (const r of runs) assert.equal(r.status, 1);
  const [threads, pool, one] = runs.map((r) => r.report.issues) as [Issue[], Issue[], Issue[]];
  assert.deepEqual(threads, pool);
  assert.deepEqual(threads, one);
  const at = (p: string): Issue[] => threads.filter((i) => i.path === p);
  assert.equal(at(fp)[0]?.type, 'object-digest-mismatch');
  assert.match(at(objectPath(repo, link))[0]?.detail ?? '', /symbolic link|not an object name/);
  assert.ok(at(objectPath(repo, fifo)).length === 1, 'the FIFO is reported, never waited on');
  assert.equal(at(join(sub, 'not-an-object'))[0]?.type, 'object-invalid-name');
  assert.equal(at(join(sub, 'f'.repeat(62)))[0]?.type, 'object-invalid-name');
  assert.equal(at(tmp)[0]?.type, 'stray-tmp');
  assert.equal(threads.filter((i) => i.type === 'object-invalid-name').length, 5, JSON.stringify(threads));
});

test('--repair quarantines corrupt objects, drops what cannot be rebuilt, names the images; importing them again makes the store clean', { skip: SKIP }, async () => {
  const repo = copyRepo();
  const layers = streamNames(repo, 'oci-layer-');
  const victim = readRefs(readFileSync(objectPath(repo, streamObject(repo, layers[0] as string)))).objectRefs[0] as string;
  const vp = objectPath(repo, victim);
  const bytes = readFileSync(vp);
  bytes.writeUInt8(bytes.readUInt8(0) ^ 0xff, 0);
  writeFileSync(vp, bytes);
  const r = fsckJson(repo, ['--repair']);
  assert.equal(r.status, 1);
  assert.ok(r.report.repair);
  assert.deepEqual(r.report.repair.quarantined, [join('objects', victim.slice(0, 2), victim.slice(2))]);
  assert.ok(!existsSync(vp), 'moved away');
  const q = readdirSync(join(repo, 'quarantine'));
  assert.equal(q.length, 1, 'the evidence is kept');
  assert.ok(r.report.repair.streamsRemoved.includes(layers[0] as string));
  const text = veritree(['fsck', '--repo', repo, '--repair']);
  assert.equal(text.status, 0, 'after repair the store is consistent (what is left is whole)');
  // Which images were dropped depends on which layer held the victim; import them all again.
  for (const ref of ['app', 'other']) imp(repo, ref);
  const after = fsckJson(repo, ['--deep']);
  assert.equal(after.status, 0, JSON.stringify(after.report.issues));
  await assertLayersStored(repo, readConfig(layout, 'app').rootfs.diff_ids);
});

function objectIds(repo: string): Set<string> {
  const out = new Set<string>();
  for (const d of readdirSync(join(repo, 'objects'))) for (const f of readdirSync(join(repo, 'objects', d))) out.add(d + f);
  return out;
}

/** Every object an image's tag keeps alive, followed the way gc does. */
function reachable(repo: string, tag: string): Set<string> {
  const manifestStream = readlinkSync(join(repo, 'streams', 'refs', 'oci', tag)).split('/').pop() as string;
  const seen = new Set<string>();
  const todo = [streamObject(repo, manifestStream)];
  while (todo.length) {
    const id = todo.pop() as string;
    if (seen.has(id)) continue;
    seen.add(id);
    const refs = readRefs(readFileSync(objectPath(repo, id)));
    refs.objectRefs.forEach((o) => seen.add(o));
    todo.push(...refs.streamRefs);
  }
  return seen;
}

test('gc after untag removes exactly the objects only that image used; the other still rebuilds and fsck is clean', { skip: SKIP }, async () => {
  const repo = copyRepo();
  const keepApp = reachable(repo, 'app');
  const other = reachable(repo, 'other');
  const onlyOther = [...other].filter((id) => !keepApp.has(id)).sort();
  assert.ok(onlyOther.length >= 3, 'the other image has objects of its own (its layer, streams, JSON)');
  const before = objectIds(repo);
  assert.equal(veritree(['untag', 'other', '--repo', repo]).status, 0);
  const dry = JSON.parse(veritree(['gc', '--repo', repo, '--dry-run', '--json']).stdout) as { objectsRemoved: number };
  assert.equal(dry.objectsRemoved, onlyOther.length);
  assert.deepEqual(objectIds(repo), before, 'dry run removes nothing');
  const r = JSON.parse(veritree(['gc', '--repo', repo, '--json']).stdout) as { objectsRemoved: number; bytesFreed: number; streamsRemoved: string[] };
  assert.equal(r.objectsRemoved, onlyOther.length);
  assert.ok(r.bytesFreed > 0);
  const removed = [...before].filter((id) => !objectIds(repo).has(id)).sort();
  assert.deepEqual(removed, onlyOther);
  assert.ok(r.streamsRemoved.some((s) => s.startsWith('oci-manifest-')));
  await assertLayersStored(repo, readConfig(layout, 'app').rootfs.diff_ids);
  assert.equal(fsckJson(repo, ['--deep']).status, 0);
  const again = JSON.parse(veritree(['gc', '--repo', repo, '--json']).stdout) as { objectsRemoved: number; streamsRemoved: string[]; tmpRemoved: number };
  assert.deepEqual([again.objectsRemoved, again.streamsRemoved.length, again.tmpRemoved], [0, 0, 0], 'nothing to do, nothing removed');
  assert.equal(veritree(['untag', 'nope', '--repo', repo]).status, 4, 'a missing tag is TAG_NOT_FOUND, not a usage error');
});

test('gc removes stray tmp files; an objects-only store (no meta.json) is checked as objects alone', { skip: SKIP }, () => {
  const repo = copyRepo();
  writeFileSync(join(repo, 'objects', '.tmp-1-0011223344556677'), 'x');
  const r = JSON.parse(veritree(['gc', '--repo', repo, '--json']).stdout) as { tmpRemoved: number };
  assert.equal(r.tmpRemoved, 1);
  const bare = join(dir, `bare${n++}`);
  cpSync(join(pristine, 'objects'), join(bare, 'objects'), { recursive: true });
  const f = fsckJson(bare);
  assert.equal(f.status, 0);
  assert.equal(f.report.streams, 0);
  assert.ok(f.report.objects > 5);
  assert.equal(veritree(['gc', '--repo', bare]).status, 2, 'gc refuses a store without roots');
  rmSync(bare, { recursive: true });
});

const oracle = mkcomposefs();

test('a store made by mkcomposefs --digest-store is verified', { skip: typeof oracle === 'string' ? oracle : SKIP }, () => {
  const src = join(dir, 'cfs-src');
  write(src, 'etc/a.conf', lines(40, 'a'));
  write(src, 'usr/bin/b', randomBytesSeeded(9000, 2));
  const store = join(dir, 'cfs-store');
  (oracle as Mkcomposefs).run([`--digest-store=${store}`, src, join(dir, 'image.cfs')]);
  const bare = join(dir, 'cfs-root');
  mkdirSync(bare, { recursive: true });
  symlinkSync(store, join(bare, 'objects'));
  const f = fsckJson(bare);
  assert.equal(f.status, 0, JSON.stringify(f.report.issues));
  assert.equal(f.report.objects, 2);
});

test('object folders hashed in lanes on libuv\'s thread pool: each handed over once, with the digests the file digest gives; an unlistable folder comes back with its code while the rest are checked; a stop ends it', async (t) => {
  const { threadpoolHasher } = await import('../src/verity/threadpool.ts');
  const threads = threadpoolHasher('auto', 'sha256');
  if (!threads) return t.skip('skipped: the native kernel is not built');
  const objects = join(tempDir('veritree-lanes-'), 'objects');
  const expected = new Map<string, string>();
  const prefixes: string[] = [];
  for (let p = 0; p < 40; p++) {
    const xx = p.toString(16).padStart(2, '0');
    prefixes.push(xx);
    mkdirSync(join(objects, xx), { recursive: true });
    for (let k = 0; k < 3; k++) {
      const data = randomBytesSeeded(1 + ((p * 7 + k * 4093) % 70_000), p * 3 + k);
      // Named by the folder, not by its digest: every file is a mismatch whose digest is checked.
      const name = (k.toString(16) + p.toString(16)).padEnd(62, '0');
      writeFileSync(join(objects, xx, name), data);
      expected.set(xx + name, toHex(verityDigest(data)));
    }
  }
  prefixes.push('fe'); // no such folder
  const seen: string[] = [];
  const failures: string[] = [];
  await threads.digestDirs(objects, prefixes, 62, 3, (xx, r) => {
    seen.push(xx);
    if (!Array.isArray(r)) return void failures.push(`${xx} ${r.code}`);
    for (const e of r) {
      assert.equal(e.kind, 'mismatch', e.id);
      if (e.kind === 'mismatch') assert.equal(toHex(e.digest), expected.get(e.id), e.id);
      expected.delete(e.id);
    }
  });
  assert.deepEqual(seen.sort(), [...prefixes].sort(), 'every folder handed over exactly once');
  assert.deepEqual(failures, ['fe ENOENT']);
  assert.equal(expected.size, 0, 'every file digested');
  // More lanes than folders, and a stop asked before the start: nothing is handed over, and it settles.
  const ac = new AbortController();
  ac.abort();
  const none: string[] = [];
  await threads.digestDirs(objects, ['00', '01'], 62, 8, (xx) => none.push(xx), ac.signal);
  assert.deepEqual(none, []);
  cleanup(join(objects, '..'));
});

test('fsck stops when its signal is aborted in the middle of the objects, and says so', async () => {
  const { Repository } = await import('../src/store/repository.ts');
  const { fsck } = await import('../src/index.ts');
  const root = join(tempDir('veritree-fsck-abort-'), 'repo');
  const repo = await Repository.init(root);
  for (let p = 0; p < 64; p++) {
    const data = randomBytesSeeded(5000 + p, p);
    const id = toHex(verityDigest(data));
    mkdirSync(join(root, 'objects', id.slice(0, 2)), { recursive: true });
    writeFileSync(join(root, 'objects', id.slice(0, 2), id.slice(2)), data);
  }
  const clean = await fsck(repo, { objectsOnly: true });
  assert.equal(clean.ok, true);
  assert.equal(clean.objects, 64);
  const ac = new AbortController();
  let calls = 0;
  await assert.rejects(
    fsck(repo, { objectsOnly: true, signal: ac.signal, onProgress: () => (++calls === 1 ? ac.abort() : undefined) }),
    (e: Error & { code?: string }) => e.code === 'ABORTED',
  );
  cleanup(join(root, '..'));
});

test('a store with streams but no meta.json (a cfsctl store from before it, or one that lost it) still has its references checked', { skip: SKIP }, () => {
  const repo = join(dir, 'no-meta');
  cpSync(pristine, repo, { recursive: true, verbatimSymlinks: true });
  assert.equal(fsckJson(repo).status, 0, 'clean before');
  unlinkSync(join(repo, 'meta.json'));
  const clean = fsckJson(repo);
  assert.equal(clean.status, 0);
  assert.ok(clean.report.streams > 0 && clean.report.tags > 0, 'streams and tags are checked');
  const layer = readdirSync(join(repo, 'streams')).find((s) => s.startsWith('oci-layer-')) as string;
  const target = readlinkSync(join(repo, 'streams', layer));
  unlinkSync(join(repo, 'streams', target));
  const { status, report } = fsckJson(repo);
  assert.equal(status, 1, 'a tag whose layer stream has no object is damage');
  assert.ok(report.issues.some((i) => i.path.endsWith(layer)), JSON.stringify(report.issues));
});

test('fsck --repair writes a whole stream link of another form (absolute) again in composefs-rs\'s form, and keeps the tag', { skip: SKIP }, () => {
  const repo = join(dir, 'absolute-stream');
  cpSync(pristine, repo, { recursive: true, verbatimSymlinks: true });
  const manifests = readdirSync(join(repo, 'streams')).filter((s) => s.startsWith('oci-manifest-'));
  const link = join(repo, 'streams', manifests[0] as string);
  const target = readlinkSync(link);
  unlinkSync(link);
  symlinkSync(join(repo, 'streams', target), link);
  assert.equal(fsckJson(repo).status, 1, 'fsck reports the form');
  const { report } = fsckJson(repo, ['--repair']);
  assert.deepEqual(report.repair?.tagsRemoved, [], 'no tag whose image is whole is removed');
  assert.deepEqual(report.repair?.streamsRemoved, []);
  assert.equal(readlinkSync(link), target, 'the link is in composefs-rs\'s form again');
  const after = fsckJson(repo);
  assert.equal(after.status, 0, JSON.stringify(after.report.issues));
  assert.equal(after.report.tags, 2);
});
