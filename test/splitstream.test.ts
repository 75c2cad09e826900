import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SplitStreamBuilder, readSplitStream, readRefs } from '../src/store/splitstream.ts';
import { rawZstdFrame, zstdDecompress } from '../src/codec/zstd.ts';
import { randomBytesSeeded } from './helpers.ts';

const A = 'aa'.repeat(32);
const B = 'bb'.repeat(32);

test('a split stream round-trips: coalesced inline chunks, deduplicated object refs, named refs sorted', () => {
  const b = new SplitStreamBuilder('sha256', 'layer');
  b.addInline(Buffer.from('head'));
  b.addInline(Buffer.from('er'));
  b.addObject(A, 1000);
  b.addInline(Buffer.from('pad'));
  b.addObject(B, 70);
  b.addObject(A, 1000);
  b.addNamedRef('zeta', B);
  b.addNamedRef('alpha', A);
  const s = readSplitStream(b.finish());
  assert.equal(s.contentType, 'layer');
  assert.equal(s.streamSize, 6n + 1000n + 3n + 70n + 1000n);
  assert.deepEqual(s.objectRefs, [A, B]);
  assert.deepEqual(s.streamRefs, [B, A]);
  assert.deepEqual(s.namedRefs, [{ name: 'alpha', index: 1 }, { name: 'zeta', index: 0 }]);
  assert.deepEqual(
    s.chunks.map((c) => (c.kind === 'inline' ? Buffer.from(c.bytes).toString() : c.index)),
    ['header', 0, 'pad', 1, 0]
  );
});

test('header layout: magic, algorithm, block size, info at 32..112, sections in the documented order', () => {
  const b = new SplitStreamBuilder('sha512', 'config');
  b.addObject('cd'.repeat(64), 5);
  const bytes = Buffer.from(b.finish());
  assert.equal(bytes.subarray(0, 11).toString(), 'SplitStream');
  assert.equal(bytes[14], 2);
  assert.equal(bytes[15], 12);
  assert.equal(bytes.readBigUInt64LE(16), 32n);
  assert.equal(bytes.readBigUInt64LE(24), 112n);
  const [srA, srB, orA, orB, stA, , nrA, nrB] = Array.from({ length: 8 }, (_, i) => bytes.readBigUInt64LE(32 + 8 * i));
  assert.equal(srA, 112n);
  assert.equal(srB, orA);
  assert.equal(orB, nrA);
  assert.equal(nrB, stA);
  assert.equal(bytes.subarray(96, 104).toString(), 'ociconfg');
  assert.equal(readRefs(bytes).objectRefs[0], 'cd'.repeat(64));
});

test('damaged streams are rejected with STORE_CORRUPT, never a crash', () => {
  const b = new SplitStreamBuilder('sha256', 'layer');
  b.addInline(randomBytesSeeded(5000, 1));
  b.addObject(A, 10);
  const good = Buffer.from(b.finish());
  const cases: Buffer[] = [good.subarray(0, 20), Buffer.concat([Buffer.from('Xp'), good.subarray(2)])];
  const badRange = Buffer.from(good);
  badRange.writeBigUInt64LE(1n << 40n, 32 + 40);
  cases.push(badRange);
  const badStream = Buffer.from(good);
  badStream.writeUInt8(badStream.readUInt8(badStream.length - 5) ^ 0xff, badStream.length - 5);
  cases.push(badStream);
  for (const c of cases) assert.throws(() => readSplitStream(c), (e: unknown) => (e as { code?: string }).code === 'STORE_CORRUPT');
});

test('raw zstd frames (the fallback writer) decode with a real zstd decoder', () => {
  for (const size of [0, 1, 131071, 131072, 300000]) {
    const data = randomBytesSeeded(size, size);
    assert.deepEqual(Buffer.from(zstdDecompress(rawZstdFrame(data), 1 << 20)), data);
  }
});
