import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { handledLater, whenAbsent } from '../src/errors.ts';
import { cleanup, tempDir } from './helpers.ts';

test('whenAbsent answers absence (ENOENT, ENOTDIR, the codes named) and throws every other error on', async () => {
  const d = tempDir('veritree-absent-');
  try {
    writeFileSync(join(d, 'file'), 'x');
    assert.equal(await stat(join(d, 'none')).catch(whenAbsent(null)), null);
    assert.deepEqual(await readdir(join(d, 'file', 'below')).catch(whenAbsent([] as string[])), []);
    assert.equal(await readlink(join(d, 'file')).catch(whenAbsent(null, 'EINVAL')), null);
    await assert.rejects(readlink(join(d, 'file')).catch(whenAbsent(null)), (e: NodeJS.ErrnoException) => e.code === 'EINVAL');
    const eio = Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
    await assert.rejects(Promise.reject(eio).catch(whenAbsent(null)), (e) => e === eio);
    await assert.rejects(Promise.reject(new Error('no code')).catch(whenAbsent(null)), /no code/);
  } finally {
    cleanup(d);
  }
});

test('handledLater keeps the rejection for whoever awaits the promise', async () => {
  const p = Promise.reject(new Error('seen later'));
  handledLater(p);
  await new Promise((r) => setImmediate(r));
  await assert.rejects(p, /seen later/);
});
