/**
 * The composefs EROFS writer: the composefs project's own conformance suite (byte-identical
 * images, refused dumpfiles), random trees against mkcomposefs 1.0.8 built from ../shared, the
 * `mkfs` command, images kept in the store as composefs-rs keeps them, and a real mount.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { SHARED, ROOT, cleanup, exists, hasTool, heavy, needShared, prng, sharedSkip, skipShared, spawnGuarded, tempDir, veritree } from './helpers.ts';
import { mkcomposefs, type Mkcomposefs } from './fixtures/mkcomposefs.ts';
import { parseDumpfile } from '../src/erofs/dump-parse.ts';
import { writeComposefsImage } from '../src/erofs/writer.ts';
import { composefsImageObjects } from '../src/erofs/reader.ts';
import { mountUnavailable } from '../src/erofs/mount.ts';
import { xxh32 } from '../src/erofs/xxh32.ts';
import { formatDumpLine, type DumpRecord } from '../src/merge/dumpfile.ts';
import { toHex, verityDigest } from '../src/verity/index.ts';
import { replaceFile } from './fixtures/damage.ts';

const ASSETS = join(SHARED, 'vectors', 'composefs-assets');
const noAssets = existsSync(ASSETS) ? false : `skipped: ${ASSETS} not present`;
/** Parsed without CFS_PARSE_STRICT to reach their digests (the assets' README). */
const LENIENT = new Set(['longlink.dump', 'no-newline.dump', 'honggfuzz-longlink-unterminated.dump']);

let dir = '';
let oracle: Mkcomposefs | string = 'skipped: not yet looked for';
before(() => {
  dir = tempDir('veritree-erofs-');
  oracle = mkcomposefs();
});
after(() => dir && !process.env.VERITREE_KEEP && cleanup(dir));

function assetBytes(name: string): Buffer {
  const b = readFileSync(join(ASSETS, name));
  return name.endsWith('.gz') ? gunzipSync(b) : b;
}

async function imageOf(dump: Buffer | string, opts: { strict?: boolean; minVersion?: number; maxVersion?: number } = {}): Promise<Buffer> {
  const root = await parseDumpfile([typeof dump === 'string' ? Buffer.from(dump, 'latin1') : dump], { strict: opts.strict ?? false });
  return writeComposefsImage(root, opts).bytes;
}

test('xxh32 gives the reference values', () => {
  assert.equal(xxh32(Buffer.from(''), 0), 0x02cc5d05);
  assert.equal(xxh32(Buffer.from('abc'), 0), 0x32d153ff);
  assert.equal(xxh32(Buffer.from('Nobody inspects the spammish repetition'), 0), 0xe2293b2f);
});

test('conformance: every image of the composefs suite is byte-identical to mkcomposefs 1.0.8\'s', { skip: sharedSkip(noAssets) }, async () => {
  needShared(noAssets);
  const names = readdirSync(ASSETS).filter((f) => /\.dump(\.gz)?$/.test(f) && !f.startsWith('should-fail'));
  assert.equal(names.length, 14);
  for (const name of names) {
    const versionFile = join(ASSETS, `${name}.version`);
    const v = existsSync(versionFile) ? Number(readFileSync(versionFile, 'utf8').trim()) : undefined;
    const bytes = await imageOf(assetBytes(name), { strict: !LENIENT.has(name), ...(v === undefined ? {} : { minVersion: v, maxVersion: v }) });
    const want = readFileSync(join(ASSETS, `${name}.sha256`), 'utf8').trim().split(/\s/)[0];
    assert.equal(createHash('sha256').update(bytes).digest('hex'), want, name);
  }
});

test('conformance: every should-fail dumpfile is refused, naming its line', { skip: sharedSkip(noAssets) }, async () => {
  needShared(noAssets);
  const names = readdirSync(ASSETS).filter((f) => f.startsWith('should-fail'));
  assert.equal(names.length, 14);
  for (const name of names) {
    // Refused for their own fault, not merely for a missing final newline: read leniently.
    await assert.rejects(imageOf(assetBytes(name)), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'DUMPFILE_INVALID', `${name}: ${e.message}`);
      assert.match(e.message, /^dumpfile line \d+: /, name);
      return true;
    }, name);
  }
});

test('the image reader finds every object the writer names', async () => {
  const a = 'aa'.repeat(32);
  const b = 'bb'.repeat(32);
  const dump = [
    '/ 4096 40755 2 0 0 0 0.0 - - -',
    `/x 5000 100644 1 0 0 0 0.0 aa/${a.slice(2)} - ${a}`,
    `/d 4096 40755 2 0 0 0 0.0 - - -`,
    `/d/y 1 100644 1 0 0 0 0.0 bb/${b.slice(2)} - ${b}`,
    `/d/z 1 100644 1 0 0 0 0.0 bb/${b.slice(2)} - ${b}`,
    '/inline 3 100644 1 0 0 0 0.0 - abc -',
    '',
  ].join('\n');
  const found = composefsImageObjects(await imageOf(dump));
  assert.deepEqual([...found.objects].sort(), [a, b]);
  assert.equal(found.foreign, 0);
});

/** A random tree as dumpfile records, with what the writer has to get right: names as bytes,
 * folders over several blocks, inline and external files, symlinks near the block size, devices
 * and whiteouts, shared and unshared xattrs, overlay xattrs to escape, hard links, ACLs. */
function randomDump(seed: number): string {
  const rnd = prng(seed);
  const pick = <T,>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const int = (n: number): number => Math.floor(rnd() * n);
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
  const name = (): Buffer => {
    const kind = int(6);
    if (kind === 0) return Buffer.from([0x20 + int(0x5e), 0x80 + int(0x7f)]);
    if (kind === 1) return Buffer.from(pick(['-', ' x', 'a=b', 'back\\slash', 'tab\tname', 'new\nline', 'ünï', '.hidden']));
    if (kind === 2) return Buffer.from('n'.repeat(1 + int(254)));
    return Buffer.from(`f${int(100000)}`);
  };
  const keys = ['user.a', 'user.b', 'security.selinux', 'trusted.overlay.opaque', 'trusted.overlay.redirect', 'trusted.foo', 'system.posix_acl_access', 'system.posix_acl_default', 'user.overlay.origin', 'lustre.x', 'other.key'];
  const values = [Buffer.from(''), Buffer.from('y'), Buffer.from('system_u:object_r:bin_t:s0'), Buffer.from([0, 1, 2, 0xff])];
  const xattrs = (): [Buffer, Buffer][] => {
    const out = new Map<string, Buffer>();
    for (let i = int(4); i > 0; i--) out.set(pick(keys), rnd() < 0.7 ? pick(values) : bytes(int(300)));
    return [...out].map(([k, v]) => [Buffer.from(k), v]);
  };
  const mtimes = [[1700000000, 0], [1700000000, 0], [1600000000, 5], [0, 0]] as const;
  const base = (path: Buffer, mode: number): DumpRecord => {
    const [s, ns] = rnd() < 0.8 ? pick([...mtimes]) : [int(2 ** 31), int(1e9)];
    return { path, size: 0, mode, hardlink: false, nlink: 1, uid: rnd() < 0.9 ? int(3) : 70000 + int(1000), gid: rnd() < 0.9 ? int(3) : 70000, rdev: 0, mtimeSec: s, mtimeNsec: ns, payload: null, content: null, digest: null, xattrs: xattrs() };
  };
  const records: DumpRecord[] = [{ ...base(Buffer.from('/'), 0o40755), size: 4096, nlink: 2 }];
  const files: Buffer[] = [];
  const dirs: Buffer[] = [Buffer.from('/')];
  const join2 = (d: Buffer, n: Buffer): Buffer => Buffer.concat([d, d.length === 1 ? Buffer.alloc(0) : Buffer.from('/'), n]);
  const entries = 40 + int(200);
  for (let i = 0; i < entries; i++) {
    const parent = pick(dirs);
    const path = join2(parent, name());
    if (records.some((r) => r.path.equals(path))) continue;
    const kind = int(10);
    const perm = int(0o10000);
    if (kind === 0 && dirs.length < 12) {
      records.push({ ...base(path, 0o40000 | perm), size: 4096, nlink: 2 });
      dirs.push(path);
    } else if (kind <= 3) {
      const size = pick([1, 100, 4096, 4097, 1 << 20, 2 ** 40 + 3, 9000000000000000]);
      const digest = rnd() < 0.8 ? bytes(32).toString('hex') : null;
      records.push({ ...base(path, 0o100000 | perm), size, nlink: 1 + int(2), payload: digest && rnd() < 0.9 ? Buffer.from(`${digest.slice(0, 2)}/${digest.slice(2)}`) : null, digest });
      files.push(path);
    } else if (kind <= 5) {
      const size = pick([0, 1, 64, 2047, 2049, 4095, 4096, 4097, 5000]);
      records.push({ ...base(path, 0o100000 | perm), size, content: size ? bytes(size) : null });
      files.push(path);
    } else if (kind === 6) {
      const target = Buffer.from('t'.repeat(1 + pick([0, 10, 2000, 3900, 4000, 4094])));
      records.push({ ...base(path, 0o120777), size: target.length, payload: target });
    } else if (kind === 7) {
      records.push({ ...base(path, pick([0o020000, 0o060000]) | perm), rdev: rnd() < 0.3 ? 0 : int(2 ** 20) });
    } else if (kind === 8) {
      records.push(base(path, pick([0o010000, 0o140000]) | perm));
    } else if (files.length > 0) {
      records.push({ ...base(path, 0o100644), hardlink: true, payload: pick(files) });
    }
  }
  // One folder with entries enough for several dirent blocks.
  if (rnd() < 0.5) {
    const big = join2(Buffer.from('/'), Buffer.from('big-folder'));
    if (!records.some((r) => r.path.equals(big))) {
      records.push({ ...base(big, 0o40755), size: 4096, nlink: 2 });
      for (let i = 0; i < 150 + int(300); i++) records.push(base(join2(big, Buffer.from(`entry-${i}-${'x'.repeat(int(60))}`)), 0o100644));
    }
  }
  return records.map((r) => formatDumpLine(r)).join('\n') + '\n';
}

test('random trees: the same bytes as mkcomposefs 1.0.8, for every format version', async (t) => {
  if (typeof oracle === 'string') return skipShared(t, oracle);
  const m = oracle;
  const runs = Number(process.env.VERITREE_EROFS_RUNS ?? 40);
  let refusals = 0;
  for (let seed = 1; seed <= runs; seed++) {
    const dump = randomDump(seed);
    const versions = pick3(seed);
    const args = versions === null ? [] : [`--min-version=${versions[0]}`, `--max-version=${versions[1]}`];
    const out = join(dir, `random-${seed}.cfs`);
    const input = join(dir, `random-${seed}.dump`);
    writeFileSync(input, dump, 'latin1');
    let refusedBy: string | null = null;
    try {
      m.run(['--from-file', ...args, input, out]);
    } catch (e) {
      refusedBy = (e as Error).message;
    }
    const opts = versions === null ? {} : { minVersion: versions[0], maxVersion: versions[1] };
    if (refusedBy !== null) {
      // What mkcomposefs cannot write (an inode's xattrs over budget once the overlay ones are
      // added, say), veritree refuses too.
      await assert.rejects(imageOf(readFileSync(input), opts), /dumpfile line \d+: /, `seed ${seed}: mkcomposefs refused (${refusedBy.trim()}), veritree did not`);
      refusals++;
      continue;
    }
    const mine = await imageOf(readFileSync(input), opts);
    const theirs = readFileSync(out);
    if (!mine.equals(theirs)) {
      let at = 0;
      while (at < mine.length && mine[at] === theirs[at]) at++;
      assert.fail(`seed ${seed}: images differ at byte ${at} (mine ${mine.length} bytes, mkcomposefs ${theirs.length}); dumpfile kept at ${input}`);
    }
  }
  assert.ok(refusals < runs / 4, `${refusals} of ${runs} random trees refused: the generator makes too few images`);
});

test('number fields read the strtoull way (signs, wrap-around, past 2^53) give mkcomposefs\'s bytes', async (t) => {
  if (typeof oracle === 'string') return skipShared(t, oracle);
  const dump = [
    '/ 4096 40755 2 +0 0 0 -1.5 - - -',
    '/a 1 100644 1 -1 +70000 0 18446744073709551615.+4294967297 aa/bb - ' + 'ab'.repeat(32),
    '/b 0 0100644 99999999999999999999 1 1 0 1700000000.0 - - -',
    '/c 0 20644 1 0 0 -1 1.1 - - -',
    '',
  ].join('\n');
  const input = join(dir, 'numbers.dump');
  writeFileSync(input, dump);
  const out = join(dir, 'numbers.cfs');
  oracle.run(['--from-file', input, out]);
  assert.ok((await imageOf(dump)).equals(readFileSync(out)));
});

test('xattr values made to look alike (same length, same first and last bytes) give mkcomposefs\'s bytes', async (t) => {
  // The writer counts values by a hash of a sample of their bytes, and falls back to full hashing
  // when values crowd one sample: these 600 redirects all share theirs, some of them twice.
  if (typeof oracle === 'string') return skipShared(t, oracle);
  const lines = ['/ 4096 40755 2 0 0 0 0.0 - - -'];
  for (let i = 0; i < 600; i++) {
    const middle = String(i % 500).padStart(20, '0');
    lines.push(`/f${String(i).padStart(4, '0')} 100 100644 1 0 0 0 0.0 ${'a'.repeat(12)}${middle}${'b'.repeat(12)} - -`);
  }
  const dump = lines.join('\n') + '\n';
  const input = join(dir, 'alike.dump');
  writeFileSync(input, dump);
  const out = join(dir, 'alike.cfs');
  oracle.run(['--from-file', input, out]);
  assert.ok((await imageOf(dump)).equals(readFileSync(out)));
});

test('a dumpfile read in pieces of any size, into one buffer the reader refills, gives the image it gives whole', { skip: heavy() }, async () => {
  const dump = Buffer.from(randomDump(7), 'latin1');
  const whole = writeComposefsImage(await parseDumpfile([dump])).bytes;
  for (const size of [1, 3, 7, 64, 4096]) {
    const scratch = Buffer.alloc(size);
    // Each piece is handed over in the same buffer, overwritten by the next one.
    const pieces = function* (): Generator<Uint8Array> {
      for (let at = 0; at < dump.length; at += size) {
        const n = dump.copy(scratch, 0, at, at + size);
        yield scratch.subarray(0, n);
      }
    };
    assert.ok(writeComposefsImage(await parseDumpfile(pieces())).bytes.equals(whole), `pieces of ${size} bytes`);
  }
});

test('odd paths (double and trailing slashes, relative, . and .., escaped slashes and NULs, duplicates, missing or non-folder parents): mkcomposefs\'s refusals and bytes', async (t) => {
  // The reader places plain paths of a folder it has seen straight from the line, and everything
  // else by walking from the root: each of these must land where mkcomposefs puts it, or be
  // refused where it refuses.
  if (typeof oracle === 'string') return skipShared(t, oracle);
  const m = oracle;
  const base = ['/ 4096 40755 2 0 0 0 0.0 - - -', '/d 4096 40755 2 0 0 0 0.0 - - -', '/d/e 4096 40755 2 0 0 0 0.0 - - -', '/f 0 100644 1 0 0 0 0.0 - - -'];
  const file = (path: string): string => `${path} 0 100644 1 0 0 0 0.0 - - -`;
  const variants: string[][] = [
    [file('/d//x')], [file('d/x')], [file('/d/./x')], [file('/d/e/../x')], [file('/d/x/')], [file('/d/\\x2fx')],
    [file('/d/x\\x00y')], [file('/d/e')], [file('/f/x')], [file('/missing/x')], [file('/d/x'), file('/d/a'), file('/d/x')],
    [file('/d/y'), file('/d/e/x'), file('/d/z'), file('/d/e/w')], [file(`/d/${'n'.repeat(256)}`)], [file(`/d/${'n'.repeat(255)}`)],
    [file('//x')], [file('/x')], [file('/d/..')], [file('/d/\\x2e')], [file('/./x')], [file('/d/e/')],
    [file('/d/x'), '/d/h 0 @100644 1 0 0 0 0.0 /d//x - -'], [file('/d/x'), '/d/h 0 @100644 1 0 0 0 0.0 d/e/../x - -'],
    ['/d/e2 4096 40755 2 0 0 0 0.0 - - -', file('/d/e2/x'), file('/d//e2/y'), file('/d/e2//z')],
  ];
  let refusals = 0;
  for (const [i, lines] of variants.entries()) {
    const dump = [...base, ...lines].join('\n') + '\n';
    const input = join(dir, `odd-${i}.dump`);
    const out = join(dir, `odd-${i}.cfs`);
    writeFileSync(input, dump, 'latin1');
    let refusedBy: string | null = null;
    try {
      m.run(['--from-file', input, out]);
    } catch (e) {
      refusedBy = (e as Error).message;
    }
    if (refusedBy !== null) {
      await assert.rejects(imageOf(dump), /dumpfile line \d+: /, `${lines.join(' | ')}: mkcomposefs refused (${refusedBy.trim()}), veritree did not`);
      refusals++;
    } else {
      assert.ok((await imageOf(dump)).equals(readFileSync(out)), `${lines.join(' | ')}: images differ`);
    }
  }
  assert.ok(refusals > 3 && refusals < variants.length - 3, `${refusals} of ${variants.length} refused: both kinds are exercised`);
});

function pick3(seed: number): [number, number] | null {
  return seed % 3 === 0 ? [0, 0] : seed % 3 === 1 ? null : [1, 1];
}

test('veritree mkfs: the image file and digest mkcomposefs gives; a bad line refused, no image left', async (t) => {
  const dump = join(dir, 'mkfs.dump');
  writeFileSync(dump, randomDump(1000), 'latin1');
  const img = join(dir, 'mkfs.cfs');
  const r = veritree(['mkfs', '--print-digest', dump, img]);
  assert.equal(r.status, 0, r.stderr);
  const bytes = readFileSync(img);
  assert.equal(r.stdout.trim(), toHex(verityDigest(bytes)));
  if (typeof oracle !== 'string') {
    assert.equal(r.stdout.trim(), oracle.run(['--from-file', '--print-digest-only', dump]).trim());
  } else t.diagnostic(oracle);
  const only = veritree(['mkfs', '--print-digest-only', dump]);
  assert.equal(only.stdout, r.stdout);

  const bad = join(dir, 'bad.dump');
  writeFileSync(bad, '/ 4096 40755 2 0 0 0 0.0 - - -\n/ok 0 100644 1 0 0 0 0.0 - - -\n/bad 0 644 1 0 0 0 0.0 - - -\n');
  const out = join(dir, 'bad.cfs');
  const f = veritree(['mkfs', bad, out]);
  assert.equal(f.status, 3);
  assert.match(f.stderr, /line 3: invalid mode 644/);
  assert.equal(exists(out), false);
  assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('bad.cfs')), []);

  // A line that never ends is refused before it is held whole.
  const long = join(dir, 'long.dump');
  writeFileSync(long, `/ 4096 40755 2 0 0 0 0.0 - - -\n/x 0 100644 1 0 0 0 0.0 - - - user.a=${'a'.repeat(3 << 20)}\n`);
  const l = veritree(['mkfs', long, join(dir, 'long.cfs')]);
  assert.equal(l.status, 3);
  assert.match(l.stderr, /line 2: a line longer than 1048576 bytes/);
});

const importable = hasTool('umoci') ? false : 'skipped: umoci not installed';

test('veritree image: the store keeps the image as composefs-rs does, its digest is mkcomposefs\'s of the dump, a second run writes nothing, fsck and gc keep it', { skip: importable }, async (t) => {
  const repo = join(dir, 'store');
  const example = join(ROOT, 'example', 'oci');
  assert.equal(veritree(['import', `oci:${example}:latest`, 'ex', '--repo', repo]).status, 0);
  const first = veritree(['image', 'ex', '--json', '--repo', repo]);
  assert.equal(first.status, 0, first.stderr);
  const r1 = JSON.parse(first.stdout) as { image: string; written: boolean };
  assert.equal(r1.written, true);
  if (typeof oracle !== 'string') {
    const dump = veritree(['dump', 'ex', '--repo', repo]);
    // A new repository's format is V1, as cfsctl's: mkcomposefs --min-version=1.
    assert.equal(r1.image, oracle.run(['--from-file', '--min-version=1', '--print-digest-only', '-'], dump.stdout).trim());
  } else t.diagnostic(oracle);
  const link = join(repo, 'images', r1.image);
  assert.equal(readlinkSync(link), `../objects/${r1.image.slice(0, 2)}/${r1.image.slice(2)}`);
  assert.equal(lstatSync(join(repo, 'objects', r1.image.slice(0, 2), r1.image.slice(2))).isFile(), true);
  // The config stream names the V1 image (composefs.image.v1); the tag still names the manifest.
  const { readRefs } = await import('../src/store/splitstream-reader.ts');
  const configLink = readdirSync(join(repo, 'streams')).find((n) => n.startsWith('oci-config-sha256:')) as string;
  const configId = readlinkSync(join(repo, 'streams', configLink)).split('/').slice(-2).join('');
  const refs = readRefs(readFileSync(join(repo, 'objects', configId.slice(0, 2), configId.slice(2))));
  const imageRef = refs.namedRefs.find((n) => n.name === 'composefs.image.v1');
  assert.ok(imageRef);
  assert.equal(refs.streamRefs[imageRef.index], r1.image);

  const second = veritree(['image', 'ex', '--json', '--repo', repo]);
  assert.equal(second.status, 0, second.stderr);
  assert.deepEqual({ ...(JSON.parse(second.stdout) as object), seconds: 0 }, { ...r1, written: false, seconds: 0 });

  const fsck = veritree(['fsck', '--json', '--repo', repo]);
  assert.equal(fsck.status, 0, fsck.stdout);
  const gc = veritree(['gc', '--json', '--repo', repo]);
  assert.equal(gc.status, 0, gc.stderr);
  assert.equal((JSON.parse(gc.stdout) as { imagesRemoved: string[] }).imagesRemoved.length, 0);
  assert.equal(existsSync(link), true);
  // Every object the image names survived gc, and the old config stream object went.
  const after = veritree(['fsck', '--json', '--repo', repo]);
  assert.equal(after.status, 0, after.stdout);
  assert.equal(existsSync(join(repo, 'objects', configId.slice(0, 2), configId.slice(2))), true);
  // The tagged image still checks out.
  assert.equal(veritree(['checkout', 'ex', join(dir, 'co-after-gc'), '--repo', repo]).status, 0);
});

const whyNoMount = mountUnavailable();
const mountable = whyNoMount !== null ? `skipped: ${whyNoMount}` : !hasTool('umoci') ? 'skipped: umoci not installed' : false;

/** Every entry below `root`: type, mode, owner, size, link target, user xattrs, content hash. */
function describe(root: string): string[] {
  const r = spawnGuarded('sh', ['-c', `cd '${root}' && find . -mindepth 1 -printf '%P %y %m %U:%G %s %l\\n' | LC_ALL=C sort`], { encoding: 'utf8' });
  const out: string[] = [];
  for (const line of r.stdout.split('\n').filter(Boolean)) {
    const path = line.split(' ')[0] as string;
    const full = join(root, path);
    const st = lstatSync(full);
    const x = spawnGuarded('getfattr', ['-h', '-d', '-m', '^user\\.', '-e', 'hex', full], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l && !l.startsWith('#')).join(',');
    const hash = st.isFile() ? createHash('sha256').update(readFileSync(full)).digest('hex') : '';
    out.push(`${line.replace(/ \d+ (?=\S*$)/, st.isFile() ? ` ${st.size} ` : ' - ')} ${x} ${hash}`);
  }
  return out;
}

test('veritree mount: the mounted image is the checkout, byte for byte; umount undoes it', { skip: mountable }, () => {
  const repo = join(dir, 'mount-store');
  const example = join(ROOT, 'example', 'oci');
  assert.equal(veritree(['import', `oci:${example}:latest`, 'ex', '--repo', repo]).status, 0);
  const mnt = tempDir('veritree-mnt-');
  const co = join(dir, 'mount-co');
  assert.equal(veritree(['checkout', '--copy', 'ex', co, '--repo', repo]).status, 0);
  // No composefs image yet: mount writes it first and says so.
  const m = veritree(['mount', 'ex', mnt, '--repo', repo]);
  assert.equal(m.status, 0, m.stderr);
  assert.match(m.stderr, /ex has no composefs image yet: writing it/);
  assert.match(m.stdout, /^mounted composefs image [0-9a-f]{64} at .* \(insecure: objects are not checked by the kernel\)$/m);
  // An insecure repository says so once, on stderr, in one line.
  assert.equal(m.stderr.split('\n').filter((l) => l.includes('is an insecure repository')).length, 1, m.stderr);
  const id = veritree(['image', 'ex', '--repo', repo]);
  assert.equal(id.status, 0);
  assert.ok(m.stdout.includes(id.stdout.trim()), 'the image mounted is the one written');
  try {
    const mounted = describe(mnt);
    assert.ok(mounted.length > 5);
    assert.deepEqual(mounted, describe(co));
    assert.equal(spawnGuarded('touch', [join(mnt, 'new')]).status !== 0, true, 'the mount is read-only');
  } finally {
    const u = veritree(['umount', mnt]);
    assert.equal(u.status, 0, u.stderr);
  }
  assert.deepEqual(readdirSync(mnt), []);
  const again = veritree(['umount', mnt]);
  assert.equal(again.status, 2, 'a second umount is a usage error, not a system failure');
  assert.match(again.stderr, /nothing is mounted there/);
  cleanup(mnt);
});

test('veritree mount refuses a damaged image before mounting it', { skip: mountable }, () => {
  const repo = join(dir, 'mount-bad');
  const example = join(ROOT, 'example', 'oci');
  assert.equal(veritree(['import', `oci:${example}:latest`, 'ex', '--repo', repo]).status, 0);
  const id = (veritree(['image', 'ex', '--repo', repo]).stdout).trim();
  const obj = join(repo, 'objects', id.slice(0, 2), id.slice(2));
  const b = readFileSync(obj);
  b[2000] = (b[2000] ?? 0) ^ 1;
  replaceFile(obj, b);
  const mnt = tempDir('veritree-mnt-');
  const r = veritree(['mount', id, mnt, '--repo', repo]);
  assert.equal(r.status, 4);
  assert.match(r.stderr, /is damaged/);
  assert.deepEqual(readdirSync(mnt), []);
  cleanup(mnt);
});
