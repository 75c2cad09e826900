/**
 * Where each inode of a composefs image goes (libcomposefs's lcfs_compute_tree and
 * compute_erofs_inodes): breadth-first order from the root, each folder's entries in byte order
 * with `.` and `..`, folder link counts, xattrs in key order, the oldest mtime (compact inodes
 * carry none), then each inode's data size, padding and nid. What is worked out per row is kept in
 * typed arrays by row (lcfs_node_s's erofs_* fields), and every folder's entries in one array.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { S_IFDIR, S_IFLNK, S_IFREG, chunkCount } from './node.ts';
import { type CfsTree, NONE } from './tree.ts';
import { BLOCK, COMPACT_SIZE, DIRENT_SIZE, EXTENDED_SIZE, SLOT, SUPER_OFFSET, SUPER_SIZE } from './format.ts';
import { KeyFacts, shareXattrs, sortXattrs, type SharedXattrs } from './writer-xattrs.ts';
import { REDIRECT_PREFIX, type OverlayKeys } from './writer-policy.ts';

export const roundUp = (x: number, to: number): number => Math.ceil(x / to) * to;

export function internal(why: string): VeritreeError {
  return new VeritreeError(ERROR_CODES.INTERNAL, `composefs image writer: ${why}`);
}

/** DOT and DOTDOT stand for `.` and `..` in a folder's entries (every other entry is a row). */
export const DOT = -2;
export const DOTDOT = -3;

export function entryName(t: CfsTree, e: number): string {
  return e >= 0 ? (t.name[e] as string) : e === DOT ? '.' : '..';
}

/**
 * What the writer works out per row, and the image-wide facts: breadth-first order, folder
 * entries, shared xattrs.
 */
export class Layout {
  readonly t: CfsTree;
  /** Rows in inode order (breadth first from the root): the first `inodes` of `order`. */
  readonly order: Int32Array;
  inodes = 1;
  /** Every folder's sorted entries, one after another: folder n's are `entryCount[n]` from `entryStart[n]`. */
  entries: Int32Array;
  private entriesUsed = 0;
  readonly entryStart: Int32Array;
  readonly entryCount: Int32Array;
  readonly nid: Float64Array;
  readonly ipad: Int32Array;
  readonly isize: Int32Array;
  readonly nBlocks: Float64Array;
  readonly tailSize: Int32Array;
  readonly compact: Uint8Array;
  readonly keys: KeyFacts;
  /** Set by shareXattrs: per row its xattr area, per slot its place in the shared area. */
  shared: SharedXattrs | null = null;
  minHi: number;
  minLo: number;
  minNsec: number;
  hasAcl = false;

  constructor(t: CfsTree, overlay: OverlayKeys) {
    this.t = t;
    const rows = t.count;
    this.order = new Int32Array(rows);
    this.entries = new Int32Array(rows + 2048);
    this.entryStart = new Int32Array(rows);
    this.entryCount = new Int32Array(rows);
    this.nid = new Float64Array(rows);
    this.ipad = new Int32Array(rows);
    this.isize = new Int32Array(rows);
    this.nBlocks = new Float64Array(rows);
    this.tailSize = new Int32Array(rows);
    this.compact = new Uint8Array(rows);
    this.keys = new KeyFacts(t.keys);
    this.keys.valuePrefix[overlay.redirect] = REDIRECT_PREFIX;
    this.minHi = t.mtimeHi[0] as number;
    this.minLo = t.mtimeLo[0] as number;
    this.minNsec = t.mtimeNsec[0] as number;
  }

  get xattrs(): SharedXattrs {
    if (this.shared === null) throw internal('xattrs used before they are shared');
    return this.shared;
  }

  isMinMtime(n: number): boolean {
    const t = this.t;
    return t.mtimeHi[n] === this.minHi && t.mtimeLo[n] === this.minLo && t.mtimeNsec[n] === this.minNsec;
  }

  /** The row an entry of folder `dir` names. */
  target(dir: number, e: number): number {
    if (e === DOT) return dir;
    if (e === DOTDOT) return this.t.parent[dir] === NONE ? dir : (this.t.parent[dir] as number);
    return this.t.followLinks(e);
  }

  private pushEntry(e: number): void {
    if (this.entriesUsed === this.entries.length) {
      const bigger = new Int32Array(this.entries.length * 2);
      bigger.set(this.entries);
      this.entries = bigger;
    }
    this.entries[this.entriesUsed++] = e;
  }

  /** Folder `dir`'s entries in byte order, with `.` and `..` (DOT, DOTDOT) in their places. */
  addSortedEntries(dir: number): void {
    const t = this.t;
    let kids = t.children(dir);
    if (!t.childrenSorted(dir)) {
      let inOrder = true;
      for (let i = 1; i < kids.length && inOrder; i++) if ((t.name[kids[i - 1] as number] as string) > (t.name[kids[i] as number] as string)) inOrder = false;
      if (!inOrder) kids = kids.slice().sort((a, b) => ((t.name[a] as string) < (t.name[b] as string) ? -1 : 1));
    }
    // No child is named `.` or `..`, so each goes before the first name above it.
    const dot = t.lowerBound(kids, '.');
    const dotdot = t.lowerBound(kids, '..');
    this.entryStart[dir] = this.entriesUsed;
    this.entryCount[dir] = kids.length + 2;
    for (let i = 0; i < dot; i++) this.pushEntry(kids[i] as number);
    this.pushEntry(DOT);
    for (let i = dot; i < dotdot; i++) this.pushEntry(kids[i] as number);
    this.pushEntry(DOTDOT);
    for (let i = dotdot; i < kids.length; i++) this.pushEntry(kids[i] as number);
  }
}

/** lcfs_compute_tree: breadth-first order, sorted children, folder link counts, xattrs by key; then the shared xattrs. */
export function computeTree(l: Layout, signal?: AbortSignal): void {
  const t = l.t;
  const order = l.order;
  const aclAccess = t.knownKey('system.posix_acl_access');
  const aclDefault = t.knownKey('system.posix_acl_default');
  const rank = l.keys.rank;
  order[0] = 0;
  for (let i = 0; i < l.inodes; i++) {
    if ((i & 4095) === 0) signal?.throwIfAborted();
    const n = order[i] as number;
    const dir = t.isDir(n);
    if (dir) {
      l.addSortedEntries(n);
      const from = l.entryStart[n] as number;
      const to = from + (l.entryCount[n] as number);
      const entries = l.entries;
      let links = 2;
      for (let k = from; k < to; k++) {
        const e = entries[k] as number;
        if (e >= 0 && t.isDir(e)) links++;
      }
      t.nlink[n] = links;
    }
    if ((t.xCount[n] as number) > 1) sortXattrs(t, rank, n);
    const hi = t.mtimeHi[n] as number;
    const lo = t.mtimeLo[n] as number;
    const ns = t.mtimeNsec[n] as number;
    if (hi < l.minHi || (hi === l.minHi && (lo < l.minLo || (lo === l.minLo && ns < l.minNsec)))) {
      l.minHi = hi;
      l.minLo = lo;
      l.minNsec = ns;
    }
    if (!l.hasAcl && (t.xCount[n] as number) > 0 && ((aclAccess !== NONE && t.slotOf(n, aclAccess) !== NONE) || (aclDefault !== NONE && t.slotOf(n, aclDefault) !== NONE))) l.hasAcl = true;
    if (!dir) continue;
    const from = l.entryStart[n] as number;
    const to = from + (l.entryCount[n] as number);
    const entries = l.entries;
    for (let k = from; k < to; k++) {
      const e = entries[k] as number;
      if (e >= 0 && t.linkTo[e] === NONE) order[l.inodes++] = e;
    }
  }
  l.shared = shareXattrs(t, l.keys, order, l.inodes);
}

/** Folder data: whole blocks of dirents, and a tail kept inline when it is at most half a block. */
function dirSize(l: Layout, n: number): void {
  const t = l.t;
  let blocks = 0;
  let used = 0;
  const from = l.entryStart[n] as number;
  const to = from + (l.entryCount[n] as number);
  const entries = l.entries;
  for (let i = from; i < to; i++) {
    const len = DIRENT_SIZE + entryName(t, entries[i] as number).length;
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
  l.nBlocks[n] = blocks;
  l.tailSize[n] = used;
}

function inodeDataSize(l: Layout, n: number): void {
  const t = l.t;
  const type = t.type(n);
  l.nBlocks[n] = 0;
  l.tailSize[n] = 0;
  if (type === S_IFDIR) dirSize(l, n);
  else if (type === S_IFLNK) l.tailSize[n] = (t.payload[n] as string).length;
  else if (type === S_IFREG && (t.size[n] as number) > 0) {
    const content = t.content[n] as string | null;
    if (content !== null) {
      const size = content.length;
      let blocks = Math.floor(size / BLOCK);
      let tail = size % BLOCK;
      if (tail > BLOCK / 2) {
        blocks++;
        tail = 0;
      }
      l.nBlocks[n] = blocks;
      l.tailSize[n] = tail;
    } else {
      l.tailSize[n] = chunkCount(t.size[n] as number) * 4;
    }
  }
}

function fitsCompact(l: Layout, n: number): boolean {
  const t = l.t;
  if (!l.isMinMtime(n)) return false;
  if ((t.nlink[n] as number) > 0xffff || (t.uid[n] as number) > 0xffff || (t.gid[n] as number) > 0xffff) return false;
  const size = t.type(n) === S_IFDIR ? (l.nBlocks[n] as number) * BLOCK + (l.tailSize[n] as number) : (t.size[n] as number);
  return size <= 0xffffffff;
}

/** Padding before an inode so that its tail does not straddle a block (or the tail goes to a block). */
function tailPadding(l: Layout, n: number, pos: number, inodeSize: number, xattrSize: number): number {
  const nonTail = inodeSize + xattrSize;
  const tailSize = l.tailSize[n] as number;
  const total = nonTail + tailSize;
  if (l.t.type(n) === S_IFLNK) {
    // A symlink's target stays with its inode in one block, or goes to a block of its own.
    const startBlock = Math.floor(pos / BLOCK);
    const endBlock = Math.floor((pos + total - 1) / BLOCK);
    if (Math.floor(total / BLOCK) > 0) {
      l.nBlocks[n] = (l.nBlocks[n] as number) + 1;
      l.tailSize[n] = 0;
    }
    return startBlock !== endBlock ? roundUp(pos, BLOCK) - pos : 0;
  }
  let remainder = BLOCK - ((pos + nonTail) % BLOCK);
  if (remainder < tailSize) {
    const pad = roundUp(remainder, SLOT);
    remainder = BLOCK - ((pos + nonTail + pad) % BLOCK);
    if (tailSize <= remainder) return pad;
    l.nBlocks[n] = (l.nBlocks[n] as number) + 1;
    l.tailSize[n] = 0;
    return roundUp(pos, BLOCK) - pos;
  }
  return 0;
}

export interface Placement {
  inodesEnd: number;
  dataBlocks: number;
}

/** compute_erofs_inodes: where each inode goes, its padding, nid and block count. */
export function placeInodes(l: Layout): Placement {
  let pos = SUPER_OFFSET + SUPER_SIZE;
  const metaStart = Math.floor(pos / BLOCK) * BLOCK;
  let dataBlocks = 0;
  const order = l.order;
  const xattrSizes = l.xattrs.xattrSize;
  for (let i = 0; i < l.inodes; i++) {
    const n = order[i] as number;
    inodeDataSize(l, n);
    const compact = fitsCompact(l, n);
    l.compact[n] = compact ? 1 : 0;
    const inodeSize = compact ? COMPACT_SIZE : EXTENDED_SIZE;
    const xattrSize = xattrSizes[n] as number;
    const before = pos;
    pos = roundUp(pos, SLOT);
    let ipad = pos - before;
    const extra = tailPadding(l, n, pos, inodeSize, xattrSize);
    ipad += extra;
    pos += extra;
    l.ipad[n] = ipad;
    const isize = inodeSize + xattrSize + (l.tailSize[n] as number);
    l.isize[n] = isize;
    dataBlocks += l.nBlocks[n] as number;
    l.nid[n] = (pos - metaStart) / SLOT;
    if (ipad >= BLOCK) throw internal(`inode padding of ${ipad} bytes`);
    pos += isize;
  }
  return { inodesEnd: roundUp(pos, SLOT), dataBlocks };
}
