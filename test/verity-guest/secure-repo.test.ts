/**
 * The guest tier: secure repositories on a kernel with fs-verity (scripts/test-verity-guest.sh
 * runs this inside ../shared/tools/verity-vm.sh's guest, on its ext4 `-O verity` disk). Each test
 * is one finding of issue 35, damaged as an attacker would do it (damage.ts). The emulated guest is
 * slow (each CLI run takes seconds), so the tests share two repositories made by the first one,
 * in file order: the secure one is damaged only by the last tests that use it.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { verityDigest, toHex } from '../../src/verity/index.ts';
import { cleanup, run, veritree } from '../helpers.ts';
import { plainLayerLayout } from '../fixtures/oci.ts';
import { tarOf } from '../fixtures/tar.ts';
import { copyWithoutVerity, flipBlockOnDisk, replaceWith, verityDir } from './damage.ts';

/** One object above import's present-check size (64 KiB: looked for before it is written), one below. */
const BIG = 'big line of the secure image\n'.repeat(4000);
const SMALL = 'small line\n'.repeat(2000);
const idOf = (s: string): string => toHex(verityDigest(Buffer.from(s), 'sha256'));
const objPath = (repo: string, id: string): string => join(repo, 'objects', id.slice(0, 2), id.slice(2));

let work = '';
let layout = '';
let n = 0;
/** Made by the first test: a secure repository and an insecure one, each with `app`. */
let secure = '';
let insecure = '';

before(async () => {
  work = join(verityDir(), `secure-repo-${process.pid}`);
  mkdirSync(work, { recursive: true });
  layout = join(work, 'oci');
  plainLayerLayout(layout, 'app', await tarOf([
    { name: 'big.txt', content: BIG },
    { name: 'small.txt', content: SMALL },
  ]));
  // Another image (another layer) holding the same two files: importing it finds them present.
  plainLayerLayout(join(work, 'oci2'), 'app2', await tarOf([
    { name: 'big.txt', content: BIG },
    { name: 'small.txt', content: SMALL },
    { name: 'extra.txt', content: 'extra\n' },
  ]));
});
after(() => work && cleanup(work));

/** A new repository made by `veritree init` (secure unless `insecure`), with the image as `app`. */
function repoWithApp(insecure = false): string {
  const repo = join(work, `repo-${++n}`);
  const init = veritree(['init', '--repo', repo, ...(insecure ? ['--insecure'] : [])]);
  assert.equal(init.status, 0, init.stderr);
  assert.match(init.stdout, insecure ? /insecure, as asked/ : /secure: meta\.json has fs-verity/);
  importApp(repo);
  return repo;
}

function importApp(repo: string, from = `oci:${layout}:app`, tag = 'app'): void {
  const r = veritree(['import', from, tag, '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
}

/** `fsverity measure` of each file: its digest (hex), or null where it has no fs-verity. */
function measure(paths: string[]): (string | null)[] {
  return paths.map((p) => {
    const r = run('fsverity', ['measure', p]);
    return r.status === 0 ? (/^sha256:([0-9a-f]{64}) /.exec(r.stdout)?.[1] ?? null) : null;
  });
}

function made(repo: string): string {
  assert.ok(repo, 'made by the first test (init makes a secure repository)');
  return repo;
}

function allObjects(repo: string): string[] {
  const out: string[] = [];
  for (const d of readdirSync(join(repo, 'objects'))) for (const f of readdirSync(join(repo, 'objects', d))) out.push(d + f);
  return out;
}

function fsckJson(repo: string, ...flags: string[]): { status: number | null; types: string[]; stdout: string } {
  const r = veritree(['fsck', '--repo', repo, ...flags]);
  const types = flags.includes('--json') ? (JSON.parse(r.stdout) as { issues: { type: string }[] }).issues.map((i) => i.type) : [];
  return { status: r.status, types, stdout: r.stdout + r.stderr };
}

test('init makes a secure repository: meta.json and every object sealed with its name; --insecure opts out', () => {
  const repo = (secure = repoWithApp());
  assert.notEqual(measure([join(repo, 'meta.json')])[0], null, 'meta.json has fs-verity');
  const ids = allObjects(repo);
  assert.ok(ids.includes(idOf(BIG)) && ids.includes(idOf(SMALL)), 'both files are objects');
  assert.deepEqual(measure(ids.map((id) => objPath(repo, id))), ids, 'every object (files, streams, config, manifest) is measured equal to its name');
  const plain = (insecure = repoWithApp(true));
  assert.equal(measure([join(plain, 'meta.json')])[0], null, '--insecure: meta.json has no fs-verity');
});

test('checkout shares no inode with the store: a chmod in one checkout changes neither the object nor another', () => {
  const repo = made(secure);
  const [a, b] = [join(work, `co-a-${n}`), join(work, `co-b-${n}`)];
  for (const dir of [a, b]) assert.equal(veritree(['checkout', 'app', dir, '--repo', repo]).status, 0);
  const obj = objPath(repo, idOf(BIG));
  const before = statSync(obj);
  chmodSync(join(a, 'big.txt'), 0o600);
  assert.equal(statSync(obj).mode, before.mode, 'the object keeps its mode');
  assert.equal(statSync(join(b, 'big.txt')).mode & 0o777, 0o644, 'the other checkout keeps its mode');
  assert.notEqual(statSync(join(a, 'big.txt')).ino, before.ino);
});

test('mount of an insecure repository says so on stderr, and serves a replaced object', () => {
  const repo = made(insecure);
  const other = BIG.replace('big', 'bad');
  replaceWith(objPath(repo, idOf(BIG)), Buffer.from(other));
  const mnt = join(work, 'mnt-insecure');
  mkdirSync(mnt);
  const m = veritree(['mount', 'app', mnt, '--repo', repo]);
  assert.equal(m.status, 0, m.stderr);
  assert.match(m.stderr, /is an insecure repository/);
  try {
    assert.equal(readFileSync(join(mnt, 'big.txt'), 'utf8'), other, 'what "insecure" means');
  } finally {
    assert.equal(veritree(['umount', mnt]).status, 0);
  }
});

test('an object copied without fs-verity: fsck says object-verity-missing; import does not count it present but seals it again', () => {
  const repo = made(secure);
  const ids = [idOf(BIG), idOf(SMALL)];
  for (const id of ids) copyWithoutVerity(objPath(repo, id));
  assert.deepEqual(measure(ids.map((id) => objPath(repo, id))), [null, null]);
  const found = fsckJson(repo, '--json');
  assert.equal(found.status, 1, found.stdout);
  assert.equal(found.types.filter((t) => t === 'object-verity-missing').length, 2, found.stdout);
  // Another image with the same files, so both presence paths run: the big object's
  // look-before-write, the small one's link EEXIST.
  importApp(repo, `oci:${join(work, 'oci2')}:app2`, 'app2');
  assert.deepEqual(measure(ids.map((id) => objPath(repo, id))), ids, 'not counted present: sealed again');
  assert.equal(fsckJson(repo).status, 0);
});

test('mount of a secure repository passes verity=require: an object replaced by other sealed bytes is refused', () => {
  const repo = made(secure);
  const other = Buffer.from(BIG.replace('big', 'bad'));
  replaceWith(objPath(repo, idOf(BIG)), other, true);
  const mnt = join(work, 'mnt-secure');
  mkdirSync(mnt);
  const m = veritree(['mount', 'app', mnt, '--repo', repo]);
  assert.equal(m.status, 0, m.stderr);
  assert.match(m.stdout, /\(verity=require\)/);
  assert.doesNotMatch(m.stderr, /insecure/);
  try {
    assert.equal(readFileSync(join(mnt, 'small.txt'), 'utf8'), SMALL);
    assert.throws(() => readFileSync(join(mnt, 'big.txt')), { code: 'EIO' });
  } finally {
    assert.equal(veritree(['umount', mnt]).status, 0);
  }
  const found = fsckJson(repo, '--json');
  assert.ok(found.types.includes('object-digest-mismatch'), found.stdout);
});

test('a block changed on the disk under an object: fsck finds it, --repair quarantines it and the image naming it, import restores it', () => {
  const repo = repoWithApp();
  const image = veritree(['image', 'app', '--repo', repo]);
  assert.equal(image.status, 0, image.stderr);
  const id = idOf(BIG);
  flipBlockOnDisk(objPath(repo, id));
  assert.throws(() => readFileSync(objPath(repo, id)), { code: 'EIO' }, 'the kernel refuses the changed block');
  const found = fsckJson(repo, '--json');
  assert.equal(found.status, 1, found.stdout);
  assert.ok(found.types.includes('object-unreadable'), found.stdout);
  const fixed = veritree(['fsck', '--repair', '--repo', repo]);
  assert.match(fixed.stdout, /moved 1 corrupt entry to /, fixed.stdout);
  assert.match(fixed.stdout, /removed tag app: import it again/, 'repair names the tag that named it');
  const after = fsckJson(repo, '--json');
  assert.equal(after.status, 0, `no images/ link outlives the object it names: ${after.stdout}`);
  importApp(repo);
  assert.equal(readFileSync(objPath(repo, id), 'utf8'), BIG, 'the object is whole again');
  assert.deepEqual(measure([objPath(repo, id)]), [id]);
  assert.equal(fsckJson(repo).status, 0);
});
