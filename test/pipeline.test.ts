/**
 * The import pipeline's machinery, alone and together: Budget leases, the small-file batcher,
 * ChunkReader, the ordered stream feed, the streaming split-stream builder; then whole imports that
 * used to deadlock, a property test over random sizes and settings, failing imports that must not
 * leave file descriptors open, and the scale and bomb bounds (peak RSS and time, measured in a
 * child process). Layouts here are written directly (no umoci), so this file needs no Debian tool.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readlinkSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { catLayer, fsck, importImage, openRepository, isVeritreeError, writeLayer, VeritreeError, ERROR_CODES } from '../src/index.ts';
import { SplitStreamBuilder } from '../src/store/splitstream.ts';
import { readSplitStream } from '../src/store/splitstream-reader.ts';
import { VerityPool } from '../src/pipeline/pool.ts';
import { Budget } from '../src/pipeline/budget.ts';
import { LayerScheduler } from '../src/pipeline/scheduler.ts';
import type { ResolvedLayer } from '../src/oci/layout.ts';
import { SmallFileBatcher } from '../src/pipeline/batcher.ts';
import { bufferBytesFor, giveBack, idleBufferBytes, takeBuffer } from '../src/pipeline/buffers.ts';
import { decodeHeader } from '../src/oci/tar-header.ts';
import { OrderedStreamFeed, type ObjectSink } from '../src/pipeline/stream-feed.ts';
import { ChunkReader } from '../src/oci/chunk-reader.ts';
import { ChunkPool } from '../src/oci/chunk-pool.ts';
import { splitTar, type TarEntry } from '../src/oci/tar-split.ts';
import { INLINE_RUN_MAX } from '../src/store/splitstream.ts';
import { FRAME_RAW_BYTES } from '../src/tuning.ts';
import { zstdCompress } from '../src/codec/zstd.ts';
import type { PublishResult } from '../src/store/objects.ts';
import { cleanup, heavy, prng, ROOT, spawnGuarded, tempDir } from './helpers.ts';
import { LAYER_MEDIA, blobFile, layoutFromBlobs, plainLayerLayout } from './fixtures/oci.ts';
import { ustarHeader, writeEmptyFilesTar, zstdZeroFileBomb } from './fixtures/hostile-blobs.ts';

const dirs: string[] = [];
after(() => dirs.forEach(cleanup));
function scratch(prefix: string): string {
  const d = tempDir(prefix);
  dirs.push(d);
  return d;
}
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
// Every recycled chunk is overwritten when given back (oci/chunk-pool.ts): a holder that read one
// after its release would store wrong bytes, and rebuiltMatches would fail.
process.env.VERITREE_CHUNK_POISON = '1';
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

// ---- Budget ---------------------------------------------------------------------------------

test('Budget: a lease released twice gives its permit back once', async () => {
  const b = new Budget(100, 2);
  const l = await b.lease(60);
  l.release();
  l.release();
  assert.equal(b.inFlightBytes, 0);
  assert.equal(b.inFlightTasks, 0);
});

test('Budget: waiters go first come first served, when bytes and a task slot fit', async () => {
  const b = new Budget(100, 2);
  const a = await b.lease(70);
  const order: string[] = [];
  const pb = b.lease(50).then((l) => (order.push('b'), l));
  const pc = b.lease(10).then((l) => (order.push('c'), l));
  await tick();
  assert.deepEqual(order, [], 'b does not fit, and c waits behind it');
  a.release();
  const [lb, lc] = await Promise.all([pb, pc]);
  assert.deepEqual(order, ['b', 'c']);
  assert.equal(b.inFlightBytes, 60);
  lb.release();
  lc.release();
  assert.equal(b.inFlightTasks, 0);
});

test('Budget: an item larger than the whole budget goes alone', async () => {
  const b = new Budget(100, 4);
  const big = await b.lease(1000);
  let small = false;
  const ps = b.lease(1).then((l) => ((small = true), l));
  await tick();
  assert.equal(small, false);
  big.release();
  (await ps).release();
  assert.equal(small, true);
});

test('Budget: run() releases on failure; an aborted waiter leaves, and the ones behind it move', async () => {
  const b = new Budget(100, 1);
  await assert.rejects(b.run(10, async () => Promise.reject(new Error('boom'))), /boom/);
  assert.equal(b.inFlightTasks, 0);
  const hold = await b.lease(10);
  const ac = new AbortController();
  const aborted = b.lease(10, ac.signal);
  const behind = b.lease(10);
  ac.abort();
  await assert.rejects(aborted, (e: unknown) => isVeritreeError(e) && e.code === 'ABORTED');
  assert.equal(b.waiting, 1);
  hold.release();
  (await behind).release();
  assert.equal(b.inFlightTasks, 0);
});

// ---- SmallFileBatcher ------------------------------------------------------------------------

function fakePool(calls: { sizes: number[] }[]): VerityPool {
  return {
    size: 1,
    run: async (task: { sizes: number[] }) => {
      calls.push({ sizes: task.sizes });
      // Digest i is the byte i repeated (hex: two digits of i, 32 times).
      const ids = new Uint8Array(task.sizes.length * 32);
      for (let i = 0; i < task.sizes.length; i++) ids.fill(i, i * 32, (i + 1) * 32);
      return { ok: true, ids, written: new Uint8Array(task.sizes.length).fill(1) };
    },
  } as unknown as VerityPool;
}

async function* once(b: Uint8Array): AsyncGenerator<Uint8Array> {
  yield b;
}

/** Result places for a batcher, each backed by a promise the test can await: one per file taken. */
function resultPlaces(): { newResult: () => ObjectSink; results: Promise<PublishResult>[] } {
  const results: Promise<PublishResult>[] = [];
  return {
    results,
    newResult: () => {
      let sink!: ObjectSink;
      const p = new Promise<PublishResult>((resolve, reject) => (sink = { resolve, reject }));
      p.catch(() => undefined);
      results.push(p);
      return sink;
    },
  };
}

test('SmallFileBatcher: an open batch holds no budget; flush leases its bytes until the pool is done', async () => {
  const calls: { sizes: number[] }[] = [];
  const budget = new Budget(1 << 20, 1);
  const places = resultPlaces();
  const batcher = new SmallFileBatcher({ pool: fakePool(calls), budget, target: {} as never, alg: 'sha256', impl: 'node', signal: new AbortController().signal, newResult: places.newResult });
  assert.equal(await batcher.add(100, once(new Uint8Array(100))), true);
  assert.equal(await batcher.add(200, once(new Uint8Array(200))), true);
  assert.equal(await batcher.add(300, once(new Uint8Array(299))), false, 'a content that ends early is not taken');
  assert.equal(places.results.length, 2, 'a place is asked for only for a file taken');
  assert.equal(budget.inFlightTasks, 0, 'an idle open batch is not in flight');
  // With the only task slot taken by someone else, the layer can still read on.
  const other = await budget.lease(10);
  const flushed = batcher.flush();
  await tick();
  assert.equal(calls.length, 0, 'the batch waits for room');
  other.release();
  await flushed;
  const [ra, rb] = (await Promise.all(places.results)) as [PublishResult, PublishResult];
  assert.equal(ra.size, 100);
  assert.equal(rb.size, 200);
  assert.deepEqual(calls[0]?.sizes, [100, 200]);
  await tick();
  assert.equal(budget.inFlightTasks, 0);
});

test('SmallFileBatcher: discard rejects the files of a batch never sent', async () => {
  const budget = new Budget(1 << 20, 4);
  const places = resultPlaces();
  const batcher = new SmallFileBatcher({ pool: fakePool([]), budget, target: {} as never, alg: 'sha256', impl: 'node', signal: new AbortController().signal, newResult: places.newResult });
  assert.equal(batcher.tryAdd(new Uint8Array(10)), true);
  batcher.discard(new Error('layer failed'));
  await assert.rejects(places.results[0] as Promise<PublishResult>, /layer failed/);
  assert.equal(batcher.open, false);
});

// ---- tar headers ------------------------------------------------------------------------------

test('decodeHeader: the checksum as unsigned bytes (POSIX) or signed ones (old tars), and nothing else', () => {
  const header = (sumOf: (b: Buffer) => number, delta = 0): Buffer => {
    const b = Buffer.alloc(512);
    b.write('caf\xe9-\xff\x80/file', 0, 'latin1'); // three bytes over 127 in the name
    b.write('0000644\0', 100);
    b.write('00000000012\0', 124);
    b[156] = 0x30;
    b.write('ustar\x0000', 257, 'latin1');
    b.fill(0x20, 148, 156);
    b.write(`${(sumOf(b) + delta).toString(8).padStart(6, '0')}\0 `, 148);
    return b;
  };
  const unsigned = (b: Buffer): number => b.reduce((a, v) => a + v, 0);
  const signed = (b: Buffer): number => b.reduce((a, v) => a + (v > 127 ? v - 256 : v), 0);
  assert.equal(decodeHeader(header(unsigned), 0).size, 10);
  assert.equal(decodeHeader(header(signed), 0).size, 10);
  assert.notEqual(unsigned(header(unsigned)), signed(header(unsigned)), 'the two sums differ for this header');
  for (const delta of [1, -1, 256, -256, 3 * 256]) {
    assert.throws(() => decodeHeader(header(unsigned, delta), 512), /offset 512: bad header checksum/);
  }
});

// ---- ChunkReader -----------------------------------------------------------------------------

test('ChunkReader: exact, views and rest across chunk edges; close ends the source', async () => {
  let returned = false;
  const source: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]() {
      let i = 0;
      return {
        next: async () => {
          if (i >= 10) return { done: true as const, value: undefined };
          const v = new Uint8Array([3 * i, 3 * i + 1, 3 * i + 2]);
          i++;
          return { done: false as const, value: v };
        },
        return: async () => {
          returned = true;
          return { done: true as const, value: undefined };
        },
      };
    },
  };
  const r = new ChunkReader(source);
  assert.deepEqual([...(await r.exact(4))], [0, 1, 2, 3]);
  const parts: number[] = [];
  for await (const v of r.views(5)) parts.push(...v);
  assert.deepEqual(parts, [4, 5, 6, 7, 8]);
  assert.equal(r.offset, 9);
  await r.close();
  assert.equal(returned, true, 'the source iterator was returned');
  assert.equal((await r.exact(1)).length, 0, 'nothing more after close');
});

// ---- OrderedStreamFeed and the builder ---------------------------------------------------------

function paxPath(path: string): Buffer {
  const rec = (n: number): string => `${n} path=${path}\n`;
  let len = rec(0).length;
  while (rec(len).length !== len) len = rec(len).length;
  const body = Buffer.from(rec(len), 'latin1');
  return Buffer.concat([ustarHeader('././@PaxHeader', body.length, 'x'), body, Buffer.alloc((512 - (body.length % 512)) % 512)]);
}

async function* chunksOf(tar: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < tar.length; off += size) yield new Uint8Array(tar.subarray(off, off + size));
}

test('ChunkPool: a buffer comes back only after its last holder releases the chunk lent; stale and foreign releases do nothing', () => {
  const pool = new ChunkPool(1024, 2048);
  const a = pool.take();
  a.fill(7);
  const chunk = a.subarray(0, 100);
  pool.lend(chunk, 2);
  pool.release(chunk);
  assert.equal(pool.idle, 0, 'one holder left');
  assert.equal(a[0], 7, 'not overwritten while held');
  pool.release(a.subarray(0, 100));
  assert.equal(pool.idle, 0, 'another view of the same bytes is not the chunk lent');
  pool.release(chunk);
  assert.equal(pool.idle, 1);
  assert.equal(a[0], 0xa5, 'poisoned when given back (VERITREE_CHUNK_POISON)');
  pool.release(chunk);
  assert.equal(pool.idle, 1, 'a release past the last holder does nothing');
  pool.release(Buffer.alloc(1024));
  assert.equal(pool.idle, 1, 'a chunk it did not lend is not taken');
  const again = pool.take();
  assert.equal(again.buffer, a.buffer, 'the given-back buffer is reused');
  pool.lend(again, 1);
  pool.release(chunk);
  assert.equal(pool.idle, 0, 'a stale release of the old loan does not end the new one');
  pool.release(again);
  assert.equal(pool.take().buffer, a.buffer);
  // At most maxIdleBytes wait: a third buffer given back is dropped.
  const bufs = [pool.take(), pool.take(), pool.take()];
  for (const b of bufs) pool.lend(b, 1);
  for (const b of bufs) pool.release(b);
  assert.equal(pool.idle, 2);
  pool.trim();
  assert.equal(pool.idle, 0);
});

test('ChunkReader with release: a chunk is released once the reader has moved past it, never before', async () => {
  const chunks = [Buffer.from('abcd'), Buffer.from('efgh'), Buffer.from('ij')];
  const released: string[] = [];
  async function* source(): AsyncGenerator<Uint8Array> {
    for (const c of chunks) yield c;
  }
  const r = new ChunkReader(source(), (c) => void (c.length > 0 && released.push(Buffer.from(c).toString())));
  assert.equal(Buffer.from(await r.exact(3)).toString(), 'abc');
  assert.deepEqual(released, []);
  assert.equal(Buffer.from(r.view(1) as Uint8Array).toString(), 'd');
  assert.deepEqual(released, [], 'the view just taken is still the chunk in hand');
  const views: string[] = [];
  for await (const v of r.views(5)) views.push(Buffer.from(v).toString());
  assert.deepEqual(views, ['efgh', 'i']);
  assert.deepEqual(released, ['abcd', 'efgh'], 'each released when the next was needed');
  await r.close();
  assert.deepEqual(released, ['abcd', 'efgh'], 'close leaves the chunk in hand alone');
});

test('splitTar: entries beneath a symlink are warned about, however deep, and every byte goes to exactly one side, in order, whatever the chunking', async () => {
  const deep = Array.from({ length: 10_000 }, (_, i) => `d${i % 10}`).join('/');
  const entries: Buffer[] = [
    ustarHeader('a', 0, '2'),
    ustarHeader('a/x', 0),
    ustarHeader('b/c', 0),
    ustarHeader('a', 0, '5'),
    ustarHeader('a/y', 0),
    ustarHeader('d/e', 0, '2'),
    ustarHeader('d/e/f/g', 0),
    ustarHeader('d0', 0, '2'),
    paxPath(deep),
    ustarHeader('placeholder', 0),
    ustarHeader('small', 10),
    Buffer.alloc(512, 7),
    ustarHeader('big', 3000),
    Buffer.alloc(3072, 9),
  ];
  const tar = Buffer.concat([...entries, Buffer.alloc(1024)]);
  for (const chunk of [tar.length, 1 << 20, 4096, 700, 1]) {
    const warnings: string[] = [];
    const inline: Buffer[] = [];
    const external: { path: string; bytes: Buffer }[] = [];
    const withBytes = chunk !== 700;
    await splitTar(chunksOf(tar, chunk), {
      inline: (b) => void inline.push(Buffer.from(b)),
      external: async (entry, content) => {
        const parts: Buffer[] = [];
        for await (const v of content) parts.push(Buffer.from(v));
        external.push({ path: entry.path, bytes: Buffer.concat(parts) });
      },
      ...(withBytes ? { externalBytes: (entry: TarEntry, bytes: Uint8Array) => void external.push({ path: entry.path, bytes: Buffer.from(bytes) }) } : {}),
      warn: (code, message) => void warnings.push(`${code} ${message.slice(0, 60)}`),
    });
    const beneath = warnings.filter((w) => w.startsWith('TAR_BENEATH_SYMLINK'));
    assert.equal(beneath.length, 3, `chunk ${chunk}: ${beneath.join('\n')}`);
    assert.match(beneath[0] as string, /"a\/x" .*/);
    assert.match(beneath[1] as string, /"d\/e\/f\/g"/);
    assert.match(beneath[2] as string, /"d0\/d1\/d2/);
    assert.deepEqual(external.map((e) => [e.path, e.bytes.length, e.bytes[0]]), [['big', 3000, 9]], `chunk ${chunk}`);
    // Inline and external bytes, put back in order, are the tar.
    const bigAt = tar.indexOf(Buffer.alloc(3000, 9));
    const joined = Buffer.concat(inline);
    assert.ok(Buffer.concat([joined.subarray(0, bigAt), external[0]?.bytes as Buffer, joined.subarray(bigAt)]).equals(tar), `chunk ${chunk}: bytes round-trip`);
  }
});

test('OrderedStreamFeed: bytes after an unfinished object wait, in order, and are counted', async () => {
  const builder = new SplitStreamBuilder('sha256', 'layer');
  const feed = new OrderedStreamFeed(builder);
  feed.inline(Buffer.from('head'));
  let resolve!: (r: PublishResult) => void;
  feed.object(new Promise<PublishResult>((r) => (resolve = r)));
  feed.inline(Buffer.from('tail-bytes'));
  assert.equal(feed.heldBytes, 10);
  const waiting = feed.waitHeldBelow(0);
  resolve({ id: 'ab'.repeat(32), size: 100, written: true });
  await waiting;
  assert.equal(feed.heldBytes, 0);
  await feed.finish();
  const s = readSplitStream(builder.finish());
  assert.deepEqual(
    s.chunks.map((c) => (c.kind === 'inline' ? Buffer.from(c.bytes).toString() : `#${c.index}`)),
    ['head', '#0', 'tail-bytes']
  );
  assert.equal(s.streamSize, 114n);
  assert.equal(feed.objectsWritten, 1);
});

test('OrderedStreamFeed: a failed object is reported by finish(), and settleAll() never throws', async () => {
  const feed = new OrderedStreamFeed(new SplitStreamBuilder('sha256', 'layer'));
  feed.object(Promise.reject(new Error('worker died')));
  feed.inline(Buffer.from('x'));
  await feed.settleAll();
  await assert.rejects(feed.finish(), /worker died/);
});

test('OrderedStreamFeed: places settled out of order reach the stream in tar order; a failure is heard as it happens', async () => {
  const builder = new SplitStreamBuilder('sha256', 'layer');
  const failures: unknown[] = [];
  const feed = new OrderedStreamFeed(builder, (e) => failures.push(e));
  const places: ObjectSink[] = [];
  for (let i = 0; i < 5; i++) {
    feed.inline(Buffer.from(`h${i}`));
    places.push(feed.pendingObject());
  }
  feed.inline(Buffer.from('end'));
  const id = (i: number): string => String(i).repeat(64);
  // The last ones first: nothing may move until the first is done.
  for (const i of [4, 3, 2, 1]) places[i]?.resolve({ id: id(i), size: 10 + i, written: i % 2 === 0 });
  assert.equal(feed.heldBytes, 2 * 5 + 3 - 2, 'all but the first header wait behind object 0');
  const done = feed.finish();
  places[0]?.resolve({ id: id(0), size: 10, written: true });
  places[0]?.reject(new Error('a second outcome is ignored'));
  await done;
  assert.equal(feed.heldBytes, 0);
  assert.equal(failures.length, 0);
  assert.equal(feed.objectsWritten, 3);
  assert.equal(feed.objectsPresent, 2);
  const s = readSplitStream(builder.finish());
  assert.deepEqual(
    s.chunks.map((c) => (c.kind === 'inline' ? Buffer.from(c.bytes).toString() : `#${c.index}`)),
    ['h0', '#0', 'h1', '#1', 'h2', '#2', 'h3', '#3', 'h4', '#4', 'end']
  );

  // A failure: heard at once (the layer stops reading), thrown by finish(); settleAll waits for the rest.
  const feed2 = new OrderedStreamFeed(new SplitStreamBuilder('sha256', 'layer'), (e) => failures.push(e));
  const a = feed2.pendingObject();
  const b = feed2.pendingObject();
  b.reject(new Error('disk full'));
  assert.equal(failures.length, 1);
  let settled = false;
  const all = feed2.settleAll().then(() => (settled = true));
  await tick();
  assert.equal(settled, false, 'settleAll waits for the object still being stored');
  a.resolve({ id: id(1), size: 1, written: true });
  await all;
  await assert.rejects(feed2.finish(), /disk full/);
});

test('SplitStreamBuilder: 200,000 inline records and objects over many frames round-trip', () => {
  const b = new SplitStreamBuilder('sha256', 'layer');
  const want: string[] = [];
  const rnd = prng(7);
  let inline = '';
  for (let i = 0; i < 200_000; i++) {
    if (rnd() < 0.02) {
      if (inline) want.push(inline);
      inline = '';
      const id = (i % 50).toString(16).padStart(64, '0');
      b.addObject(id, 1000);
      want.push(`#${id}`);
    } else {
      const piece = `entry-${i};`;
      b.addInline(Buffer.from(piece));
      inline += piece;
    }
  }
  if (inline) want.push(inline);
  const bytes = b.finish();
  const s = readSplitStream(bytes);
  // Long runs are cut at INLINE_RUN_MAX: join neighbouring inline chunks before comparing.
  const got: string[] = [];
  for (const c of s.chunks) {
    if (c.kind === 'object') got.push(`#${s.objectRefs[c.index]}`);
    else if (got.length && !got[got.length - 1]?.startsWith('#')) got[got.length - 1] += Buffer.from(c.bytes).toString();
    else got.push(Buffer.from(c.bytes).toString());
  }
  assert.deepEqual(got, want);
  assert.equal(s.objectRefs.length, 50);
  assert.ok(INLINE_RUN_MAX <= FRAME_RAW_BYTES);
});

// ---- whole imports ---------------------------------------------------------------------------

interface FileSpec {
  name: string;
  size: number;
  seed: number;
}

function tarOf(files: FileSpec[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of files) {
    parts.push(ustarHeader(f.name, f.size));
    // Mostly one byte repeated, with the seed written at the start: distinct files, cheap to make.
    const body = Buffer.alloc(f.size, f.seed & 0xff);
    body.write(`${f.seed}:`.slice(0, f.size), 0, 'latin1');
    parts.push(body, Buffer.alloc((512 - (f.size % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

type Codec = 'none' | 'gzip' | 'zstd';

function blobOf(tar: Buffer, c: Codec): Buffer {
  if (c === 'gzip') return gzipSync(tar, { level: 1 });
  return c === 'zstd' ? Buffer.from(zstdCompress(tar)) : tar;
}

function layoutOf(root: string, layers: { tar: Buffer; gzip: boolean | Codec }[]): string {
  const layout = join(root, 'layout');
  const codec = (g: boolean | Codec): Codec => (g === true ? 'gzip' : g === false ? 'none' : g);
  layoutFromBlobs(
    layout,
    't',
    layers.map((l) => ({ blob: blobOf(l.tar, codec(l.gzip)), mediaType: LAYER_MEDIA[codec(l.gzip)], diffId: `sha256:${sha(l.tar)}` }))
  );
  return layout;
}

async function rebuiltMatches(repoPath: string, tars: Buffer[]): Promise<void> {
  const repo = await openRepository(repoPath);
  for (const tar of tars) {
    const h = createHash('sha256');
    for await (const c of catLayer(repo, sha(tar))) h.update(c);
    assert.equal(h.digest('hex'), sha(tar), 'the layer rebuilds byte for byte');
    // writeLayer: where the addon lays batches out, two read jobs at once, on another path.
    const w = createHash('sha256');
    let n = 0;
    let last = [0, 0];
    await writeLayer(
      repo,
      `sha256:${sha(tar)}`,
      async (b) => {
        w.update(b);
        n += b.length;
      },
      { onBytes: (done, total) => void (last = [done, total]) }
    );
    assert.deepEqual([w.digest('hex'), n], [sha(tar), tar.length], 'writeLayer gives the same bytes');
    assert.deepEqual(last, [tar.length, tar.length], 'progress ends at the whole layer, its total known up front');
  }
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: did not finish in ${ms} ms (a deadlock?)`)), ms)));
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

test('no deadlock: a small file, then a file larger than the byte budget with spooling off (spoolThreshold 1 GiB)', { timeout: 120_000 }, async () => {
  const root = scratch('veritree-pipe-');
  const cases = [
    { budget: 1 << 20, big: (3 << 20) / 2 },
    { budget: undefined, big: 130 << 20 },
  ];
  for (const [i, c] of cases.entries()) {
    const tar = tarOf([
      { name: 'small', size: 100, seed: 1 },
      { name: 'big', size: c.big, seed: 2 },
      { name: 'after', size: 300, seed: 3 },
    ]);
    const layout = layoutOf(join(root, `c${i}`), [{ tar, gzip: false }]);
    const repoPath = join(root, `c${i}`, 'repo');
    const repo = await openRepository(repoPath, { create: true });
    const s = await within(importImage(repo, `oci:${layout}:t`, { spoolThreshold: 1 << 30, maxInflightBytes: c.budget, jobs: 2 }), 60_000, `case ${i}`);
    assert.equal(s.objectsWritten, 3);
    await rebuiltMatches(repoPath, [tar]);
  }
});

test('a layer rebuilds byte for byte when batches end inside big files and between thousands of small ones, also from buffers reused', { timeout: 120_000, skip: heavy() }, async () => {
  const root = scratch('veritree-pipe-');
  const files: FileSpec[] = [];
  for (let i = 0; i < 3000; i++) files.push({ name: `s/${i}`, size: 1 + ((i * 7919) % 20_000), seed: i });
  files.splice(1000, 0, { name: 'big/a', size: (20 << 20) + 3, seed: 9001 });
  files.splice(2000, 0, { name: 'big/b', size: 8 << 20, seed: 9002 });
  files.push({ name: 'big/c', size: (9 << 20) - 1, seed: 9003 });
  // Files of 300 KiB to 3 MiB are held in buffers of 1, 2 and 4 MiB that come back for reuse.
  for (const [i, size] of [300 << 10, (1 << 20) + 1, 3 << 20].entries()) files.splice(500 + i * 700, 0, { name: `mid/${i}`, size, seed: 9100 + i });
  const tar = tarOf(files);
  const layout = layoutOf(join(root, 'l'), [{ tar, gzip: false }]);
  // Twice, into two stores: the second import writes into buffers the first one's workers gave back.
  for (const name of ['repo', 'again']) {
    const repoPath = join(root, name);
    await importImage(await openRepository(repoPath, { create: true }), `oci:${layout}:t`, { jobs: 2 });
    assert.ok(idleBufferBytes() >= 1 << 20, 'the workers gave the batch buffers back');
    await rebuiltMatches(repoPath, [tar]);
    const deep = await fsck(await openRepository(repoPath), { deep: true });
    assert.equal(deep.ok, true);
  }
});

test('reusable buffers: a size class per power of two from 1 MiB to 16 MiB; only whole, unshared buffers of a class are kept, up to 32 MiB', () => {
  assert.equal(bufferBytesFor(1), 1 << 20);
  assert.equal(bufferBytesFor((1 << 20) + 1), 2 << 20);
  assert.equal(bufferBytesFor(16 << 20), 16 << 20);
  assert.equal(bufferBytesFor((16 << 20) + 1), (16 << 20) + 1, 'above the largest class: its own size');
  const a = takeBuffer(5000);
  assert.equal(a.length, 5000);
  assert.equal(a.buffer.byteLength, 1 << 20);
  const before = idleBufferBytes();
  giveBack(a);
  assert.equal(idleBufferBytes(), before + (1 << 20));
  const b = takeBuffer(100);
  assert.equal(b.buffer, a.buffer, 'the buffer given back is the next one taken');
  assert.equal(idleBufferBytes(), before);
  // Not ours: Node's shared small-buffer pool, a shared buffer, an odd size, a buffer above the classes.
  giveBack(Buffer.from('x'));
  giveBack(new Uint8Array(new SharedArrayBuffer(1 << 20)));
  giveBack(new Uint8Array(3 << 20));
  giveBack(takeBuffer((16 << 20) + 1));
  assert.equal(idleBufferBytes(), before);
  const many = Array.from({ length: 40 }, () => takeBuffer());
  for (const m of many) giveBack(m);
  assert.ok(idleBufferBytes() <= 32 << 20, 'idle buffers are capped');
});

test('no deadlock: one worker, four layers at once, each with small files (open batches hold no slot)', { timeout: 120_000 }, async () => {
  const root = scratch('veritree-pipe-');
  const tars = [0, 1, 2, 3].map((l) => tarOf(Array.from({ length: 300 }, (_, i) => ({ name: `l${l}/f${i}`, size: 65 + ((i * 37) % 3000), seed: l * 1000 + i }))));
  const layout = layoutOf(root, tars.map((tar) => ({ tar, gzip: true })));
  const repoPath = join(root, 'repo');
  const repo = await openRepository(repoPath, { create: true });
  const pool = new VerityPool(1);
  try {
    const s = await within(importImage(repo, `oci:${layout}:t`, { pool, layerConcurrency: 4, maxInflightBytes: 64 << 10 }), 60_000, 'jobs 1, layerConcurrency 4');
    assert.equal(s.layersImported, 4);
  } finally {
    await pool.close();
  }
  await rebuiltMatches(repoPath, tars);
});

test('layer threads are on by default from 4 jobs, off below; the option and VERITREE_LAYER_THREADS decide outright', async () => {
  const root = scratch('veritree-lt-default-');
  const tar = tarOf(Array.from({ length: 40 }, (_, i) => ({ name: `d/f${i}`, size: 20_000 + i, seed: i })));
  const layout = layoutOf(root, [{ tar, gzip: 'zstd' }]);
  const saved = process.env.VERITREE_LAYER_THREADS;
  const cases: [Parameters<typeof importImage>[2], string | undefined, boolean][] = [
    [{ jobs: 4 }, undefined, true],
    [{ jobs: 2 }, undefined, false],
    [{ jobs: 4, layerThreads: false }, undefined, false],
    [{ jobs: 2, layerThreads: true }, '0', true],
    [{ jobs: 4 }, '0', false],
    [{ jobs: 1 }, '1', true],
  ];
  try {
    for (const [i, [options, env, want]] of cases.entries()) {
      if (env === undefined) delete process.env.VERITREE_LAYER_THREADS;
      else process.env.VERITREE_LAYER_THREADS = env;
      const repoPath = join(root, `r${i}`);
      const s = await importImage(await openRepository(repoPath, { create: true }), `oci:${layout}:t`, options);
      assert.equal(s.layerThreads, want, `case ${i}: ${JSON.stringify(options)}, VERITREE_LAYER_THREADS=${env}`);
      await rebuiltMatches(repoPath, [tar]);
    }
  } finally {
    if (saved === undefined) delete process.env.VERITREE_LAYER_THREADS;
    else process.env.VERITREE_LAYER_THREADS = saved;
  }
});

test('layer threads: threads kept from one import serve the next, and every message of theirs arrives', async () => {
  const root = scratch('veritree-spares-');
  const pool = new VerityPool(2);
  try {
    for (let run = 0; run < 6; run++) {
      const dir = join(root, `r${run}`);
      mkdirSync(dir);
      // Two layers over the inline bound (two threads at once), one under it (the main thread).
      const tars = [0, 1, 2].map((l) => tarOf((l === 2 ? [100, 5000] : [300 << 10, 5000, 40, 1 << 20]).map((size, i) => ({ name: `r${run}/l${l}/f${i}`, size, seed: run * 977 + l * 31 + i }))));
      const layout = layoutOf(dir, tars.map((tar) => ({ tar, gzip: false })));
      const repo = await openRepository(join(dir, 'repo'), { create: true });
      await within(importImage(repo, `oci:${layout}:t`, { pool, layerThreads: true, layerConcurrency: 3 }), 60_000, `run ${run}`);
      await rebuiltMatches(join(dir, 'repo'), tars);
      cleanup(dir);
    }
  } finally {
    await pool.close();
  }
});

test('property: random file sizes, jobs, layer concurrency, budgets and thresholds always finish, exactly', { skip: heavy(), timeout: 600_000 }, async () => {
  const root = scratch('veritree-prop-');
  const pools = [new VerityPool(1), new VerityPool(2)];
  let run = 0;
  const size = fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 0, max: 64 }) },
    { weight: 5, arbitrary: fc.integer({ min: 65, max: 8192 }) },
    { weight: 2, arbitrary: fc.integer({ min: 8193, max: 300 << 10 }) },
    { weight: 1, arbitrary: fc.integer({ min: 300 << 10, max: 3 << 20 }) }
  );
  const layer = fc.record({ sizes: fc.array(size, { minLength: 0, maxLength: 60 }), codec: fc.constantFrom<Codec>('none', 'gzip', 'zstd') });
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.array(layer, { minLength: 1, maxLength: 4 }),
        fc.constantFrom(0, 1),
        fc.integer({ min: 1, max: 4 }),
        fc.constantFrom(0, 4096, 256 << 10, 1 << 20, 1 << 30),
        fc.constantFrom(16 << 10, 512 << 10, 2 << 20, 128 << 20),
        fc.boolean(),
        async (layers, poolIx, layerConcurrency, spoolThreshold, maxInflightBytes, layerThreads) => {
          const dir = join(root, `r${run++}`);
          mkdirSync(dir);
          // Distinct names and contents per layer, so layers never collapse into one diff_id.
          const tars = layers.map((l, li) => tarOf(l.sizes.map((s, i) => ({ name: `l${li}-${run}/f${i}`, size: s, seed: run * 7919 + li * 131 + i }))));
          const layout = layoutOf(dir, tars.map((tar, i) => ({ tar, gzip: (layers[i] as { codec: Codec }).codec })));
          const repo = await openRepository(join(dir, 'repo'), { create: true });
          const what = `pool ${poolIx + 1}, layerConcurrency ${layerConcurrency}, spool ${spoolThreshold}, budget ${maxInflightBytes}, layer threads ${layerThreads}`;
          await within(importImage(repo, `oci:${layout}:t`, { pool: pools[poolIx], layerConcurrency, spoolThreshold, maxInflightBytes, layerThreads }), 60_000, what);
          await rebuiltMatches(join(dir, 'repo'), tars);
          cleanup(dir);
        }
      ),
      { numRuns: Number(process.env.VERITREE_PROPERTY_RUNS ?? 25), seed: Number(process.env.VERITREE_PROPERTY_SEED ?? 20261127) }
    );
  } finally {
    await Promise.all(pools.map((p) => p.close()));
  }
});

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** What each open descriptor is (a failure names the ones that are new). */
function fdTargets(): string[] {
  return readdirSync('/proc/self/fd').map((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return `${fd}: closed`;
    }
  });
}

/** The targets in `after` beyond those in `before`, counted as multisets (two pipes are two). */
function newTargets(before: string[], after: string[]): string[] {
  const left = new Map<string, number>();
  for (const t of before) left.set(t, (left.get(t) ?? 0) + 1);
  return after.filter((t) => {
    const n = left.get(t) ?? 0;
    left.set(t, n - 1);
    return n <= 0;
  });
}

test('100 failing imports in one process leave no file descriptor open', { timeout: 300_000 }, async () => {
  const root = scratch('veritree-fds-');
  // Blobs of 4 MiB that fail near their start: the read stops with most of the blob unread.
  const files = Array.from({ length: 64 }, (_, i) => ({ name: `f${i}`, size: 64 << 10, seed: i }));
  const good = tarOf(files);
  // 1: a blob damaged in its first header (the digest check names it, not the tar error)
  const l1 = join(root, 'damaged');
  plainLayerLayout(l1, 't', good);
  const damaged = Buffer.from(good);
  damaged.writeUInt8(damaged.readUInt8(10) ^ 0xff, 10);
  writeFileSync(blobFile(l1, `sha256:${sha(good)}`), damaged);
  // 2: an honest gzip blob holding a truncated tar
  const truncated = good.subarray(0, 512 * 20 + 100);
  const l2 = join(root, 'truncated');
  layoutFromBlobs(l2, 't', [{ blob: gzipSync(truncated), mediaType: LAYER_MEDIA.gzip, diffId: `sha256:${sha(truncated)}` }]);
  // 3: a sparse entry after two files, then the rest (refused part-way through the layer)
  const cut = (512 + (64 << 10)) * 2;
  const sparse = Buffer.concat([good.subarray(0, cut), ustarHeader('holes', 0, 'S'), good.subarray(cut)]);
  const l3 = join(root, 'sparse');
  plainLayerLayout(l3, 't', sparse);
  const repo = await openRepository(join(root, 'repo'), { create: true });
  const pool = new VerityPool(2);
  const codes = new Set<string>();
  const gcClosed: string[] = [];
  const onWarning = (w: Error): void => void (/garbage collection/.test(w.message) && gcClosed.push(w.message));
  try {
    // one run first, so that lazily opened handles (the pool, the addon) are there before counting;
    // and a task on every worker at once, so that none is still booting (a worker's event loop
    // opens descriptors of its own: on a loaded host, after the count began).
    await importImage(repo, `oci:${l1}:t`, { pool }).catch(() => undefined);
    await Promise.all(Array.from({ length: pool.size }, () => pool.run({ kind: 'thread-id', holdMs: 50, alg: 'sha256', impl: 'auto' })));
    const before = openFds();
    const beforeList = fdTargets();
    process.on('warning', onWarning);
    let most = before;
    let mostList: string[] = [];
    for (let i = 0; i < 100; i++) {
      const l = [l1, l2, l3][i % 3] as string;
      await assert.rejects(importImage(repo, `oci:${l}:t`, { pool }), (e: unknown) => {
        if (isVeritreeError(e)) codes.add(e.code);
        return isVeritreeError(e);
      });
      // Counted at once, then again after a moment if it is up: a close already under way (a
      // worker's, the event loop's own) settles in that moment; a descriptor left to the garbage
      // collector does not, and if a collection closes one, Node's warning fails the test.
      let now = openFds();
      for (let wait = 0; now > before && wait < 10; wait++) {
        await new Promise((r) => setTimeout(r, 20));
        now = openFds();
      }
      if (now > most) [most, mostList] = [now, fdTargets()];
    }
    assert.deepEqual([...codes].sort(), ['OCI_DIGEST_MISMATCH', 'TAR_CORRUPT', 'TAR_UNSUPPORTED']);
    assert.deepEqual(gcClosed, [], 'no descriptor was left for the garbage collector to close');
    assert.equal(most, before, `no failure left a descriptor open (new: ${newTargets(beforeList, mostList).join(', ')})`);
  } finally {
    process.off('warning', onWarning);
    await pool.close();
  }
});

/** Runs one import in a child process; returns what test/fixtures/import-measure prints. A hang fails (spawnGuarded). */
function measure(source: string, repo: string): { ok: boolean; code?: string; message?: string; ms: number; maxRssBytes: number; inlined?: number } {
  const r = spawnGuarded(process.execPath, [join(ROOT, 'dist/test/fixtures/import-measure.js'), source, repo], { encoding: 'utf8', maxBuffer: 16 << 20 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as ReturnType<typeof measure>;
}
const MiB = 2 ** 20;

/** A 64 GiB zstd bomb (2 MiB of zstd) imported in a child: what the import said. */
function importBomb(): ReturnType<typeof measure> {
  const root = scratch('veritree-bomb-');
  const layout = join(root, 'layout');
  layoutFromBlobs(layout, 'b', [{ blob: zstdZeroFileBomb(64 * 2 ** 30), mediaType: LAYER_MEDIA.zstd, diffId: `sha256:${'0'.repeat(64)}` }]);
  const m = measure(`oci:${layout}:b`, join(root, 'repo'));
  assert.equal(m.ok, false);
  assert.equal(m.code, 'TAR_LIMIT_EXCEEDED', m.message);
  assert.match(m.message ?? '', /decompression bomb/);
  return m;
}

// The test's time limit is a hang guard (a bomb inflated to its end would run into it); how soon
// the refusal comes is a figure for docs/guarantees.md, not an assertion.
test('a zstd bomb of 64 GiB (2 MiB of zstd) is refused as a decompression bomb', { timeout: 60_000 }, () => {
  importBomb();
});

test('a zstd bomb of 64 GiB is refused with a peak RSS under 512 MiB (the memory guarantee)', { skip: heavy(), timeout: 60_000 }, () => {
  const m = importBomb();
  assert.ok(m.maxRssBytes < 512 * MiB, `peak RSS ${(m.maxRssBytes / MiB).toFixed(0)} MiB`);
  console.log(`# 64 GiB zstd bomb: refused in ${(m.ms / 1000).toFixed(2)} s, peak RSS ${(m.maxRssBytes / MiB).toFixed(0)} MiB`);
});

test('a layer of 1,000,000 empty files imports with peak RSS under 512 MiB, and rebuilds with under 256 MiB', { skip: heavy(), timeout: 300_000 }, async () => {
  const root = scratch('veritree-million-');
  const layout = join(root, 'layout');
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  const tmp = join(layout, 'blobs', 'sha256', 'incoming');
  const hex = writeEmptyFilesTar(tmp, 1_000_000);
  renameSync(tmp, join(layout, 'blobs', 'sha256', hex));
  layoutFromBlobs(layout, 'm', [{ blob: { digest: `sha256:${hex}`, size: statSync(join(layout, 'blobs', 'sha256', hex)).size }, mediaType: LAYER_MEDIA.none, diffId: `sha256:${hex}` }]);
  const m = measure(`oci:${layout}:m`, join(root, 'repo'));
  assert.equal(m.ok, true, m.message);
  assert.equal(m.inlined, 1_000_000);
  assert.ok(m.maxRssBytes < 512 * MiB, `peak RSS ${(m.maxRssBytes / MiB).toFixed(0)} MiB`);
  console.log(`# 1,000,000 empty files: ${(m.ms / 1000).toFixed(1)} s, peak RSS ${(m.maxRssBytes / MiB).toFixed(0)} MiB`);
  // The reading side too: the stream section is decoded as the layer is rebuilt, never whole.
  const r = spawnGuarded(process.execPath, [join(ROOT, 'dist/test/fixtures/cat-measure.js'), join(root, 'repo'), hex], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const cat = JSON.parse(r.stdout) as { sha256: string; ms: number; maxRssBytes: number };
  assert.equal(cat.sha256, hex, 'the layer rebuilds byte for byte');
  assert.ok(cat.maxRssBytes < 256 * MiB, `cat-layer peak RSS ${(cat.maxRssBytes / MiB).toFixed(0)} MiB`);
  console.log(`# cat-layer of it: ${(cat.ms / 1000).toFixed(1)} s, peak RSS ${(cat.maxRssBytes / MiB).toFixed(0)} MiB`);
});

// ---- the layer scheduler -----------------------------------------------------------------------

test('LayerScheduler: largest first, at most `limit` at once, each diff_id read once whoever asks', async () => {
  const started: string[] = [];
  let running = 0;
  let most = 0;
  const release = new Map<string, () => void>();
  const sched = new LayerScheduler(2, async (layer) => {
    started.push(layer.diffId);
    running++;
    most = Math.max(most, running);
    await new Promise<void>((r) => release.set(layer.diffId, r));
    running--;
    return { index: layer.index, digest: layer.descriptor.digest, diffId: layer.diffId, stream: '', status: 'imported', objectsWritten: 0, objectsPresent: 0, inlined: 0, tarBytes: 0, compressedBytes: 0, blobOpens: 1 };
  });
  const layer = (id: string, size: number): ResolvedLayer => ({ index: 0, diffId: id, descriptor: { mediaType: 'x', digest: id, size }, compression: 'none' }) as unknown as ResolvedLayer;
  sched.plan([
    { layer: layer('small', 10), layout: '', image: 0 },
    { layer: layer('big', 1000), layout: '', image: 0 },
    { layer: layer('mid', 100), layout: '', image: 1 },
    { layer: layer('big', 1000), layout: '', image: 1 },
  ]);
  await tick();
  assert.deepEqual(started, ['big', 'mid'], 'the two largest start first; the shared one once');
  const twice = [sched.request('big', 0), sched.request('big', 1)];
  (release.get('big') as () => void)();
  const [a, b] = await Promise.all(twice);
  assert.equal(a?.result, b?.result, 'both images get the one flight');
  assert.deepEqual([a?.read, b?.read], [true, false], 'the first to plan it read its blob');
  await tick();
  assert.deepEqual(started, ['big', 'mid', 'small']);
  (release.get('mid') as () => void)();
  (release.get('small') as () => void)();
  await Promise.all([sched.request('big', 1), sched.request('mid', 1), sched.request('small', 0)]);
  assert.equal(most, 2);
  assert.deepEqual(sched.blobOpens, { big: 1, mid: 1, small: 1 });
});

test('LayerScheduler: when one image\'s blob fails a shared diff_id, each other image reads its own blob once', async () => {
  const reads: string[] = [];
  const sched = new LayerScheduler(4, async (layer, _layout, image) => {
    reads.push(`${layer.descriptor.digest}@${image}`);
    await tick();
    if (layer.descriptor.digest.startsWith('bad')) throw new VeritreeError(ERROR_CODES.OCI_DIFF_ID_MISMATCH, `blob ${layer.descriptor.digest} is not ${layer.diffId}`);
    return { index: layer.index, digest: layer.descriptor.digest, diffId: layer.diffId, stream: '', status: 'imported', objectsWritten: 0, objectsPresent: 0, inlined: 0, tarBytes: 0, compressedBytes: 0, blobOpens: 1 };
  });
  const claim = (digest: string, size: number): ResolvedLayer => ({ index: 0, diffId: 'shared', descriptor: { mediaType: 'x', digest, size }, compression: 'none' }) as unknown as ResolvedLayer;
  // Image 0's blob is the largest, so it is read first, and it fails; 1 and 2 have good blobs, 3 a bad one.
  sched.plan([
    { layer: claim('bad-0', 900), layout: '', image: 0 },
    { layer: claim('good-1', 100), layout: '', image: 1 },
    { layer: claim('good-2', 100), layout: '', image: 2 },
    { layer: claim('bad-3', 100), layout: '', image: 3 },
  ]);
  const out = await Promise.allSettled([0, 1, 2, 3].map((i) => sched.request('shared', i)));
  assert.equal(out[0]?.status, 'rejected', 'the bad blob fails its own image');
  assert.match(String((out[0] as PromiseRejectedResult).reason), /bad-0/);
  for (const i of [1, 2, 3]) assert.equal(out[i]?.status, 'fulfilled', `image ${i} is served by a good blob`);
  assert.equal((out[1] as PromiseFulfilledResult<{ read: boolean }>).value.read, true, 'image 1 read its own blob');
  assert.equal((out[2] as PromiseFulfilledResult<{ read: boolean }>).value.read, false, 'image 2 took image 1\'s verified result');
  assert.deepEqual(reads, ['bad-0@0', 'good-1@1'], 'one fallback read, not one per waiting image');
});

// ---- a full disk -------------------------------------------------------------------------------

const CAN_MOUNT = process.getuid?.() === 0 ? false : 'skipped: needs root to mount a small tmpfs';

test('a disk that fills while a file is spooled or stored: STORE_NO_SPACE, no tag, every object whole', { skip: CAN_MOUNT, timeout: 120_000 }, async () => {
  const root = scratch('veritree-full-');
  const files = [
    ...Array.from({ length: 20 }, (_, i) => ({ name: `small/${i}`, size: 100 + i, seed: i })),
    { name: 'big/a', size: 1 << 20, seed: 101 },
    { name: 'big/b', size: 4 << 20, seed: 102 },
  ];
  const tar = tarOf(files);
  const layout = layoutOf(root, [{ tar, gzip: true }]);
  for (const spoolThreshold of [0, undefined]) {
    const mnt = join(root, `mnt-${spoolThreshold ?? 'default'}`);
    mkdirSync(mnt);
    const m = spawnGuarded('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mnt], { encoding: 'utf8' });
    assert.equal(m.status, 0, m.stderr);
    try {
      const repo = await openRepository(join(mnt, 'repo'), { create: true });
      await assert.rejects(importImage(repo, `oci:${layout}:t`, { spoolThreshold }), (e: unknown) => isVeritreeError(e) && e.code === 'STORE_NO_SPACE');
      assert.deepEqual(readdirSync(join(mnt, 'repo', 'streams', 'refs', 'oci')), [], 'no tag');
      const report = await fsck(repo, { deep: true });
      assert.deepEqual(report.issues, [], 'every object named is whole; no tmp file is left');
    } finally {
      spawnGuarded('umount', [mnt]);
    }
  }
});
