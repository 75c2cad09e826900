/**
 * Repositories as composefs-rs 0.9 makes them: meta.json's `erofs_formats` and `v1_erofs` read
 * as composefs-rs reads them, written byte for byte as `cfsctl init` writes them.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isVeritreeError } from '../src/index.ts';
import { metaJson, parseMeta } from '../src/store/meta.ts';
import { Repository } from '../src/store/repository.ts';
import { cleanup, tempDir, veritree } from './helpers.ts';
import { CFSCTL_META } from './fixtures/cfsctl-meta.ts';

const dirs: string[] = [];
after(() => dirs.forEach(cleanup));

test('metaJson writes what cfsctl init 0.9 writes, for each format and hash', () => {
  assert.equal(metaJson('sha512'), CFSCTL_META.sha512v1, 'the default is V1, as cfsctl');
  assert.equal(metaJson('sha512', { default: 2, extra: [] }), CFSCTL_META.sha512v2);
  assert.equal(metaJson('sha256', { default: 1, extra: [] }), CFSCTL_META.sha256v1);
  assert.equal(metaJson('sha256', { default: 2, extra: [] }), CFSCTL_META.sha256v2);
  assert.equal(metaJson('sha256', { default: 0, extra: [] }), CFSCTL_META.sha256v0);
  assert.equal(metaJson('sha256', { default: 1, extra: [2, 1, 2] }), CFSCTL_META.sha256v1extra2);
});

test("cfsctl's meta.json opens read-write, with the format composefs-rs decides", () => {
  const cases: [string, 'sha256' | 'sha512', number, number[]][] = [
    [CFSCTL_META.sha512v1, 'sha512', 1, []],
    [CFSCTL_META.sha512v2, 'sha512', 2, []],
    [CFSCTL_META.sha256v1, 'sha256', 1, []],
    [CFSCTL_META.sha256v2, 'sha256', 2, []],
    [CFSCTL_META.sha512v0, 'sha512', 0, []],
    [CFSCTL_META.sha256v1extra2, 'sha256', 1, [2]],
  ];
  for (const [text, alg, def, extra] of cases) {
    const p = parseMeta(text, 'meta.json');
    assert.deepEqual(p, { alg, readOnlyBecause: [], erofsFormats: { default: def, extra } }, text);
  }
});

test('repositories older than erofs_formats keep the format composefs-rs infers: v1_erofs means V1, none V2', () => {
  const old = (ro: string[], formats?: object): string =>
    JSON.stringify({ version: 1, algorithm: 'fsverity-sha256-12', features: { compatible: [], 'read-only-compatible': ro, incompatible: [] }, ...(formats ? { erofs_formats: formats } : {}) });
  assert.deepEqual(parseMeta(old([]), 'm').erofsFormats, { default: 2, extra: [] });
  assert.deepEqual(parseMeta(old(['v1_erofs']), 'm').erofsFormats, { default: 1, extra: [] });
  // The explicit legacy default {default: 2} is indistinguishable from an absent field there.
  assert.deepEqual(parseMeta(old(['v1_erofs'], { default: 2 }), 'm').erofsFormats, { default: 1, extra: [] });
  assert.deepEqual(parseMeta(old([], { default: 0 }), 'm').erofsFormats, { default: 0, extra: [] });
  for (const bad of [{ default: 3 }, { default: 1, extra: [7] }, { default: 1, extra: 2 }, { extra: [] }]) {
    assert.throws(() => parseMeta(old([], bad), 'm'), (e: unknown) => isVeritreeError(e) && e.code === 'STORE_UNSUPPORTED' && /EROFS format/.test(e.message));
  }
});

test('a repository cfsctl made is writable; init --erofs-version writes its meta.json and will not change it', async () => {
  const root = tempDir('veritree-formats-');
  dirs.push(root);
  for (const [name, text] of Object.entries(CFSCTL_META)) {
    const dir = join(root, name);
    mkdirSync(join(dir, 'objects'), { recursive: true });
    writeFileSync(join(dir, 'meta.json'), text);
    const repo = await Repository.open(dir);
    assert.doesNotThrow(() => repo.assertWritable(), name);
  }
  for (const [v, hash, expect] of [['0', 'sha512', CFSCTL_META.sha512v0], ['1', 'sha256', CFSCTL_META.sha256v1], ['2', 'sha512', CFSCTL_META.sha512v2]] as const) {
    const dir = join(root, `init-${v}-${hash}`);
    const r = veritree(['init', '--repo', dir, '--hash', hash, '--erofs-version', v]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(dir, 'meta.json'), 'utf8'), expect);
    assert.match(r.stdout, new RegExp(`EROFS format V${v}`));
  }
  const dflt = join(root, 'init-default');
  assert.equal(veritree(['init', '--repo', dflt]).status, 0);
  assert.equal(readFileSync(join(dflt, 'meta.json'), 'utf8'), CFSCTL_META.sha256v1, 'the default format is V1, as cfsctl init');
  const again = veritree(['init', '--repo', dflt, '--erofs-version', '2']);
  assert.equal(again.status, 2, again.stderr);
  assert.match(again.stderr, /EROFS format is V1; the format is fixed when the repository is made/);
  assert.equal(veritree(['init', '--repo', dflt]).status, 0, 'init with no --erofs-version leaves an existing repository as it is');
  assert.equal(readFileSync(join(dflt, 'meta.json'), 'utf8'), CFSCTL_META.sha256v1);
});
