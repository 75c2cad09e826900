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
import { isVeritreeError } from '../src/index.ts';
import { SplitStreamBuilder } from '../src/store/splitstream.ts';
import { readSplitStream, SplitStreamReader } from '../src/store/splitstream-reader.ts';
import { parseDumpLine, formatDumpLine, type DumpRecord } from '../src/merge/dumpfile.ts';
import { mergeLayers } from '../src/merge/merge.ts';
import { type LayerEntry } from '../src/merge/layer-entries.ts';
import { splitTar, type SplitSink, type TarEntry } from '../src/oci/tar-split.ts';
import { withChecksum } from './fixtures/hostile-blobs.ts';

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

// ---- richer layers: PAX records, long names and links, links, folders, inline runs, sparse ----

type GenEntry =
  | { kind: 'file'; name: string; body: Uint8Array; pax: Record<string, string> | null }
  | { kind: 'dir'; name: string }
  | { kind: 'symlink'; name: string; target: string }
  | { kind: 'link'; name: string; target: string }
  | { kind: 'sparse'; name: string };

const segment = fc.stringMatching(/^[a-zA-Z0-9._-]{1,12}$/).filter((s) => s !== '.' && s !== '..');
/** Names up to ~300 bytes, some with UTF-8: long ones need PAX `path` records. */
const nameArb = fc.oneof(
  fc.array(segment, { minLength: 1, maxLength: 4 }).map((p) => p.join('/')),
  fc.tuple(fc.array(segment, { minLength: 1, maxLength: 3 }), fc.integer({ min: 90, max: 300 })).map(([p, n]) => `${p.join('/')}/${'L'.repeat(n)}`.slice(0, 400)),
  fc.array(segment, { minLength: 1, maxLength: 2 }).map((p) => `${p.join('/')}/caf\u00e9-\u6587`)
);
const bodyArb = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  { weight: 3, arbitrary: fc.uint8Array({ minLength: 60, maxLength: 70 }) },
  { weight: 2, arbitrary: fc.uint8Array({ minLength: 65, maxLength: 4000 }) }
);
const paxArb = fc.option(fc.dictionary(fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9.]{0,15}$/).filter((k) => !['path', 'linkpath', 'size', 'uid', 'gid', 'mtime', 'uname', 'gname'].includes(k) && !k.startsWith('GNU.sparse')), fc.string({ maxLength: 40 }), { maxKeys: 3 }), { freq: 2 });
const genEntry: fc.Arbitrary<GenEntry> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('file' as const), name: nameArb, body: bodyArb, pax: paxArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('dir' as const), name: nameArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('symlink' as const), name: nameArb, target: nameArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('link' as const), name: nameArb, target: nameArb }) }
);

async function richTar(entries: GenEntry[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const parts: Buffer[] = [];
  const collected = (async () => {
    for await (const c of pack) parts.push(c as Buffer);
  })();
  for (const e of entries) {
    if (e.kind === 'file') pack.entry({ name: e.name, ...(e.pax ? { pax: e.pax } : {}) }, Buffer.from(e.body));
    else if (e.kind === 'dir') pack.entry({ name: e.name, type: 'directory' });
    else if (e.kind === 'symlink') pack.entry({ name: e.name, type: 'symlink', linkname: e.target });
    else if (e.kind === 'link') pack.entry({ name: e.name, type: 'link', linkname: e.target });
  }
  pack.finalize();
  await collected;
  return Buffer.concat(parts);
}

/** What tar-stream's own reader sees: the independent oracle for entry classification. */
async function oracleEntries(tar: Buffer): Promise<string[]> {
  const ex = tarStream.extract();
  const out: string[] = [];
  const done = (async () => {
    for await (const entry of ex) {
      const h = entry.header;
      out.push(`${h.type}|${h.name}|${h.size ?? 0}|${h.linkname ?? ''}`);
      entry.resume();
    }
  })();
  ex.end(tar);
  await done;
  return out;
}

const TYPE_NAMES: Record<string, string> = { '0': 'file', '\0': 'file', '1': 'link', '2': 'symlink', '5': 'directory' };

/**
 * A sink that pushes back now and then: every `every`-th call returns a promise that settles a
 * task later, and, when it has `externalBytes`, whole contents go there. Any call made while a
 * returned promise is still pending breaks the splitter's contract and fails the property.
 */
function pushbackSink(parts: Buffer[], seen: string[] | null, every: number, whole: boolean): SplitSink {
  let calls = 0;
  let pending = false;
  const maybeWait = (): Promise<void> | undefined => {
    assert.equal(pending, false, 'the sink was called while its last promise was pending');
    if (every === 0 || ++calls % every !== 0) return undefined;
    pending = true;
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        pending = false;
        resolve();
      })
    );
  };
  return {
    inline: (b) => {
      const p = maybeWait();
      parts.push(Buffer.from(b));
      return p;
    },
    external: async (_e, content) => {
      await maybeWait();
      for await (const c of content) parts.push(Buffer.from(c));
    },
    ...(whole
      ? {
          externalBytes: (_e: TarEntry, b: Uint8Array) => {
            const p = maybeWait();
            parts.push(Buffer.from(b));
            return p;
          },
        }
      : {}),
    entry: (e) => {
      assert.equal(pending, false, 'the sink was called while its last promise was pending');
      if (!seen) return;
      const name = Buffer.from(e.path, 'latin1').toString('utf8');
      const link = Buffer.from(e.linkpath, 'latin1').toString('utf8');
      seen.push(`${TYPE_NAMES[e.typeflag] ?? e.typeflag}|${name}|${e.typeflag === '1' || e.typeflag === '2' || e.typeflag === '5' ? 0 : e.size}|${link}`);
    },
    warn: () => undefined,
  };
}

test('property: rich layers (PAX records, long names and links, links, folders, inline runs) split exactly and classify as tar-stream does, whatever the chunking and however the sink pushes back', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(genEntry, { maxLength: 25 }), fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 0, max: 5 }), fc.boolean(), async (entries, chunk, every, whole) => {
      const tar = await richTar(entries);
      const seen: string[] = [];
      const parts: Buffer[] = [];
      async function* chunks(): AsyncGenerator<Uint8Array> {
        for (let o = 0; o < tar.length; o += chunk) yield tar.subarray(o, o + chunk);
      }
      const stats = await splitTar(chunks(), pushbackSink(parts, seen, every, whole));
      assert.deepEqual(Buffer.concat(parts), tar, 'every byte accounted for, in order');
      assert.deepEqual(seen, await oracleEntries(tar));
      assert.equal(stats.tarBytes, tar.length);
    }),
    { numRuns: RUNS, seed: 4242 }
  );
});

test('property: a sparse entry anywhere in a rich layer is refused with TAR_UNSUPPORTED', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(genEntry, { maxLength: 10 }), fc.nat(), fc.constantFrom('S', 'pax'), async (entries, where, how) => {
      const tar = await richTar(entries);
      // Splice the sparse entry in at an entry boundary: before the end-of-archive blocks, or at 0.
      const cut = where % 2 === 0 ? 0 : tar.length - 1024;
      const sparse =
        how === 'S'
          ? await rawHeader('holes', 'S')
          : await richTar([{ kind: 'file', name: 'holes', body: new Uint8Array(10), pax: { 'GNU.sparse.major': '1', 'GNU.sparse.minor': '0' } }]).then((t) => t.subarray(0, t.length - 1024));
      const bad = Buffer.concat([tar.subarray(0, cut), sparse, tar.subarray(cut)]);
      await assert.rejects(split(bad, 999), (e: unknown) => isVeritreeError(e) && e.code === 'TAR_UNSUPPORTED');
    }),
    { numRuns: Math.ceil(RUNS / 4), seed: 99 }
  );
});

async function rawHeader(name: string, type: string): Promise<Buffer> {
  const t = await richTar([{ kind: 'file', name, body: new Uint8Array(0), pax: null }]);
  const h = Buffer.from(t.subarray(0, 512));
  h.write(type, 156);
  return withChecksum(h);
}

// ---- the merge against a reference model ------------------------------------------------------

type Op =
  | { op: 'file'; path: string; v: number }
  | { op: 'dir'; path: string }
  | { op: 'symlink'; path: string }
  | { op: 'link'; path: string; target: string }
  | { op: 'wh'; path: string }
  | { op: 'opq'; path: string };

const small = fc.constantFrom('a', 'b', 'c');
const pathArb = fc.array(small, { minLength: 1, maxLength: 3 }).map((p) => p.join('/'));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('file' as const), path: pathArb, v: fc.nat(9) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('dir' as const), path: pathArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('symlink' as const), path: pathArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('link' as const), path: pathArb, target: pathArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('wh' as const), path: pathArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('opq' as const), path: fc.option(pathArb).map((p) => p ?? '') }) }
);

function entryOf(o: Op): LayerEntry {
  const base: LayerEntry = { rawPath: o.path, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeSec: 0, mtimeNsec: 0, size: 0, object: null, inline: new Uint8Array(0), linkname: '', devmajor: 0, devminor: 0, xattrs: new Map() };
  const dirOf = (p: string): string => (p.includes('/') ? p.slice(0, p.lastIndexOf('/') + 1) : '');
  const baseOf = (p: string): string => p.slice(p.lastIndexOf('/') + 1);
  switch (o.op) {
    case 'file':
      return { ...base, size: 1, inline: Uint8Array.of(o.v) };
    case 'dir':
      return { ...base, type: 'dir', mode: 0o755 };
    case 'symlink':
      return { ...base, type: 'symlink', linkname: 'elsewhere' };
    case 'link':
      return { ...base, type: 'hardlink', linkname: o.target };
    case 'wh':
      return { ...base, rawPath: `${dirOf(o.path)}.wh.${baseOf(o.path)}` };
    case 'opq':
      return { ...base, rawPath: o.path ? `${o.path}/.wh..wh..opq` : '.wh..wh..opq' };
  }
}

/** The OCI rules, written the plain way: a flat map, whole-map scans, no tree. */
function referenceMerge(layers: Op[][]): Map<string, string> {
  const m = new Map<string, string>();
  const under = (p: string, root: string): boolean => root === '' || p.startsWith(`${root}/`);
  const dropTree = (p: string): void => {
    for (const k of [...m.keys()]) if (k === p || under(k, p)) m.delete(k);
  };
  for (const layer of layers) {
    for (const o of layer) {
      if (o.op === 'wh') dropTree(o.path);
      if (o.op === 'opq') for (const k of [...m.keys()]) if (under(k, o.path) && k !== o.path) m.delete(k);
    }
    for (const o of layer) {
      if (o.op === 'wh' || o.op === 'opq') continue;
      const parts = o.path.split('/');
      let blocked = false;
      for (let i = 1; i < parts.length && !blocked; i++) {
        const anc = parts.slice(0, i).join('/');
        const t = m.get(anc);
        if (t === undefined) m.set(anc, 'dir');
        else if (t !== 'dir') blocked = true;
      }
      if (blocked) continue;
      let val: string;
      if (o.op === 'link') {
        const t = m.get(o.target);
        if (t === undefined || !t.startsWith('file') || o.target === o.path) continue;
        val = t;
      } else val = o.op === 'file' ? `file:${o.v}` : o.op;
      const old = m.get(o.path);
      if (old === 'dir' && val === 'dir') continue;
      if (old !== undefined) dropTree(o.path);
      m.set(o.path, val);
    }
  }
  return m;
}

test('property: the merge agrees with a plain reference model of the OCI whiteout rules', () => {
  fc.assert(
    fc.property(fc.array(fc.array(opArb, { maxLength: 12 }), { minLength: 1, maxLength: 4 }), (layers) => {
      const tree = mergeLayers(layers.map((l) => l.map(entryOf)));
      const got = new Map<string, string>();
      for (const [p, n] of tree.nodes) {
        if (p === '') continue;
        got.set(p, n.type === 'file' ? `file:${n.inline?.[0] ?? '?'}` : n.type);
      }
      assert.deepEqual(new Map([...got].sort()), new Map([...referenceMerge(layers)].sort()));
    }),
    { numRuns: RUNS * 5, seed: 31337 }
  );
});

test('property: the streaming chunk reader gives what the whole-section reader gives, or STORE_CORRUPT for both', async () => {
  const op = fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 3000 }).map((b) => ({ inline: b })), fc.nat(20).map((k) => ({ object: k.toString(16).padStart(64, '0') })));
  const flatten = (chunks: Iterable<{ kind: string; bytes?: Uint8Array; index?: number }>): string[] => {
    const out: string[] = [];
    for (const c of chunks) {
      if (c.kind === 'object') out.push(`#${c.index}`);
      else if (out.length && !out[out.length - 1]?.startsWith('#')) out[out.length - 1] += Buffer.from(c.bytes as Uint8Array).toString('hex');
      else out.push(Buffer.from(c.bytes as Uint8Array).toString('hex'));
    }
    return out;
  };
  await fc.assert(
    fc.asyncProperty(fc.array(op, { maxLength: 40 }), fc.option(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }))), async (ops, flip) => {
      const b = new SplitStreamBuilder('sha256', 'layer');
      for (const o of ops) {
        if ('inline' in o) b.addInline(o.inline);
        else b.addObject(o.object, 10);
      }
      const bytes = Buffer.from(b.finish());
      if (flip) bytes[flip[0] % bytes.length] = flip[1];
      let whole: string[] | null = null;
      let streamed: string[] | null = null;
      try {
        whole = flatten(readSplitStream(bytes).chunks);
      } catch (e) {
        assert.ok(isVeritreeError(e) && e.code === 'STORE_CORRUPT', String(e));
      }
      try {
        const got = [];
        for await (const c of new SplitStreamReader(bytes).chunks()) got.push(c);
        streamed = flatten(got);
      } catch (e) {
        assert.ok(isVeritreeError(e) && e.code === 'STORE_CORRUPT', String(e));
      }
      assert.deepEqual(streamed, whole);
    }),
    { numRuns: RUNS, seed: 8128 }
  );
});
