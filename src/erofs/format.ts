/**
 * The on-disk facts of EROFS (the kernel's erofs_fs.h) that both the image writer and the image
 * reader use: where the superblock is, its magic, the inode slot, the data layouts, the xattr
 * prefix indexes.
 * @module
 */

export const SUPER_OFFSET = 1024;
export const EROFS_MAGIC = 0xe0f5e1e2;
/** Inodes sit on 32-byte slots; a nid counts slots. */
export const SLOT_BITS = 5;
export const SLOT = 1 << SLOT_BITS;
export const LAYOUT_FLAT_PLAIN = 0;
export const LAYOUT_FLAT_INLINE = 2;
export const LAYOUT_CHUNK_BASED = 4;
/** EROFS_XATTR_INDEX_TRUSTED: an xattr name stored without its `trusted.` prefix. */
export const XATTR_INDEX_TRUSTED = 4;
/** The block size images are written with (4 KiB) and its log2. */
export const BLOCK = 4096;
export const BLOCK_BITS = 12;
export const SUPER_SIZE = 128;
/** Inode sizes: compact (32-bit size, no mtime) and extended. */
export const COMPACT_SIZE = 32;
export const EXTENDED_SIZE = 64;
export const DIRENT_SIZE = 12;
/** The composefs header before the superblock: its magic and its own version (always 1). */
export const COMPOSEFS_MAGIC = 0xd078629a;
export const COMPOSEFS_HEADER_VERSION = 1;
/** Superblock feature_compat bits: inode mtimes, xattr name filters. */
export const FEATURE_COMPAT_MTIME = 2;
export const FEATURE_COMPAT_XATTR_FILTER = 4;
