/** `veritree digest` against `fsverity digest` (Debian's fsverity-utils), byte for byte. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, ROOT, SHARED, cleanup, must, run, randomBytesSeeded, skipUnless, tempDir, veritree } from './helpers.ts';

const NEED_FSVERITY = skipUnless('fsverity');
let dir = '';
const files: string[] = [];

before(() => {
  dir = tempDir();
  const sizes = [0, 1, 63, 64, 65, 4095, 4096, 4097, 128 * 4096 - 1, 128 * 4096, 128 * 4096 + 1, 128 * 128 * 4096 + 4096];
  // A few random sizes up to 64 MiB (seeded: the same every run), one of them past the split threshold.
  sizes.push(1_234_567, 9_999_991, (64 << 20) + 12_345);
  for (const [i, size] of sizes.entries()) {
    const p = join(dir, `f${i}-${size}`);
    writeFileSync(p, randomBytesSeeded(size, i + 1));
    files.push(p);
  }
});
after(() => cleanup(dir));

test('veritree digest prints exactly what fsverity digest prints (sha256, full form)', { skip: NEED_FSVERITY }, () => {
  const want = must('fsverity', ['digest', ...files]);
  const got = veritree(['digest', ...files]);
  assert.equal(got.status, 0, got.stderr);
  assert.equal(got.stdout, want);
});

test('--compact and --hash sha512 match fsverity --compact --hash-alg=sha512', { skip: NEED_FSVERITY }, () => {
  const want = must('fsverity', ['digest', '--compact', '--hash-alg=sha512', ...files]);
  const got = veritree(['digest', '--compact', '--hash', 'sha512', ...files]);
  assert.equal(got.status, 0, got.stderr);
  assert.equal(got.stdout, want);
});

test('every back end and one worker give the same output as fsverity', { skip: NEED_FSVERITY }, () => {
  const small = files.slice(0, 12);
  const want = must('fsverity', ['digest', ...small]);
  for (const impl of ['node', 'noble', 'auto']) {
    const got = veritree(['digest', '--hash-impl', impl, '--jobs', '1', ...small]);
    assert.equal(got.stdout, want, impl);
  }
  // The native kernel in the worker pool too (more jobs than libuv has threads).
  assert.equal(veritree(['digest', '--hash-impl', 'auto', '--jobs', '5', ...small]).stdout, want, 'auto, worker pool');
});

test('a large file is split across workers and still matches', { skip: NEED_FSVERITY }, () => {
  const big = files[files.length - 1] as string;
  const want = must('fsverity', ['digest', '--compact', big]);
  // Up to libuv's four threads the ranges hash there; five take the worker pool.
  for (const jobs of ['2', '3', '5']) {
    const got = veritree(['digest', '--compact', '--jobs', jobs, big]);
    assert.equal(got.stdout, want, `jobs ${jobs}`);
  }
});

test('procfs and sysfs files (size 0 or 4096 whatever they hold) are read to their end: the digest of their bytes', { skip: NEED_FSVERITY }, () => {
  // fsverity digest reads st_size bytes: the empty file's digest for /proc, "unexpected
  // end-of-file" for /sys. veritree digests what the file holds, as fsverity does for a copy.
  const special = ['/proc/version', '/proc/sys/kernel/ostype', '/sys/kernel/address_bits', '/sys/kernel/mm/transparent_hugepage/enabled'].filter((p) => existsSync(p));
  assert.ok(special.length >= 2, 'procfs and sysfs are mounted');
  const copies = special.map((p, i) => {
    const c = join(dir, `special-${i}`);
    writeFileSync(c, readFileSync(p));
    return c;
  });
  const want = must('fsverity', ['digest', '--compact', ...copies]);
  for (const impl of ['auto', 'node', 'noble']) {
    const got = veritree(['digest', '--compact', '--hash-impl', impl, ...special]);
    assert.equal(got.status, 0, got.stderr);
    assert.equal(got.stdout, want, impl);
  }
  const json = JSON.parse(veritree(['digest', '--json', ...special]).stdout) as { size: number }[];
  assert.deepEqual(json.map((r) => r.size), copies.map((c) => readFileSync(c).length), 'the size is what was read');
});

test('every file of the shared test vectors: what fsverity digest prints', { skip: NEED_FSVERITY }, () => {
  const root = join(SHARED, 'vectors');
  if (!existsSync(root)) assert.fail(`${root} is missing`);
  const all = readdirSync(root, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
  assert.ok(all.length > 10);
  const got = veritree(['digest', ...all]);
  assert.equal(got.status, 0, got.stderr);
  assert.equal(got.stdout, must('fsverity', ['digest', ...all]));
});

test('bad input: missing file, directory, dangling link, each one line naming the path; others still digested', () => {
  const bad = join(dir, 'bad');
  mkdirSync(bad, { recursive: true });
  const dangling = join(bad, 'dangling');
  symlinkSync(join(bad, 'nowhere'), dangling);
  const good = files[1] as string;
  const r = veritree(['digest', join(bad, 'missing'), bad, dangling, good]);
  assert.equal(r.status, 1);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 3, r.stderr);
  assert.match(lines[0] ?? '', new RegExp(`^veritree: ${join(bad, 'missing')}: No such file or directory$`));
  assert.match(lines[1] ?? '', new RegExp(`^veritree: ${bad}: Is a directory$`));
  assert.match(lines[2] ?? '', new RegExp(`^veritree: ${dangling}: No such file or directory$`));
  assert.match(r.stdout, new RegExp(`^sha256:[0-9a-f]{64} ${good}\\n$`));
});

// As root, permissions do not apply: setpriv drops the two capabilities that bypass them
// (the process stays root, so it can still reach the checkout wherever CI clones it).
const AS_ROOT = process.getuid?.() === 0;
test('bad input: an unreadable file', { skip: AS_ROOT ? skipUnless('setpriv') : false }, () => {
  const p = join(dir, 'secret');
  writeFileSync(p, 'x'.repeat(100), { mode: 0o000 });
  const args = ['digest', p, files[0] as string];
  const r = AS_ROOT ? run('setpriv', ['--bounding-set', '-dac_override,-dac_read_search', process.execPath, CLI, ...args]) : veritree(args);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /secret: Permission denied/);
  assert.match(r.stdout, /^sha256:/);
});

test('--json gives one array in argument order', () => {
  const r = veritree(['digest', '--json', files[2] as string, join(dir, 'nope'), files[0] as string]);
  const rows = JSON.parse(r.stdout) as { path: string; digest?: string; error?: string }[];
  assert.deepEqual(rows.map((x) => x.path), [files[2], join(dir, 'nope'), files[0]]);
  assert.equal(rows[2]?.digest, 'sha256:3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95');
  assert.equal(rows[1]?.error, 'No such file or directory');
  assert.equal(r.status, 1);
});

test('usage errors exit 2', () => {
  assert.equal(veritree(['digest']).status, 2);
  assert.equal(veritree(['digest', '--hash', 'md5', 'x']).status, 2);
  assert.equal(veritree(['nonsense']).status, 2);
});

test('a reader that closes the pipe early ends the command quietly', () => {
  // 300 KB of layer tar into `head -c 10`: far more than a pipe holds, so the write meets EPIPE.
  const repo = join(dir, 'pipe-repo');
  assert.equal(veritree(['import', `oci:${join(ROOT, 'example', 'oci')}:latest`, '--repo', repo]).status, 0);
  const diffId = 'sha256:b60fc908b146c5d7e27af8c5bd017bc89067ce41c581bf1326be14bda84be328';
  const r = run('sh', ['-c', `"${process.execPath}" "${CLI}" cat-layer --repo "${repo}" ${diffId} | head -c 10 | wc -c`]);
  assert.equal(r.stdout.trim(), '10');
  assert.equal(r.stderr, '', 'no stack trace');
});
