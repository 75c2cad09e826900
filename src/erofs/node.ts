/**
 * The facts of composefs trees that the dumpfile reader and the image writer share: file types,
 * libcomposefs's limits, its mode rule, chunking and the mtime's split (tree.ts holds the tree).
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

/** EROFS dirent file types (EROFS_FT_*) by `mode >> 12`; 0 for what is no type. */
export const DIRENT_FILE_TYPE = new Uint8Array(16);
DIRENT_FILE_TYPE[S_IFREG >> 12] = 1;
DIRENT_FILE_TYPE[S_IFDIR >> 12] = 2;
DIRENT_FILE_TYPE[S_IFCHR >> 12] = 3;
DIRENT_FILE_TYPE[S_IFBLK >> 12] = 4;
DIRENT_FILE_TYPE[S_IFIFO >> 12] = 5;
DIRENT_FILE_TYPE[S_IFSOCK >> 12] = 6;
DIRENT_FILE_TYPE[S_IFLNK >> 12] = 7;

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

/** EROFS chunk size bits for a file of `size` bytes kept outside the image. */
export function chunkBits(size: number): number {
  const v = size - 1;
  // ilog2(v) + 1, with ilog2(0) = 0
  let bits = v <= 0 ? 0 : v < 2 ** 32 ? 32 - Math.clz32(v) : v <= Number.MAX_SAFE_INTEGER ? 64 - Math.clz32(Math.floor(v / 2 ** 32)) : 64;
  if (bits < 12) bits = 12;
  if (bits - 12 > 31) bits = 31 + 12;
  return bits;
}

/** 2^i, looked up: `2 ** i` with a variable i is a call into the runtime. */
const POW2 = Float64Array.from({ length: 64 }, (_, i) => 2 ** i);

/** How many chunks a file of `size` bytes kept outside the image has. */
export function chunkCount(size: number): number {
  if (size <= 4096) return size > 0 ? 1 : 0;
  return Math.ceil(size / (POW2[chunkBits(size)] as number));
}

export const MTIME_SPLIT = 2 ** 24;

/** st_mtim_sec as the two 32-bit halves of its 64-bit two's complement: [low, high]. */
export function mtimeWords(hi: number, lo: number): [number, number] {
  const n = hi * MTIME_SPLIT + lo;
  if (n >= 0 && n <= Number.MAX_SAFE_INTEGER) return [n % 2 ** 32, Math.floor(n / 2 ** 32)];
  const v = BigInt.asUintN(64, BigInt(hi) * BigInt(MTIME_SPLIT) + BigInt(lo));
  return [Number(v & 0xffffffffn), Number(v >> 32n)];
}
