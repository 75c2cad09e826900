/**
 * The library's surface is what the README's "Library" table documents: no more, no fewer names.
 * The second test does a user's whole round trip with those names only (no internal module).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as lib from '../src/index.ts';
import { ROOT, cleanup, tempDir, spawnGuarded } from './helpers.ts';

function documentedNames(): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('<!-- library-names'), readme.indexOf('<!-- /library-names -->'));
  return [...table.matchAll(/^\| `(\w+)` \|/gm)].map((m) => m[1] as string).sort();
}

test('the library exports exactly the names the README documents', () => {
  const names = documentedNames();
  assert.ok(names.length >= 20, `found ${names.length} names in the README table`);
  assert.deepEqual(Object.keys(lib).sort(), names);
});

test('a round trip with the documented names only: import, list, rebuild, checkout, dump, image, mkfs, fsck, gc, untag, digests', async () => {
  const {
    openRepository, initRepository, importImage, importImages, listImages, untagImage, catLayer, checkoutImage, dumpImage,
    writeStoreImage, mkfsFromDumpfile, fsck, repair, gc, digestFiles, verityDigest, VerityHasher, toHex, VeritreeError,
    isVeritreeError, ERROR_CODES,
  } = lib;
  const dir = tempDir('veritree-lib-');
  try {
    const example = `oci:${join(ROOT, 'example', 'oci')}:latest`;
    await assert.rejects(openRepository(join(dir, 'none')), (e: unknown) => isVeritreeError(e) && e.code === ERROR_CODES.STORE_NOT_FOUND && e instanceof VeritreeError);
    const repo = await openRepository(join(dir, 'repo'), { create: true });
    const events: string[] = [];
    const s = await importImage(repo, example, { tag: 'ex', onProgress: (p) => events.push(p.type) });
    assert.equal(s.status, 'imported');
    assert.ok(events.includes('layer-done'));
    const bulk = await importImages(repo, [{ source: example, tag: 'ex2' }]);
    assert.equal(bulk.images[0]?.ok, true);

    const images = await listImages(repo);
    assert.deepEqual(images.map((i) => i.tag), ['ex', 'ex2']);
    const layer = s.layers[0];
    assert.ok(layer);
    const h = createHash('sha256');
    for await (const b of catLayer(repo, layer.diffId)) h.update(b);
    assert.equal(`sha256:${h.digest('hex')}`, layer.diffId);

    const co = await checkoutImage(repo, 'ex', join(dir, 'root'), { copy: true });
    assert.ok(co.files > 0);
    const lines = await dumpImage(repo, 'ex');
    assert.equal(lines[0]?.startsWith('/ '), true);

    // A new repository's images are EROFS format V1, as cfsctl's: mkcomposefs --min-version=1.
    const { image } = await writeStoreImage(repo, 'ex');
    const mk = await mkfsFromDumpfile([Buffer.from(lines.join('\n') + '\n')], { minVersion: 1 });
    assert.equal(mk.digest, image);

    const report = await fsck(repo, { deep: true });
    assert.deepEqual(report.issues, []);
    await repair(repo, report);
    assert.equal(await untagImage(repo, 'ex2'), true);
    const g = await gc(repo, { dryRun: true });
    assert.equal(g.dryRun, true);

    const file = join(dir, 'f');
    writeFileSync(file, 'hello');
    const [d] = await digestFiles([file], { hash: 'sha256', hashImpl: 'auto' });
    const v = new VerityHasher('sha256');
    v.update(Buffer.from('hel'));
    v.update(Buffer.from('lo'));
    assert.equal(d?.ok && d.id, toHex(verityDigest(Buffer.from('hello'))));
    assert.equal(toHex(v.digest()), toHex(verityDigest(Buffer.from('hello'))));
    const r512 = await initRepository(join(dir, 'r512'), { hash: 'sha512' });
    assert.equal(r512.alg, 'sha512');
  } finally {
    cleanup(dir);
  }
});

test("an abort keeps the caller's reason: code ABORTED, the reason as cause and in the message", async () => {
  const { openRepository, importImage, isVeritreeError, ERROR_CODES } = lib;
  const dir = tempDir('veritree-lib-abort-');
  try {
    const repo = await openRepository(join(dir, 'repo'), { create: true });
    const reason = new Error('shutdown');
    const ac = new AbortController();
    ac.abort(reason);
    await assert.rejects(importImage(repo, `oci:${join(ROOT, 'example', 'oci')}:latest`, { signal: ac.signal }), (e: unknown) => {
      assert.ok(isVeritreeError(e) && e.code === ERROR_CODES.ABORTED, String(e));
      assert.equal(e.cause, reason);
      assert.equal(e.message, 'interrupted: shutdown');
      return true;
    });
  } finally {
    cleanup(dir);
  }
});

test('the declarations compile in a TypeScript consumer with no "types" setting (they reference @types/node)', () => {
  const dir = tempDir('veritree-lib-ts-');
  try {
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(ROOT, join(dir, 'node_modules', 'veritree'));
    symlinkSync(join(ROOT, 'node_modules', '@types'), join(dir, 'node_modules', '@types'));
    writeFileSync(join(dir, 'package.json'), '{"name":"consumer","type":"module"}');
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true, skipLibCheck: false } }));
    writeFileSync(
      join(dir, 'a.ts'),
      "import { openRepository, importImage, isVeritreeError } from 'veritree';\nconst repo = await openRepository('/nonexistent', { create: true });\ntry { await importImage(repo, 'oci:/x', { signal: new AbortController().signal }); } catch (e) { if (isVeritreeError(e)) console.log(e.code); }\n"
    );
    const r = spawnGuarded(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  } finally {
    cleanup(dir);
  }
});
