/**
 * The trees composefs-rs's crates/composefs/tests/mkfs.rs builds (`empty`, `simple`), as
 * CfsTree rows: root 0755 uid 0 gid 0 mtime 0, each leaf mode 0 (its type alone), uid 0, gid 0,
 * mtime 0, no xattrs.
 */
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, S_IFSOCK } from '../src/erofs/node.ts';
import { CfsTree } from '../src/erofs/tree.ts';

export function emptyTree(): CfsTree {
  const t = new CfsTree();
  t.add(S_IFDIR | 0o755, 0);
  return t;
}

function leaf(t: CfsTree, name: string, mode: number): number {
  const n = t.add(mode, 0);
  t.addNewChild(0, name, n);
  return n;
}

/** mkfs.rs `simple`: a fifo, an inline file, a file kept outside (digest 5a × 32, 1234 bytes), devices 123, a socket, a symlink. */
export function simpleTree(digestBytes = 32): CfsTree {
  const t = emptyTree();
  leaf(t, 'fifo', S_IFIFO);
  const inline = leaf(t, 'regular-inline', S_IFREG);
  t.content[inline] = 'hihi';
  t.size[inline] = 4;
  const ext = leaf(t, 'regular-external', S_IFREG);
  t.size[ext] = 1234;
  t.digest[ext] = 'Z'.repeat(digestBytes);
  const chr = leaf(t, 'chrdev', S_IFCHR);
  t.rdev[chr] = 123;
  const blk = leaf(t, 'blkdev', S_IFBLK);
  t.rdev[blk] = 123;
  leaf(t, 'socket', S_IFSOCK);
  const sym = leaf(t, 'symlink', S_IFLNK);
  t.payload[sym] = '/target';
  t.size[sym] = 7;
  return t;
}
