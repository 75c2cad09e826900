/**
 * The inodes of an EROFS format V2 image, in the order composefs-rs's legacy writer numbers
 * them (crates/composefs/src/erofs/writer.rs InodeCollector::collect_dir, collect_leaf,
 * Directory::from_entries): depth first from the root, each folder before what it holds, its
 * entries in name order; a file with several names is one inode, numbered where the walk first
 * meets it. Every folder's entries (`.` and `..` among them, sorted with the rest by name bytes)
 * are split into whole blocks and an inline tail as that writer splits them.
 *
 * The walk keeps its own stack of folders: a tree's depth is its input's to choose.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { DIRENT_FILE_TYPE, S_IFCHR, validMode } from './node.ts';
import { type CfsTree, NONE } from './tree.ts';
import { BLOCK, DIRENT_SIZE } from './format.ts';

const FT_DIR = 2;
/**
 * The largest inline file composefs-rs makes or reads (lib.rs MAX_INLINE_CONTENT): its V2 writer
 * puts a file's whole content after the inode, which a reader takes as `size % 4096` bytes.
 */
export const V2_INLINE_MAX = 512;

/** One directory entry: its name (bytes as latin1), the inode it names, its file type. */
export interface V2Dirent {
  name: string;
  inode: number;
  type: number;
}

/** A folder's entries as written: whole blocks, then what is inline after its inode. */
export interface V2Dir {
  blocks: V2Dirent[][];
  inline: V2Dirent[];
  /** i_size: 4096 per block and the inline entries' bytes. */
  size: number;
  /** Entries that are folders, `.` and `..` included. */
  nlink: number;
}

export interface V2Inodes {
  /** The tree row of each inode (a hard link's target). */
  row: number[];
  /** Each inode's folder content, or null for anything else. */
  dir: (V2Dir | null)[];
  /** Each inode's link count: a folder's from its entries, a file's from the names it has. */
  nlink: number[];
}

function refuse(why: string): VeritreeError {
  return new VeritreeError(ERROR_CODES.DUMPFILE_INVALID, `EROFS format V2: ${why}`);
}

/** Directory::from_entries: blocks of at most 4096 bytes of entries, a tail of at most 2048 kept inline. */
export function splitEntries(entries: V2Dirent[]): V2Dir {
  const blocks: V2Dirent[][] = [];
  let rest: V2Dirent[] = [];
  let bytes = 0;
  let nlink = 0;
  for (const e of entries) {
    const size = DIRENT_SIZE + e.name.length;
    if (e.type === FT_DIR) nlink++;
    bytes += size;
    if (bytes <= BLOCK) rest.push(e);
    else {
      blocks.push(rest);
      rest = [e];
      bytes = size;
    }
  }
  if (bytes > BLOCK / 2) {
    blocks.push(rest);
    rest = [];
    bytes = 0;
  }
  return { blocks, inline: rest, size: BLOCK * blocks.length + bytes, nlink };
}

const byName = (t: CfsTree) => (a: number, b: number): number => {
  const x = t.name[a] as string;
  const y = t.name[b] as string;
  return x < y ? -1 : x > y ? 1 : 0;
};

interface Frame {
  row: number;
  me: number;
  parent: number;
  kids: readonly number[];
  at: number;
  entries: V2Dirent[];
}

/**
 * Numbers the tree's inodes and builds each folder's entries (the tree is only read).
 * @throws VeritreeError DUMPFILE_INVALID for a hard link to a folder or to a whiteout, a link
 *   cycle, a bad mode or inline content past V2_INLINE_MAX
 */
export function collectV2(t: CfsTree, signal?: AbortSignal): V2Inodes {
  const out: V2Inodes = { row: [], dir: [], nlink: [] };
  /** The inode of each file row met so far (a file with several names is numbered once). */
  const inodeOf = new Map<number, number>();
  const push = (row: number): number => {
    const mode = t.mode[row] as number;
    if (!validMode(mode)) throw refuse(`invalid mode ${mode.toString(8)}`);
    const content = t.content[row] as string | null;
    if (content !== null && content.length > V2_INLINE_MAX) throw refuse(`inline content of ${content.length} bytes (composefs-rs keeps at most ${V2_INLINE_MAX} inline)`);
    out.row.push(row);
    out.dir.push(null);
    out.nlink.push(0);
    return out.row.length - 1;
  };
  const frame = (row: number, me: number, parent: number): Frame => {
    const kids = t.children(row);
    return { row, me, parent, kids: t.childrenSorted(row) ? kids : kids.slice().sort(byName(t)), at: 0, entries: [] };
  };
  const stack: Frame[] = [frame(0, push(0), 0)];
  let steps = 0;
  while (stack.length > 0) {
    if ((++steps & 4095) === 0) signal?.throwIfAborted();
    const f = stack[stack.length - 1] as Frame;
    if (f.at < f.kids.length) {
      const kid = f.kids[f.at++] as number;
      const name = t.name[kid] as string;
      const target = t.linkTo[kid] === NONE ? kid : t.followLinks(kid);
      if (target === NONE) throw refuse(`${JSON.stringify(name)} is a hard link that never ends`);
      if (t.isDir(target)) {
        if (target !== kid) throw refuse(`${JSON.stringify(name)} is a hard link to a folder`);
        const me = push(target);
        f.entries.push({ name, inode: me, type: FT_DIR });
        stack.push(frame(target, me, f.me));
        continue;
      }
      let inode = inodeOf.get(target);
      if (inode === undefined) {
        inode = push(target);
        inodeOf.set(target, inode);
      } else if (t.type(target) === S_IFCHR && t.rdev[target] === 0) {
        // writer.rs validate_filesystem: a whiteout stands for one name's absence, and
        // composefs-rs writes no image where one has several names.
        throw refuse(`${JSON.stringify(name)} is a second name of a whiteout (a character device 0/0)`);
      }
      out.nlink[inode] = (out.nlink[inode] as number) + 1;
      f.entries.push({ name, inode, type: DIRENT_FILE_TYPE[t.type(target) >> 12] as number });
      continue;
    }
    stack.pop();
    const entries = f.entries;
    entries.push({ name: '.', inode: f.me, type: FT_DIR }, { name: '..', inode: f.parent, type: FT_DIR });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const d = splitEntries(entries);
    out.dir[f.me] = d;
    out.nlink[f.me] = d.nlink;
  }
  return out;
}
