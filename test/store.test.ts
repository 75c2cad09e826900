import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Repository, VerityPool, verityDigest, toHex, VeritreeError } from '../src/index.ts';
import { writeObject } from '../src/store/objects.ts';
import type { ObjectEntry } from '../src/store/repository.ts';
import { ROOT, cleanup, randomBytesSeeded, tempDir, veritree } from './helpers.ts';

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
  assert.deepEqual(readdirSync(root).sort(), ['.veritree-locks', 'meta.json', 'objects', 'streams']);
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

test('concurrent inserts of the same content from many workers make one object and no error', async () => {
  const repo = await Repository.init(join(newDir(), 'repo'));
  const data = randomBytesSeeded(300_000, 42);
  const id = toHex(verityDigest(data));
  const pool = new VerityPool(4);
  try {
    const results = await Promise.all(
      Array.from({ length: 64 }, () => {
        const copy = new Uint8Array(data);
        return pool.run({ kind: 'store-buffer', objectsDir: repo.objectsDir, data: copy, alg: 'sha256', impl: 'auto' }, { transfer: [copy.buffer] });
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

test('an existing object is never replaced, and a damaged one of the wrong size is reported', async () => {
  const repo = await Repository.init(join(newDir(), 'repo'));
  const data = randomBytesSeeded(1000, 1);
  const id = toHex(verityDigest(data));
  assert.equal((await writeObject(repo.objectsDir, id, data)).written, true);
  assert.equal((await writeObject(repo.objectsDir, id, data)).written, false);
  writeFileSync(repo.objectPath(id), 'short');
  await assert.rejects(writeObject(repo.objectsDir, id, data), /present with 5 bytes, expected 1000/);
});

test('a crash between write and link leaves only a tmp file that nothing treats as an object', async () => {
  const repo = await Repository.init(join(newDir(), 'repo'));
  const objectsUrl = pathToFileURL(join(ROOT, 'dist/src/store/objects.js')).href;
  // The child writes a tmp file exactly as writeObject does, then dies before link().
  const script = `
    import { tmpPathIn } from ${JSON.stringify(objectsUrl)};
    import { writeFileSync } from 'node:fs';
    writeFileSync(tmpPathIn(${JSON.stringify(repo.objectsDir)}), Buffer.alloc(5000, 7));
    process.kill(process.pid, 'SIGKILL');`;
  const code = await new Promise<string | null>((resolve) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' });
    c.on('close', (_code, signal) => resolve(signal));
  });
  assert.equal(code, 'SIGKILL');
  const all = await entries(repo);
  assert.equal(all.length, 1);
  assert.equal(all[0]?.kind, 'tmp');
  assert.equal((await entries(repo)).filter((e) => e.kind === 'object').length, 0);
});

test('streams and tags are symlinks in the composefs layout', async () => {
  const repo = await Repository.init(join(newDir(), 'repo'));
  const data = randomBytesSeeded(100, 3);
  const id = toHex(verityDigest(data));
  await writeObject(repo.objectsDir, id, data);
  await repo.publishStream('oci-config-sha256:ab', id);
  await repo.setTag('library/x:1%', 'oci-config-sha256:ab');
  assert.equal(readlinkSync(repo.streamPath('oci-config-sha256:ab')), `../objects/${id.slice(0, 2)}/${id.slice(2)}`);
  assert.equal(readlinkSync(join(repo.root, 'streams/refs/oci/library%2Fx:1%25')), '../../oci-config-sha256:ab');
  assert.deepEqual(await repo.listTags(), [{ tag: 'library/x:1%', stream: 'oci-config-sha256:ab' }]);
  assert.deepEqual(await repo.readStreamBytes('oci-config-sha256:ab'), data);
  assert.equal(await repo.removeTag('library/x:1%'), true);
  assert.deepEqual(await repo.listTags(), []);
});

test('the repository lock: writers share it, gc excludes them, across processes; a dead holder is reaped', async () => {
  const repo = await Repository.init(join(newDir(), 'repo'));
  const lockUrl = pathToFileURL(join(ROOT, 'dist/src/store/lock.js')).href;
  const holder = spawn(
    process.execPath,
    ['--input-type=module', '-e', `import { acquireShared } from ${JSON.stringify(lockUrl)};
      await acquireShared(${JSON.stringify(repo.locksDir)}); console.log('held'); setInterval(() => {}, 1000);`],
    { stdio: ['ignore', 'pipe', 'inherit'] }
  );
  await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
  // A second writer shares it.
  const w = await repo.lockShared({ timeoutMs: 1000 });
  await w.release();
  // gc cannot take it while the other process writes.
  await assert.rejects(repo.lockExclusive({ timeoutMs: 300 }), /locked by 1 running writer/);
  // Killed, the holder's lock file is stale and reaped.
  holder.kill('SIGKILL');
  await new Promise((r) => holder.once('close', r));
  const ex = await repo.lockExclusive({ timeoutMs: 2000 });
  // While gc holds it, a writer waits.
  await assert.rejects(repo.lockShared({ timeoutMs: 200 }), /garbage collection/);
  await ex.release();
  const w2 = await repo.lockShared({ timeoutMs: 1000 });
  await w2.release();
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
