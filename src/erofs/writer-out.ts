/**
 * The bytes of a laid-out composefs image (libcomposefs's lcfs-writer-erofs.c: write_erofs_inode,
 * write_erofs_dentries, write_erofs_file_content): inodes with their xattrs and inline tails,
 * shared xattrs, folder blocks and file blocks, into a zero-filled buffer the layout sized.
 * @module
 */
import { DIRENT_FILE_TYPE, S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG, chunkBits, chunkCount, mtimeWords } from './node.ts';
import { NONE } from './tree.ts';
import { BLOCK, BLOCK_BITS, COMPACT_SIZE, DIRENT_SIZE, EXTENDED_SIZE, LAYOUT_CHUNK_BASED, LAYOUT_FLAT_INLINE, LAYOUT_FLAT_PLAIN } from './format.ts';
import { XATTR_HEADER } from './writer-xattrs.ts';
import { refused } from './writer-policy.ts';
import { entryName, internal, roundUp, type Layout } from './writer-layout.ts';


/** A little-endian u64 from a number below 2^53. */
export function writeU64(v: DataView, x: number, at: number): void {
  v.setUint32(at, x % 2 ** 32, true);
  v.setUint32(at + 4, Math.floor(x / 2 ** 32), true);
}

/** A cursor over the image buffer (zero-filled, so padding is a skip). */
export class Out {
  pos = 0;
  readonly b: Buffer;
  /** Little-endian numbers go through a DataView: the optimiser inlines its stores. */
  readonly v: DataView;
  constructor(b: Buffer) {
    this.b = b;
    this.v = new DataView(b.buffer, b.byteOffset, b.length);
  }
  pad(n: number): void {
    this.pos += n;
  }
  align(to: number): void {
    this.pos = roundUp(this.pos, to);
  }
  text(s: string): void {
    // Most strings here are a name or a short value: a loop beats the native call's set-up.
    if (s.length > 256) {
      this.pos += this.b.write(s, this.pos, 'latin1');
      return;
    }
    const b = this.b;
    let p = this.pos;
    for (let i = 0; i < s.length; i++) b[p++] = s.charCodeAt(i);
    this.pos = p;
  }
}

export function writeXattr(out: Out, l: Layout, slot: number): void {
  const key = l.t.slotKey[slot] as number;
  const rest = l.keys.rest[key] as string;
  const prefix = l.keys.valuePrefix[key] as string;
  const value = l.t.slotValue[slot] as string;
  out.b[out.pos] = rest.length;
  out.b[out.pos + 1] = l.keys.index[key] as number;
  out.v.setUint16(out.pos + 2, prefix.length + value.length, true);
  out.pos += 4;
  out.text(rest);
  if (prefix.length > 0) out.text(prefix);
  out.text(value);
  out.align(4);
}

function xattrFilter(l: Layout, n: number): number {
  const t = l.t;
  let bits = 0;
  for (let s = t.xHead[n] as number; s !== NONE; s = t.slotNext[s] as number) bits |= 1 << (l.keys.bit[t.slotKey[s] as number] as number);
  return ~bits >>> 0;
}

/** One run of dirents: the entries, then their names, then padding to `align`. */
function writeDirents(out: Out, l: Layout, dir: number, first: number, count: number, align: number): void {
  const t = l.t;
  const kids = l.entries;
  const b = out.b;
  const v = out.v;
  let nameoff = count * DIRENT_SIZE;
  for (let i = first; i < first + count; i++) {
    const e = kids[i] as number;
    const target = l.target(dir, e);
    writeU64(v, l.nid[target] as number, out.pos);
    v.setUint16(out.pos + 8, nameoff & 0xffff, true);
    b[out.pos + 10] = DIRENT_FILE_TYPE[t.type(target) >> 12] as number;
    out.pos += DIRENT_SIZE;
    nameoff += entryName(t, e).length;
  }
  for (let i = first; i < first + count; i++) out.text(entryName(t, kids[i] as number));
  out.align(align);
}

/** write_erofs_dentries: the whole blocks (into the data area) or the inline tail. */
export function writeDentries(out: Out, l: Layout, dir: number, blocks: boolean, tail: boolean): void {
  let used = 0;
  let written = 0;
  const kids = l.entries;
  const end = (l.entryStart[dir] as number) + (l.entryCount[dir] as number);
  let first = l.entryStart[dir] as number;
  for (let i = first; i < end; i++) {
    const len = DIRENT_SIZE + entryName(l.t, kids[i] as number).length;
    if (used + len > BLOCK) {
      if (blocks) writeDirents(out, l, dir, first, i - first, BLOCK);
      written++;
      used = 0;
      first = i;
    }
    used += len;
  }
  if (written < (l.nBlocks[dir] as number)) {
    if (blocks) writeDirents(out, l, dir, first, end - first, BLOCK);
    written++;
    used = 0;
    first = end;
  }
  if (tail && used > 0) writeDirents(out, l, dir, first, end - first, 1);
}

function writeNullChunks(out: Out, count: number): void {
  const end = out.pos + count * 4;
  // Most files have a chunk or two: a loop beats the native fill's set-up.
  if (count <= 16) for (let i = out.pos; i < end; i++) out.b[i] = 0xff;
  else out.b.fill(0xff, out.pos, end);
  out.pos = end;
}

export interface WriteState {
  dataEnd: number;
  inodesEnd: number;
}

/** Inode `n`, the `inodeNum`th in order. */
export function writeInode(out: Out, l: Layout, n: number, inodeNum: number, st: WriteState): void {
  const t = l.t;
  const start = out.pos;
  out.pad(l.ipad[n] as number);
  const type = t.type(n);
  // The area's size was laid out with the inode (placeInodes); written and checked against it below.
  const x = l.xattrs;
  const xattrSize = x.xattrSize[n] as number;
  const nBlocks = l.nBlocks[n] as number;
  const tailSize = l.tailSize[n] as number;
  const compact = l.compact[n] === 1;
  const icount = xattrSize === 0 ? 0 : (xattrSize - XATTR_HEADER) / 4 + 1;
  if (icount > 0xffff) throw refused(t, n, 'too many xattrs for one inode');
  let layout = tailSize > 0 ? LAYOUT_FLAT_INLINE : LAYOUT_FLAT_PLAIN;
  let size: number;
  let chunks = 0;
  let chunkFormat = 0;
  const content = t.content[n] as string | null;
  if (type === S_IFDIR) size = nBlocks * BLOCK + tailSize;
  else if (type === S_IFREG) {
    size = t.size[n] as number;
    if (size > 0 && content === null) {
      const bits = chunkBits(size);
      chunks = chunkCount(size);
      layout = LAYOUT_CHUNK_BASED;
      chunkFormat = bits - BLOCK_BITS;
    }
  } else if (type === S_IFLNK) size = nBlocks === 0 ? tailSize : (t.size[n] as number);
  else size = 0;
  const format = (layout << 1) | (compact ? 0 : 1);
  const b = out.b;
  const v = out.v;
  const at = out.pos;
  const mode = t.mode[n] as number;
  v.setUint16(at, format, true);
  v.setUint16(at + 2, icount, true);
  v.setUint16(at + 4, mode & 0xffff, true);
  // i_u (offset 16): a block address, a device number, or the chunk format over the address's low half.
  let blkaddr = -1;
  if ((type === S_IFDIR || type === S_IFREG || type === S_IFLNK) && nBlocks > 0) {
    blkaddr = st.dataEnd / BLOCK;
    st.dataEnd += BLOCK * nBlocks;
  }
  if (blkaddr >= 0) v.setUint32(at + 16, blkaddr >>> 0, true);
  if (type === S_IFCHR || type === S_IFBLK) v.setUint32(at + 16, (t.rdev[n] as number) >>> 0, true);
  if (layout === LAYOUT_CHUNK_BASED) v.setUint16(at + 16, chunkFormat, true);
  v.setUint32(at + 20, inodeNum >>> 0, true);
  const nlink = t.nlink[n] as number;
  if (compact) {
    v.setUint16(at + 6, nlink, true);
    v.setUint32(at + 8, size, true);
    v.setUint16(at + 24, t.uid[n] as number, true);
    v.setUint16(at + 26, t.gid[n] as number, true);
    out.pos += COMPACT_SIZE;
  } else {
    writeU64(v, size, at + 8);
    v.setUint32(at + 24, (t.uid[n] as number) >>> 0, true);
    v.setUint32(at + 28, (t.gid[n] as number) >>> 0, true);
    const [lo, hi] = mtimeWords(t.mtimeHi[n] as number, t.mtimeLo[n] as number);
    v.setUint32(at + 32, lo, true);
    v.setUint32(at + 36, hi, true);
    v.setUint32(at + 40, (t.mtimeNsec[n] as number) >>> 0, true);
    v.setUint32(at + 44, nlink >>> 0, true);
    out.pos += EXTENDED_SIZE;
  }
  if (xattrSize > 0) {
    const xstart = out.pos;
    v.setUint32(out.pos, xattrFilter(l, n), true);
    b[out.pos + 4] = x.nShared[n] as number;
    out.pos += XATTR_HEADER;
    const head = t.xHead[n] as number;
    for (let s = head; s !== NONE; s = t.slotNext[s] as number) {
      const shared = x.slotShared[s] as number;
      if (shared < 0) continue;
      v.setUint32(out.pos, ((st.inodesEnd % BLOCK) + shared) / 4, true);
      out.pos += 4;
    }
    for (let s = head; s !== NONE; s = t.slotNext[s] as number) if ((x.slotShared[s] as number) < 0) writeXattr(out, l, s);
    if (out.pos - xstart !== xattrSize) throw internal('xattr area size');
  }
  if (type === S_IFDIR) writeDentries(out, l, n, false, true);
  else if (type === S_IFLNK) {
    if (nBlocks === 0) out.text(t.payload[n] as string);
  } else if (type === S_IFREG && tailSize > 0) {
    if (content !== null) out.text(content.slice(content.length - tailSize));
    else writeNullChunks(out, chunks);
  }
  if (out.pos - start !== (l.isize[n] as number) + (l.ipad[n] as number)) throw internal(`inode ${inodeNum} size`);
}

/** write_erofs_file_content: what did not fit inline, one block (as libcomposefs writes it). */
export function writeFileBlocks(out: Out, l: Layout, n: number): void {
  if (l.nBlocks[n] === 0) return;
  const t = l.t;
  const type = t.type(n);
  if (type === S_IFREG) {
    const content = t.content[n] as string | null;
    if (content === null) {
      writeNullChunks(out, 1024);
      return;
    }
    out.text(content.slice(0, BLOCK));
    out.align(BLOCK);
  } else if (type === S_IFLNK) {
    out.text((t.payload[n] as string).slice(0, BLOCK));
    out.align(BLOCK);
  }
}
