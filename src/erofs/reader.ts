/**
 * Reading a composefs EROFS image for what the store needs of it: the objects it names. Every
 * regular file whose content lives in the store carries the xattr `trusted.overlay.redirect` =
 * `/XX/<rest>` (composefs's lcfs-writer-erofs.c; read back by its lcfs_build_node_from_image).
 * gc keeps those objects; fsck checks they exist. The walk is an explicit stack over the folder
 * tree from the root inode, each inode once (hard links), every offset checked against the image
 * size, so a damaged or hostile image is refused with STORE_CORRUPT, never read out of bounds.
 * Layout facts from the kernel's erofs_fs.h (as shipped with composefs): superblock at 1024, inode
 * slots of 32 bytes from meta_blkaddr, compact (32 B) or extended (64 B) inodes, inline xattrs
 * after the inode, shared xattrs at xattr_blkaddr, folder data as blocks of dirents.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { EROFS_MAGIC, LAYOUT_CHUNK_BASED as CHUNK_BASED, LAYOUT_FLAT_INLINE as FLAT_INLINE, SLOT_BITS, SUPER_OFFSET, XATTR_INDEX_TRUSTED as INDEX_TRUSTED } from './format.ts';
import { S_IFDIR, S_IFMT, S_IFREG } from './node.ts';

const REDIRECT = 'overlay.redirect';

function corrupt(why: string): VeritreeError {
  return new VeritreeError(ERROR_CODES.STORE_CORRUPT, `composefs image: ${why}`);
}

class Image {
  readonly b: Buffer;
  readonly blockSize: number;
  readonly meta: number;
  readonly xattrs: number;
  readonly rootNid: number;

  constructor(bytes: Uint8Array) {
    this.b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    if (this.b.length < SUPER_OFFSET + 128 || this.b.readUInt32LE(SUPER_OFFSET) !== EROFS_MAGIC) throw corrupt('no EROFS superblock');
    const bits = this.b[SUPER_OFFSET + 12] ?? 0;
    if (bits < 9 || bits > 16) throw corrupt(`block size 2^${bits}`);
    this.blockSize = 1 << bits;
    this.rootNid = this.b.readUInt16LE(SUPER_OFFSET + 14);
    this.meta = this.b.readUInt32LE(SUPER_OFFSET + 40) * this.blockSize;
    this.xattrs = this.b.readUInt32LE(SUPER_OFFSET + 44) * this.blockSize;
  }

  /** `n` bytes at `off`, or STORE_CORRUPT when they are not all inside the image. */
  at(off: number, n: number): Buffer {
    if (!(off >= 0 && n >= 0 && off + n <= this.b.length)) throw corrupt(`reference to bytes ${off}..${off + n} of a ${this.b.length}-byte image`);
    return this.b.subarray(off, off + n);
  }
}

interface Inode {
  mode: number;
  size: number;
  layout: number;
  rawBlkaddr: number;
  /** Where the inline xattrs begin, and their size. */
  xattrAt: number;
  xattrSize: number;
}

function readInode(img: Image, nid: number): Inode {
  const at = img.meta + nid * 2 ** SLOT_BITS;
  const head = img.at(at, 32);
  const format = head.readUInt16LE(0);
  const extended = (format & 1) === 1;
  const icount = head.readUInt16LE(2);
  const mode = head.readUInt16LE(4);
  const isize = extended ? 64 : 32;
  const body = img.at(at, isize);
  const size = extended ? Number(body.readBigUInt64LE(8)) : body.readUInt32LE(8);
  const rawBlkaddr = body.readUInt32LE(16);
  const xattrSize = icount === 0 ? 0 : 12 + 4 * (icount - 1);
  return { mode, size, layout: (format >> 1) & 7, rawBlkaddr, xattrAt: at + isize, xattrSize };
}

/** The inode's `trusted.overlay.redirect`, from its inline or its shared xattrs. */
function redirectOf(img: Image, ino: Inode): string | null {
  if (ino.xattrSize === 0) return null;
  const area = img.at(ino.xattrAt, ino.xattrSize);
  const shared = area[4] ?? 0;
  const entry = (off: number, limit: number): { value: string | null; next: number } => {
    const e = img.at(off, 4);
    const nameLen = e[0] ?? 0;
    const index = e[1] ?? 0;
    const valueSize = e.readUInt16LE(2);
    const end = off + 4 + nameLen + valueSize;
    if (end > limit) throw corrupt(`an xattr runs past its area`);
    const name = img.at(off + 4, nameLen).toString('latin1');
    const value = index === INDEX_TRUSTED && name === REDIRECT ? img.at(off + 4 + nameLen, valueSize).toString('latin1') : null;
    return { value, next: off + ((4 + nameLen + valueSize + 3) & ~3) };
  };
  for (let i = 0; i < shared; i++) {
    const id = area.readUInt32LE(12 + 4 * i);
    const { value } = entry(img.xattrs + id * 4, img.b.length);
    if (value !== null) return value;
  }
  const limit = ino.xattrAt + ino.xattrSize;
  for (let off = ino.xattrAt + 12 + 4 * shared; off + 4 <= limit; ) {
    const { value, next } = entry(off, limit);
    if (value !== null) return value;
    off = next;
  }
  return null;
}

/** The folder's blocks: whole ones at raw_blkaddr, the tail (FLAT_INLINE) after the inode's xattrs. */
function* dirBlocks(img: Image, ino: Inode): Generator<Buffer> {
  if (ino.layout !== 0 && ino.layout !== FLAT_INLINE) throw corrupt(`a folder with data layout ${ino.layout}`);
  const bs = img.blockSize;
  const blocks = Math.ceil(ino.size / bs);
  const tail = ino.layout === FLAT_INLINE ? ino.size % bs : 0;
  const whole = tail ? blocks - 1 : blocks;
  for (let i = 0; i < whole; i++) {
    const n = i === whole - 1 && !tail && ino.size % bs ? ino.size % bs : bs;
    yield img.at(ino.rawBlkaddr * bs + i * bs, n);
  }
  if (tail) yield img.at(ino.xattrAt + ino.xattrSize, tail);
}

/** The children of one folder block: [nid, name]. */
function* dirents(block: Buffer): Generator<[number, string]> {
  if (block.length < 12) throw corrupt('a folder block smaller than one entry');
  const first = block.readUInt16LE(8);
  if (first % 12 !== 0 || first === 0 || first > block.length) throw corrupt('a folder block with a bad first name offset');
  const n = first / 12;
  for (let i = 0; i < n; i++) {
    const nid = Number(block.readBigUInt64LE(i * 12));
    const off = block.readUInt16LE(i * 12 + 8);
    let end = i + 1 < n ? block.readUInt16LE((i + 1) * 12 + 8) : block.indexOf(0, off);
    if (end < 0) end = block.length;
    if (off > end || end > block.length) throw corrupt('a folder entry whose name runs outside its block');
    yield [nid, block.subarray(off, end).toString('latin1')];
  }
}

export interface ImageObjects {
  /** Every object id (hex) the image's files name, each once. */
  objects: Set<string>;
  /** Files whose redirect is not `/XX/<hex>` (content outside a store like this one). */
  foreign: number;
}

/**
 * What the image's files name in the store.
 * @throws VeritreeError STORE_CORRUPT when the bytes are not a readable composefs EROFS image
 */
export function composefsImageObjects(bytes: Uint8Array, signal?: AbortSignal): ImageObjects {
  const img = new Image(bytes);
  const out: ImageObjects = { objects: new Set(), foreign: 0 };
  const seen = new Set<number>([img.rootNid]);
  let dirBytes = 0;
  const stack = [img.rootNid];
  for (let steps = 0; stack.length > 0; steps++) {
    if ((steps & 1023) === 0) signal?.throwIfAborted();
    const nid = stack.pop() as number;
    const ino = readInode(img, nid);
    const type = ino.mode & S_IFMT;
    if (type === S_IFREG) {
      if (ino.layout !== CHUNK_BASED && ino.layout !== 0 && ino.layout !== FLAT_INLINE) throw corrupt(`a file with data layout ${ino.layout}`);
      const redirect = redirectOf(img, ino);
      if (redirect !== null) {
        // `/XX/<rest>` names an object of a store; anything else (an ostree-style `.file` name,
        // a path of another basedir) is not this store's to keep, and is counted apart.
        const m = /^\/?([0-9a-f]{2})\/([0-9a-f]+)$/.exec(redirect);
        if (m) out.objects.add(`${m[1]}${m[2]}`);
        else out.foreign++;
      }
      continue;
    }
    if (type !== S_IFDIR) continue;
    // Each folder's blocks are its own in a real image: more folder data than the image holds
    // means folders sharing blocks, a hostile image made to make this walk long.
    dirBytes += ino.size;
    if (dirBytes > img.b.length) throw corrupt('more folder data than the image holds');
    for (const block of dirBlocks(img, ino)) {
      for (const [child, name] of dirents(block)) {
        if (name === '.' || name === '..' || seen.has(child)) continue;
        seen.add(child);
        stack.push(child);
      }
    }
  }
  return out;
}
