/**
 * Merges an image's layers into one tree, in memory-light form (metadata and object ids, never
 * contents beyond the inline ones). Whiteouts are applied in layer order as the OCI image spec
 * says: `.wh.NAME` removes NAME (and what is beneath it) from the layers below; `.wh..wh..opq`
 * empties its directory of what the layers below put there. A whiteout's own entry never
 * appears in the result.
 *
 * Hostile entries are refused here, so that checkout never has to trust a path: `..` and
 * absolute paths are normalised as the spec allows (a leading `/` or `./` is dropped, a `..` that
 * would climb above the root is refused), an entry beneath a symlink or a non-directory is
 * refused, a hardlink must name a regular file already in the tree.
 * @module
 */
import { posix } from 'node:path';
import type { LayerEntry } from './layer-entries.ts';
import { quoted } from '../oci/names.ts';

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';

export interface TreeNode extends Omit<LayerEntry, 'rawPath' | 'linkname'> {
  path: string;
  /** Symlink target as stored. */
  symlinkTarget: string;
  /** For a hardlink: the path (in the tree) of the file it shares content with. */
  hardlinkTo: string | null;
}

export interface MergeWarning {
  layer: number;
  path: string;
  message: string;
}

export interface MergedTree {
  /** Every path ('' is the root), parents before children when iterated in sorted order. */
  nodes: Map<string, TreeNode>;
  warnings: MergeWarning[];
}

/** `a/b/../c` → `a/c`; '' for the root; null when it climbs above the root. */
export function normalisePath(raw: string): string | null {
  const parts: string[] = [];
  for (const p of raw.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') {
      if (parts.length === 0) return null;
      parts.pop();
    } else parts.push(p);
  }
  return parts.join('/');
}

function rootNode(): TreeNode {
  return { path: '', type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeSec: 0, mtimeNsec: 0, size: 0, object: null, inline: null, symlinkTarget: '', hardlinkTo: null, devmajor: 0, devminor: 0, xattrs: new Map() };
}

/** Longest name of one folder entry (NAME_MAX) and of a symlink's target (PATH_MAX - 1), in bytes. */
const NAME_MAX = 255;
const TARGET_MAX = 4095;
const ID_MAX = 0xffffffff;

/**
 * Why an entry cannot be created by checkout or described in a composefs image, or null. Names
 * are byte strings (names.ts), so a length is a byte count. Refused per entry, with a warning.
 */
export function unrepresentable(path: string, e: LayerEntry): string | null {
  if (path.includes('\0')) return 'the name holds a NUL byte';
  for (const c of path.split('/')) if (c.length > NAME_MAX) return `a name of ${c.length} bytes (the limit is ${NAME_MAX})`;
  if (e.type === 'symlink') {
    if (e.linkname.includes('\0')) return 'the symlink target holds a NUL byte';
    if (e.linkname.length > TARGET_MAX) return `a symlink target of ${e.linkname.length} bytes (the limit is ${TARGET_MAX})`;
    if (e.linkname.length === 0) return 'an empty symlink target';
  }
  if (!(e.uid <= ID_MAX) || !(e.gid <= ID_MAX)) return `owner ${e.uid}:${e.gid} is past ${ID_MAX}`;
  return null;
}

class Tree {
  readonly nodes = new Map<string, TreeNode>([['', rootNode()]]);
  /** For each hard link, the node its content was taken from: a later layer may replace that name. */
  readonly linkOrigin = new Map<TreeNode, TreeNode>();
  /** composefs rules: the missing folders already warned about (one warning each, not one per entry). */
  readonly missingReported = new Set<string>();
  readonly children = new Map<string, Set<string>>([['', new Set()]]);
  readonly warnings: MergeWarning[] = [];

  /** Removes `path` and everything beneath it, with an explicit stack (a folder can be 10,000 deep). */
  remove(path: string): void {
    if (!this.nodes.has(path)) return;
    this.children.get(posix.dirname(path) === '.' ? '' : posix.dirname(path))?.delete(path);
    const stack = [path];
    for (let p = stack.pop(); p !== undefined; p = stack.pop()) {
      for (const c of this.children.get(p) ?? []) stack.push(c);
      this.nodes.delete(p);
      this.children.delete(p);
    }
  }

  emptyDir(path: string): void {
    for (const c of [...(this.children.get(path) ?? [])]) this.remove(c);
  }

  /**
   * Makes sure every ancestor of `path` is a directory; false when one is not. Every node in the
   * tree has folders all the way up (they are made here, and a folder replaced or removed takes
   * what is beneath it along), so the walk stops at the nearest ancestor present: a layer's entries
   * usually follow their folder, and one lookup of the parent is all they cost. Walking down from
   * the root instead cost every entry of a folder N deep N prefixes hashed whole: cubic.
   */
  ensureParents(path: string, layer: number): boolean {
    // The missing ancestors, nearest first, up to the first present one.
    const missing: string[] = [];
    let at = path;
    for (;;) {
      const slash = at.lastIndexOf('/');
      if (slash < 0) break; // the parent is the root, always a folder
      at = at.slice(0, slash);
      const n = this.nodes.get(at);
      if (n) {
        if (n.type !== 'dir') {
          // Nothing is beneath a non-folder, so this is also the top-most one, as before.
          this.warnings.push({ layer, path, message: `refused: ${quoted(at)} above it is a ${n.type}, not a directory` });
          return false;
        }
        break;
      }
      missing.push(at);
    }
    // Layers may leave out parent directories; they are implied, as tar extraction does.
    for (let i = missing.length - 1; i >= 0; i--) {
      const dir = missing[i] as string;
      this.put({ ...rootNode(), path: dir }, parentOf(dir));
    }
    return true;
  }

  put(node: TreeNode, parent: string): void {
    this.nodes.set(node.path, node);
    if (node.type === 'dir' && !this.children.has(node.path)) this.children.set(node.path, new Set());
    this.children.get(parent)?.add(node.path);
  }
}

function parentOf(p: string): string {
  const d = posix.dirname(p);
  return d === '.' ? '' : d;
}

/**
 * Which rules build the tree (docs/merge.md has both, side by side):
 * - `oci`: the OCI image spec as umoci and container runtimes apply it, for checkout: a layer's
 *   whiteouts before its own entries, missing parents implied, hard links to regular files only,
 *   mtimes to the nanosecond, the root as the layers give it.
 * - `composefs`: composefs-rs's `create_filesystem` (composefs-oci image.rs, generic_tree.rs), for
 *   the dump and the image, so that both tools give an image the same composefs digest: entries
 *   and whiteouts in tar order, hard links to any non-folder, whole-second mtimes, then the root
 *   takes /usr's metadata and /run is emptied (with /usr's mtime). Where composefs-rs refuses the
 *   whole image (a missing parent folder, no /usr), veritree refuses the entry, or keeps the
 *   OCI root, with a warning.
 */
export type MergeRules = 'oci' | 'composefs';

export interface MergeOptions {
  rules?: MergeRules;
}

/** Applies one layer's entries to the tree. */
function applyLayer(tree: Tree, entries: Iterable<LayerEntry>, layer: number, rules: MergeRules): void {
  const adds: [string, LayerEntry][] = [];
  for (const e of entries) {
    const path = normalisePath(e.rawPath);
    if (path === null) {
      tree.warnings.push({ layer, path: e.rawPath, message: 'refused: the path climbs above the image root' });
      continue;
    }
    const base = posix.basename(path);
    if (base === OPAQUE_MARKER) tree.emptyDir(parentOf(path));
    else if (base.startsWith(WHITEOUT_PREFIX)) tree.remove(posix.join(parentOf(path), base.slice(WHITEOUT_PREFIX.length)).replace(/^\.\//, ''));
    // composefs-rs takes each entry as it comes; the OCI reading keeps a layer's own entries
    // from its whiteouts by applying those first.
    else if (rules === 'composefs') add(tree, path, e, layer, rules);
    else adds.push([path, e]);
  }
  for (const [path, e] of adds) add(tree, path, e, layer, rules);
}

function add(tree: Tree, path: string, entry: LayerEntry, layer: number, rules: MergeRules): void {
  // composefs-rs keeps whole seconds (doc/oci.md, "Data precision").
  const e = rules === 'composefs' ? { ...entry, mtimeNsec: 0 } : entry;
  if (path === '') {
    if (e.type === 'dir') Object.assign(tree.nodes.get('') as TreeNode, { mode: e.mode, uid: e.uid, gid: e.gid, mtimeSec: e.mtimeSec, mtimeNsec: e.mtimeNsec, xattrs: e.xattrs });
    else tree.warnings.push({ layer, path, message: `refused: the root entry is a ${e.type}, not a folder` });
    return;
  }
  const why = unrepresentable(path, e);
  if (why !== null) {
    tree.warnings.push({ layer, path, message: `refused: ${why}` });
    return;
  }
  if (rules === 'composefs' && !tree.nodes.has(parentOf(path))) {
    // composefs-rs refuses the whole image here (no digest to match then): say so once for the
    // top-most missing folder, and imply the folders as the OCI rules do, so the dump stays whole.
    let top = parentOf(path);
    while (parentOf(top) !== '' && !tree.nodes.has(parentOf(top))) top = parentOf(top);
    if (!tree.missingReported.has(top)) {
      tree.missingReported.add(top);
      tree.warnings.push({ layer, path: top, message: 'no entry for this folder in the layers: composefs-rs refuses such an image; the folder (and any below it) is implied' });
    }
  }
  if (!tree.ensureParents(path, layer)) return;
  const node: TreeNode = {
    path,
    type: e.type,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    mtimeSec: e.mtimeSec,
    mtimeNsec: e.mtimeNsec,
    size: e.size,
    object: e.object,
    inline: e.inline,
    symlinkTarget: e.type === 'symlink' ? e.linkname : '',
    hardlinkTo: null,
    devmajor: e.devmajor,
    devminor: e.devminor,
    xattrs: e.xattrs,
  };
  if (e.type === 'hardlink') {
    const target = normalisePath(e.linkname);
    const t = target === null ? undefined : tree.nodes.get(target);
    const linkable = rules === 'composefs' ? t !== undefined && t.type !== 'dir' : t?.type === 'file';
    if (!t || !linkable || target === path) {
      tree.warnings.push({ layer, path, message: `refused: hardlink to ${quoted(e.linkname)}, which is not a ${rules === 'composefs' ? 'file, symlink, device or FIFO' : 'regular file'} of the image` });
      return;
    }
    // A hardlink is a second name for the target's content and metadata, as they are now.
    // Linking to a link: share its first name, unless that name has since been given other content.
    const first = t.hardlinkTo !== null && tree.nodes.get(t.hardlinkTo) === tree.linkOrigin.get(t) ? t.hardlinkTo : (target as string);
    Object.assign(node, { type: t.type, mode: t.mode, uid: t.uid, gid: t.gid, mtimeSec: t.mtimeSec, mtimeNsec: t.mtimeNsec, size: t.size, object: t.object, inline: t.inline, symlinkTarget: t.symlinkTarget, devmajor: t.devmajor, devminor: t.devminor, xattrs: t.xattrs, hardlinkTo: first });
    tree.linkOrigin.set(node, tree.nodes.get(first) as TreeNode);
  }
  const old = tree.nodes.get(path);
  if (old && !(old.type === 'dir' && node.type === 'dir')) tree.remove(path);
  if (old && old.type === 'dir' && node.type === 'dir') {
    Object.assign(old, { mode: node.mode, uid: node.uid, gid: node.gid, mtimeSec: node.mtimeSec, mtimeNsec: node.mtimeNsec, xattrs: node.xattrs });
    return;
  }
  tree.put(node, parentOf(path));
}

/** composefs-rs's transform_for_oci: the root takes /usr's metadata; /run is emptied, with /usr's mtime. */
function transformForOci(tree: Tree): void {
  const root = tree.nodes.get('') as TreeNode;
  const usr = tree.nodes.get('usr');
  if (usr?.type !== 'dir') {
    tree.warnings.push({ layer: 0, path: '', message: 'no /usr folder: composefs-rs refuses such an image; the root keeps the metadata the layers give it' });
    return;
  }
  Object.assign(root, { mode: usr.mode, uid: usr.uid, gid: usr.gid, mtimeSec: usr.mtimeSec, mtimeNsec: 0, xattrs: usr.xattrs });
  const run = tree.nodes.get('run');
  if (run?.type === 'dir') {
    tree.emptyDir('run');
    Object.assign(run, { mtimeSec: usr.mtimeSec, mtimeNsec: 0 });
  }
}

/** Merges the layers (bottom first), by the OCI rules unless `rules: 'composefs'` (see MergeRules). */
export function mergeLayers(layers: Iterable<Iterable<LayerEntry>>, options: MergeOptions = {}): MergedTree {
  const rules = options.rules ?? 'oci';
  const tree = new Tree();
  let i = 0;
  for (const entries of layers) applyLayer(tree, entries, ++i, rules);
  if (rules === 'composefs') transformForOci(tree);
  // A hardlink whose first name was later removed or replaced keeps the content it was made
  // with (as umoci and overlayfs do), as a file of its own: it must not follow the new name.
  for (const n of tree.nodes.values()) {
    if (n.hardlinkTo !== null && tree.nodes.get(n.hardlinkTo) !== tree.linkOrigin.get(n)) n.hardlinkTo = null;
  }
  return { nodes: tree.nodes, warnings: tree.warnings };
}

/** Paths in an order where every directory comes before what is in it. */
export function sortedPaths(nodes: Map<string, TreeNode>): string[] {
  // Component by component, in byte order: a walk of the tree, each folder's entries sorted by
  // name, with a stack (a folder can be 10,000 deep). Sorting whole paths instead compared long
  // common prefixes again and again.
  const kids = new Map<string, { name: string; path: string }[]>();
  for (const p of nodes.keys()) {
    if (p === '') continue;
    const at = p.lastIndexOf('/');
    const parent = at < 0 ? '' : p.slice(0, at);
    let list = kids.get(parent);
    if (!list) kids.set(parent, (list = []));
    list.push({ name: p.slice(at + 1), path: p });
  }
  const out: string[] = [];
  const stack: string[] = [''];
  for (let p = stack.pop(); p !== undefined; p = stack.pop()) {
    if (p !== '' || nodes.has('')) out.push(p);
    const list = kids.get(p);
    if (!list) continue;
    list.sort((x, y) => (x.name < y.name ? 1 : x.name > y.name ? -1 : 0));
    for (const c of list) stack.push(c.path);
  }
  // A map with a path whose folder is not in it (no tree merge makes one): sort the whole paths.
  if (out.length !== nodes.size) return [...nodes.keys()].sort(comparePaths);
  return out;
}

/** Component-wise byte order of two paths: `/` sorts before every byte, the end before `/`. */
export function comparePaths(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  const x = i < a.length ? a.charCodeAt(i) : -2;
  const y = i < b.length ? b.charCodeAt(i) : -2;
  return (x === 47 ? -1 : x) - (y === 47 ? -1 : y);
}
