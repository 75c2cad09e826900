/**
 * The composefs EROFS image writer: a tree in, the image mkcomposefs 1.0.8 writes for it out, byte
 * for byte (the layout rules of libcomposefs's lcfs-writer-erofs.c, written anew here; the format
 * is the kernel's erofs_fs.h). The image is metadata only: each regular file kept outside it is a
 * chunk-based inode of null chunks with `trusted.overlay.metacopy` (its fs-verity digest) and
 * `trusted.overlay.redirect` (its object path), for overlayfs to serve from a basedir of objects.
 * With `hash: 'sha512'` the digests are SHA-512 ones, as composefs-rs writes images for a SHA-512
 * repository (no mkcomposefs writes those; the rest of the image is the same).
 *
 * Layout, in the order written: a 32-byte composefs header, the superblock at 1024, every inode
 * (breadth first from the root, each on a 32-byte slot, its xattrs and tail data after it, padded
 * so that a tail never crosses a block), the shared xattrs (those used by more than one inode), then
 * whole blocks: folder blocks and file data that did not fit inline. docs/composefs-image.md has
 * the tables.
 *
 * The writer changes the tree it is given (overlay xattrs, the root's 256 whiteouts, xattr order,
 * folder link counts), as libcomposefs does to its clone: build a fresh tree for each image. What
 * it works out per inode (order, place, sizes) it keeps in typed arrays by row, beside the tree.
 * Split as libcomposefs splits it: writer-policy.ts (the composefs rewrite of the tree),
 * writer-xattrs.ts (xattr order and sharing), writer-layout.ts (inode order and placement),
 * writer-out.ts (the bytes); this module runs them and writes the superblock. composefs-rs's
 * legacy format V2 (`minVersion: 2`) shares none of those choices and is written by
 * writer-v2.ts, which only reads its tree.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { S_IFDIR, mtimeWords } from './node.ts';
import type { CfsTree } from './tree.ts';
import type { HashAlgorithm } from '../verity/constants.ts';
import { BLOCK, BLOCK_BITS, COMPOSEFS_HEADER_VERSION, COMPOSEFS_MAGIC, EROFS_MAGIC, FEATURE_COMPAT_MTIME, FEATURE_COMPAT_XATTR_FILTER, SLOT, SUPER_OFFSET, SUPER_SIZE } from './format.ts';
import { formatVersion, refused, rewriteTree } from './writer-policy.ts';
import { Layout, computeTree, internal, placeInodes, roundUp } from './writer-layout.ts';
import { writeImageV2 } from './writer-v2.ts';
import { Out, writeDentries, writeFileBlocks, writeInode, writeU64, writeXattr, type WriteState } from './writer-out.ts';

export interface ImageOptions {
  /**
   * Lowest format version (default 0); raised to 1 when the tree holds a whiteout and max allows.
   * 2 is composefs-rs's legacy format V2 (writer-v2.ts), written as it is whatever max says.
   */
  minVersion?: number;
  /** Highest format version (default 1). */
  maxVersion?: number;
  /** The fs-verity hash the tree's file digests are of (default sha256): sets the metacopy value. */
  hash?: HashAlgorithm;
  signal?: AbortSignal;
}

/** The highest of mkcomposefs's format versions, the ones min and max range over. */
export const FORMAT_VERSION_MAX = 1;
/** composefs-rs's legacy format, asked for by `minVersion: 2` alone. */
export const FORMAT_VERSION_V2 = 2;

const FLAG_HAS_ACL = 1;

export interface ComposefsImage {
  bytes: Buffer;
  /** The format version written (0, 1, or 2 for V2). */
  version: number;
  inodes: number;
}

/**
 * Writes the image of a tree (from parseDumpfile; consumed).
 * @throws VeritreeError DUMPFILE_INVALID for a tree no composefs image can hold
 */
export function writeComposefsImage(tree: CfsTree, opts: ImageOptions = {}): ComposefsImage {
  const min = opts.minVersion ?? 0;
  if (min === FORMAT_VERSION_V2) {
    const v2 = writeImageV2(tree, opts.hash ?? 'sha256', opts.signal);
    return { bytes: v2.bytes, version: FORMAT_VERSION_V2, inodes: v2.inodes };
  }
  let max = opts.maxVersion ?? FORMAT_VERSION_MAX;
  if (min < 0 || min > FORMAT_VERSION_MAX || max > FORMAT_VERSION_MAX) {
    throw new VeritreeError(ERROR_CODES.USAGE, `format versions go from 0 to ${FORMAT_VERSION_MAX}`);
  }
  if (max < min) max = min;
  if (tree.count === 0 || !tree.isDir(0)) throw new VeritreeError(ERROR_CODES.DUMPFILE_INVALID, 'dumpfile: the root must be a directory');
  const version = formatVersion(tree, min, max);
  const overlay = rewriteTree(tree, version, opts.hash ?? 'sha256', opts.signal);
  const l = new Layout(tree, overlay);
  computeTree(l, opts.signal);
  const { inodesEnd, dataBlocks } = placeInodes(l);
  const dataStart = roundUp(inodesEnd + l.xattrs.sharedSize, BLOCK);
  const total = dataStart + dataBlocks * BLOCK;
  if ((l.nid[0] as number) >= 0xffff) throw refused(tree, 0, 'the root inode lies too far into the image');
  const out = new Out(Buffer.alloc(total));
  const b = out.b;
  b.writeUInt32LE(COMPOSEFS_MAGIC, 0);
  b.writeUInt32LE(COMPOSEFS_HEADER_VERSION, 4);
  b.writeUInt32LE(l.hasAcl ? FLAG_HAS_ACL : 0, 8);
  b.writeUInt32LE(version, 12);
  const sb = SUPER_OFFSET;
  b.writeUInt32LE(EROFS_MAGIC, sb);
  b.writeUInt32LE(FEATURE_COMPAT_MTIME | FEATURE_COMPAT_XATTR_FILTER, sb + 8);
  b[sb + 12] = BLOCK_BITS;
  b.writeUInt16LE(l.nid[0] as number, sb + 14);
  writeU64(out.v, l.inodes, sb + 16);
  const [lo, hi] = mtimeWords(l.minHi, l.minLo);
  b.writeUInt32LE(lo, sb + 24);
  b.writeUInt32LE(hi, sb + 28);
  b.writeUInt32LE(l.minNsec >>> 0, sb + 32);
  b.writeUInt32LE((dataStart / BLOCK + dataBlocks) >>> 0, sb + 36);
  b.writeUInt32LE(Math.floor((SUPER_OFFSET + SUPER_SIZE) / BLOCK), sb + 40);
  b.writeUInt32LE(Math.floor(inodesEnd / BLOCK), sb + 44);
  out.pos = SUPER_OFFSET + SUPER_SIZE;
  const st: WriteState = { dataEnd: dataStart, inodesEnd };
  const order = l.order;
  const inodes = l.inodes;
  for (let i = 0; i < inodes; i++) {
    if ((i & 4095) === 0) opts.signal?.throwIfAborted();
    writeInode(out, l, order[i] as number, i, st);
  }
  out.align(SLOT);
  if (out.pos !== inodesEnd) throw internal('end of inodes');
  for (const s of l.xattrs.sharedSlots) writeXattr(out, l, s);
  out.align(BLOCK);
  if (out.pos !== dataStart) throw internal('start of data blocks');
  for (let i = 0; i < inodes; i++) {
    if ((i & 4095) === 0) opts.signal?.throwIfAborted();
    const n = order[i] as number;
    if (tree.type(n) === S_IFDIR) writeDentries(out, l, n, true, false);
    writeFileBlocks(out, l, n);
  }
  if (out.pos !== total || st.dataEnd !== total) throw internal(`image ends at ${out.pos}, expected ${total}`);
  return { bytes: b, version, inodes };
}
