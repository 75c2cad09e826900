/**
 * Hard links within an image, for checkout: which name of an inode gets its content, and which
 * names are links to it.
 *
 * A tree's hard link names the file it shares an inode with (`hardlinkTo`, the first name the
 * merge saw). Checkout walks the tree in sorted order and makes every entry of a folder before
 * it leaves the folder; so the name met first in that order, the target's or a link's, gets the
 * content (the target's: same object, same metadata), and every later name is a hard link to
 * it, made on the spot. Nothing waits for the end, and the order of names does not matter.
 * @module
 */
import { closeSync } from 'node:fs';
import { throwIfAborted } from '../errors.ts';
import { nameBytes } from '../oci/names.ts';
import { openDirAt } from './dir-handle.ts';
import type { MergedTree, TreeNode } from './merge.ts';

/** Links to links are resolved by the merge; a few steps more are followed, no more (no cycle can hold us). */
const MAX_LINK_STEPS = 8;

export class LinkPlacer {
  /** The files that other names link to. */
  private readonly heads = new Set<string>();
  /** For each of them once placed: the name that holds the inode. */
  private readonly placed = new Map<string, string>();

  private readonly tree: MergedTree;

  constructor(tree: MergedTree, paths: readonly string[], signal: AbortSignal | undefined) {
    this.tree = tree;
    for (const p of paths) {
      throwIfAborted(signal);
      const n = tree.nodes.get(p);
      if (n?.type !== 'file' || n.hardlinkTo === null) continue;
      const head = this.headOf(n);
      if (head !== null) this.heads.add(head);
    }
  }

  /** The file (with no link of its own) that link `n` shares its inode with, or null when there is none. */
  private headOf(n: TreeNode): string | null {
    let h = n.hardlinkTo;
    for (let i = 0; h !== null && i < MAX_LINK_STEPS; i++) {
      const t = this.tree.nodes.get(h);
      if (t?.type !== 'file') return null;
      if (t.hardlinkTo === null) return h;
      h = t.hardlinkTo;
    }
    return null;
  }

  /**
   * For file `n`, met now in the walk: the name to hard-link it to, or null when `n`'s name gets
   * the content (`contentOf(n)`), and is recorded as the name later ones link to.
   */
  firstNameOf(n: TreeNode): string | null {
    const head = n.hardlinkTo !== null ? this.headOf(n) : this.heads.has(n.path) ? n.path : null;
    if (head === null) return null;
    const at = this.placed.get(head);
    if (at !== undefined) return at;
    this.placed.set(head, n.path);
    return null;
  }

  /** The node whose content and metadata `n`'s name gets: the target's, for a link. */
  contentOf(n: TreeNode): TreeNode {
    const head = n.hardlinkTo !== null ? this.headOf(n) : null;
    return head === null ? n : (this.tree.nodes.get(head) as TreeNode);
  }
}

/**
 * A new descriptor of folder `path` of the tree (caller closes it), opened from `rootFd` one
 * component at a time, never following a symlink; at most two descriptors are held on the way.
 */
export function openDirPath(rootFd: number, path: string, signal: AbortSignal | undefined): number {
  let fd = openDirAt(rootFd, nameBytes('.'));
  if (path === '') return fd;
  for (const comp of path.split('/')) {
    throwIfAborted(signal);
    let next: number;
    try {
      next = openDirAt(fd, nameBytes(comp));
    } finally {
      closeSync(fd);
    }
    fd = next;
  }
  return fd;
}
