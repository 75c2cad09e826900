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
import { xattrsRefusal } from './dumpfile.ts';
import { NONE, TreeNodes, type RowFields, type TreeNode } from './tree-nodes.ts';

export { TreeNodes, type TreeNode } from './tree-nodes.ts';

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';

export interface MergeWarning {
  layer: number;
  path: string;
  message: string;
}

export interface MergedTree {
  /** Every node ('' is the root), by path (tree-nodes.ts: columns, not one object per node). */
  nodes: TreeNodes;
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

const NO_XATTRS: Map<string, Buffer> = new Map();

/** A folder no entry names (an implied parent), as tar extraction makes one. */
const IMPLIED_DIR: RowFields = { type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeSec: 0, mtimeNsec: 0, size: 0, object: null, inline: null, symlinkTarget: '', devmajor: 0, devminor: 0, xattrs: NO_XATTRS };

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
  readonly nodes = new TreeNodes();
  /** composefs rules: the missing folders already warned about (one warning each, not one per entry). */
  readonly missingReported = new Set<string>();
  readonly warnings: MergeWarning[] = [];
  /**
   * The folder the last entry went into, and its path: a layer's entries usually follow their
   * folder, so most entries find theirs with one comparison, without a walk from the root (which
   * for a folder N deep, entry after entry, was quadratic).
   */
  private lastDir = 0;
  private lastDirPath = '';

  /** The row at `path`, or NONE. */
  find(path: string): number {
    if (path === this.lastDirPath && this.nodes.isAlive(this.lastDir)) return this.lastDir;
    return this.nodes.find(path);
  }

  /**
   * The folder `path` goes into, made with any missing folders above it (layers may leave them
   * out: they are implied, as tar extraction does); NONE, with a warning, when a node above it
   * is not a folder. Rows never move, so a live remembered folder is still at its path.
   */
  parentFor(path: string, layer: number): number {
    const slash = path.lastIndexOf('/');
    const dirPath = slash < 0 ? '' : path.slice(0, slash);
    if (dirPath === this.lastDirPath && this.nodes.isAlive(this.lastDir) && this.nodes.isDir(this.lastDir)) return this.lastDir;
    const t = this.nodes;
    let n = 0;
    let at = 0;
    while (at < dirPath.length) {
      const next = dirPath.indexOf('/', at);
      const end = next < 0 ? dirPath.length : next;
      const name = dirPath.slice(at, end);
      const c = t.child(n, name);
      if (c === NONE) n = t.add(n, name, IMPLIED_DIR);
      else if (!t.isDir(c)) {
        // Nothing is beneath a non-folder, so this is the top-most one.
        this.warnings.push({ layer, path, message: `refused: ${quoted(dirPath.slice(0, end))} above it is a ${t.typeOf(c)}, not a directory` });
        return NONE;
      } else n = c;
      at = end + 1;
    }
    this.remember(dirPath, n);
    return n;
  }

  remember(dirPath: string, n: number): void {
    this.lastDir = n;
    this.lastDirPath = dirPath;
  }

  /** Removes the node at `path` and everything beneath it. */
  remove(path: string): void {
    const n = this.find(path);
    if (n !== NONE) this.nodes.remove(n);
  }

  emptyDir(path: string): void {
    const n = this.find(path);
    if (n !== NONE && this.nodes.isDir(n)) this.nodes.empty(n);
  }
}

function parentOf(p: string): string {
  const d = posix.dirname(p);
  return d === '.' ? '' : d;
}

function fieldsOf(e: LayerEntry, mtimeNsec: number): RowFields {
  return {
    type: e.type,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    mtimeSec: e.mtimeSec,
    mtimeNsec,
    size: e.size,
    object: e.object,
    inline: e.inline,
    symlinkTarget: e.type === 'symlink' ? e.linkname : '',
    devmajor: e.devmajor,
    devminor: e.devminor,
    xattrs: e.xattrs,
  };
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

/**
 * What one reading of a layer's entries applies: `all` (composefs-rs takes each entry as it
 * comes), or, for the OCI reading, which keeps a layer's own entries from its whiteouts by
 * applying those first, `whiteouts` then `entries`: two passes over the layer, so that its
 * entries are never held.
 */
export type MergePass = 'all' | 'whiteouts' | 'entries';

/** Builds the merged tree from layers' entries, fed one at a time (see mergeLayers). */
export class Merger {
  private readonly tree = new Tree();
  readonly rules: MergeRules;

  constructor(rules: MergeRules = 'oci') {
    this.rules = rules;
  }

  /** The passes each layer's entries are read in, in order. */
  get passes(): MergePass[] {
    return this.rules === 'composefs' ? ['all'] : ['whiteouts', 'entries'];
  }

  /** Applies what `pass` applies of entry e of layer `layer` (1 is the bottom one). */
  take(e: LayerEntry, layer: number, pass: MergePass): void {
    const tree = this.tree;
    const path = normalisePath(e.rawPath);
    if (path === null) {
      if (pass !== 'entries') tree.warnings.push({ layer, path: e.rawPath, message: 'refused: the path climbs above the image root' });
      return;
    }
    const base = path.slice(path.lastIndexOf('/') + 1);
    if (base === OPAQUE_MARKER) {
      if (pass !== 'entries') tree.emptyDir(parentOf(path));
    } else if (base.startsWith(WHITEOUT_PREFIX)) {
      if (pass !== 'entries') tree.remove(posix.join(parentOf(path), base.slice(WHITEOUT_PREFIX.length)).replace(/^\.\//, ''));
    } else if (pass !== 'whiteouts') add(tree, path, e, layer, this.rules);
  }

  /** The tree, once every layer is in. */
  finish(): MergedTree {
    const tree = this.tree;
    if (this.rules === 'composefs') transformForOci(tree);
    // A hardlink whose first name was later removed or replaced keeps the content it was made
    // with (as umoci and overlayfs do), as a file of its own: it must not follow the new name.
    const t = tree.nodes;
    for (let n = 0; n < t.count; n++) {
      const first = t.hardlinkTo[n] as number;
      if (first !== NONE && (!t.isAlive(n) || !t.isAlive(first))) t.hardlinkTo[n] = NONE;
    }
    return { nodes: t, warnings: tree.warnings };
  }
}

function add(tree: Tree, path: string, e: LayerEntry, layer: number, rules: MergeRules): void {
  const t = tree.nodes;
  // composefs-rs keeps whole seconds (doc/oci.md, "Data precision").
  const nsec = rules === 'composefs' ? 0 : e.mtimeNsec;
  if (path === '') {
    if (e.type === 'dir') {
      t.mode[0] = e.mode;
      t.uid[0] = e.uid;
      t.gid[0] = e.gid;
      t.setTime(0, e.mtimeSec, nsec);
      t.setXattrs(0, e.xattrs);
    } else tree.warnings.push({ layer, path, message: `refused: the root entry is a ${e.type}, not a folder` });
    return;
  }
  const why = unrepresentable(path, e) ?? (rules === 'composefs' && e.xattrs.size > 0 ? xattrsRefusal(e.xattrs) : null);
  if (why !== null) {
    tree.warnings.push({ layer, path, message: `refused: ${why}` });
    return;
  }
  if (rules === 'composefs' && tree.find(parentOf(path)) === NONE) {
    // composefs-rs refuses the whole image here (no digest to match then): say so once for the
    // top-most missing folder, and imply the folders as the OCI rules do, so the dump stays whole.
    let top = parentOf(path);
    while (parentOf(top) !== '' && tree.find(parentOf(top)) === NONE) top = parentOf(top);
    if (!tree.missingReported.has(top)) {
      tree.missingReported.add(top);
      tree.warnings.push({ layer, path: top, message: 'no entry for this folder in the layers: composefs-rs refuses such an image; the folder (and any below it) is implied' });
    }
  }
  const parent = tree.parentFor(path, layer);
  if (parent === NONE) return;
  let fields = fieldsOf(e, nsec);
  let first = NONE;
  if (e.type === 'hardlink') {
    const target = normalisePath(e.linkname);
    const to = target === null ? NONE : tree.find(target);
    const linkable = to !== NONE && (rules === 'composefs' ? !t.isDir(to) : t.typeOf(to) === 'file');
    if (!linkable || target === path) {
      tree.warnings.push({ layer, path, message: `refused: hardlink to ${quoted(e.linkname)}, which is not a ${rules === 'composefs' ? 'file, symlink, device or FIFO' : 'regular file'} of the image` });
      return;
    }
    // A hardlink is a second name for the target's content and metadata, as they are now.
    // Linking to a link: share its first name while that name still holds the content it was
    // linked from (its row is alive: a name given other content is a new row).
    const viaLink = t.hardlinkTo[to] as number;
    first = viaLink !== NONE && t.isAlive(viaLink) ? viaLink : to;
    fields = t.fieldsOf(to);
  }
  const name = path.slice(path.lastIndexOf('/') + 1);
  const old = t.child(parent, name);
  if (old !== NONE && t.isDir(old) && fields.type === 'dir') {
    t.mode[old] = fields.mode;
    t.uid[old] = fields.uid;
    t.gid[old] = fields.gid;
    t.setTime(old, fields.mtimeSec, fields.mtimeNsec);
    t.setXattrs(old, fields.xattrs);
    tree.remember(path, old);
    return;
  }
  if (old !== NONE) t.remove(old);
  const n = t.add(parent, name, fields);
  t.hardlinkTo[n] = first;
  if (fields.type === 'dir') tree.remember(path, n);
}

/** composefs-rs's transform_for_oci: the root takes /usr's metadata; /run is emptied, with /usr's mtime. */
function transformForOci(tree: Tree): void {
  const t = tree.nodes;
  const usr = t.child(0, 'usr');
  if (usr === NONE || !t.isDir(usr)) {
    tree.warnings.push({ layer: 0, path: '', message: 'no /usr folder: composefs-rs refuses such an image; the root keeps the metadata the layers give it' });
    return;
  }
  t.mode[0] = t.mode[usr] as number;
  t.uid[0] = t.uid[usr] as number;
  t.gid[0] = t.gid[usr] as number;
  t.setTime(0, t.mtimeSec[usr] as number, 0);
  t.setXattrs(0, t.xattrs.get(usr) ?? NO_XATTRS);
  const run = t.child(0, 'run');
  if (run !== NONE && t.isDir(run)) {
    t.empty(run);
    t.setTime(run, t.mtimeSec[usr] as number, 0);
  }
}

/**
 * Merges the layers (bottom first), by the OCI rules unless `rules: 'composefs'` (see MergeRules).
 * Each layer is read once: by the OCI rules its entries are held until its whiteouts are applied
 * (image-tree.ts reads a stored layer twice instead, holding none).
 */
export function mergeLayers(layers: Iterable<Iterable<LayerEntry>>, options: MergeOptions = {}): MergedTree {
  const m = new Merger(options.rules ?? 'oci');
  let i = 0;
  for (const entries of layers) {
    i++;
    if (m.rules === 'composefs') for (const e of entries) m.take(e, i, 'all');
    else {
      const held = [...entries];
      for (const pass of m.passes) for (const e of held) m.take(e, i, pass);
    }
  }
  return m.finish();
}

/** Paths in an order where every directory comes before what is in it. */
export function sortedPaths(nodes: TreeNodes | Map<string, TreeNode>): string[] {
  if (nodes instanceof TreeNodes) return nodes.sortedPaths();
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
