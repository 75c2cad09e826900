/**
 * EROFS format V2 (composefs-rs's legacy writer) against composefs-rs itself: the insta snapshots
 * of crates/composefs/tests/mkfs.rs (debug_img of the V2 images of its `empty` and `simple`
 * trees, test/fixtures/composefs-rs/), compared through a port of the dump, and the fs-verity
 * digests that file pins for the same images (test_erofs_digest_stability), compared byte for
 * byte. Then what the snapshots do not reach: SHA-512 digests, hard links, deep and big folders,
 * xattrs shared and escaped, checked against the rules of writer.rs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './helpers.ts';
import { debugImage } from './erofs-debug.ts';
import { percent2 } from './erofs-debug-fmt.ts';
import { emptyTree, simpleTree } from './erofs-v2-trees.ts';
import { writeComposefsImage } from '../src/erofs/writer.ts';
import { writeImageV2 } from '../src/erofs/writer-v2.ts';
import { S_IFCHR, S_IFDIR, S_IFREG } from '../src/erofs/node.ts';
import { CfsTree } from '../src/erofs/tree.ts';
import { toHex, verityDigest } from '../src/verity/index.ts';
import { isVeritreeError } from '../src/errors.ts';

const snapshot = (name: string): string => readFileSync(join(ROOT, 'test', 'fixtures', 'composefs-rs', `mkfs__${name}.snap`), 'utf8');

test('V2: the dump of the empty tree is composefs-rs mkfs__empty.snap, byte for byte', () => {
  assert.equal(debugImage(writeImageV2(emptyTree()).bytes), snapshot('empty'));
});

test('V2: the dump of the simple tree is composefs-rs mkfs__simple.snap, byte for byte', () => {
  assert.equal(debugImage(writeImageV2(simpleTree()).bytes), snapshot('simple'));
});

test('V2: the images have the fs-verity digests mkfs.rs pins for empty_v2 and simple_v2', () => {
  const empty = writeComposefsImage(emptyTree(), { minVersion: 2 });
  const simple = writeComposefsImage(simpleTree(), { minVersion: 2 });
  assert.equal(empty.version, 2);
  assert.equal(toHex(verityDigest(empty.bytes, 'sha256')), '086b702a519b57d6ef5aea6f8b3f2be24355cd1fb835cd80fb4e3d388b24d5a5');
  assert.equal(toHex(verityDigest(simple.bytes, 'sha256')), 'a8fcd41f8b313bede69f462f2af0a38d64b99a6333f5df884ea9ab4037fac722');
  assert.equal(simple.inodes, 8);
});

test('V2: the tree is only read, so a second image of it is the same', () => {
  const t = simpleTree();
  assert.deepEqual(writeImageV2(t).bytes, writeImageV2(t).bytes);
});

test('debug dump: percentages round as Rust {:.2} does (a tie to even)', () => {
  assert.equal(percent2(128, 4096), '3.12');
  assert.equal(percent2(32, 4096), '0.78');
  assert.equal(percent2(992, 4096), '24.22');
  assert.equal(percent2(4096, 4096), '100.00');
  assert.equal(percent2(1, 3), '33.33');
});

test('V2 SHA-512: metacopy {0, 68, 0, 2} and the 64-byte digest, redirect /5a/<126 hex>', () => {
  const img = writeImageV2(simpleTree(64), 'sha512').bytes;
  const digest = Buffer.alloc(64, 0x5a);
  assert.ok(img.includes(Buffer.concat([Buffer.from([0, 68, 0, 2]), digest])));
  assert.ok(img.includes(Buffer.from(`/5a/${'5a'.repeat(63)}`)));
  const dump = debugImage(img);
  assert.match(dump, /xattr: \(4 16 68\) trusted\."overlay\.metacopy" = "\\0D\\0\\u\{2\}Z{64}"/);
  assert.match(dump, /xattr: \(4 16 130\) trusted\."overlay\.redirect" = "\/5a\/(5a){63}"/);
  // A SHA-256 digest in a SHA-512 image is refused, as the V0/V1 writer refuses it.
  assert.throws(() => writeImageV2(simpleTree(32), 'sha512'), (e) => isVeritreeError(e) && e.code === 'DUMPFILE_INVALID');
});

/** A tree with a hard link, a whiteout, folders deeper than the walk's stack would allow recursively, shared and escaped xattrs, and a folder of blocks. */
function richTree(): CfsTree {
  const t = new CfsTree();
  t.add(S_IFDIR | 0o755, 0);
  const mk = (parent: number, name: string, mode: number): number => {
    const n = t.add(mode, 0);
    t.addNewChild(parent, name, n);
    return n;
  };
  const a = mk(0, 'a', S_IFDIR | 0o700);
  const f = mk(a, 'file', S_IFREG | 0o644);
  t.content[f] = 'hello';
  t.size[f] = 5;
  t.setXattr(f, 'user.shared', 'v');
  t.setXattr(f, 'trusted.overlay.opaque', 'y');
  const link = mk(0, 'b-link', S_IFREG | 0o644);
  t.linkTo[link] = f;
  const g = mk(0, 'c', S_IFREG | 0o600);
  t.setXattr(g, 'user.shared', 'v');
  mk(0, 'wh', S_IFCHR);
  let d = 0;
  for (let i = 0; i < 2000; i++) d = mk(d, 'd', S_IFDIR | 0o755);
  const big = mk(0, 'big', S_IFDIR | 0o755);
  for (let i = 0; i < 600; i++) mk(big, `entry-${String(i).padStart(4, '0')}`, S_IFREG | 0o644);
  return t;
}

test('V2: hard links, a whiteout, xattrs shared and escaped, deep and big folders, as writer.rs lays them', () => {
  const img = writeImageV2(richTree()).bytes;
  assert.equal(img.readUInt32LE(12), 2, 'composefs_version 2');
  const dump = debugImage(img);
  // One inode for both names of the hard-linked file, with nlink 2 (the walk notes both paths).
  assert.match(dump, /# Filename "\/b-link"\n# Filename "\/a\/file"\n# nid #\d+\n[0-9a-f]{8} ExtendedInodeHeader\n(.*\n)*? {5}\+2c {5}nlink: U32\(2\)/);
  // The xattr two inodes have is shared; trusted.overlay.opaque is escaped.
  assert.match(dump, /# xattr #\d+\n[0-9a-f]{8} \(1 6 1\) user\."shared" = "v"\n/);
  assert.match(dump, /xattr: \(4 22 1\) trusted\."overlay\.overlay\.opaque" = "y"/);
  // The whiteout stays a character device 0/0; no root whiteouts, no opaque root.
  assert.match(dump, /# Filename "\/wh"\n# nid #\d+\n[0-9a-f]{8} ExtendedInodeHeader\n {6}\+0 {5}format: 1 = Extended \| Ok\(FlatPlain\)\n {6}\+4 {5}mode: 0020000 \(chardev\)\n/);
  assert.doesNotMatch(dump, /# Filename "\/00"/);
  // The big folder's entries fill whole directory blocks.
  assert.match(dump, /# Filename "\/big"\n# block #\d+\n[0-9a-f]{8} Directory block\n/);
  // Depth first: /a right after the root, then its file, then the rest in name order.
  const order = Array.from(dump.matchAll(/# Filename "([^"]*)"\n# nid/g), (m) => m[1]);
  assert.deepEqual(order.slice(0, 5), ['/', '/a', '/a/file', '/big', '/big/entry-0000']);
  assert.equal(order.length, 1 + 1 + 1 + 1 + 600 + 1 + 2000 + 1);
});

test('V2: a hard link to a folder is refused with a stable code', () => {
  const t = new CfsTree();
  t.add(S_IFDIR | 0o755, 0);
  const d = t.add(S_IFDIR | 0o755, 0);
  t.addNewChild(0, 'd', d);
  const l = t.add(S_IFDIR | 0o755, 0);
  t.addNewChild(0, 'l', l);
  t.linkTo[l] = d;
  assert.throws(() => writeImageV2(t), (e) => isVeritreeError(e) && e.code === 'DUMPFILE_INVALID');
});

test('V2: inline content past composefs-rs\'s 512 bytes is refused, not written as an image its reader rejects', () => {
  const t = emptyTree();
  const f = t.add(S_IFREG | 0o644, 0);
  t.addNewChild(0, 'f', f);
  t.content[f] = 'x'.repeat(513);
  t.size[f] = 513;
  assert.throws(() => writeImageV2(t), (e) => isVeritreeError(e) && e.code === 'DUMPFILE_INVALID' && /513 bytes/.test(e.message));
  t.content[f] = 'x'.repeat(512);
  t.size[f] = 512;
  assert.match(debugImage(writeImageV2(t).bytes), /# Filename "\/f"\n# nid #\d+\n[0-9a-f]{8} ExtendedInodeHeader\n {6}\+0 {5}format: 5 = Extended \| Ok\(FlatInline\)/);
});
