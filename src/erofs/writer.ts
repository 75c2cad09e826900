/**
 * The composefs EROFS image writer: a tree in, the image mkcomposefs 1.0.8 writes for it out, byte
 * for byte (the layout rules of libcomposefs's lcfs-writer-erofs.c, written anew here; the format
 * is the kernel's erofs_fs.h). The image is metadata only: each regular file kept outside it is a
 * chunk-based inode of null chunks with `trusted.overlay.metacopy` (its fs-verity digest) and
 * `trusted.overlay.redirect` (its object path), for overlayfs to serve from a basedir of objects.
 *
 * Layout, in the order written: a 32-byte composefs header, the superblock at 1024, every inode
 * (breadth first from the root, each on a 32-byte slot, its xattrs and tail data after it, padded
 * so that a tail never crosses a block), the shared xattrs (those used by more than one inode), then
 * whole blocks: folder blocks and file data that did not fit inline. docs/composefs-image.md has
 * the tables.
 *
 * The writer changes the tree it is given (overlay xattrs, `.` and `..`, the root's 256 whiteouts),
 * as libcomposefs does to its clone: build a fresh tree for each image.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import {
  CfsNode,
  MAX_NONINLINE_CHUNKS,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
  chunking,
  dumpError,
  followLinks,
  mtimeCompare,
  mtimeWords,
  validMode,
  type Xattr,
} from './node.ts';
import { EROFS_MAGIC, LAYOUT_CHUNK_BASED, LAYOUT_FLAT_INLINE, LAYOUT_FLAT_PLAIN, SLOT, SUPER_OFFSET } from './format.ts';
import { xxh32 } from './xxh32.ts';

export interface ImageOptions {
  /** Lowest format version (default 0); raised to 1 when the tree holds a whiteout and max allows. */
  minVersion?: number;
  /** Highest format version (default 1). */
  maxVersion?: number;
  signal?: AbortSignal;
}

export const FORMAT_VERSION_MAX = 1;

const BLOCK = 4096;
const BLOCK_BITS = 12;
const SUPER_SIZE = 128;
const COMPACT_SIZE = 32;
const EXTENDED_SIZE = 64;
const DIRENT_SIZE = 12;
const XATTR_HEADER = 12;
const XATTR_ENTRY = 4;
const COMPOSEFS_MAGIC = 0xd078629a;
const COMPOSEFS_HEADER_VERSION = 1;
const FLAG_HAS_ACL = 1;
const FEATURE_COMPAT_MTIME = 2;
const FEATURE_COMPAT_XATTR_FILTER = 4;
const XATTR_FILTER_SEED = 0x25bbe08f;
/** At most this many shared xattr references per inode (EROFS_XATTR_LONG_PREFIX). */
const MAX_SHARED_PER_INODE = 0x80;

const OVERLAY = 'trusted.overlay.';
const ESCAPED = 'trusted.overlay.overlay.';
const USER_OVERLAY = 'user.overlay.';

/** EROFS's short xattr name prefixes, by index (no index 5: lustre is never used here). */
const PREFIXES: [string, number][] = [
  ['user.', 1],
  ['system.posix_acl_access', 2],
  ['system.posix_acl_default', 3],
  ['trusted.', 4],
  ['security.', 6],
];

const FILE_TYPE: Record<number, number> = { [S_IFREG]: 1, [S_IFDIR]: 2, [S_IFCHR]: 3, [S_IFBLK]: 4, [S_IFIFO]: 5, [S_IFSOCK]: 6, [S_IFLNK]: 7 };

/** A tree no image can hold, blamed on the node's dumpfile line where it has one. */
function refused(node: CfsNode, why: string): VeritreeError {
  return node.line > 0 ? dumpError(node.line, why) : new VeritreeError(ERROR_CODES.DUMPFILE_INVALID, why);
}

/** Prefix index and suffix of each xattr name: names repeat across inodes, so each is split once. */
const prefixes = new Map<string, { index: number; rest: string; bit: number }>();

function prefixOf(key: string): { index: number; rest: string; bit: number } {
  let p = prefixes.get(key);
  if (p === undefined) {
    let index = 0;
    let rest = key;
    for (const [prefix, i] of PREFIXES) {
      if (key.startsWith(prefix)) {
        index = i;
        rest = key.slice(prefix.length);
        break;
      }
    }
    p = { index, rest, bit: xxh32(Buffer.from(rest, 'latin1'), (XATTR_FILTER_SEED + index) >>> 0) & 31 };
    if (prefixes.size < 65536) prefixes.set(key, p);
  }
  return p;
}

const roundUp = (x: number, to: number): number => Math.ceil(x / to) * to;

function xattrEntrySize(x: Xattr): number {
  return roundUp(XATTR_ENTRY + prefixOf(x.key).rest.length + x.value.length, 4);
}

function xattrAreaSize(nShared: number, unsharedBytes: number): number {
  if (nShared === 0 && unsharedBytes === 0) return 0;
  return roundUp(XATTR_HEADER + nShared * 4 + unsharedBytes, 4);
}

function xattrCounts(node: CfsNode): { nShared: number; unshared: number } {
  let nShared = 0;
  let unshared = 0;
  const xs = node.xattrs;
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i] as Xattr;
    if (x.shared >= 0) nShared++;
    else unshared += xattrEntrySize(x);
  }
  return { nShared, unshared };
}


/** The version the image is written at: min, raised to 1 by a whiteout when max allows (lcfs_write_update_version). */
function formatVersion(root: CfsNode, min: number, max: number): number {
  if (min >= 1 || max < 1) return min;
  const stack = [root];
  while (stack.length > 0) {
    const n = stack.pop() as CfsNode;
    if (n.type === S_IFCHR && n.rdev === 0) return 1;
    for (const c of n.childNodes()) if (c.linkTo === null) stack.push(c);
  }
  return min;
}

/** Escapes the tree's own overlay xattrs and adds the ones overlayfs reads (add_overlayfs_xattrs). */
function addOverlayXattrs(node: CfsNode, version: number): void {
  const set = (n: CfsNode, key: string, value: string): void => {
    const why = n.setXattr(key, value);
    if (why !== null) throw refused(n, why);
  };
  for (const x of node.xattrs) if (x.key.startsWith(OVERLAY)) x.key = ESCAPED + x.key.slice(OVERLAY.length);
  const type = node.type;
  if (type === S_IFREG && node.size > 0 && node.content === null) {
    // version 0, length 36, flags 0, FS_VERITY_HASH_ALG_SHA256, the digest; empty when none is known
    set(node, `${OVERLAY}metacopy`, node.digest === null ? '' : `\x00\x24\x00\x01${node.digest}`);
    if (node.payload !== null && node.payload.length > 0) set(node, `${OVERLAY}redirect`, `/${node.payload}`);
  }
  if (type === S_IFCHR && node.rdev === 0) {
    // A whiteout in the tree is a file to overlayfs: written as an escaped whiteout, and its
    // folder marked as holding some.
    const parent = node.parent as CfsNode;
    node.size = 0;
    node.mode = S_IFREG | (node.mode & ~S_IFMT);
    set(node, `${ESCAPED}whiteout`, '');
    set(node, `${USER_OVERLAY}whiteout`, '');
    set(parent, `${ESCAPED}whiteouts`, '');
    set(parent, `${USER_OVERLAY}whiteouts`, '');
    if (version >= 1) {
      set(parent, `${ESCAPED}opaque`, 'x');
      set(parent, `${USER_OVERLAY}opaque`, 'x');
    }
  }
}

function checkNode(node: CfsNode): void {
  if (!validMode(node.mode)) throw refused(node, `invalid mode ${node.mode.toString(8)}`);
  if (node.type === S_IFREG && node.size > 0 && node.content === null && chunking(node.size).count > MAX_NONINLINE_CHUNKS) {
    throw refused(node, `a file of ${node.size} bytes is too big for a composefs image`);
  }
}

/** rewrite_tree_for_erofs: overlay xattrs, `.` and `..`, the root opaque with 256 whiteouts. */
function rewriteTree(root: CfsNode, version: number, signal?: AbortSignal): void {
  const stack: CfsNode[] = [root];
  for (let steps = 0; stack.length > 0; steps++) {
    if ((steps & 4095) === 0) signal?.throwIfAborted();
    const node = stack.pop() as CfsNode;
    checkNode(node);
    node.resetXattrBudget();
    addOverlayXattrs(node, version);
    if (!node.isDir()) continue;
    // `.` and `..` are added when the folder is laid out (sortedEntries): no dumpfile has them.
    for (const c of node.childNodes()) if (c.linkTo === null) stack.push(c);
  }
  const why = root.setXattr(`${OVERLAY}opaque`, 'y');
  if (why !== null) throw refused(root, why);
  const selinux = root.getXattr('security.selinux');
  for (let i = 0; i < 256; i++) {
    const name = i.toString(16).padStart(2, '0');
    if (root.child(name) !== undefined) continue;
    const w = new CfsNode();
    w.mode = S_IFCHR | 0o644;
    w.uid = root.uid;
    w.gid = root.gid;
    w.mtimeHi = root.mtimeHi;
    w.mtimeLo = root.mtimeLo;
    w.mtimeNsec = root.mtimeNsec;
    if (selinux) w.setXattr('security.selinux', selinux.value);
    root.addChild(name, w);
  }
}

function linkTo(target: CfsNode): CfsNode {
  const n = new CfsNode();
  n.mode = 0;
  n.linkTo = target;
  return n;
}

/** A folder's entries in byte order, with `.` and `..` as hard links to itself and its parent. */
function sortedEntries(node: CfsNode): CfsNode[] {
  const kids = node.childNodes();
  let inOrder = true;
  for (let i = 1; i < kids.length && inOrder; i++) if ((kids[i - 1]?.name as string) > (kids[i]?.name as string)) inOrder = false;
  // A dumpfile lists a folder's entries in order: sort only when it did not.
  if (!inOrder) kids.sort((a, b) => ((a.name as string) < (b.name as string) ? -1 : 1));
  for (const [name, target] of [['.', node], ['..', node.parent ?? node]] as const) {
    const link = linkTo(target);
    link.name = name;
    let lo = 0;
    let hi = kids.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((kids[mid]?.name as string) < name) lo = mid + 1;
      else hi = mid;
    }
    kids.splice(lo, 0, link);
  }
  return kids;
}

interface Layout {
  nodes: CfsNode[];
  min: { mtimeHi: number; mtimeLo: number; mtimeNsec: number };
  hasAcl: boolean;
}

/**
 * An inode's xattrs by key, in place: an insertion sort (stable, as Array.prototype.sort), since
 * an inode has a handful and sort() allocates a work copy per call, 64,000 calls for a distro tree.
 */
function sortXattrs(xs: Xattr[]): void {
  for (let i = 1; i < xs.length; i++) {
    const x = xs[i] as Xattr;
    let j = i - 1;
    while (j >= 0 && (xs[j] as Xattr).key > x.key) {
      xs[j + 1] = xs[j] as Xattr;
      j--;
    }
    xs[j + 1] = x;
  }
}

/** lcfs_compute_tree: breadth-first order, sorted children, folder link counts, xattrs by key. */
function computeTree(root: CfsNode, signal?: AbortSignal): Layout {
  const nodes: CfsNode[] = [root];
  const min = { mtimeHi: root.mtimeHi, mtimeLo: root.mtimeLo, mtimeNsec: root.mtimeNsec };
  let hasAcl = false;
  for (let i = 0; i < nodes.length; i++) {
    if ((i & 4095) === 0) signal?.throwIfAborted();
    const node = nodes[i] as CfsNode;
    if (node.isDir()) {
      const kids = (node.sorted = sortedEntries(node));
      let n = 2;
      for (let k = 0; k < kids.length; k++) if ((kids[k] as CfsNode).type === S_IFDIR) n++;
      node.nlink = n;
    }
    if (node.xattrs.length > 1) sortXattrs(node.xattrs);
    if (mtimeCompare(node, min) < 0) {
      min.mtimeHi = node.mtimeHi;
      min.mtimeLo = node.mtimeLo;
      min.mtimeNsec = node.mtimeNsec;
    }
    node.inodeNum = i;
    if (node.getXattr('system.posix_acl_access') || node.getXattr('system.posix_acl_default')) hasAcl = true;
    const kids = node.sorted;
    for (let k = 0; k < kids.length; k++) if ((kids[k] as CfsNode).linkTo === null) nodes.push(kids[k] as CfsNode);
  }
  return { nodes, min, hasAcl };
}

interface Shared {
  list: Xattr[];
  size: number;
}

/** Xattrs (key and value) used by more than one inode go to the shared area, in a canonical order. */
function computeSharedXattrs(nodes: CfsNode[]): Shared {
  // key → value (as a latin1 string) → use count; only the shared ones are then sorted.
  const byKey = new Map<string, Map<string, { x: Xattr; count: number; offset: number }>>();
  const entryOf = (x: Xattr): { x: Xattr; count: number; offset: number } => {
    let values = byKey.get(x.key);
    if (values === undefined) byKey.set(x.key, (values = new Map()));
    let e = values.get(x.value);
    if (e === undefined) values.set(x.value, (e = { x, count: 0, offset: -1 }));
    return e;
  };
  const perNode: { x: Xattr; count: number; offset: number }[][] = [];
  for (const n of nodes) {
    const es = n.xattrs.map(entryOf);
    for (const e of es) e.count++;
    perNode.push(es);
  }
  const sharedEntries: { x: Xattr; count: number; offset: number }[] = [];
  for (const values of byKey.values()) for (const e of values.values()) if (e.count > 1) sharedEntries.push(e);
  sharedEntries.sort((a, b) => {
    if (a.x.key !== b.x.key) return a.x.key < b.x.key ? 1 : -1;
    if (a.x.value.length !== b.x.value.length) return b.x.value.length - a.x.value.length;
    return a.x.value < b.x.value ? 1 : a.x.value > b.x.value ? -1 : 0;
  });
  const list: Xattr[] = [];
  let offset = 0;
  for (const e of sharedEntries) {
    e.offset = offset;
    list.push(e.x);
    offset += xattrEntrySize(e.x);
  }
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i] as CfsNode;
    const es = perNode[i] as { offset: number }[];
    let nShared = 0;
    for (let j = 0; j < n.xattrs.length; j++) {
      const x = n.xattrs[j] as Xattr;
      const e = es[j] as { offset: number };
      if (e.offset >= 0 && nShared < MAX_SHARED_PER_INODE) {
        x.shared = e.offset;
        nShared++;
      } else {
        x.shared = -1;
      }
    }
  }
  return { list, size: offset };
}

/** Folder data: whole blocks of dirents, and a tail kept inline when it is at most half a block. */
function dirSize(node: CfsNode): void {
  let blocks = 0;
  let used = 0;
  for (const c of node.sorted) {
    const len = DIRENT_SIZE + (c.name as string).length;
    if (used + len > BLOCK) {
      blocks++;
      used = 0;
    }
    used += len;
  }
  if (used > BLOCK / 2) {
    blocks++;
    used = 0;
  }
  node.nBlocks = blocks;
  node.tailSize = used;
}

function inodeDataSize(node: CfsNode): void {
  const type = node.type;
  node.nBlocks = 0;
  node.tailSize = 0;
  if (type === S_IFDIR) dirSize(node);
  else if (type === S_IFLNK) node.tailSize = (node.payload as string).length;
  else if (type === S_IFREG && node.size > 0) {
    if (node.content !== null) {
      const size = node.content.length;
      node.nBlocks = Math.floor(size / BLOCK);
      node.tailSize = size % BLOCK;
      if (node.tailSize > BLOCK / 2) {
        node.nBlocks++;
        node.tailSize = 0;
      }
    } else {
      node.tailSize = chunking(node.size).count * 4;
    }
  }
}

function fitsCompact(node: CfsNode, layout: Layout): boolean {
  if (mtimeCompare(node, layout.min) !== 0) return false;
  if (node.nlink > 0xffff || node.uid > 0xffff || node.gid > 0xffff) return false;
  const size = node.type === S_IFDIR ? node.nBlocks * BLOCK + node.tailSize : node.size;
  return size <= 0xffffffff;
}

/** Padding before an inode so that its tail does not straddle a block (or the tail goes to a block). */
function tailPadding(node: CfsNode, pos: number, inodeSize: number, xattrSize: number): number {
  const nonTail = inodeSize + xattrSize;
  const total = nonTail + node.tailSize;
  if (node.type === S_IFLNK) {
    // A symlink's target stays with its inode in one block, or goes to a block of its own.
    const startBlock = Math.floor(pos / BLOCK);
    const endBlock = Math.floor((pos + total - 1) / BLOCK);
    if (Math.floor(total / BLOCK) > 0) {
      node.nBlocks++;
      node.tailSize = 0;
    }
    return startBlock !== endBlock ? roundUp(pos, BLOCK) - pos : 0;
  }
  let remainder = BLOCK - ((pos + nonTail) % BLOCK);
  if (remainder < node.tailSize) {
    const pad = roundUp(remainder, SLOT);
    remainder = BLOCK - ((pos + nonTail + pad) % BLOCK);
    if (node.tailSize <= remainder) return pad;
    node.nBlocks++;
    node.tailSize = 0;
    return roundUp(pos, BLOCK) - pos;
  }
  return 0;
}

interface Placement {
  inodesEnd: number;
  dataBlocks: number;
}

/** compute_erofs_inodes: where each inode goes, its padding, nid and block count. */
function placeInodes(layout: Layout): Placement {
  let pos = SUPER_OFFSET + SUPER_SIZE;
  const metaStart = Math.floor(pos / BLOCK) * BLOCK;
  let dataBlocks = 0;
  for (const node of layout.nodes) {
    inodeDataSize(node);
    node.compact = fitsCompact(node, layout);
    const inodeSize = node.compact ? COMPACT_SIZE : EXTENDED_SIZE;
    const { nShared, unshared } = xattrCounts(node);
    node.xattrSize = xattrAreaSize(nShared, unshared);
    const before = pos;
    pos = roundUp(pos, SLOT);
    node.ipad = pos - before;
    const extra = tailPadding(node, pos, inodeSize, node.xattrSize);
    node.ipad += extra;
    pos += extra;
    node.isize = inodeSize + node.xattrSize + node.tailSize;
    dataBlocks += node.nBlocks;
    node.nid = (pos - metaStart) / SLOT;
    if (node.ipad >= BLOCK) throw internal(`inode padding of ${node.ipad} bytes`);
    pos += node.isize;
  }
  return { inodesEnd: roundUp(pos, SLOT), dataBlocks };
}

/** A little-endian u64 from a number below 2^53. */
function writeU64(b: Buffer, v: number, at: number): void {
  b.writeUInt32LE(v % 2 ** 32, at);
  b.writeUInt32LE(Math.floor(v / 2 ** 32), at + 4);
}

function internal(why: string): VeritreeError {
  return new VeritreeError(ERROR_CODES.INTERNAL, `composefs image writer: ${why}`);
}

/** A cursor over the image buffer (zero-filled, so padding is a skip). */
class Out {
  pos = 0;
  readonly b: Buffer;
  constructor(b: Buffer) {
    this.b = b;
  }
  pad(n: number): void {
    this.pos += n;
  }
  align(to: number): void {
    this.pos = roundUp(this.pos, to);
  }
  text(s: string): void {
    // Most strings here are a name or a short value: a loop beats the native call's set-up.
    if (s.length > 48) {
      this.pos += this.b.write(s, this.pos, 'latin1');
      return;
    }
    const b = this.b;
    let p = this.pos;
    for (let i = 0; i < s.length; i++) b[p++] = s.charCodeAt(i);
    this.pos = p;
  }
}

function writeXattr(out: Out, x: Xattr): void {
  const { index, rest } = prefixOf(x.key);
  out.b[out.pos] = rest.length;
  out.b[out.pos + 1] = index;
  out.b.writeUInt16LE(x.value.length, out.pos + 2);
  out.pos += 4;
  out.text(rest);
  out.text(x.value);
  out.align(4);
}

function xattrFilter(node: CfsNode): number {
  let bits = 0;
  for (const x of node.xattrs) bits |= 1 << prefixOf(x.key).bit;
  return ~bits >>> 0;
}

/** One run of dirents: the entries, then their names, then padding to `align`. */
function writeDirents(out: Out, node: CfsNode, first: number, count: number, align: number): void {
  let nameoff = count * DIRENT_SIZE;
  for (let i = first; i < first + count; i++) {
    const child = node.sorted[i] as CfsNode;
    const target = followLinks(child) as CfsNode;
    writeU64(out.b, target.nid, out.pos);
    out.b.writeUInt16LE(nameoff & 0xffff, out.pos + 8);
    out.b[out.pos + 10] = FILE_TYPE[target.type] ?? 0;
    out.pos += DIRENT_SIZE;
    nameoff += (child.name as string).length;
  }
  for (let i = first; i < first + count; i++) out.text(node.sorted[i]?.name as string);
  out.align(align);
}

/** write_erofs_dentries: the whole blocks (into the data area) or the inline tail. */
function writeDentries(out: Out, node: CfsNode, blocks: boolean, tail: boolean): void {
  let used = 0;
  let written = 0;
  let first = 0;
  const kids = node.sorted;
  for (let i = 0; i < kids.length; i++) {
    const len = DIRENT_SIZE + (kids[i]?.name as string).length;
    if (used + len > BLOCK) {
      if (blocks) writeDirents(out, node, first, i - first, BLOCK);
      written++;
      used = 0;
      first = i;
    }
    used += len;
  }
  if (written < node.nBlocks) {
    if (blocks) writeDirents(out, node, first, kids.length - first, BLOCK);
    written++;
    used = 0;
    first = kids.length;
  }
  if (tail && used > 0) writeDirents(out, node, first, kids.length - first, 1);
}

function writeNullChunks(out: Out, count: number): void {
  out.b.fill(0xff, out.pos, out.pos + count * 4);
  out.pos += count * 4;
}

interface WriteState {
  dataEnd: number;
  inodesEnd: number;
}

function writeInode(out: Out, node: CfsNode, st: WriteState): void {
  const start = out.pos;
  out.pad(node.ipad);
  const type = node.type;
  // The area's size was laid out with the inode (placeInodes); written and checked against it below.
  const xattrSize = node.xattrSize;
  let nShared = 0;
  for (let i = 0; i < node.xattrs.length; i++) if ((node.xattrs[i] as Xattr).shared >= 0) nShared++;
  const icount = xattrSize === 0 ? 0 : (xattrSize - XATTR_HEADER) / 4 + 1;
  if (icount > 0xffff) throw refused(node, 'too many xattrs for one inode');
  let layout = node.tailSize > 0 ? LAYOUT_FLAT_INLINE : LAYOUT_FLAT_PLAIN;
  let size: number;
  let chunkCount = 0;
  let chunkFormat = 0;
  if (type === S_IFDIR) size = node.nBlocks * BLOCK + node.tailSize;
  else if (type === S_IFREG) {
    size = node.size;
    if (size > 0 && node.content === null) {
      const c = chunking(size);
      chunkCount = c.count;
      layout = LAYOUT_CHUNK_BASED;
      chunkFormat = c.bits - BLOCK_BITS;
    }
  } else if (type === S_IFLNK) size = node.nBlocks === 0 ? node.tailSize : node.size;
  else size = 0;
  const format = (layout << 1) | (node.compact ? 0 : 1);
  const b = out.b;
  const at = out.pos;
  b.writeUInt16LE(format, at);
  b.writeUInt16LE(icount, at + 2);
  b.writeUInt16LE(node.mode & 0xffff, at + 4);
  // i_u (offset 16): a block address, a device number, or the chunk format over the address's low half.
  let blkaddr = -1;
  if ((type === S_IFDIR || type === S_IFREG || type === S_IFLNK) && node.nBlocks > 0) {
    blkaddr = st.dataEnd / BLOCK;
    st.dataEnd += BLOCK * node.nBlocks;
  }
  if (blkaddr >= 0) b.writeUInt32LE(blkaddr >>> 0, at + 16);
  if (type === S_IFCHR || type === S_IFBLK) b.writeUInt32LE(node.rdev >>> 0, at + 16);
  if (layout === LAYOUT_CHUNK_BASED) b.writeUInt16LE(chunkFormat, at + 16);
  b.writeUInt32LE(node.inodeNum >>> 0, at + 20);
  if (node.compact) {
    b.writeUInt16LE(node.nlink, at + 6);
    b.writeUInt32LE(size, at + 8);
    b.writeUInt16LE(node.uid, at + 24);
    b.writeUInt16LE(node.gid, at + 26);
    out.pos += COMPACT_SIZE;
  } else {
    writeU64(b, size, at + 8);
    b.writeUInt32LE(node.uid >>> 0, at + 24);
    b.writeUInt32LE(node.gid >>> 0, at + 28);
    const [lo, hi] = mtimeWords(node.mtimeHi, node.mtimeLo);
    b.writeUInt32LE(lo, at + 32);
    b.writeUInt32LE(hi, at + 36);
    b.writeUInt32LE(node.mtimeNsec >>> 0, at + 40);
    b.writeUInt32LE(node.nlink >>> 0, at + 44);
    out.pos += EXTENDED_SIZE;
  }
  if (xattrSize > 0) {
    const xstart = out.pos;
    b.writeUInt32LE(xattrFilter(node), out.pos);
    b[out.pos + 4] = nShared;
    out.pos += XATTR_HEADER;
    for (const x of node.xattrs) {
      if (x.shared < 0) continue;
      b.writeUInt32LE(((st.inodesEnd % BLOCK) + x.shared) / 4, out.pos);
      out.pos += 4;
    }
    for (const x of node.xattrs) if (x.shared < 0) writeXattr(out, x);
    if (out.pos - xstart !== node.xattrSize) throw internal('xattr area size');
  }
  if (type === S_IFDIR) writeDentries(out, node, false, true);
  else if (type === S_IFLNK) {
    if (node.nBlocks === 0) out.text(node.payload as string);
  } else if (type === S_IFREG && node.tailSize > 0) {
    if (node.content !== null) out.text(node.content.slice(node.content.length - node.tailSize));
    else writeNullChunks(out, chunkCount);
  }
  if (out.pos - start !== node.isize + node.ipad) throw internal(`inode ${node.inodeNum} size`);
}

/** write_erofs_file_content: what did not fit inline, one block (as libcomposefs writes it). */
function writeFileBlocks(out: Out, node: CfsNode): void {
  if (node.nBlocks === 0) return;
  const type = node.type;
  if (type === S_IFREG) {
    if (node.content === null) {
      writeNullChunks(out, 1024);
      return;
    }
    out.text(node.content.slice(0, BLOCK));
    out.align(BLOCK);
  } else if (type === S_IFLNK) {
    out.text((node.payload as string).slice(0, BLOCK));
    out.align(BLOCK);
  }
}

export interface ComposefsImage {
  bytes: Buffer;
  /** The format version written (0 or 1). */
  version: number;
  inodes: number;
}

/**
 * Writes the image of `root` (a tree from parseDumpfile or the store; consumed).
 * @throws VeritreeError DUMPFILE_INVALID for a tree no composefs image can hold
 */
export function writeComposefsImage(root: CfsNode, opts: ImageOptions = {}): ComposefsImage {
  const min = opts.minVersion ?? 0;
  let max = opts.maxVersion ?? FORMAT_VERSION_MAX;
  if (min < 0 || min > FORMAT_VERSION_MAX || max > FORMAT_VERSION_MAX) {
    throw new VeritreeError(ERROR_CODES.USAGE, `format versions go from 0 to ${FORMAT_VERSION_MAX}`);
  }
  if (max < min) max = min;
  const version = formatVersion(root, min, max);
  rewriteTree(root, version, opts.signal);
  const layout = computeTree(root, opts.signal);
  const shared = computeSharedXattrs(layout.nodes);
  const { inodesEnd, dataBlocks } = placeInodes(layout);
  const dataStart = roundUp(inodesEnd + shared.size, BLOCK);
  const total = dataStart + dataBlocks * BLOCK;
  if (root.nid >= 0xffff) throw refused(root, 'the root inode lies too far into the image');
  const out = new Out(Buffer.alloc(total));
  const b = out.b;
  b.writeUInt32LE(COMPOSEFS_MAGIC, 0);
  b.writeUInt32LE(COMPOSEFS_HEADER_VERSION, 4);
  b.writeUInt32LE(layout.hasAcl ? FLAG_HAS_ACL : 0, 8);
  b.writeUInt32LE(version, 12);
  const sb = SUPER_OFFSET;
  b.writeUInt32LE(EROFS_MAGIC, sb);
  b.writeUInt32LE(FEATURE_COMPAT_MTIME | FEATURE_COMPAT_XATTR_FILTER, sb + 8);
  b[sb + 12] = BLOCK_BITS;
  b.writeUInt16LE(root.nid, sb + 14);
  writeU64(b, layout.nodes.length, sb + 16);
  const [lo, hi] = mtimeWords(layout.min.mtimeHi, layout.min.mtimeLo);
  b.writeUInt32LE(lo, sb + 24);
  b.writeUInt32LE(hi, sb + 28);
  b.writeUInt32LE(layout.min.mtimeNsec >>> 0, sb + 32);
  b.writeUInt32LE((dataStart / BLOCK + dataBlocks) >>> 0, sb + 36);
  b.writeUInt32LE(Math.floor((SUPER_OFFSET + SUPER_SIZE) / BLOCK), sb + 40);
  b.writeUInt32LE(Math.floor(inodesEnd / BLOCK), sb + 44);
  out.pos = SUPER_OFFSET + SUPER_SIZE;
  const st: WriteState = { dataEnd: dataStart, inodesEnd };
  for (let i = 0; i < layout.nodes.length; i++) {
    if ((i & 4095) === 0) opts.signal?.throwIfAborted();
    writeInode(out, layout.nodes[i] as CfsNode, st);
  }
  out.align(SLOT);
  if (out.pos !== inodesEnd) throw internal('end of inodes');
  for (const x of shared.list) writeXattr(out, x);
  out.align(BLOCK);
  if (out.pos !== dataStart) throw internal('start of data blocks');
  for (const node of layout.nodes) {
    if (node.type === S_IFDIR) writeDentries(out, node, true, false);
    writeFileBlocks(out, node);
  }
  if (out.pos !== total || st.dataEnd !== total) throw internal(`image ends at ${out.pos}, expected ${total}`);
  return { bytes: b, version, inodes: layout.nodes.length };
}
