/**
 * EROFS format V2 on trees the composefs-rs snapshots do not reach, each checked against what
 * composefs-rs's legacy writer gives for the tree its dumpfile reader makes of the same entries
 * (crates/composefs/src/dumpfile_parse.rs, dumpfile.rs add_entry_to_filesystem, erofs/writer.rs):
 *
 * - a regular file with a payload is an external file whatever its size: External(id, size)
 *   with a digest, ExternalNoVerity(id, size) without one, its id read back from the payload's
 *   trailing `XX/<rest>` (FsVerityHashValue::from_object_pathname);
 * - a character device 0/0 (a whiteout) with more than one name is refused
 *   (writer.rs validate_filesystem).
 *
 * Two images that writer.rs lays out alike are compared byte for byte, so that each check says
 * which bytes differ, not only that something does.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeImageV2 } from '../src/erofs/writer-v2.ts';
import { S_IFCHR, S_IFDIR, S_IFREG } from '../src/erofs/node.ts';
import { CfsTree } from '../src/erofs/tree.ts';
import { isVeritreeError } from '../src/errors.ts';
import { LAYOUT_CHUNK_BASED } from '../src/erofs/format.ts';

const HEX = 'ab'.repeat(32);

/** A root holding one regular file `f`, as set by `fill`. */
function oneFile(fill: (t: CfsTree, f: number) => void): CfsTree {
  const t = new CfsTree();
  t.add(S_IFDIR | 0o755, 0);
  const f = t.add(S_IFREG | 0o644, 0);
  t.addNewChild(0, 'f', f);
  fill(t, f);
  return t;
}

/** The offsets where two images of one length differ. */
function differences(a: Buffer, b: Buffer): number[] {
  assert.equal(a.length, b.length, 'the same layout, so the same length');
  const at: number[] = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) at.push(i);
  return at;
}

/** Asserts `empty` is `one` with only the file's i_size 1 → 0, in a chunk-based inode with chunk format 31. */
function onlySizeDiffers(empty: Buffer, one: Buffer): void {
  const at = differences(empty, one);
  assert.equal(at.length, 1, `one byte apart, not ${at.length}`);
  const inode = (at[0] as number) - 8;
  assert.equal(inode % 32, 0, 'the byte is an inode\'s i_size');
  assert.equal(one.readUInt16LE(inode), 1 | (LAYOUT_CHUNK_BASED << 1), 'Extended | ChunkBased');
  assert.equal(one.readUInt32LE(inode + 16), 31, 'i_u: chunk format 31');
  assert.equal(one[inode + 8], 1);
  assert.equal(empty[inode + 8], 0);
}

test('V2: an empty file with a digest is External(id, 0): chunk-based, metacopy, redirect and one null chunk, as with any size', () => {
  // dumpfile_parse.rs: a payload makes Item::Regular whatever the size; dumpfile.rs: with a
  // digest, RegularFile::External(id, size); writer.rs push_inode adds metacopy and redirect,
  // collect_leaf (Epoch2) gives External an inline tail of 4 (one null chunk index), and
  // Leaf::inode_meta makes it ChunkBased with i_u 31. Only i_size is the file's size.
  const file = (size: number) => oneFile((t, f) => {
    t.size[f] = size;
    t.payload[f] = `${HEX.slice(0, 2)}/${HEX.slice(2)}`;
    t.digest[f] = Buffer.from(HEX, 'hex').toString('latin1');
  });
  const empty = writeImageV2(file(0)).bytes;
  onlySizeDiffers(empty, writeImageV2(file(1)).bytes);
  assert.ok(empty.includes(Buffer.from(`/ab/${HEX.slice(2)}`)), 'the redirect');
  assert.ok(empty.includes(Buffer.from('ffffffff', 'hex')), 'the null chunk index');
});

test('V2: an empty file with a payload and no digest is ExternalNoVerity(id, 0), as with any size', () => {
  // dumpfile.rs: no digest, RegularFile::ExternalNoVerity(from_object_pathname(payload), size);
  // writer.rs push_inode: metacopy "" and the redirect; no chunk index (inline tail 0).
  const file = (size: number) => oneFile((t, f) => {
    t.size[f] = size;
    t.payload[f] = `${HEX.slice(0, 2)}/${HEX.slice(2)}`;
  });
  const empty = writeImageV2(file(0)).bytes;
  onlySizeDiffers(empty, writeImageV2(file(1)).bytes);
  assert.ok(empty.includes(Buffer.from(`/ab/${HEX.slice(2)}`)), 'the redirect');
});

test('V2: without a digest the redirect is the object path read back from the payload, as from_object_pathname reads it', () => {
  // writer.rs push_inode: redirect = "/" + id.to_object_pathname(), id from the payload's last
  // 2 * 32 + 1 bytes (hex, '/', hex; either case), written back in lower case.
  const withPayload = (payload: string) => writeImageV2(oneFile((t, f) => {
    t.size[f] = 100;
    t.payload[f] = payload;
  })).bytes;
  const plain = withPayload(`ab/${HEX.slice(2)}`);
  assert.ok(plain.includes(Buffer.from(`/ab/${HEX.slice(2)}`)));
  assert.deepEqual(withPayload(`AB/${HEX.slice(2).toUpperCase()}`), plain);
  assert.deepEqual(withPayload(`objects/ab/${HEX.slice(2)}`), plain);
  // What is no object path is refused (composefs-rs's reader: "invalid object pathname").
  for (const bad of ['some/file', `ab-${HEX.slice(2)}`, `zz/${HEX.slice(2)}`]) {
    assert.throws(() => withPayload(bad), (e) => isVeritreeError(e) && e.code === 'DUMPFILE_INVALID', bad);
  }
});

test('V2: a whiteout with two names is refused, as validate_filesystem refuses it', () => {
  const t = new CfsTree();
  t.add(S_IFDIR | 0o755, 0);
  const wh = t.add(S_IFCHR, 0);
  t.addNewChild(0, 'wh', wh);
  const link = t.add(S_IFCHR, 0);
  t.addNewChild(0, 'wh2', link);
  t.linkTo[link] = wh;
  assert.throws(() => writeImageV2(t), (e) => isVeritreeError(e) && e.code === 'DUMPFILE_INVALID' && /whiteout/.test(e.message));
  // A device that is no whiteout may have several names.
  t.rdev[wh] = 0x0501;
  assert.equal(writeImageV2(t).inodes, 2);
});

test('V2: a tree 20,000 folders deep is written without recursion, each folder\'s `..` its parent', () => {
  const t = new CfsTree();
  t.add(S_IFDIR | 0o755, 0);
  let d = 0;
  for (let i = 0; i < 20_000; i++) {
    const n = t.add(S_IFDIR | 0o755, 0);
    t.addNewChild(d, 'd', n);
    d = n;
  }
  const img = writeImageV2(t);
  assert.equal(img.inodes, 20_001);
  // Depth first, each folder right after its parent, 128 bytes apart (64 of inode, 40 of `.`,
  // `..` and `d` inline, padded to a slot): the deepest is at 1152 + 128 * 20,000, and its
  // inline entries are `.` (its own nid) and `..` (the nid 4 slots before).
  const b = img.bytes;
  const last = 1152 + 128 * 20_000;
  assert.equal(b.readUInt32LE(last + 20), last / 32, 'ino is the nid');
  assert.equal(b.readUInt32LE(last + 64), last / 32, '.');
  assert.equal(b.readUInt32LE(last + 64 + 12), last / 32 - 4, '..');
  assert.equal(b.toString('latin1', last + 64 + 24, last + 64 + 27), '...');
});
