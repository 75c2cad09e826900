import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SplitStreamBuilder } from '../src/store/splitstream.ts';
import { readSplitStream, readRefs, SplitStreamReader } from '../src/store/splitstream-reader.ts';
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

/** A stream's records flattened: inline bytes merged between objects, objects by index. */
function flatten(items: (Uint8Array | number)[]): (string | number)[] {
  const out: (string | number)[] = [];
  for (const it of items) {
    if (typeof it === 'number') out.push(it);
    else if (typeof out[out.length - 1] === 'string') out[out.length - 1] += Buffer.from(it).toString('latin1');
    else out.push(Buffer.from(it).toString('latin1'));
  }
  return out.filter((x) => x !== '');
}

async function segmentItems(bytes: Uint8Array, max: number, arenaMax: number): Promise<(Uint8Array | number)[]> {
  const src = new SplitStreamReader(bytes);
  const items: (Uint8Array | number)[] = [];
  for (let run = await src.next(max, arenaMax); run; run = await src.next(max, arenaMax)) {
    assert.ok(run.n <= max && run.arena.length <= arenaMax, `a run of ${run.n} segments and ${run.arena.length} inline bytes`);
    let at = 0;
    for (let i = 0; i < run.n; i++) {
      const [kind, arg] = [run.segs[2 * i] as number, run.segs[2 * i + 1] as number];
      if (kind === 1) items.push(arg);
      else {
        items.push(run.arena.subarray(at, at + arg));
        at += arg;
      }
    }
    assert.equal(at, run.arena.length, 'the arena holds exactly the run\'s inline bytes');
  }
  return items;
}

/** `good` with its stream section replaced by `records`, as one raw zstd frame. */
function withSection(good: Uint8Array, records: Uint8Array): Buffer {
  const head = Buffer.from(good);
  const stA = Number(head.readBigUInt64LE(32 + 32));
  const section = Buffer.from(rawZstdFrame(records));
  const out = Buffer.concat([head.subarray(0, stA), section]);
  out.writeBigUInt64LE(BigInt(stA + section.length), 32 + 40);
  return out;
}

function record(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(BigInt(v));
  return b;
}

test('the segments cat-layer lays out are the stream\'s chunks as the whole-section reader parses them: in order, cut at any run size, across decoder pieces, with the same refusals', async () => {
  const digests = Array.from({ length: 50 }, (_, i) => i.toString(16).padStart(2, '0').repeat(32));
  const b = new SplitStreamBuilder('sha256', 'layer');
  for (let i = 0; i < 3000; i++) {
    // Odd sizes, a few over a decoder piece (128 KiB), so records fall across piece boundaries.
    const size = i % 97 === 5 ? 140_001 + i : (i * 7919) % 1531;
    if (size > 0) b.addInline(randomBytesSeeded(size, i));
    b.addObject(digests[(i * 31) % digests.length] as string, 4096);
  }
  const bytes = b.finish();
  // The whole-section reader is the reference: the same record decoder, fed the section at once.
  const want = flatten(readSplitStream(bytes).chunks.map((c) => (c.kind === 'inline' ? c.bytes : c.index)));
  const chunks: (Uint8Array | number)[] = [];
  for await (const run of new SplitStreamReader(bytes).chunkRuns()) for (const c of run) chunks.push(c.kind === 'inline' ? c.bytes : c.index);
  assert.deepEqual(flatten(chunks), want, 'chunkRuns');
  for (const [max, arenaMax] of [[1, 65536], [3, 1000], [256, 8 << 20], [40, 4099]]) {
    assert.deepEqual(flatten(await segmentItems(bytes, max as number, arenaMax as number)), want, `runs of ${max} segments, ${arenaMax} inline bytes`);
  }
  // Refusals: each names what is wrong; the whole-section reader refuses the same streams.
  const good = new SplitStreamBuilder('sha256', 'layer');
  good.addObject(A, 10);
  const base = good.finish();
  const bad: [Buffer, RegExp][] = [
    [withSection(base, record(1)), /chunk names object 1 of 1/],
    [withSection(base, Buffer.concat([record(0), record(-3).subarray(0, 5)])), /ends inside a chunk header/],
    [withSection(base, Buffer.concat([record(-10), Buffer.from('12345')])), /runs 5 bytes past the section/],
    [withSection(base, record(-(2 ** 31) * 4)), /inline chunk of/],
  ];
  for (const [stream, why] of bad) {
    await assert.rejects(segmentItems(stream, 16, 1 << 20), (e: Error & { code?: string }) => e.code === 'STORE_CORRUPT' && why.test(e.message));
    assert.throws(() => readSplitStream(stream), (e: Error & { code?: string }) => e.code === 'STORE_CORRUPT');
  }
});
