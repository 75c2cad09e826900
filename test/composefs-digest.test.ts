/**
 * `veritree dump` gives the composefs digest that composefs-rs's rules give, on three real
 * images made by umoci. The expected digest does not come from veritree: umoci unpacks the
 * image (its own layer merging), composefs-rs's transforms are applied to that folder on disk as
 * its code and doc/oci.md state them (the root takes /usr's mode, owner, mtime and xattrs; /run is
 * emptied and takes /usr's mtime; mtimes are whole seconds), and mkcomposefs computes the digest
 * of the folder. veritree's side: `veritree dump`, then `mkcomposefs --from-file`; and `veritree
 * image` (veritree's own writer) must give that digest too.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { cleanup, hasTool, must, needShared, sharedSkip, spawnGuarded, tempDir, veritree } from './helpers.ts';
import { buildImage, hardlink, lines, symlink, write } from './fixtures/oci.ts';
import { mkcomposefs, type Mkcomposefs } from './fixtures/mkcomposefs.ts';

const missing = ['umoci', 'setfattr', 'getfattr'].filter((t) => !hasTool(t));
let oracle: Mkcomposefs | string = 'skipped: not yet looked for';
let dir = '';
before(() => {
  oracle = mkcomposefs();
  dir = tempDir('veritree-cfsdigest-');
});
after(() => dir && !process.env.VERITREE_KEEP && cleanup(dir));
const noOracle = (): string | false => (typeof oracle === 'string' ? oracle : false);
const skip = (): string | false => (missing.length ? `skipped: ${missing.join(', ')} not installed` : sharedSkip(noOracle()));

function sh(script: string): void {
  const r = spawnGuarded('sh', ['-c', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${script}: ${r.stderr}`);
}

/** The digest composefs-rs's rules give: umoci's unpacking, composefs-rs's transforms, mkcomposefs. */
function expectedDigest(layout: string, ref: string): string {
  const bundle = join(dir, `expected-${ref}`);
  must('umoci', ['unpack', '--image', `${layout}:${ref}`, bundle]);
  const root = join(bundle, 'rootfs');
  // Whole seconds for every entry (composefs-rs doc/oci.md, "Data precision").
  sh(`cd ${root} && find . -depth -print0 | while IFS= read -r -d '' p; do touch -h -d @$(stat -c %Y "$p") "$p"; done`);
  // /run emptied, with /usr's mtime (canonicalize_run); then the root takes /usr's metadata
  // (copy_root_metadata_from_usr), last, since every change below the root touches its mtime.
  sh(`cd ${root} && if [ -d run ]; then find run -mindepth 1 -delete; touch -d @$(stat -c %Y usr) run; fi`);
  sh(`cd ${root} && getfattr -h -d -m - -e hex usr 2>/dev/null | sed -n 's/^\\([^#][^=]*\\)=\\(.*\\)$/\\1 \\2/p' | while read -r k v; do setfattr -n "$k" -v "$v" .; done; chmod $(stat -c %a usr) . && chown $(stat -c %u:%g usr) . && touch -d @$(stat -c %Y usr) .`);
  // mkcomposefs 1.0.8 does not keep hard links when it reads a folder; composefs-rs keeps them
  // (doc/oci.md: "we take great care to faithfully represent hardlinks"). So: the folder's image
  // as a dump (composefs-info), with each set of names sharing an inode made one entry and `@`
  // links to its first name, in the dump's order, then the digest of that.
  const m = oracle as Mkcomposefs;
  m.run([root, join(bundle, 'dir.cfs')]);
  const dump = m.info(['dump', join(bundle, 'dir.cfs')]).split('\n').filter((l) => l !== '');
  const inodes = new Map<string, string[]>();
  const stats = spawnGuarded('sh', ['-c', `cd ${root} && find . ! -type d -links +1 -printf '%i %P\\n'`], { encoding: 'utf8' }).stdout.trim();
  for (const line of stats ? stats.split('\n') : []) {
    const [ino, path] = [line.slice(0, line.indexOf(' ')), `/${line.slice(line.indexOf(' ') + 1)}`];
    inodes.set(ino, [...(inodes.get(ino) ?? []), path]);
  }
  const firstOf = new Map<string, { first: string; n: number }>();
  for (const names of inodes.values()) {
    const inDump = dump.map((l) => l.split(' ')[0] as string).filter((p) => names.includes(p));
    for (const p of inDump) firstOf.set(p, { first: inDump[0] as string, n: inDump.length });
  }
  const linked = dump.map((l) => {
    const f = l.split(' ');
    const h = firstOf.get(f[0] as string);
    if (!h) return l;
    f[3] = String(h.n);
    if (h.first !== f[0]) {
      f[2] = `@${f[2]}`;
      f[8] = h.first;
    }
    return f.join(' ');
  });
  return m.run(['--from-file', '--print-digest-only', '-'], linked.join('\n') + '\n').trim();
}

function veritreeDigest(layout: string, ref: string): string {
  const repo = join(dir, `repo-${ref}`);
  const i = veritree(['import', `oci:${layout}:${ref}`, ref, '--repo', repo]);
  assert.equal(i.status, 0, i.stderr);
  const d = veritree(['dump', ref, '--repo', repo]);
  assert.equal(d.status, 0, d.stderr);
  const digest = (oracle as Mkcomposefs).run(['--from-file', '--print-digest-only', '-'], d.stdout).trim();
  // veritree's own image of the tag (TypeScript writer, kept in the store) is mkcomposefs's of
  // that dump in the repository's format: V1 for a new repository (--min-version=1), as cfsctl's.
  const img = veritree(['image', ref, '--json', '--repo', repo]);
  assert.equal(img.status, 0, img.stderr);
  const v1 = (oracle as Mkcomposefs).run(['--from-file', '--min-version=1', '--print-digest-only', '-'], d.stdout).trim();
  assert.equal((JSON.parse(img.stdout) as { image: string }).image, v1);
  return digest;
}

test('a single-layer image: the same composefs digest as composefs-rs\'s rules give', { skip: skip() }, () => {
  needShared(noOracle());
  const layout = join(dir, 'one');
  buildImage(layout, 'one', [
    (r) => {
      write(r, 'usr/bin/tool', lines(200, 'tool'), 0o755);
      write(r, 'usr/share/doc/readme', 'small\n');
      write(r, 'etc/os-release', 'ID=test\n');
      symlink(r, 'usr/bin/alias', 'tool');
      write(r, 'run/leftover', 'a build left this here\n');
      sh(`chmod 0750 ${r}/usr && touch -d @1700000000 ${r}/usr`);
    },
  ]);
  assert.equal(veritreeDigest(layout, 'one'), expectedDigest(layout, 'one'));
});

test('many layers with whiteouts and opaque folders: the same composefs digest', { skip: skip() }, () => {
  needShared(noOracle());
  const layout = join(dir, 'many');
  buildImage(layout, 'many', [
    (r) => {
      for (let i = 0; i < 6; i++) write(r, `usr/lib/m${i}/file`, lines(20 + i, `m${i}`));
      write(r, 'etc/a', 'a\n');
      write(r, 'etc/b', lines(10, 'b'));
      write(r, 'var/cache/x/y', lines(5, 'y'));
      sh(`touch -d @1650000000 ${r}/usr`);
    },
    (r) => {
      sh(`rm -rf ${r}/usr/lib/m1 ${r}/etc/a`);
      write(r, 'usr/lib/m2/file', lines(30, 'changed'));
    },
    (r) => {
      // An opaque folder: everything below var/cache replaced.
      sh(`rm -rf ${r}/var/cache && mkdir -p ${r}/var/cache/z && echo z > ${r}/var/cache/z/new`);
      write(r, 'etc/c', 'c\n');
    },
    (r) => {
      sh(`rm -rf ${r}/usr/lib/m4`);
      write(r, 'usr/lib/m5/extra', lines(3, 'extra'));
    },
  ]);
  assert.equal(veritreeDigest(layout, 'many'), expectedDigest(layout, 'many'));
});

test('special files, hard links and xattrs: the same composefs digest', { skip: skip() }, () => {
  needShared(noOracle());
  const layout = join(dir, 'special');
  buildImage(layout, 'special', [
    (r) => {
      write(r, 'usr/bin/ping', lines(40, 'ping'), 0o4755);
      sh(`setfattr -n user.note -v hello ${r}/usr/bin/ping && setfattr -n security.capability -v 0x0000000200200000000000000000000000000000 ${r}/usr/bin/ping`);
      write(r, 'usr/lib/shared', lines(50, 'shared'));
      hardlink(r, 'usr/lib/shared-link', 'usr/lib/shared');
      write(r, 'usr/lib/tiny', 'x');
      hardlink(r, 'usr/lib/tiny-link', 'usr/lib/tiny');
      sh(`mkfifo ${r}/usr/lib/fifo && setfattr -n user.dir -v d ${r}/usr/lib`);
      if (process.getuid?.() === 0) sh(`mknod ${r}/usr/lib/null c 1 3`);
      sh(`setfattr -n user.usr -v u ${r}/usr && touch -d @1690000000 ${r}/usr`);
    },
  ]);
  assert.equal(veritreeDigest(layout, 'special'), expectedDigest(layout, 'special'));
});
