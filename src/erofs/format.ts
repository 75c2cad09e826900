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
