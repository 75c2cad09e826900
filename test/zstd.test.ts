/**
 * zstd input of many frames, with whichever decoder this Node has. node:zlib (Node >= 22.15)
 * decodes the first frame of its input and silently drops the rest; split-stream sections are one
 * frame per 4 MiB of records and zstd:chunked layers are many frames, so each must come out whole.
 * `npm run test:nodes` runs this file on Node 22 and 24, with and without zstd-napi.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { ZstdFrameScanner, zstdFrames } from '../src/codec/zstd-frames.ts';
import { rawZstdFrame, zstdBackendName, zstdCompress, zstdDecodePieces, zstdDecompress } from '../src/codec/zstd.ts';
import { SplitStreamBuilder } from '../src/store/splitstream.ts';
import { readSplitStream, SplitStreamReader } from '../src/store/splitstream-reader.ts';
import { cleanup, CLI, heavy, prng, randomBytesSeeded, spawnGuarded, tempDir, veritree } from './helpers.ts';
import { layoutFromBlobs, LAYER_MEDIA } from './fixtures/oci.ts';
import { tarOf } from './fixtures/tar.ts';

const parts = [Buffer.from('hello '), randomBytesSeeded(300_000, 7), Buffer.alloc(200_000, 1), Buffer.from('world')];
function skippable(n: number): Buffer {
  const b = Buffer.alloc(8 + n, 0xab);
  b.writeUInt32LE(0x184d2a5e, 0);
  b.writeUInt32LE(n, 4);
  return b;
}
// Frames of every kind: compressed (with whatever compressor is here), raw blocks, skippable.
const multi = Buffer.concat([zstdCompress(parts[0] as Buffer), skippable(9), rawZstdFrame(parts[1] as Buffer), zstdCompress(parts[2] as Buffer), skippable(0), zstdCompress(parts[3] as Buffer)]);
const want = Buffer.concat(parts.map((p) => Buffer.from(p)));

async function decodeInPieces(bytes: Uint8Array, size: number): Promise<Buffer> {
  const src = (async function* () {
    for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
  })();
  const out: Uint8Array[] = [];
  for await (const p of zstdDecodePieces(src)) out.push(p);
  return Buffer.concat(out);
}

test(`every frame is decoded, in one call and streamed in pieces of any size (${zstdBackendName()})`, { skip: heavy() }, async () => {
  assert.ok(Buffer.from(zstdDecompress(multi, 1 << 30)).equals(want));
  for (const size of [1, 2, 5, 4096, 1 << 20]) assert.ok((await decodeInPieces(multi, size)).equals(want), `pieces of ${size} bytes`);
});

test('the frame scanner finds every frame end, whatever the piece boundaries, and refuses what is not a frame', () => {
  const frames = zstdFrames(multi);
  assert.equal(frames.length, 6);
  assert.deepEqual(frames.map((f) => f.skippable), [false, true, false, false, true, false]);
  assert.equal(frames[frames.length - 1]?.end, multi.length);
  const rnd = prng(5);
  for (let round = 0; round < 50; round++) {
    const s = new ZstdFrameScanner();
    const ends: number[] = [];
    let at = 0;
    while (at < multi.length) {
      const n = 1 + Math.floor(rnd() * 3000);
      const chunk = multi.subarray(at, at + n);
      for (let off = 0; off < chunk.length; ) {
        const e = s.feed(chunk, off);
        if (e < 0) break;
        ends.push(at + e);
        off = e;
      }
      at += chunk.length;
    }
    assert.deepEqual(ends, frames.map((f) => f.end));
  }
  assert.throws(() => zstdFrames(Buffer.from('not zstd at all')), /not a zstd frame/);
  assert.throws(() => zstdFrames(multi.subarray(0, multi.length - 2)), /ends in the middle/);
});

test('a truncated or damaged multi-frame input is refused, never shortened', async () => {
  assert.throws(() => zstdDecompress(multi.subarray(0, multi.length - 1), 1 << 30));
  await assert.rejects(decodeInPieces(multi.subarray(0, multi.length - 1), 4096));
  const bad = Buffer.from(multi);
  bad[(zstdFrames(multi)[2]?.start ?? 0) + 4] = 0x6f; // a frame header with its reserved bit set
  assert.throws(() => zstdDecompress(bad, 1 << 30));
  await assert.rejects(decodeInPieces(bad, 4096));
});

test('a split stream of several frames (over 4 MiB of records) reads whole, all at once and streamed', async () => {
  const b = new SplitStreamBuilder('sha256', 'layer');
  const rnd = prng(9);
  for (let i = 0; i < 3000; i++) {
    b.addInline(randomBytesSeeded(1000 + Math.floor(rnd() * 2000), i));
    b.addObject(createHash('sha256').update(String(i)).digest('hex'), 100_000);
  }
  const bytes = b.finish();
  const whole = readSplitStream(bytes);
  assert.equal(whole.chunks.filter((c) => c.kind === 'object').length, 3000);
  let streamed = 0;
  for await (const c of new SplitStreamReader(bytes).chunks()) if (c.kind === 'object') streamed++;
  assert.equal(streamed, 3000);
});

test('a layer compressed as several zstd frames imports whole (its diff_id checked)', async () => {
  const dir = tempDir('veritree-zstd-');
  try {
    const entries = Array.from({ length: 400 }, (_, i) => ({ name: `d/f${i}`, content: `file ${i} `.repeat(50 + i) }));
    const tar = await tarOf(entries);
    // Each third compressed on its own; the layer is the frames back to back.
    const third = Math.floor(tar.length / 3);
    const blob = Buffer.concat([zstdCompress(tar.subarray(0, third)), zstdCompress(tar.subarray(third, 2 * third)), skippable(16), zstdCompress(tar.subarray(2 * third))]);
    assert.equal(zstdFrames(blob).length, 4);
    const diffId = `sha256:${createHash('sha256').update(tar).digest('hex')}`;
    const layout = join(dir, 'layout');
    layoutFromBlobs(layout, 'multi', [{ blob, mediaType: LAYER_MEDIA.zstd, diffId }]);
    const repo = join(dir, 'repo');
    const r = veritree(['import', `oci:${layout}:multi`, 'm', '--repo', repo]);
    assert.equal(r.status, 0, r.stderr);
    const cat = spawnGuarded(process.execPath, [CLI, 'cat-layer', diffId, '--repo', repo], { maxBuffer: 1 << 28 });
    assert.equal(cat.status, 0, cat.stderr?.toString());
    assert.ok(cat.stdout.equals(tar));
  } finally {
    cleanup(dir);
  }
});
