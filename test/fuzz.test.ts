/**
 * Property-based fuzzing of the parsers that read hostile bytes: the tar splitter, the split
 * stream reader and the dumpfile codec. In CI each property runs a bounded number of cases;
 * `npm run fuzz` runs many more (VERITREE_FUZZ_RUNS). A failure prints its seed and shrunk
 * input: turn it into a named regression test.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as tarStream from 'tar-stream';
import { SplitStreamBuilder, readSplitStream, isVeritreeError, parseDumpLine, formatDumpLine, type DumpRecord } from '../src/index.ts';
import { splitTar } from '../src/oci/tar-split.ts';

const RUNS = Number(process.env.VERITREE_FUZZ_RUNS ?? 200);

async function tarOf(files: { name: string; body: Uint8Array }[]): Promise<Buffer> {
  const pack = tarStream.pack();
  for (const f of files) pack.entry({ name: f.name }, Buffer.from(f.body));
  pack.finalize();
  const parts: Buffer[] = [];
  for await (const c of pack) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function* chunks(b: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < b.length; o += size) yield b.subarray(o, o + size);
}

/** Splits a tar; returns the bytes it accounts for (inline + external, in order). */
async function split(tar: Buffer, chunk: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  await splitTar(chunks(tar, chunk), {
    inline: (b) => void parts.push(Buffer.from(b)),
    external: async (_e, content) => {
      for await (const c of content) parts.push(Buffer.from(c));
    },
    warn: () => undefined,
  });
  return Buffer.concat(parts);
}

const fileArb = fc.record({
  name: fc.stringMatching(/^[a-z0-9._-]{1,20}(\/[a-z0-9._-]{1,20}){0,3}$/),
  body: fc.uint8Array({ maxLength: 3000 }),
});

test('property: any valid tar, fed in any chunk size, splits into exactly its own bytes', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fileArb, { maxLength: 8 }), fc.integer({ min: 1, max: 4096 }), async (files, chunk) => {
      const tar = await tarOf(files);
      assert.deepEqual(await split(tar, chunk), tar);
    }),
    { numRuns: RUNS, seed: 1125 }
  );
});

test('property: a damaged tar never crashes the splitter: it splits exactly or fails with a veritree error', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fileArb, { minLength: 1, maxLength: 5 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
      fc.option(fc.nat()),
      async (files, flips, cut) => {
        const tar = Buffer.from(await tarOf(files));
        for (const [pos, v] of flips) tar[pos % tar.length] = v;
        const damaged = cut === null ? tar : tar.subarray(0, cut % (tar.length + 1));
        try {
          assert.deepEqual(await split(damaged, 777), damaged);
        } catch (e) {
          assert.ok(isVeritreeError(e), `not a veritree error: ${String(e)}`);
          assert.match(e.code, /^TAR_/);
        }
      }
    ),
    { numRuns: RUNS, seed: 2511 }
  );
});

test('property: a damaged split stream is read or refused as STORE_CORRUPT, never a crash', () => {
  const b = new SplitStreamBuilder('sha256', 'layer');
  b.addInline(Buffer.from('header bytes'.repeat(40)));
  b.addObject('ab'.repeat(32), 1000);
  b.addNamedRef('x', 'cd'.repeat(32));
  b.addInline(Buffer.alloc(600));
  const good = Buffer.from(b.finish());
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), fc.option(fc.nat()), (flips, cut) => {
      const s = Buffer.from(good);
      for (const [pos, v] of flips) s[pos % s.length] = v;
      const damaged = cut === null ? s : s.subarray(0, cut % (s.length + 1));
      try {
        const parsed = readSplitStream(damaged);
        for (const c of parsed.chunks) if (c.kind === 'object') assert.ok(c.index < parsed.objectRefs.length);
      } catch (e) {
        assert.ok(isVeritreeError(e), `not a veritree error: ${String(e)}`);
        assert.equal(e.code, 'STORE_CORRUPT');
      }
    }),
    { numRuns: RUNS * 5, seed: 77 }
  );
});

test('property: dumpfile records round-trip through format and parse, whatever bytes their names hold', () => {
  const bytes = fc.uint8Array({ minLength: 1, maxLength: 40 }).map((u) => Buffer.from(u));
  const rec: fc.Arbitrary<DumpRecord> = fc.record({
    path: bytes.map((b) => Buffer.concat([Buffer.from('/'), b])),
    size: fc.nat(),
    mode: fc.constantFrom(0o100644, 0o40755, 0o120777, 0o20600),
    hardlink: fc.boolean(),
    nlink: fc.integer({ min: 1, max: 9 }),
    uid: fc.nat(),
    gid: fc.nat(),
    rdev: fc.nat(),
    mtimeSec: fc.nat(),
    mtimeNsec: fc.integer({ min: 0, max: 999_999_999 }),
    payload: fc.option(bytes),
    content: fc.option(bytes),
    digest: fc.option(fc.stringMatching(/^[0-9a-f]{64}$/)),
    xattrs: fc.array(fc.tuple(bytes, bytes), { maxLength: 3 }),
  }, { noNullPrototype: true });
  fc.assert(
    fc.property(rec, (r) => {
      const line = formatDumpLine(r);
      assert.ok(!line.includes('\n'));
      assert.deepEqual(parseDumpLine(line), r);
    }),
    { numRuns: RUNS * 5, seed: 5 }
  );
});
