/**
 * The tree a composefs image is written from: one CfsNode per inode and per hard-link name, with
 * the field widths and rules of libcomposefs's lcfs_node_s (so that the writer gives the same
 * bytes as mkcomposefs). Names, keys, symlink targets and payloads are byte strings held as
 * latin1 JS strings (one char per byte, see oci/names.ts): JS string order is then byte order,
 * which is strcmp's (and memcmp's, for values and contents, kept the same way).
 * @module
 */

import { ERROR_CODES, VeritreeError } from '../errors.ts';

/** Thrown for input mkcomposefs would refuse (or that it would read into an undefined image); `line` 0 when no line is to blame. */
export function dumpError(line: number, why: string): VeritreeError {
  return new VeritreeError(ERROR_CODES.DUMPFILE_INVALID, line > 0 ? `dumpfile line ${line}: ${why}` : `dumpfile: ${why}`);
}

export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

/** Longest name of one entry (bytes). */
export const NAME_MAX = 255;
/** Longest xattr name (XATTR_NAME_MAX). */
export const XATTR_NAME_MAX = 255;
/** A payload or symlink target must be shorter than PATH_MAX. */
export const PATH_MAX = 4096;
/** Largest inline content (LCFS_INLINE_CONTENT_MAX). */
export const INLINE_CONTENT_MAX = 5000;
/** Budget of one inode's xattrs from external input (LCFS_INODE_EXTERNAL_XATTR_MAX). */
export const XATTR_BUDGET = 0x7fff;
/** A file stored outside the image may need at most this many chunk entries (one block). */
export const MAX_NONINLINE_CHUNKS = 1024;

export interface Xattr {
  key: string;
  /** The value's bytes as a latin1 string. */
  value: string;
  /** Writer scratch: offset in the shared area, or -1 when written inline. */
  shared: number;
}

const NO_XATTRS: Xattr[] = [];
const NO_CHILDREN: CfsNode[] = [];

export class CfsNode {
  name: string | null = null;
  parent: CfsNode | null = null;
  /** By name (made on the first child: most nodes are files); sorted once when the tree is laid out. */
  private kids: Map<string, CfsNode> | null = null;
  /** A hard-link name: the node it names (possibly another link until resolved). */
  linkTo: CfsNode | null = null;
  mode = 0;
  nlink = 1;
  uid = 0;
  gid = 0;
  rdev = 0;
  /** st_size; exact to 2^53, Infinity above (no such file fits an image, and no other type stores it). */
  size = 0;
  /**
   * st_mtim_sec (signed 64 bits) as `mtimeHi * 2^24 + mtimeLo`, 0 <= mtimeLo < 2^24: both parts
   * stay small integers (V8 boxes a field over 2^30, one allocation per inode otherwise).
   */
  mtimeHi = 0;
  mtimeLo = 0;
  mtimeNsec = 0;
  payload: string | null = null;
  /** Inline content (bytes as latin1). */
  content: string | null = null;
  /** The fs-verity SHA-256 digest, 32 bytes as latin1. */
  digest: string | null = null;
  xattrs: Xattr[] = NO_XATTRS;
  /** libcomposefs's running estimate of the xattr area, checked against XATTR_BUDGET. */
  xattrBudget = 0;
  /** Where the node came from, for messages (a dumpfile line number; 0 when made here). */
  line = 0;

  // Writer scratch (lcfs_node_s's erofs_* fields).
  sorted: CfsNode[] = NO_CHILDREN;
  inodeNum = 0;
  compact = false;
  ipad = 0;
  xattrSize = 0;
  isize = 0;
  nid = 0;
  nBlocks = 0;
  tailSize = 0;

  get type(): number {
    return this.mode & S_IFMT;
  }

  isDir(): boolean {
    return this.type === S_IFDIR;
  }

  getXattr(key: string): Xattr | undefined {
    return this.xattrs.find((x) => x.key === key);
  }

  /**
   * Sets (or replaces) an xattr as lcfs_node_set_xattr does, with its size accounting.
   * @returns why it cannot be set, or null
   */
  setXattr(key: string, value: string): string | null {
    if (key.length === 0 || key.length > XATTR_NAME_MAX) return `xattr name of ${key.length} bytes (1 to ${XATTR_NAME_MAX})`;
    if (value.length > 0xffff) return `xattr value of ${value.length} bytes (at most 65535)`;
    const i = this.xattrs.findIndex((x) => x.key === key);
    if (i >= 0) {
      const old = this.xattrs[i] as Xattr;
      const last = this.xattrs.pop() as Xattr;
      if (last !== old) this.xattrs[i] = last;
      this.xattrBudget = this.xattrs.length > 0 ? this.xattrBudget - (7 + key.length + old.value.length) : 0;
    }
    let entry = 7 + key.length + value.length;
    if (this.xattrs.length === 0) entry += 12;
    // The budget is a size_t in libcomposefs and can be driven below zero (see resetXattrBudget):
    // a negative sum is a huge unsigned one, and refused as it is there.
    const sum = this.xattrBudget + entry;
    if (sum < 0 || sum > XATTR_BUDGET) return `xattrs of more than ${XATTR_BUDGET} bytes on one inode`;
    if (this.xattrs === NO_XATTRS) this.xattrs = [];
    this.xattrs.push({ key, value, shared: -1 });
    this.xattrBudget += entry;
    return null;
  }

  /**
   * libcomposefs writes from a clone of the tree whose budget starts at zero whatever xattrs the
   * node holds (lcfs_node_clone does not copy it); replacing one of them then subtracts from
   * zero. The writer does the same, for the same refusals.
   */
  resetXattrBudget(): void {
    this.xattrBudget = 0;
  }

  /** Adds a child; the caller has checked the name. */
  addChild(name: string, child: CfsNode): void {
    child.name = name;
    child.parent = this;
    (this.kids ??= new Map()).set(name, child);
  }

  child(name: string): CfsNode | undefined {
    return this.kids?.get(name);
  }

  /** The children in the order they were added. */
  childNodes(): CfsNode[] {
    return this.kids === null ? [] : [...this.kids.values()];
  }
}

/** libcomposefs's lcfs_validate_mode: the seven file types, nothing else. */
export function validMode(mode: number): boolean {
  switch (mode & S_IFMT) {
    case S_IFREG:
    case S_IFDIR:
    case S_IFLNK:
    case S_IFBLK:
    case S_IFCHR:
    case S_IFSOCK:
    case S_IFIFO:
      return true;
    default:
      return false;
  }
}

/** The node a hard-link name ends at; null on a cycle. */
export function followLinks(node: CfsNode): CfsNode | null {
  let n = node;
  for (let steps = 0; n.linkTo !== null; steps++) {
    n = n.linkTo;
    if (n === node || steps > 1_000_000) return null;
  }
  return n;
}

/** EROFS chunk size bits and count for a file of `size` bytes kept outside the image. */
export function chunking(size: number): { bits: number; count: number } {
  const v = size - 1;
  // ilog2(v) + 1, with ilog2(0) = 0
  let bits = v <= 0 ? 0 : v < 2 ** 32 ? 32 - Math.clz32(v) : v <= Number.MAX_SAFE_INTEGER ? 64 - Math.clz32(Math.floor(v / 2 ** 32)) : 64;
  if (bits < 12) bits = 12;
  if (bits - 12 > 31) bits = 31 + 12;
  return { bits, count: Math.ceil(size / 2 ** bits) };
}

export const MTIME_SPLIT = 2 ** 24;

/** st_mtim_sec as the two 32-bit halves of its 64-bit two's complement: [low, high]. */
export function mtimeWords(hi: number, lo: number): [number, number] {
  const n = hi * MTIME_SPLIT + lo;
  if (n >= 0 && n <= Number.MAX_SAFE_INTEGER) return [n % 2 ** 32, Math.floor(n / 2 ** 32)];
  const v = BigInt.asUintN(64, BigInt(hi) * BigInt(MTIME_SPLIT) + BigInt(lo));
  return [Number(v & 0xffffffffn), Number(v >> 32n)];
}

/** Orders two mtimes (seconds as signed hi/unsigned lo halves, then nanoseconds). */
export function mtimeCompare(a: CfsNode, b: { mtimeHi: number; mtimeLo: number; mtimeNsec: number }): number {
  return a.mtimeHi - b.mtimeHi || a.mtimeLo - b.mtimeLo || a.mtimeNsec - b.mtimeNsec;
}
