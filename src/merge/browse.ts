/**
 * Browsing a stored image without checking it out or mounting it, as `ostree ls`, `ostree cat`
 * and `ostree diff` browse a commit: entries of its merged tree (OCI rules, the tree checkout
 * writes), one file's bytes, and the changes between two trees. Only metadata is read, except for
 * `cat`, which reads one object and hashes it as it is copied out.
 * @module
 */
import { ERROR_CODES, VeritreeError, throwIfAborted } from '../errors.ts';
import type { Repository } from '../store/repository.ts';
import { openRegular } from '../store/sys.ts';
import { VerityHasher, toHex } from '../verity/index.ts';
import { comparePaths, normalisePath, sortedPaths, type MergedTree, type TreeNode } from './merge.ts';

export interface ListedEntry {
  /** '' for the root; no leading slash. */
  path: string;
  node: TreeNode;
}

/** `usr/bin` from `/usr/bin/`, `usr//bin` or `./usr/bin`; '' for the root. */
export function treePath(p: string): string {
  const n = normalisePath(p);
  if (n === null) throw new VeritreeError(ERROR_CODES.USAGE, `${JSON.stringify(p)} climbs above the image's root`);
  return n;
}

function nodeAt(tree: MergedTree, path: string, image: string): TreeNode {
  const n = tree.nodes.get(path);
  if (!n) throw new VeritreeError(ERROR_CODES.USAGE, `${image} has no /${path}`);
  return n;
}

/**
 * `path` itself when it is not a folder; else its entries (with `recursive`, everything beneath
 * it), in sorted order.
 */
export function* listEntries(tree: MergedTree, image: string, path: string, recursive: boolean): Generator<ListedEntry> {
  const node = nodeAt(tree, path, image);
  if (node.type !== 'dir') {
    yield { path, node };
    return;
  }
  const prefix = path === '' ? '' : `${path}/`;
  for (const p of sortedPaths(tree.nodes)) {
    if (p === path || !p.startsWith(prefix)) continue;
    if (!recursive && p.indexOf('/', prefix.length) >= 0) continue;
    yield { path: p, node: tree.nodes.get(p) as TreeNode };
  }
}

/** A regular file's node, following a hard link to the name that holds its content. */
function fileNode(tree: MergedTree, path: string, image: string): TreeNode {
  const n = nodeAt(tree, path, image);
  const target = n.hardlinkTo !== null ? nodeAt(tree, n.hardlinkTo, image) : n;
  if (target.type !== 'file') throw new VeritreeError(ERROR_CODES.USAGE, `/${path} in ${image} is a ${target.type}, not a regular file`);
  return target;
}

const PIECE = 1 << 20;

/**
 * Hands a regular file's bytes to `sink` in order. A file kept as an object is read once and
 * hashed as it is copied out: when its bytes do not hash to its name, the sink has had them and
 * STORE_CORRUPT follows (discard what was written, as with cat-layer).
 */
export async function catFile(repo: Repository, tree: MergedTree, image: string, path: string, sink: (b: Uint8Array) => Promise<void>, signal?: AbortSignal): Promise<number> {
  const n = fileNode(tree, path, image);
  if (n.object === null) {
    const bytes = n.inline ?? new Uint8Array(0);
    if (bytes.length > 0) await sink(bytes);
    return bytes.length;
  }
  const id = n.object;
  const { fh, size } = await openRegular(repo.objectPath(id), `object ${id}`);
  try {
    if (size !== n.size) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `object ${id} (/${path} in ${image}) is ${size} bytes, not ${n.size}: run veritree fsck`, { path: repo.objectPath(id) });
    const hasher = new VerityHasher(repo.alg);
    let done = 0;
    for (;;) {
      throwIfAborted(signal);
      const buf = Buffer.allocUnsafe(PIECE);
      const { bytesRead } = await fh.read(buf, 0, PIECE, done);
      if (bytesRead === 0) break;
      const piece = buf.subarray(0, bytesRead);
      hasher.update(piece);
      await sink(piece);
      done += bytesRead;
    }
    const found = toHex(hasher.digest());
    if (done !== n.size || found !== id) {
      throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `object ${id} (/${path} in ${image}) is damaged: its bytes hash to ${found}; what was written is not the file (run veritree fsck)`, { path: repo.objectPath(id) });
    }
    return done;
  } finally {
    await fh.close();
  }
}

export type ChangeKind = 'A' | 'D' | 'M';

/** What differs between two entries of the same path, or null: type, mode, owner, time, content, link target, xattrs. */
function changed(a: TreeNode, b: TreeNode): boolean {
  if (a.type !== b.type || a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid) return true;
  if (a.mtimeSec !== b.mtimeSec || a.mtimeNsec !== b.mtimeNsec) return true;
  if (a.hardlinkTo !== b.hardlinkTo || a.symlinkTarget !== b.symlinkTarget) return true;
  if (a.devmajor !== b.devmajor || a.devminor !== b.devminor) return true;
  if (a.size !== b.size || a.object !== b.object) return true;
  if (a.object === null && Buffer.compare(Buffer.from(a.inline ?? []), Buffer.from(b.inline ?? [])) !== 0) return true;
  if (a.xattrs.size !== b.xattrs.size) return true;
  for (const [k, v] of a.xattrs) {
    const w = b.xattrs.get(k);
    if (!w || !w.equals(v)) return true;
  }
  return false;
}

/**
 * The paths added (A: only in `b`), deleted (D: only in `a`) and modified (M) from tree `a` to
 * tree `b`, in sorted order (a merge of the two sorted path lists: linear).
 */
export function* diffTrees(a: MergedTree, b: MergedTree): Generator<{ kind: ChangeKind; path: string }> {
  const pa = sortedPaths(a.nodes);
  const pb = sortedPaths(b.nodes);
  let i = 0;
  let j = 0;
  while (i < pa.length || j < pb.length) {
    const x = pa[i];
    const y = pb[j];
    // The lists are in walk order (a folder's entries after it), which comparePaths follows.
    const c = x === undefined ? 1 : y === undefined ? -1 : comparePaths(x, y);
    if (c < 0) {
      yield { kind: 'D', path: x as string };
      i++;
    } else if (c > 0) {
      yield { kind: 'A', path: y as string };
      j++;
    } else {
      if (changed(a.nodes.get(x as string) as TreeNode, b.nodes.get(x as string) as TreeNode)) yield { kind: 'M', path: x as string };
      i++;
      j++;
    }
  }
}
