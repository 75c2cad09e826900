/**
 * The EROFS format V2 writer: composefs-rs's legacy writer (crates/composefs/src/erofs/writer.rs
 * with FormatVersion::V2, FormatEpoch::Epoch2), byte for byte. Where V0 and V1 follow
 * mkcomposefs, V2 has its own rules:
 *
 * - every inode is extended (64 bytes), its `ino` its nid, its mtime without nanoseconds;
 * - inodes in depth-first order (writer-v2-collect.ts), no root whiteouts, no opaque root, a
 *   whiteout (chr 0/0) stored as what it is;
 * - xattrs in composefs-rs's order, shared ones referred to by absolute offset
 *   (writer-v2-xattrs.ts);
 * - a file kept outside the image (one with a digest or a payload, whatever its size) is one
 *   chunk (chunk format 31), with one null chunk index inline when its digest is known; inline
 *   files and symlink targets are inline whole, with no data blocks;
 * - an inline tail that would cross a block pushes its inode on by what is left of the block
 *   past the inode's metadata (composefs-rs's pad_inline_tail_v2, kept as it is);
 * - header composefs_version 2, superblock build_time 0 and xattr_blkaddr 0.
 *
 * As in composefs-rs, the image is written twice: a first pass that only counts finds every
 * inode's, shared xattr's and block's offset; the second writes the bytes with them.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { S_IFCHR, S_IFBLK, S_IFDIR, S_IFLNK, S_IFREG, mtimeWords } from './node.ts';
import type { CfsTree } from './tree.ts';
import type { HashAlgorithm } from '../verity/constants.ts';
import { BLOCK, BLOCK_BITS, COMPOSEFS_MAGIC, COMPOSEFS_HEADER_VERSION, DIRENT_SIZE, EROFS_MAGIC, EXTENDED_SIZE, FEATURE_COMPAT_MTIME, FEATURE_COMPAT_XATTR_FILTER, LAYOUT_CHUNK_BASED, LAYOUT_FLAT_INLINE, LAYOUT_FLAT_PLAIN, SLOT, SUPER_OFFSET, SUPER_SIZE } from './format.ts';
import { collectV2, type V2Dir, type V2Dirent, type V2Inodes } from './writer-v2-collect.ts';
import { V2_EXTERNAL, V2_INLINE, V2_XATTR_HEADER, v2FileKind, v2XattrSize, v2Xattrs, type V2InodeXattrs, type V2Xattr, type V2Xattrs } from './writer-v2-xattrs.ts';
import { V2Out } from './writer-v2-out.ts';

/** The composefs_version of a V2 image (format.rs COMPOSEFS_VERSION). */
export const COMPOSEFS_VERSION_V2 = 2;
/** A file kept outside the image is a single chunk: chunk format 31 (CHUNK_FORMAT_BLKBITS_MASK). */
const CHUNK_FORMAT_V2 = 31;

export interface ImageV2 {
  bytes: Buffer;
  inodes: number;
}

interface Writing {
  t: CfsTree;
  c: V2Inodes;
  x: V2Xattrs;
  xattrSize: number[];
}

/** What an inode's header says of its data: layout, i_u, i_size (composefs-rs inode_meta). */
function inodeMeta(w: Writing, out: V2Out, i: number): [number, number, number] {
  const d = w.c.dir[i] as V2Dir | null;
  const blkaddr = Math.floor(out.blockStart(i) / BLOCK);
  if (d !== null) {
    if (d.inline.length === 0) return [LAYOUT_FLAT_PLAIN, blkaddr, d.size];
    return [LAYOUT_FLAT_INLINE, d.blocks.length > 0 ? blkaddr : 0, d.size];
  }
  const t = w.t;
  const row = w.c.row[i] as number;
  switch (t.type(row)) {
    case S_IFREG: {
      if (v2FileKind(t, row) === V2_INLINE) {
        const n = (t.content[row] as string | null)?.length ?? 0;
        return [n === 0 ? LAYOUT_FLAT_PLAIN : LAYOUT_FLAT_INLINE, 0, n];
      }
      return [LAYOUT_CHUNK_BASED, CHUNK_FORMAT_V2, t.size[row] as number];
    }
    case S_IFCHR:
    case S_IFBLK:
      return [LAYOUT_FLAT_PLAIN, t.rdev[row] as number, 0];
    case S_IFLNK:
      return [LAYOUT_FLAT_INLINE, 0, (t.payload[row] ?? '').length];
    default:
      return [LAYOUT_FLAT_PLAIN, 0, 0];
  }
}

/** The inline bytes after an inode's xattrs that are not folder entries (Leaf::write_inline). */
function leafInline(w: Writing, row: number): string {
  const t = w.t;
  const type = t.type(row);
  if (type === S_IFLNK) return t.payload[row] ?? '';
  if (type !== S_IFREG) return '';
  const kind = v2FileKind(t, row);
  if (kind === V2_INLINE) return t.content[row] ?? '';
  // One null chunk index for a file with a digest (composefs-rs's External), whatever its size; none otherwise.
  return kind === V2_EXTERNAL ? '\xff\xff\xff\xff' : '';
}

function writeXattr(out: V2Out, x: V2Xattr): void {
  out.u8(x.suffix.length);
  out.u8(x.prefix);
  out.u16(x.value.length);
  out.text(x.suffix);
  out.text(x.value);
  out.pad(4);
}

function writeInodeXattrs(out: V2Out, x: V2InodeXattrs): void {
  if (x.filter === 0) return;
  out.u32(~x.filter >>> 0);
  out.u8(x.shared.length);
  out.zeros(V2_XATTR_HEADER - 5);
  for (const s of x.shared) out.u32(out.xattrStart(s) / 4);
  for (const l of x.local) writeXattr(out, l);
}

/** One block's (or an inline tail's) entries: the headers, then the names. */
function writeDirents(out: V2Out, entries: readonly V2Dirent[]): void {
  let nameOffset = DIRENT_SIZE * entries.length;
  for (const e of entries) {
    out.u64(out.nid(e.inode));
    out.u16(nameOffset);
    out.u8(e.type);
    out.u8(0);
    nameOffset += e.name.length;
  }
  for (const e of entries) out.text(e.name);
}

function writeInode(w: Writing, out: V2Out, i: number): void {
  const t = w.t;
  const row = w.c.row[i] as number;
  const [layout, u, size] = inodeMeta(w, out, i);
  const xattrSize = w.xattrSize[i] as number;
  out.pad(SLOT);
  if (layout === LAYOUT_FLAT_INLINE) {
    // pad_inline_tail_v2: when the inline data would end in another block than the metadata,
    // skip what is left of the block past the metadata (counted from the inode's start), then
    // to the next slot.
    const inlineStart = out.pos + EXTENDED_SIZE + xattrSize;
    const endOfMetadata = inlineStart - 1;
    const inlineEnd = inlineStart + (size % BLOCK);
    if (Math.floor(endOfMetadata / BLOCK) !== Math.floor(inlineEnd / BLOCK)) {
      out.zeros(BLOCK - (endOfMetadata % BLOCK));
      out.pad(SLOT);
    }
  }
  out.noteInode(i);
  const start = out.pos;
  const icount = xattrSize === 0 ? 0 : 1 + (xattrSize - V2_XATTR_HEADER) / 4;
  const [mtimeLo, mtimeHi] = mtimeWords(t.mtimeHi[row] as number, t.mtimeLo[row] as number);
  out.u16(1 | (layout << 1));
  out.u16(icount);
  out.u16(((t.mode[row] as number) & 0o170000) | ((t.mode[row] as number) & 0o7777));
  out.u16(0);
  out.u64(size);
  out.u32(u >>> 0);
  out.u32(start / SLOT);
  out.u32(t.uid[row] as number);
  out.u32(t.gid[row] as number);
  out.u32(mtimeLo);
  out.u32(mtimeHi);
  out.u32(0);
  out.u32(w.c.nlink[i] as number);
  out.zeros(16);
  writeInodeXattrs(out, w.x.inodes[i] as V2InodeXattrs);
  const d = w.c.dir[i] as V2Dir | null;
  if (d !== null) {
    if (d.inline.length > 0) writeDirents(out, d.inline);
  } else out.text(leafInline(w, row));
  out.pad(SLOT);
}

/** write_erofs: header, superblock, inodes, shared xattrs, folder blocks. */
function writeImage(w: Writing, out: V2Out, signal?: AbortSignal): void {
  const inodes = w.c.row.length;
  out.u32(COMPOSEFS_MAGIC);
  out.u32(COMPOSEFS_HEADER_VERSION);
  out.u32(0);
  out.u32(COMPOSEFS_VERSION_V2);
  out.pad(SUPER_OFFSET);
  const sb = out.pos;
  out.u32(EROFS_MAGIC);
  out.u32(0);
  out.u32(FEATURE_COMPAT_MTIME | FEATURE_COMPAT_XATTR_FILTER);
  out.u8(BLOCK_BITS);
  out.u8(0);
  out.u16(out.nid(0));
  out.u64(inodes);
  out.u64(0);
  out.u32(0);
  out.u32(Math.floor(out.end() / BLOCK));
  out.zeros(SUPER_OFFSET + SUPER_SIZE - out.pos);
  if (out.pos !== sb + SUPER_SIZE) throw new VeritreeError(ERROR_CODES.INTERNAL, 'V2 writer: superblock size');
  for (let i = 0; i < inodes; i++) {
    if ((i & 4095) === 0) signal?.throwIfAborted();
    writeInode(w, out, i);
  }
  out.pad(SLOT);
  out.noteInodesEnd();
  for (let s = 0; s < w.x.shared.length; s++) {
    out.noteXattr(s);
    writeXattr(out, w.x.shared[s] as V2Xattr);
  }
  out.pad(BLOCK);
  for (let i = 0; i < inodes; i++) {
    out.noteBlock(i);
    const d = w.c.dir[i] as V2Dir | null;
    if (d === null) continue;
    for (const block of d.blocks) {
      writeDirents(out, block);
      out.pad(BLOCK);
    }
  }
  out.noteEnd();
}

/**
 * Writes the V2 image of a tree (only read: one tree may give images of several formats, though
 * the V0/V1 writer, which consumes its tree, must have a tree of its own).
 * @throws VeritreeError DUMPFILE_INVALID for a tree composefs-rs cannot write
 */
export function writeImageV2(t: CfsTree, hash: HashAlgorithm = 'sha256', signal?: AbortSignal): ImageV2 {
  if (t.count === 0 || t.type(0) !== S_IFDIR) throw new VeritreeError(ERROR_CODES.DUMPFILE_INVALID, 'dumpfile: the root must be a directory');
  const c = collectV2(t, signal);
  const x = v2Xattrs(t, c.row, hash);
  const w: Writing = { t, c, x, xattrSize: x.inodes.map(v2XattrSize) };
  const first = V2Out.counting(c.row.length, x.shared.length);
  writeImage(w, first, signal);
  const second = first.writing();
  writeImage(w, second, signal);
  if (second.pos !== second.b.length) throw new VeritreeError(ERROR_CODES.INTERNAL, `V2 writer: image ends at ${second.pos}, expected ${second.b.length}`);
  return { bytes: second.b, inodes: c.row.length };
}
