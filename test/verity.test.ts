import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { VerityHasher, verityDigest, toHex } from '../src/index.ts';
import { resolveImpl } from '../src/verity/index.ts';
import { digestFromLevel1, hashRangeToLevel1, level1Span } from '../src/verity/merkle.ts';
import type { ConcreteHashImpl } from '../src/verity/backends.ts';
import type { HashAlgorithm } from '../src/verity/constants.ts';
import { SHARED, contentFor, needShared, randomBytesSeeded, sharedSkip, spawnGuarded } from './helpers.ts';

const IMPLS: ConcreteHashImpl[] = resolveImpl('auto') === 'native' ? ['native', 'node', 'noble'] : ['node', 'noble'];
const VECTORS = join(SHARED, 'vectors', 'fsverity-vectors.json');
const noVectors = existsSync(VECTORS) ? false : `skipped: ${VECTORS} not present`;

interface Vector {
  size: number;
  content: string;
  fsverity_sha256: string;
  fsverity_sha512: string;
}

test('golden values from the format doc and STYLE.md', () => {
  const cases: [Buffer, string][] = [
    [Buffer.alloc(0), '3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95'],
    [Buffer.from('hello world'), '1e2eaa4202d750a41174ee454970b92c1bc2f925b1e35076d8c7d5f56362ba64'],
    [Buffer.alloc(1), 'b803429503d95915829b29fdbc8bbad142f3abfd11b1cadf5526582e685c0551'],
    [Buffer.alloc(4095, 0x5a), 'f280bcee6bf2827867a251a580c89ac5c9b3311f250ef04edb6079416bff7f43'],
    [Buffer.alloc(4096, 0x5a), 'dae733f4cb5a63767cb1041a2bd774ca90c91dfd490554e5edab17886d474600'],
    [Buffer.alloc(4097, 0x5a), 'd2619d9db529bfcc1b0179d7f22a3275ef40456580ebd246fb1c0faa70cc1f6c'],
    [Buffer.alloc(128 * 4096, 0x5a), 'fa6dd50c6117479a8e0691104fd19c93263b8fc12c56a7c581d36a1fe2990845'],
    [Buffer.alloc(128 * 4096 + 1, 0x5a), '44a3ceba1c1a2896d0002c3b1e15f332291e8ef3c4760f14531061f17d6dc423'],
  ];
  for (const impl of IMPLS) {
    for (const [data, want] of cases) assert.equal(toHex(verityDigest(data, 'sha256', impl)), want, `${impl} size ${data.length}`);
  }
});

test('every vector of shared/vectors/fsverity-vectors.json, every back end, SHA-256 and SHA-512', { skip: sharedSkip(noVectors) }, () => {
  needShared(noVectors);
  const vectors = (JSON.parse(readFileSync(VECTORS, 'utf8')) as { vectors: Vector[] }).vectors;
  assert.ok(vectors.length >= 10);
  for (const v of vectors) {
    const data = contentFor(v.content, v.size);
    for (const impl of IMPLS) {
      // noble is pure JS: keep it to the vectors under 8 MiB so the suite stays quick.
      if (impl === 'noble' && v.size > 8 << 20) continue;
      assert.equal(toHex(verityDigest(data, 'sha256', impl)), v.fsverity_sha256, `${impl} sha256 ${v.size} ${v.content}`);
      assert.equal(toHex(verityDigest(data, 'sha512', impl)), v.fsverity_sha512, `${impl} sha512 ${v.size} ${v.content}`);
    }
  }
});

test('property: all back ends agree for random sizes and random update split points', () => {
  const sizeArb = fc.oneof(
    fc.constantFrom(0, 1, 63, 64, 65, 4095, 4096, 4097, 128 * 4096 - 1, 128 * 4096, 128 * 4096 + 1),
    fc.integer({ min: 0, max: 3 * 128 * 4096 + 7 })
  );
  fc.assert(
    fc.property(sizeArb, fc.integer(), fc.constantFrom<HashAlgorithm>('sha256', 'sha512'), (size, seed, alg) => {
      const data = randomBytesSeeded(size, seed);
      const whole = toHex(verityDigest(data, alg, 'node'));
      const rand = randomBytesSeeded(64, seed ^ 0x5bd1e995);
      for (const impl of IMPLS) {
        // The one-shot path (native: tree and descriptor in one call) and the streaming one.
        assert.equal(toHex(verityDigest(data, alg, impl)), whole, `${impl} one-shot ${alg} size ${size}`);
        const h = new VerityHasher(alg, impl);
        let off = 0;
        let k = 0;
        while (off < data.length) {
          const step = 1 + (((rand[k++ % rand.length] ?? 1) * 977) % 9001);
          h.update(data.subarray(off, off + step));
          off += step;
        }
        assert.equal(h.digestHex(), whole, `${impl} ${alg} size ${size}`);
      }
    }),
    { numRuns: 60, seed: 20261125 }
  );
});

test('byte-at-a-time and empty updates give the same digest', () => {
  const data = randomBytesSeeded(3 * 4096 + 17, 7);
  const h = new VerityHasher();
  for (let i = 0; i < data.length; i++) {
    h.update(data.subarray(i, i + 1));
    h.update(new Uint8Array(0));
  }
  assert.equal(h.digestHex(), toHex(verityDigest(data)));
});

test('level-1 assembly (parallel ranges) equals the streaming digest at arity edges', () => {
  for (const alg of ['sha256', 'sha512'] as const) {
    const span = level1Span(alg);
    const perGroup = span / 4096;
    for (const size of [perGroup * 4096 + 1, 3 * span, 3 * span + 4095, 7 * span + 1, perGroup * span, perGroup * span + 4096]) {
      const data = randomBytesSeeded(size, size);
      const parts: Uint8Array[] = [];
      for (let off = 0; off < size; off += 2 * span) parts.push(hashRangeToLevel1(data.subarray(off, off + 2 * span), alg));
      assert.equal(toHex(digestFromLevel1(parts, BigInt(size), alg)), toHex(verityDigest(data, alg)), `${alg} ${size}`);
    }
  }
});

test('the native kernel hashes blocks two at a time (SHA extensions) exactly as one at a time, for any count; VERITREE_SHA_X2=0 turns it off', { skip: resolveImpl('auto') === 'native' ? false : 'skipped: native kernel not built' }, async () => {
  const { loadNativeKernel } = await import('../src/verity/backends.ts');
  const { createHash } = await import('node:crypto');
  const k = loadNativeKernel();
  assert.ok(k);
  const data = randomBytesSeeded(9 * 4096, 77);
  const want = Buffer.concat(Array.from({ length: 9 }, (_, i) => createHash('sha256').update(data.subarray(i * 4096, (i + 1) * 4096)).digest()));
  for (let n = 0; n <= 9; n++) {
    const out = new Uint8Array(n * 32);
    assert.equal(k.hashBlocks(1, data.subarray(0, n * 4096), out), n);
    assert.deepEqual(Buffer.from(out), want.subarray(0, n * 32), `${n} blocks`);
  }
  // The same file digest with the paired kernel off, in a process of its own (it is chosen at load).
  const file = randomBytesSeeded(3 * 128 * 4096 + 777, 78);
  const script = `import('${new URL('../src/verity/index.ts', import.meta.url).href.replace(/\.ts$/, import.meta.url.endsWith('.ts') ? '.ts' : '.js')}').then((m) => process.stdout.write(m.toHex(m.verityDigest(require('fs').readFileSync(0), 'sha256', 'native'))))`;
  const off = spawnGuarded(process.execPath, [...process.execArgv, '-e', script], { input: file, env: { ...process.env, VERITREE_SHA_X2: '0' }, encoding: 'utf8' });
  assert.equal(off.status, 0, off.stderr);
  assert.equal(off.stdout, toHex(verityDigest(file, 'sha256', 'native')));
  assert.equal(off.stdout, toHex(verityDigest(file, 'sha256', 'node')));
});

test('misuse: update after digest and digest twice throw', () => {
  const h = new VerityHasher();
  h.digest();
  assert.throws(() => h.update(new Uint8Array(1)), /after digest/);
  assert.throws(() => h.digest(), /twice/);
  assert.throws(() => new VerityHasher('md5' as HashAlgorithm), /"hash" must be sha256 or sha512/);
});

test('the SHA-256 stream (thread pool where the kernel has it) equals node:crypto for any split, and copy() forks it', async () => {
  const { createSha256Stream } = await import('../src/verity/sha-stream.ts');
  const { createHash } = await import('node:crypto');
  for (const size of [0, 1, 4095, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 12345]) {
    const data = randomBytesSeeded(size, size + 1);
    const want = createHash('sha256').update(data).digest('hex');
    const s = createSha256Stream();
    const reused = new Uint8Array(70_001);
    let forked: Promise<string> | null = null;
    for (let off = 0; off < data.length; off += reused.length) {
      // The caller's buffer is overwritten at once: the stream must have taken its bytes.
      const n = Math.min(reused.length, data.length - off);
      reused.set(data.subarray(off, off + n));
      s.update(reused.subarray(0, n));
      reused.fill(0xee);
      if (forked === null && off + n >= data.length / 2) {
        const half = off + n;
        forked = s.copy().then((c) => {
          c.update(data.subarray(half));
          return c.digestHex();
        });
      }
    }
    assert.equal(await s.digestHex(), want, `size ${size}`);
    if (forked) assert.equal(await forked, want, `copy at half, size ${size}`);
  }
});

test('the SHA-256 stream: a copy() asked for while digestHex() is pending still sees the running state (the blob check after a failed layer)', async () => {
  const { createSha256Stream } = await import('../src/verity/sha-stream.ts');
  const { createHash } = await import('node:crypto');
  const data = randomBytesSeeded(3 * (1 << 20) + 5, 77);
  const want = createHash('sha256').update(data).digest('hex');
  for (let round = 0; round < 20; round++) {
    const s = createSha256Stream();
    s.update(data);
    const finished = s.digestHex();
    const copied = s.copy();
    assert.equal(await finished, want);
    assert.equal(await (await copied).digestHex(), want, `round ${round}`);
  }
});

test('the SHA-256 stream says when more than a bound is still to hash, and waiting brings it back under (same digest)', async () => {
  const { createSha256Stream } = await import('../src/verity/sha-stream.ts');
  const { createHash } = await import('node:crypto');
  const MiB = 1 << 20;
  const chunks = Array.from({ length: 48 }, (_, i) => randomBytesSeeded(MiB, 1000 + i));
  const want = createHash('sha256');
  const s = createSha256Stream();
  let waited = 0;
  for (const c of chunks) {
    want.update(c);
    void s.updateInPlace(c);
    const behind = s.backlogAbove(4 * MiB);
    if (behind) {
      waited++;
      await behind;
      assert.equal(s.backlogAbove(4 * MiB), null, 'settled, yet still more than the bound behind');
    }
  }
  // Handed over synchronously, 48 MiB outruns any thread: on the pool the caller must have waited.
  if (resolveImpl('auto') === 'native') assert.ok(waited > 0, 'never asked to wait');
  assert.equal(await s.digestHex(), want.digest('hex'));
});

test('a verifying stream takes no more input while its hash is over the bound behind, and passes each chunk on at once', async () => {
  const { hashAndPass } = await import('../src/oci/blob.ts');
  const { HASH_BACKLOG_BYTES } = await import('../src/tuning.ts');
  const { Transform, Readable } = await import('node:stream');
  const MiB = 1 << 20;
  // A hash that finishes only when told: its backlog is what the test says.
  let backlog = 0;
  let release: (() => void) | null = null;
  const hash = {
    update: () => undefined,
    updateInPlace: (d: Uint8Array) => {
      backlog += d.length;
      return Promise.resolve();
    },
    backlogAbove: (max: number) => (backlog <= max ? null : new Promise<void>((r) => (release = r))),
    digestHex: () => Promise.resolve(''),
    copy: () => Promise.reject(new Error('unused')),
  };
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hashAndPass(this, hash, chunk, null, cb);
    },
  });
  let produced = 0;
  const src = new Readable({
    read() {
      this.push(produced++ < 64 ? Buffer.alloc(MiB) : null);
    },
  });
  let passed = 0;
  t.on('data', (c: Buffer) => (passed += c.length));
  src.pipe(t);
  for (let step = 0; step < 20; step++) await new Promise((r) => setImmediate(r));
  // Stopped just past the bound, and what it took went on downstream.
  assert.equal(backlog, HASH_BACKLOG_BYTES + MiB);
  assert.equal(passed, backlog);
  assert.ok(produced < 64, `read ${produced} chunks ahead of the hash`);
  // The hash catches up: the stream takes input again and runs to the end.
  const ended = new Promise((r) => t.on('end', r));
  const pump = setInterval(() => {
    backlog = 0;
    release?.();
  }, 1);
  await ended;
  clearInterval(pump);
  assert.equal(passed, 64 * MiB);
});
