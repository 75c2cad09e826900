/**
 * The native addons as reviewed: assemble refuses a `start` that does not lie inside its first
 * segment, and a failure carries the errno's own name (EISDIR, not a generic EIO).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, constants as fsc, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, tempDir } from './helpers.ts';
import { loadAddon } from '../src/native-addon.ts';
import { assembler } from '../src/store/sys.ts';

const assemble = assembler();
const noStoreSys = assemble === null ? 'skipped: the store_sys addon did not build' : false;
const kernel = loadAddon<{ digestFd(alg: number, fd: number, out: Uint8Array): number }>('verity_kernel').addon;
const noKernel = kernel === null ? 'skipped: the verity_kernel addon did not build' : false;
const dirs: string[] = [];
after(() => dirs.forEach(cleanup));

/** An objects folder holding one 100-byte object; its digest is the one entry of `refs`. */
function objects(): { dir: string; refs: Uint8Array } {
  const dir = tempDir('veritree-native-');
  dirs.push(dir);
  const refs = new Uint8Array(32).fill(0xab);
  mkdirSync(join(dir, 'ab'));
  writeFileSync(join(dir, 'ab', 'ab'.repeat(31)), Buffer.alloc(100, 7));
  return { dir, refs };
}

test('assemble: `start` must lie inside the first segment', { skip: noStoreSys }, async () => {
  const run = assemble as NonNullable<typeof assemble>;
  const { dir, refs } = objects();
  const out = new Uint8Array(64);
  const inline = new Float64Array([0, 10]);
  const arena = new Uint8Array(10).fill(1);
  assert.equal((await run(dir, refs, 32, inline, arena, 4, out)).used, 6, 'inside an inline segment');
  for (const start of [10, 11, 1e6]) {
    await assert.rejects(run(dir, refs, 32, inline, arena, start, out), TypeError, `start ${start} past an inline segment of 10`);
  }
  await assert.rejects(run(dir, refs, 32, new Float64Array(0), arena, 3, out), TypeError, 'a start with no segment');
  const object = new Float64Array([1, 0]);
  const inside = await run(dir, refs, 32, object, new Uint8Array(0), 50, new Uint8Array(200));
  assert.deepEqual([inside.used, inside.done, inside.failure], [50, 1, null]);
  for (const start of [100, 150]) {
    const past = await run(dir, refs, 32, object, new Uint8Array(0), start, new Uint8Array(200));
    assert.deepEqual(past.failure, { errno: 'ERANGE' }, `start ${start} past a 100-byte object`);
    assert.equal(past.used, 0);
  }
});

test('a native failure keeps its errno name', { skip: noKernel }, () => {
  const dir = tempDir('veritree-native-');
  dirs.push(dir);
  const fd = openSync(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    assert.throws(() => kernel?.digestFd(1, fd, new Uint8Array(64)), (e: unknown) => (e as { code?: string }).code === 'EISDIR');
  } finally {
    closeSync(fd);
  }
});
