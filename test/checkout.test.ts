/** Checkout: hard links in every placement, exact times, deep trees, verified objects, the lock. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, constants as fsc, existsSync, fstatSync, lstatSync, openSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, heavy, run, tempDir, veritree } from './helpers.ts';
import { layoutOf, tarWith, type Ent } from './fixtures/tar-entries.ts';
import { parseDumpLine } from '../src/merge/dumpfile.ts';
import { openRepository } from '../src/index.ts';
import { replaceFile } from './fixtures/damage.ts';

let dir = '';
before(() => {
  dir = tempDir('veritree-checkout-');
});
after(() => cleanup(dir));

/** Content big enough to be stored as an object (not inline in the stream), distinct per tag. */
function big(tag: string): string {
  return `${tag}\n`.repeat(1200);
}

const MODES = [[], ['--copy'], ['--hardlink']] as const;

test('hard links in every placement (same folder, sibling, above, below, sorting first, across layers, target replaced or whited out) in all three modes', async () => {
  const l1 = await tarWith([
    { name: 'a/', type: 'directory' },
    { name: 'a/t1', content: big('t1') },
    { name: 'a/l1', type: 'link', linkname: 'a/t1' },
    // Siblings: the link's folder holds a file of the target's name, with other content.
    { name: 's1/t2', content: big('t2') },
    { name: 's2/t2', content: big('other t2') },
    { name: 's2/l2', type: 'link', linkname: 's1/t2' },
    // The link's folder above the target's, and below it.
    { name: 'up/deep/t3', content: big('t3') },
    { name: 'up/l3', type: 'link', linkname: 'up/deep/t3' },
    { name: 'low/t5', content: big('t5') },
    { name: 'low/sub/l5', type: 'link', linkname: 'low/t5' },
    // The link's name sorts before its target's.
    { name: 'z/t6', content: big('t6') },
    { name: 'a0/l6', type: 'link', linkname: 'z/t6' },
    // Targets replaced or whited out by the next layer.
    { name: 'r/t7', content: big('t7') },
    { name: 'r/l7', type: 'link', linkname: 'r/t7' },
    { name: 'w/t8', content: big('t8') },
    { name: 'w/l8', type: 'link', linkname: 'w/t8' },
    // A small (inline) file linked from another folder.
    { name: 'i/t9', content: 'small' },
    { name: 'j/l9', type: 'link', linkname: 'i/t9' },
  ]);
  const l2 = await tarWith([
    { name: 'c/l1b', type: 'link', linkname: 'a/t1' },
    { name: 'r/t7', content: big('new t7') },
    { name: 'w/.wh.t8', content: '' },
  ]);
  const layout = join(dir, 'links');
  layoutOf(layout, 'x', [l1, l2]);
  const repo = join(dir, 'repo-links');
  assert.equal(veritree(['import', `oci:${layout}:x`, '--repo', repo]).status, 0);
  const groups = [['a/t1', 'a/l1', 'c/l1b'], ['s1/t2', 's2/l2'], ['up/deep/t3', 'up/l3'], ['low/t5', 'low/sub/l5'], ['z/t6', 'a0/l6'], ['i/t9', 'j/l9']];
  const content: Record<string, string> = { 'a/t1': big('t1'), 's1/t2': big('t2'), 's2/t2': big('other t2'), 'up/deep/t3': big('t3'), 'low/t5': big('t5'), 'z/t6': big('t6'), 'r/t7': big('new t7'), 'r/l7': big('t7'), 'w/l8': big('t8'), 'i/t9': 'small' };
  for (const mode of MODES) {
    const out = join(dir, `co-links${mode.join('')}`);
    const r = veritree(['checkout', 'x', out, '--repo', repo, '--json', ...mode]);
    assert.equal(r.status, 0, `${mode.join(' ')}: ${r.stderr}`);
    const report = JSON.parse(r.stdout) as { hardlinkedObjects: number; hardlinks: number };
    assert.equal(report.hardlinks, 7, 'one link per name past the first');
    if (mode[0] === '--hardlink') assert.ok(report.hardlinkedObjects > 0, 'files are links to their objects');
    for (const g of groups) {
      const inodes = g.map((p) => statSync(join(out, p)).ino);
      assert.equal(new Set(inodes).size, 1, `${mode.join(' ')}: ${g.join(', ')} are one inode`);
      for (const p of g) assert.equal(readFileSync(join(out, p), 'utf8'), content[g[0] as string], `${mode.join(' ')}: ${p}`);
      if (mode[0] !== '--hardlink') assert.equal(statSync(join(out, g[0] as string)).nlink, g.length, `${mode.join(' ')}: ${g[0]} has ${g.length} names`);
    }
    for (const [p, want] of Object.entries(content)) assert.equal(readFileSync(join(out, p), 'utf8'), want, `${mode.join(' ')}: ${p}`);
    assert.notEqual(statSync(join(out, 'r/t7')).ino, statSync(join(out, 'r/l7')).ino, 'a replaced target no longer shares the link');
    assert.ok(!existsSync(join(out, 'w/t8')), 'the whited-out target is gone, its link stays');
    assert.notEqual(statSync(join(out, 's2/t2')).ino, statSync(join(out, 's1/t2')).ino);
  }
});

test('times to the nanosecond and before 1970, as dump writes them (files, folders, symlinks); implied folders get mtime 0', async () => {
  const tar = await tarWith([
    { name: 'd/', type: 'directory', pax: { mtime: '-5.000000001' } },
    { name: 'd/old', content: big('old'), pax: { mtime: '-1000000000.123456789' } },
    { name: 'd/ns', content: 'inline', pax: { mtime: '1700000000.987654321' } },
    { name: 'd/sl', type: 'symlink', linkname: 'ns', pax: { mtime: '-1.5' } },
    { name: 'implied/f', content: 'x', pax: { mtime: '12.000000003' } },
  ]);
  const layout = join(dir, 'times');
  layoutOf(layout, 't', [tar]);
  const repo = join(dir, 'repo-times');
  assert.equal(veritree(['import', `oci:${layout}:t`, '--repo', repo]).status, 0);
  const dump = veritree(['dump', '--rules', 'oci', 't', '--repo', repo]);
  assert.equal(dump.status, 0, dump.stderr);
  const want = new Map(dump.stdout.trim().split('\n').map((l) => {
    const r = parseDumpLine(l);
    return [r.path.toString('latin1'), BigInt(r.mtimeSec) * 1_000_000_000n + BigInt(r.mtimeNsec)] as const;
  }));
  assert.equal(want.get('/d/old'), -1_000_000_000_123_456_789n, 'dump: -1000000000.123456789 s');
  assert.equal(want.get('/d/sl'), -1_500_000_000n, 'dump: -1.5 s');
  for (const mode of MODES) {
    const out = join(dir, `co-times${mode.join('')}`);
    const r = veritree(['checkout', 't', out, '--repo', repo, ...mode]);
    assert.equal(r.status, 0, r.stderr);
    for (const p of ['/d', '/d/ns', '/d/sl', '/implied/f', '/implied', ...(mode[0] === '--hardlink' ? [] : ['/d/old'])]) {
      assert.equal(lstatSync(join(out, p), { bigint: true }).mtimeNs, want.get(p), `${mode.join(' ')}: ${p}`);
    }
    assert.equal(want.get('/implied'), 0n, 'a folder no entry names: mtime 0');
  }
});

test('without the native module, times are set to the microsecond and checkout says once what it lost', async () => {
  const tar = await tarWith([
    { name: 'a', content: 'a', pax: { mtime: '1700000000.123456789' } },
    { name: 'b', content: 'b', pax: { mtime: '1700000000.5' } },
  ]);
  const layout = join(dir, 'times-fallback');
  layoutOf(layout, 'f', [tar]);
  const repo = join(dir, 'repo-times-fallback');
  assert.equal(veritree(['import', `oci:${layout}:f`, '--repo', repo]).status, 0);
  const out = join(dir, 'co-times-fallback');
  const r = veritree(['checkout', 'f', out, '--repo', repo], { env: { ...process.env, VERITREE_DISABLE_NATIVE: 'store_sys' } });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.match(/times are set to the microsecond/g)?.length, 1, r.stderr);
  // Within the microsecond: Node 20 and 22 cut to it, Node 24 passes the double's nanoseconds on.
  const a = statSync(join(out, 'a'), { bigint: true }).mtimeNs - 1_700_000_000_123_456_789n;
  assert.ok(a > -1000n && a < 1000n, `off by ${a} ns`);
  assert.equal(statSync(join(out, 'b'), { bigint: true }).mtimeNs, 1_700_000_000_500_000_000n);
});

test('a tree 3,000 folders deep checks out under a limit of 128 descriptors, with its folders finished and a hard link from the bottom to the top', { skip: heavy(), timeout: 120_000 }, async () => {
  const depth = 3000;
  const ents: Ent[] = [{ name: 'top', content: big('top') }];
  let p = '';
  for (let i = 0; i < depth; i++) {
    p = p ? `${p}/d` : 'd';
    ents.push({ name: `${p}/`, type: 'directory', mode: 0o750, pax: { mtime: `${100 + i}.000000007` } });
    if (i % 500 === 0) ents.push({ name: `${p}/f`, content: big(`f${i}`) });
  }
  ents.push({ name: `${p}/bottom`, content: big('bottom') }, { name: `${p}/link`, type: 'link', linkname: 'top' }, { name: 'zlink', type: 'link', linkname: `${p}/bottom` });
  const layout = join(dir, 'deep');
  layoutOf(layout, 'd', [await tarWith(ents)]);
  const repo = join(dir, 'repo-deep');
  assert.equal(veritree(['import', `oci:${layout}:d`, '--repo', repo]).status, 0);
  const out = join(dir, 'co-deep');
  try {
    checkDeep(out, repo, depth);
  } finally {
    // A partial tree past PATH_MAX is more than rmSync can remove.
    run('rm', ['-rf', out]);
  }
});

function checkDeep(out: string, repo: string, depth: number): void {
  const r = run('prlimit', ['--nofile=128:128', process.execPath, join(import.meta.dirname, '..', 'src', 'cli', 'veritree.cjs'), 'checkout', 'd', out, '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
  // Walked by descriptors: the path is past PATH_MAX.
  const at = (fd: number, name: string): string => `/proc/self/fd/${fd}/${name}`;
  let fd = openSync(out, 'r');
  try {
    for (let i = 0; i < depth; i++) {
      const next = openSync(at(fd, 'd'), fsc.O_RDONLY | fsc.O_DIRECTORY);
      closeSync(fd);
      fd = next;
      if (i % 500 === 0 || i === depth - 1) {
        const st = fstatSync(fd, { bigint: true });
        assert.equal(st.mtimeNs, BigInt(100 + i) * 1_000_000_000n + 7n, `level ${i}: mtime`);
        assert.equal(Number(st.mode & 0o7777n), 0o750);
      }
      if (i % 500 === 0) assert.equal(readFileSync(at(fd, 'f'), 'utf8'), big(`f${i}`));
    }
    assert.equal(readFileSync(at(fd, 'bottom'), 'utf8'), big('bottom'));
    assert.equal(statSync(at(fd, 'link')).ino, statSync(join(out, 'top')).ino);
    assert.equal(statSync(join(out, 'zlink')).ino, statSync(at(fd, 'bottom')).ino);
  } finally {
    closeSync(fd);
  }
}

/** The object file of the store at `repo` whose bytes are `content`. */
function objectHolding(repo: string, content: string): string {
  for (const d of readdirSync(join(repo, 'objects'))) {
    for (const f of readdirSync(join(repo, 'objects', d))) {
      const p = join(repo, 'objects', d, f);
      if (statSync(p).size === content.length && readFileSync(p, 'utf8') === content) return p;
    }
  }
  throw new Error('no such object');
}

test('an object with a flipped byte (same size) fails checkout with STORE_CORRUPT naming the object and the path, in all three modes', async () => {
  const tar = await tarWith([
    { name: 'ok', content: big('fine') },
    { name: 'sub/bad', content: big('damaged') },
    { name: 'sub/x', content: big('with xattr'), pax: { 'SCHILY.xattr.user.k': 'v' } },
  ]);
  const layout = join(dir, 'corrupt');
  layoutOf(layout, 'c', [tar]);
  for (const victim of ['damaged', 'with xattr']) {
    const repo = join(dir, `repo-corrupt-${victim.replace(' ', '-')}`);
    assert.equal(veritree(['import', `oci:${layout}:c`, '--repo', repo]).status, 0);
    const obj = objectHolding(repo, big(victim));
    const bytes = readFileSync(obj);
    bytes[100] = (bytes[100] as number) ^ 1;
    replaceFile(obj, bytes);
    for (const mode of MODES) {
      if (victim === 'with xattr' && mode[0] === '--hardlink') continue; // a file with xattrs is never a link to its object
      const out = join(dir, `co-corrupt-${victim.replace(' ', '-')}${mode.join('')}`);
      const r = veritree(['checkout', 'c', out, '--repo', repo, ...mode]);
      assert.equal(r.status, 4, `${victim} ${mode.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /does not hash to its name/, `${victim} ${mode.join(' ')}`);
      assert.ok(r.stderr.includes(obj.slice(obj.lastIndexOf('/objects/') + 1)), `${mode.join(' ')}: names the object: ${r.stderr}`);
      assert.ok(r.stderr.includes(victim === 'damaged' ? '/sub/bad' : '/sub/x'), `${mode.join(' ')}: names the path: ${r.stderr}`);
    }
  }
});

test('checkout takes the shared lock: while gc or repair holds it exclusively, checkout waits (and gives up at --lock-timeout) without writing anything', async () => {
  const layout = join(dir, 'locked');
  layoutOf(layout, 'l', [await tarWith([{ name: 'f', content: big('f') }])]);
  const repoPath = join(dir, 'repo-locked');
  assert.equal(veritree(['import', `oci:${layout}:l`, '--repo', repoPath]).status, 0);
  const repo = await openRepository(repoPath);
  const out = join(dir, 'co-locked');
  const held = await repo.lockExclusive();
  try {
    const r = veritree(['checkout', 'l', out, '--repo', repoPath, '--lock-timeout', '0.3']);
    assert.equal(r.status, 4, r.stderr);
    assert.match(r.stderr, /locked/);
    assert.ok(!existsSync(out), 'nothing written');
  } finally {
    await held.release();
  }
  const shared = await repo.lockShared();
  try {
    const r = veritree(['checkout', 'l', out, '--repo', repoPath, '--lock-timeout', '0']);
    assert.equal(r.status, 0, `a shared holder does not keep checkout out: ${r.stderr}`);
  } finally {
    await shared.release();
  }
  assert.equal(readFileSync(join(out, 'f'), 'utf8'), big('f'));
});

test('an xattr flood that cannot be applied is one warning per file, not one per attribute', async () => {
  const pax: Record<string, string> = {};
  // "unknown." is no namespace the kernel knows: every one fails (EOPNOTSUPP).
  for (let i = 0; i < 2000; i++) pax[`SCHILY.xattr.unknown.k${i}`] = `v${i}`;
  const ents: Ent[] = [];
  for (let i = 0; i < 4; i++) ents.push({ name: `f${i}`, content: big(`f${i}`), pax });
  const layout = join(dir, 'flood');
  layoutOf(layout, 'f', [await tarWith(ents)]);
  const repo = join(dir, 'repo-flood');
  assert.equal(veritree(['import', `oci:${layout}:f`, '--repo', repo]).status, 0);
  const out = join(dir, 'co-flood');
  const r = veritree(['checkout', 'f', out, '--repo', repo]);
  assert.equal(r.status, 0, r.stderr.slice(0, 2000));
  const warnings = r.stderr.split('\n').filter((l) => l.includes('not applied'));
  assert.equal(warnings.length, 4, r.stderr.slice(0, 2000));
  for (const w of warnings) assert.match(w, /2000 of 2000 extended attributes not applied: xattr "unknown\.k0" not applied: .*; and 1999 more/);
  assert.equal(readFileSync(join(out, 'f3'), 'utf8'), big('f3'));
});
