import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { verityDigest, toHex, VeritreeError } from '../src/index.ts';
import { Repository } from '../src/store/repository.ts';
import { VerityPool } from '../src/pipeline/pool.ts';
import { writeBatchSync, writeObject, writeObjectSync } from '../src/store/objects.ts';
import { storeBatchNative } from '../src/verity/backends.ts';
import type { ObjectEntry } from '../src/store/repository.ts';
import { storeSys } from '../src/store/sys.ts';
import { cleanup, hasTool, heavy, randomBytesSeeded, ROOT, spawnGuarded, spawnWatched, tempDir, veritree } from './helpers.ts';
import { plainLayerLayout } from './fixtures/oci.ts';
import { tarOf } from './fixtures/tar.ts';

const dirs: string[] = [];
function newDir(): string {
  const d = tempDir();
  dirs.push(d);
  return d;
}
after(() => dirs.forEach(cleanup));

async function entries(repo: Repository): Promise<ObjectEntry[]> {
  const out: ObjectEntry[] = [];
  for await (const e of repo.walkObjects()) out.push(e);
  return out;
}

test('init writes meta.json and the folders; open finds it; a second init is harmless', async () => {
  const root = join(newDir(), 'repo');
  const r = veritree(['init', '--repo', root]);
  assert.equal(r.status, 0, r.stderr);
  const repo = await Repository.open(root);
  assert.equal(repo.alg, 'sha256');
  assert.equal(repo.hasMeta, true);
  assert.deepEqual(readdirSync(root).sort(), ['meta.json', 'objects', 'streams']);
  assert.equal(veritree(['init', '--repo', root]).status, 0);
  const clash = veritree(['init', '--repo', root, '--hash', 'sha512']);
  assert.equal(clash.status, 2);
  assert.match(clash.stderr, /already holds a sha256 repository/);
});

test('the default repository follows VERITREE_REPO, then XDG_DATA_HOME', () => {
  const d = newDir();
  assert.equal(veritree(['init'], { env: { VERITREE_REPO: join(d, 'a') } }).status, 0);
  assert.ok(readdirSync(join(d, 'a')).includes('meta.json'));
  assert.equal(veritree(['init'], { env: { VERITREE_REPO: '', XDG_DATA_HOME: join(d, 'xdg') } }).status, 0);
  assert.ok(readdirSync(join(d, 'xdg', 'veritree')).includes('meta.json'));
});

test('open of a missing repository says how to create one', async () => {
  await assert.rejects(Repository.open(join(newDir(), 'none')), (e: unknown) => {
    assert.ok(e instanceof VeritreeError);
    assert.equal(e.code, 'STORE_NOT_FOUND');
    assert.match(e.message, /veritree init --repo/);
    return true;
  });
});

test('concurrent inserts of the same content from many workers make one object and no error', { skip: heavy() }, async () => {
  const repo = await Repository.init(join(newDir(), 'repo'));
  const data = randomBytesSeeded(300_000, 42);
  const id = toHex(verityDigest(data));
  const pool = new VerityPool(4);
  try {
    const results = await Promise.all(
      Array.from({ length: 64 }, () => {
        const copy = new Uint8Array(data);
        return pool.run({ kind: 'store-buffer', target: repo.target, data: copy, alg: 'sha256', impl: 'auto' }, { transfer: [copy.buffer] });
      })
    );
    for (const r of results) {
      assert.ok(r.ok, JSON.stringify(r));
      assert.equal(r.id, id);
    }
    assert.ok(results.filter((r) => r.ok && r.written).length >= 1);
  } finally {
    await pool.close();
  }
  const all = await entries(repo);
  assert.deepEqual(all, [{ kind: 'object', id, path: repo.objectPath(id) }]);
});

test('a stored buffer goes to the worker and comes back moved, not copied, for the next task', async () => {
  const repo = await Repository.init(join(newDir(), 'repo'));
  const pool = new VerityPool(1);
  try {
    let buf: Uint8Array<ArrayBuffer> = new Uint8Array(randomBytesSeeded(200_000, 5));
    for (let i = 0; i < 3; i++) {
      const want = Buffer.from(buf);
      const r = await pool.run({ kind: 'store-buffer', target: repo.target, data: buf, alg: 'sha256', impl: 'auto' }, { transfer: [buf.buffer] });
      assert.equal(buf.byteLength, 0, 'the buffer was moved to the worker');
      // The worker returns a piscina Transferable (Piscina.move): the main thread gets the plain
      // value only when piscina took the buffer into its transfer list; a copied carrier would
      // arrive with its symbol keys dropped, so with neither ok nor data.
      assert.ok(r.ok, JSON.stringify(r));
      assert.equal(r.id, toHex(verityDigest(want)));
      assert.ok(r.data instanceof Uint8Array, 'the buffer came back');
      assert.deepEqual(Buffer.from(r.data), want);
      buf = new Uint8Array(r.data.buffer as ArrayBuffer, r.data.byteOffset, r.data.length);
      buf[0] = (buf[0] ?? 0) ^ (i + 1);
    }
  } finally {
    await pool.close();
  }
});

test('an existing object is never replaced, and a damaged one of the wrong size is reported', async () => {
  const repo = await Repository.init(join(newDir(), 'repo'));
  const data = randomBytesSeeded(1000, 1);
  const id = toHex(verityDigest(data));
  assert.equal((await writeObject(repo.target, id, data)).written, true);
  assert.equal((await writeObject(repo.target, id, data)).written, false);
  writeFileSync(repo.objectPath(id), 'short');
  await assert.rejects(writeObject(repo.target, id, data), /present with 5 bytes, expected 1000/);
});

for (const mode of ['native', 'fallback'] as const) {
  test(`a crash before link leaves no object: nothing at all with O_TMPFILE, a stray tmp file in the fallback (${mode})`, async () => {
    const repo = await Repository.init(join(newDir(), 'repo'));
    const objectsUrl = pathToFileURL(join(ROOT, 'dist/src/store/objects.js')).href;
    // The child writes an object's content exactly as writeObject does, then dies before link().
    const script = `
      import { TmpObjectFile } from ${JSON.stringify(objectsUrl)};
      const t = new TmpObjectFile(${JSON.stringify(repo.target)});
      t.writeSync(Buffer.alloc(5000, 7));
      process.kill(process.pid, 'SIGKILL');`;
    const env = { ...process.env, ...(mode === 'fallback' ? { VERITREE_DISABLE_NATIVE: 'store_sys' } : {}) };
    const { signal } = await spawnWatched(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore', env }).done;
    assert.equal(signal, 'SIGKILL');
    const all = await entries(repo);
    assert.equal(all.filter((e) => e.kind === 'object').length, 0);
    if (mode === 'native' && storeSys()) assert.deepEqual(all, []);
    else {
      assert.equal(all.length, 1);
      assert.equal(all[0]?.kind, 'tmp');
    }
  });
}

interface WatchedPublish {
  /** The error code of the publish, null when it succeeded. */
  code: string | null;
  /** Closes of a number that was not open then, or that the kernel refused. */
  wrong: string[];
  /** Descriptors opened (or written) and never closed. */
  left: number[];
}

/**
 * Publishes `data` from a TmpObjectFile in a child process that watches every openSync and
 * closeSync from the file's first write to its discard (module loading, before, opens and closes
 * files of its own on Node 22 and later). `closeFault` is the body of a function of `fd` and
 * `written` (the file's writable descriptor) run after each real close: it may throw to act out a
 * close that fails.
 */
function publishWatched(repo: Repository, data: Buffer, opts: { verity?: 'require'; closeFault?: string; env?: NodeJS.ProcessEnv }): WatchedPublish {
  const objectsUrl = pathToFileURL(join(ROOT, 'dist/src/store/objects.js')).href;
  const target = { ...repo.target, ...(opts.verity ? { verity: opts.verity } : {}) };
  const script = `
    import fs from 'node:fs';
    import { syncBuiltinESMExports } from 'node:module';
    const { TmpObjectFile } = await import(${JSON.stringify(objectsUrl)});
    const t = new TmpObjectFile(${JSON.stringify(target)});
    t.writeSync(Buffer.from(${JSON.stringify(data.toString('base64'))}, 'base64'));
    const written = t.fd, realOpen = fs.openSync, realClose = fs.closeSync, live = new Set([written]), wrong = [];
    const fault = (fd, written) => { ${opts.closeFault ?? ''} };
    fs.openSync = (...a) => { const fd = realOpen(...a); live.add(fd); return fd; };
    fs.closeSync = (fd) => {
      if (!live.delete(fd)) wrong.push(fd + ': not open');
      try { realClose(fd); } catch (e) { wrong.push(fd + ': ' + e.code); throw e; }
      fault(fd, written);
    };
    syncBuiltinESMExports();
    let code = null;
    try { t.publish(${JSON.stringify(toHex(verityDigest(data)))}, ${data.length}); } catch (e) { code = e.code ?? e.message; }
    t.discard();
    fs.openSync = realOpen;
    fs.closeSync = realClose;
    syncBuiltinESMExports();
    console.log(JSON.stringify({ code, wrong, left: [...live] }));`;
  const r = spawnGuarded(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: opts.env ?? process.env });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as WatchedPublish;
}

for (const mode of ['native', 'fallback'] as const) {
  test(`a publish refused for want of fs-verity closes each descriptor once, and leaves nothing behind (${mode})`, async (t) => {
    const repo = await Repository.init(join(newDir(), 'repo'));
    // A second close of a number is how one pool worker closes another's object mid-write (the
    // number was reused in between): CI once saw "ENOENT: open '/proc/self/fd/32'" from that.
    // Each close must be of a number open at that moment, and the kernel must refuse none.
    const env = { ...process.env, ...(mode === 'fallback' ? { VERITREE_DISABLE_NATIVE: 'store_sys' } : {}) };
    const out = publishWatched(repo, Buffer.alloc(5000, 7), { verity: 'require', env });
    if (out.code === null) {
      t.skip('skipped: this filesystem has fs-verity, so the publish succeeds');
      return;
    }
    assert.equal(out.code, 'STORE_VERITY_REQUIRED');
    assert.deepEqual(out.wrong, [], 'every close of a descriptor then open, none refused by the kernel');
    assert.deepEqual(out.left, [], 'every descriptor closed');
    assert.deepEqual(await entries(repo), [], 'no object and no tmp file left');
  });
}

test('a close of the written file that fails (EIO on close) leaves no descriptor open and no object named', async () => {
  const repo = await Repository.init(join(newDir(), 'repo'));
  // Some filesystems (NFS, FUSE) report a failed write-back only at close: the descriptor is gone
  // then, and the read-only one opened to seal the file must not be left behind.
  const closeFault = `if (fd === written) throw Object.assign(new Error('EIO: i/o error, close'), { code: 'EIO' });`;
  const out = publishWatched(repo, Buffer.alloc(5000, 9), { closeFault });
  assert.notEqual(out.code, null, 'the publish fails');
  assert.deepEqual(out.left, [], 'the read-only descriptor was closed too');
  assert.deepEqual(await entries(repo), [], 'no object and no tmp file left');
});

test('an object is named by a link of its descriptor (AT_EMPTY_PATH) or, where that is refused, of its /proc/self/fd link: the same store either way', async () => {
  const d = newDir();
  const layout = join(d, 'oci');
  // Small files (stored a batch per native call) and one over the batch limit (a task of its
  // own, named through linkFd), each folder objects/XX made by whichever link comes first.
  const contents = [...Array.from({ length: 40 }, (_, i) => `file ${i}\n`.repeat(100 + i)), 'big\n'.repeat(100_000)];
  const tar = await tarOf(contents.map((content, i) => ({ name: `f${i}`, content })));
  plainLayerLayout(layout, 't', tar);
  const expected = contents.map((c) => toHex(verityDigest(Buffer.from(c))));
  const stores: string[][] = [];
  // VERITREE_LINK_VIA_PROC: the way of a kernel before 6.10 for a user without CAP_DAC_READ_SEARCH.
  for (const env of [{}, { VERITREE_LINK_VIA_PROC: '1' }]) {
    const repo = join(d, `repo-${stores.length}`);
    const imported = veritree(['import', '--repo', repo, `oci:${layout}:t`], { env: { ...process.env, ...env } });
    assert.equal(imported.status, 0, imported.stderr);
    const fsck = veritree(['fsck', '--repo', repo]);
    assert.equal(fsck.status, 0, fsck.stdout + fsck.stderr);
    const objects = await entries(await Repository.open(repo));
    stores.push(objects.map((e) => (e.kind === 'object' ? e.id : `${e.kind}: ${e.path}`)).sort());
  }
  for (const id of expected) assert.ok(stores[0]?.includes(id), `object ${id} of a file is in the store`);
  assert.deepEqual(stores[1], stores[0]);
});

test('streams and tags are symlinks in the composefs layout', async () => {
  const repo = await Repository.init(join(newDir(), 'repo'));
  const data = randomBytesSeeded(100, 3);
  const id = toHex(verityDigest(data));
  await writeObject(repo.target, id, data);
  await repo.publishStream('oci-config-sha256:ab', id);
  await repo.setTag('library/x:1%', 'oci-config-sha256:ab');
  assert.equal(readlinkSync(repo.streamPath('oci-config-sha256:ab')), `../objects/${id.slice(0, 2)}/${id.slice(2)}`);
  assert.equal(readlinkSync(join(repo.root, 'streams/refs/oci/library%2Fx:1%25')), '../../oci-config-sha256:ab');
  assert.deepEqual(await repo.listTags(), [{ tag: 'library/x:1%', stream: 'oci-config-sha256:ab' }]);
  assert.deepEqual(await repo.readStreamBytes('oci-config-sha256:ab'), data);
  assert.equal(await repo.removeTag('library/x:1%'), true);
  assert.deepEqual(await repo.listTags(), []);
});

/** Holds the repository lock the way another tool would: util-linux flock(1) in a child. */
async function holdWithFlockCommand(root: string, kind: '--shared' | '--exclusive', pidns = false): Promise<ChildProcess> {
  // -o: flock(1) itself holds the lock (its child does not inherit it), so killing it frees it.
  const cmd = ['flock', '-o', kind, root, 'sh', '-c', 'echo held; exec sleep 60 >/dev/null 2>&1'];
  const holder = spawn(pidns ? 'unshare' : (cmd[0] as string), pidns ? ['--pid', '--fork', '--kill-child', ...cmd] : cmd.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => holder.stdout?.once('data', () => resolve()));
  return holder;
}

async function kill(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

test('the repository lock is flock(2) on the repository folder, as composefs-rs takes it: shared for writers, exclusive for gc', async (t) => {
  if (!hasTool('flock')) return t.skip('skipped: flock not installed');
  const repo = await Repository.init(join(newDir(), 'repo'));
  // Another tool (cfsctl takes LOCK_SH on the folder when it opens a repository) holds it shared.
  const reader = await holdWithFlockCommand(repo.root, '--shared');
  const w = await repo.lockShared({ timeoutMs: 1000 });
  await w.release();
  const waits: string[] = [];
  await assert.rejects(repo.lockExclusive({ timeoutMs: 300, onWait: (m) => waits.push(m) }), /is locked: running imports or readers/);
  assert.equal(waits.length, 1, 'a waiting command says what it waits for, once');
  // The kernel drops the lock of a killed holder: nothing stale to judge.
  await kill(reader);
  const ex = await repo.lockExclusive({ timeoutMs: 2000 });
  await assert.rejects(repo.lockShared({ timeoutMs: 200 }), /garbage collection or repair holds/);
  // flock(1) sees our exclusive lock too.
  assert.notEqual(spawnGuarded('flock', ['--shared', '--nonblock', repo.root, 'true']).status, 0);
  await ex.release();
  assert.equal(spawnGuarded('flock', ['--shared', '--nonblock', repo.root, 'true']).status, 0);
  // Aborting a wait stops it at once.
  const gcHolder = await holdWithFlockCommand(repo.root, '--exclusive');
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 100);
  await assert.rejects(repo.lockShared({ signal: ac.signal }), /interrupted/);
  await kill(gcHolder);
});

test('a holder in another pid namespace still excludes gc (no pid is judged)', async (t) => {
  if (!hasTool('flock') || spawnGuarded('unshare', ['--pid', '--fork', 'true']).status !== 0) return t.skip('skipped: unshare --pid not permitted here');
  const repo = await Repository.init(join(newDir(), 'repo'));
  const holder = await holdWithFlockCommand(repo.root, '--shared', true);
  await assert.rejects(repo.lockExclusive({ timeoutMs: 300 }), /is locked/);
  await kill(holder);
  await (await repo.lockExclusive({ timeoutMs: 2000 })).release();
});

test('without the native module, the lock is the same kernel lock, held by flock(1)', async (t) => {
  if (!hasTool('flock')) return t.skip('skipped: flock not installed');
  const repo = await Repository.init(join(newDir(), 'repo'));
  const lockUrl = pathToFileURL(join(ROOT, 'dist/src/store/lock.js')).href;
  const holder = spawn(
    process.execPath,
    ['--input-type=module', '-e', `import { acquireLock } from ${JSON.stringify(lockUrl)};
      await acquireLock(${JSON.stringify(repo.root)}, 'shared'); console.log('held'); setInterval(() => {}, 1000);`],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, VERITREE_DISABLE_NATIVE: 'store_sys' } }
  );
  await new Promise<void>((resolve) => holder.stdout?.once('data', () => resolve()));
  await assert.rejects(repo.lockExclusive({ timeoutMs: 300 }), /is locked/);
  // Its holder dies: the flock(1) child sees its stdin close and lets go.
  await kill(holder);
  await (await repo.lockExclusive({ timeoutMs: 3000 })).release();
});

test('a pool that outlives its repository: importing again into a re-created repository works', async () => {
  const { importImage, openRepository } = await import('../src/index.ts');
  const { rmSync } = await import('node:fs');
  const root = join(newDir(), 'repo');
  const pool = new VerityPool(1);
  try {
    for (let i = 0; i < 2; i++) {
      rmSync(root, { recursive: true, force: true });
      const repo = await openRepository(root, { create: true });
      const s = await importImage(repo, `oci:${join(ROOT, 'example', 'oci')}:latest`, { pool });
      assert.equal(s.layersImported, 2, `round ${i}`);
    }
  } finally {
    await pool.close();
  }
});

test('a batch of small files: one native call stores them where it can; a file it cannot store, and those after it, go the JavaScript path, which reports it', async (t) => {
  const repo = await Repository.init(join(newDir(), 'repo'));
  const target = repo.target;
  // The first object shows each worker what the filesystem does (fs-verity, O_TMPFILE).
  writeObjectSync(target, toHex(verityDigest(Buffer.from('first'))), Buffer.from('first'));
  const files: Uint8Array[] = [0, 1, 65, 4095, 4096, 4097, 70_000, 200_000].map((n, i) => randomBytesSeeded(n, 100 + i));
  files.push(files[3] as Uint8Array); // the same content twice in one batch
  const pack = (fs: Uint8Array[]): { data: Uint8Array; sizes: Uint32Array } => ({ data: Buffer.concat(fs), sizes: Uint32Array.from(fs, (f) => f.length) });
  const { data, sizes } = pack(files);
  const ids = files.map((f) => toHex(verityDigest(f)));

  const before = ids.map((id) => existsSync(repo.objectPath(id))); // a new repository may hold the empty object
  const first = writeBatchSync(target, data, sizes, 'auto');
  assert.deepEqual(first.map((r) => r.id), ids);
  assert.deepEqual(first.map((r) => r.size), files.map((f) => f.length));
  assert.deepEqual(first.map((r) => r.written), ids.map((id, i) => !before[i] && ids.indexOf(id) === i));
  files.forEach((f, i) => assert.deepEqual(readFileSync(repo.objectPath(ids[i] as string)), Buffer.from(f)));
  assert.deepEqual(readdirSync(join(repo.root, 'objects')).filter((n) => !/^[0-9a-f]{2}$/.test(n)), [], 'nothing but object folders');

  const digests = new Uint8Array(files.length * 32);
  const written = new Uint8Array(files.length);
  const native = storeBatchNative('auto', 'sha256', target.objectsDir, data, sizes, digests, written);
  if (native === null || storeSys() === null) {
    t.diagnostic('skipped the native half: the native modules did not build');
    return;
  }
  // All present now: the native call finds each at its size and writes nothing.
  assert.equal(native, files.length);
  assert.deepEqual([...written], files.map(() => 0));
  assert.deepEqual(files.map((_, i) => toHex(digests.subarray(i * 32, (i + 1) * 32))), ids);

  // A name taken by an object of another size: the native call stops there; the JavaScript path
  // reports it, and stores nothing after it.
  const more = [randomBytesSeeded(5000, 7), randomBytesSeeded(6000, 8), randomBytesSeeded(7000, 9)];
  const moreIds = more.map((f) => toHex(verityDigest(f)));
  mkdirSync(dirname(repo.objectPath(moreIds[1] as string)), { recursive: true });
  writeFileSync(repo.objectPath(moreIds[1] as string), 'short');
  const b = pack(more);
  assert.equal(storeBatchNative('auto', 'sha256', target.objectsDir, b.data, b.sizes, new Uint8Array(96), new Uint8Array(3)), 1);
  assert.throws(() => writeBatchSync(target, b.data, b.sizes, 'auto'), /present with 5 bytes, expected 6000/);
  assert.deepEqual(readFileSync(repo.objectPath(moreIds[0] as string)), Buffer.from(more[0] as Uint8Array));
  assert.equal(existsSync(repo.objectPath(moreIds[2] as string)), false);
});

test('a derived tag set by another run between the check and the publish is not moved: the import fails with TAG_IN_USE', async () => {
  const { importImages } = await import('../src/pipeline/import.ts');
  const repo = await Repository.init(join(newDir(), 'repo'));
  const other = `oci-manifest-sha256:${'e'.repeat(64)}`;
  const tagLink = join(repo.root, 'streams', 'refs', 'oci', 'latest');
  const report = await importImages(repo, [`oci:${join(ROOT, 'example', 'oci')}:latest`], {
    // Another run gives out "latest" while this one is importing.
    onProgress: (e) => {
      if (e.type === 'image-publishing') symlinkSync(`../../${other}`, tagLink);
    },
  });
  const r = report.images[0];
  assert.ok(r && !r.ok, 'the import fails');
  assert.equal(r.code, 'TAG_IN_USE', r.message);
  assert.equal(readlinkSync(tagLink), `../../${other}`, 'the other run\'s tag is not moved');
  // A tag given by NAME still moves.
  await repo.setTag('latest', `oci-manifest-sha256:${'d'.repeat(64)}`);
  assert.equal(readlinkSync(tagLink), `../../oci-manifest-sha256:${'d'.repeat(64)}`);
});

test('a tag in a sub-folder of refs/oci/, listed by images, is removed by untag and aged by prune', () => {
  const repo = join(newDir(), 'repo');
  assert.equal(veritree(['import', `oci:${join(ROOT, 'example', 'oci')}:latest`, 'ex', '--repo', repo]).status, 0);
  const manifest = readdirSync(join(repo, 'streams')).find((n) => n.startsWith('oci-manifest-')) as string;
  mkdirSync(join(repo, 'streams', 'refs', 'oci', 'sub'));
  symlinkSync(`../../../${manifest}`, join(repo, 'streams', 'refs', 'oci', 'sub', 'x'));
  const tags = () => (JSON.parse(veritree(['images', '--json', '--repo', repo]).stdout) as { tag: string }[]).map((t) => t.tag).sort();
  assert.deepEqual(tags(), ['ex', 'sub/x']);
  const dry = veritree(['prune', '--keep-last', '1', '--dry-run', '--json', '--repo', repo]);
  assert.equal(dry.status, 0, dry.stderr);
  assert.equal((JSON.parse(dry.stdout) as { untagged: string[]; kept: string[] }).kept.length + (JSON.parse(dry.stdout) as { untagged: string[] }).untagged.length, 2, 'prune sees both tags');
  const u = veritree(['untag', 'sub/x', '--repo', repo]);
  assert.equal(u.status, 0, u.stderr);
  assert.deepEqual(tags(), ['ex']);
});

test('init on a filesystem without fs-verity: the repository is made, insecure, and says so; --insecure is accepted', async () => {
  const d = tempDir('veritree-init-insecure-');
  try {
    const r = veritree(['init', '--repo', join(d, 'a')]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /insecure: meta\.json has no fs-verity/);
    assert.equal((await Repository.open(join(d, 'a'))).secure, false);
    const asked = veritree(['init', '--insecure', '--repo', join(d, 'b')]);
    assert.equal(asked.status, 0, asked.stderr);
    assert.match(asked.stdout, /insecure, as asked/);
    assert.equal(existsSync(join(d, 'b', 'meta.json')), true);
  } finally {
    cleanup(d);
  }
});
