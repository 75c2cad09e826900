/**
 * The composefs EROFS image writer: a tree in, the image mkcomposefs 1.0.8 writes for it out, byte
 * for byte (the layout rules of libcomposefs's lcfs-writer-erofs.c, written anew here; the format
 * is the kernel's erofs_fs.h). The image is metadata only: each regular file kept outside it is a
 * chunk-based inode of null chunks with `trusted.overlay.metacopy` (its fs-verity digest) and
 * `trusted.overlay.redirect` (its object path), for overlayfs to serve from a basedir of objects.
 *
 * Layout, in the order written: a 32-byte composefs header, the superblock at 1024, every inode
 * (breadth first from the root, each on a 32-byte slot, its xattrs and tail data after it, padded
 * so that a tail never crosses a block), the shared xattrs (those used by more than one inode), then
 * whole blocks: folder blocks and file data that did not fit inline. docs/composefs-image.md has
 * the tables.
 *
 * The writer changes the tree it is given (overlay xattrs, the root's 256 whiteouts, xattr order,
 * folder link counts), as libcomposefs does to its clone: build a fresh tree for each image. What
 * it works out per inode (order, place, sizes) it keeps in typed arrays by row, beside the tree.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import {
  MAX_NONINLINE_CHUNKS,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
  chunkBits,
  chunkCount,
  dumpError,
  mtimeWords,
  validMode,
} from './node.ts';
import { CfsTree, NONE } from './tree.ts';
import { EROFS_MAGIC, LAYOUT_CHUNK_BASED, LAYOUT_FLAT_INLINE, LAYOUT_FLAT_PLAIN, SLOT, SUPER_OFFSET } from './format.ts';
import { xxh32 } from './xxh32.ts';

export interface ImageOptions {
  /** Lowest format version (default 0); raised to 1 when the tree holds a whiteout and max allows. */
  minVersion?: number;
  /** Highest format version (default 1). */
  maxVersion?: number;
  signal?: AbortSignal;
}

export const FORMAT_VERSION_MAX = 1;

const BLOCK = 4096;
const BLOCK_BITS = 12;
const SUPER_SIZE = 128;
const COMPACT_SIZE = 32;
const EXTENDED_SIZE = 64;
const DIRENT_SIZE = 12;
const XATTR_HEADER = 12;
const XATTR_ENTRY = 4;
const COMPOSEFS_MAGIC = 0xd078629a;
const COMPOSEFS_HEADER_VERSION = 1;
const FLAG_HAS_ACL = 1;
const FEATURE_COMPAT_MTIME = 2;
const FEATURE_COMPAT_XATTR_FILTER = 4;
const XATTR_FILTER_SEED = 0x25bbe08f;
/** At most this many shared xattr references per inode (EROFS_XATTR_LONG_PREFIX). */
const MAX_SHARED_PER_INODE = 0x80;

const OVERLAY = 'trusted.overlay.';
const ESCAPED = 'trusted.overlay.overlay.';
const USER_OVERLAY = 'user.overlay.';

/** EROFS's short xattr name prefixes, by index (no index 5: lustre is never used here). */
const PREFIXES: [string, number][] = [
  ['user.', 1],
  ['system.posix_acl_access', 2],
  ['system.posix_acl_default', 3],
  ['trusted.', 4],
  ['security.', 6],
];

/** The dirent file type by `mode >> 12` (EROFS_FT_*; 0 for what is no type). */
const FILE_TYPE = new Uint8Array(16);
FILE_TYPE[S_IFREG >> 12] = 1;
FILE_TYPE[S_IFDIR >> 12] = 2;
FILE_TYPE[S_IFCHR >> 12] = 3;
FILE_TYPE[S_IFBLK >> 12] = 4;
FILE_TYPE[S_IFIFO >> 12] = 5;
FILE_TYPE[S_IFSOCK >> 12] = 6;
FILE_TYPE[S_IFLNK >> 12] = 7;

/** A tree no image can hold, blamed on the node's dumpfile line where it has one. */
function refused(t: CfsTree, n: number, why: string): VeritreeError {
  const line = t.line[n] as number;
  return line > 0 ? dumpError(line, why) : new VeritreeError(ERROR_CODES.DUMPFILE_INVALID, why);
}

const roundUp = (x: number, to: number): number => Math.ceil(x / to) * to;

/** DOT and DOTDOT stand for `.` and `..` in a folder's entries (every other entry is a row). */
const DOT = -2;
const DOTDOT = -3;

/** The version the image is written at: min, raised to 1 by a whiteout when max allows (lcfs_write_update_version). */
function formatVersion(t: CfsTree, min: number, max: number): number {
  if (min >= 1 || max < 1) return min;
  for (let n = 0; n < t.count; n++) if (t.linkTo[n] === NONE && t.type(n) === S_IFCHR && t.rdev[n] === 0) return 1;
  return min;
}

function setOrRefuse(t: CfsTree, n: number, key: number, value: string, prefixLength = 0): void {
  const why = t.setXattrOf(n, key, value, prefixLength);
  if (why !== null) throw refused(t, n, why);
}

/** The ids of the xattr keys the writer adds, and each key's escaped id as it is found. */
class OverlayKeys {
  readonly metacopy: number;
  readonly redirect: number;
  readonly whiteout: number;
  readonly userWhiteout: number;
  readonly whiteouts: number;
  readonly userWhiteouts: number;
  readonly opaque: number;
  readonly userOpaque: number;
  readonly rootOpaque: number;
  private readonly escaped: number[] = [];
  constructor(t: CfsTree) {
    // The tree's own keys first: their escaped forms are looked up for them alone.
    const own = t.keys.length;
    for (let k = 0; k < own; k++) {
      const name = t.keys[k] as string;
      this.escaped.push(name.startsWith(OVERLAY) ? t.keyId(ESCAPED + name.slice(OVERLAY.length)) : k);
    }
    this.metacopy = t.keyId(`${OVERLAY}metacopy`);
    this.redirect = t.keyId(`${OVERLAY}redirect`);
    this.whiteout = t.keyId(`${ESCAPED}whiteout`);
    this.userWhiteout = t.keyId(`${USER_OVERLAY}whiteout`);
    this.whiteouts = t.keyId(`${ESCAPED}whiteouts`);
    this.userWhiteouts = t.keyId(`${USER_OVERLAY}whiteouts`);
    this.opaque = t.keyId(`${ESCAPED}opaque`);
    this.userOpaque = t.keyId(`${USER_OVERLAY}opaque`);
    this.rootOpaque = t.keyId(`${OVERLAY}opaque`);
  }
  /** The key a tree's own key is written under (`trusted.overlay.X` escaped). */
  escape(key: number): number {
    return this.escaped[key] ?? key;
  }
}

const METACOPY_NONE = '';
/** A redirect is this and the payload; its slots hold the payload alone (see CfsTree.setXattrOf). */
const REDIRECT_PREFIX = '/';
const METACOPY_HEAD = '\x00\x24\x00\x01';

/** Escapes the tree's own overlay xattrs and adds the ones overlayfs reads (add_overlayfs_xattrs). */
function addOverlayXattrs(t: CfsTree, n: number, version: number, k: OverlayKeys): void {
  for (let s = t.xHead[n] as number; s !== NONE; s = t.slotNext[s] as number) t.slotKey[s] = k.escape(t.slotKey[s] as number);
  const type = t.type(n);
  if (type === S_IFREG && (t.size[n] as number) > 0 && t.content[n] === null) {
    // version 0, length 36, flags 0, FS_VERITY_HASH_ALG_SHA256, the digest; empty when none is known
    const digest = t.digest[n] as string | null;
    setOrRefuse(t, n, k.metacopy, digest === null ? METACOPY_NONE : METACOPY_HEAD + digest);
    const payload = t.payload[n] as string | null;
    if (payload !== null && payload.length > 0) setOrRefuse(t, n, k.redirect, payload, REDIRECT_PREFIX.length);
  }
  if (type === S_IFCHR && t.rdev[n] === 0) {
    // A whiteout in the tree is a file to overlayfs: written as an escaped whiteout, and its
    // folder marked as holding some.
    const parent = t.parent[n] as number;
    t.size[n] = 0;
    t.mode[n] = S_IFREG | ((t.mode[n] as number) & ~S_IFMT);
    setOrRefuse(t, n, k.whiteout, '');
    setOrRefuse(t, n, k.userWhiteout, '');
    setOrRefuse(t, parent, k.whiteouts, '');
    setOrRefuse(t, parent, k.userWhiteouts, '');
    if (version >= 1) {
      setOrRefuse(t, parent, k.opaque, 'x');
      setOrRefuse(t, parent, k.userOpaque, 'x');
    }
  }
}

function checkNode(t: CfsTree, n: number): void {
  const mode = t.mode[n] as number;
  if (!validMode(mode)) throw refused(t, n, `invalid mode ${mode.toString(8)}`);
  const size = t.size[n] as number;
  if ((mode & S_IFMT) === S_IFREG && size > 0 && t.content[n] === null && chunkCount(size) > MAX_NONINLINE_CHUNKS) {
    throw refused(t, n, `a file of ${size} bytes is too big for a composefs image`);
  }
}

/**
 * rewrite_tree_for_erofs: overlay xattrs, the root opaque with 256 whiteouts (`.` and `..` come
 * when a folder is laid out: no dumpfile has them). Rows in order: a folder before what it holds.
 */
function rewriteTree(t: CfsTree, version: number, signal?: AbortSignal): OverlayKeys {
  t.resetXattrBudgets();
  const keys = new OverlayKeys(t);
  const rows = t.count;
  for (let n = 0; n < rows; n++) {
    if ((n & 4095) === 0) signal?.throwIfAborted();
    if (t.linkTo[n] !== NONE) continue;
    checkNode(t, n);
    addOverlayXattrs(t, n, version, keys);
  }
  setOrRefuse(t, 0, keys.rootOpaque, 'y');
  const selinuxKey = t.knownKey('security.selinux');
  const selinux = selinuxKey === NONE ? NONE : t.slotOf(0, selinuxKey);
  for (let i = 0; i < 256; i++) {
    const name = i.toString(16).padStart(2, '0');
    if (t.child(0, name) !== NONE) continue;
    const w = t.add(S_IFCHR | 0o644, 0);
    t.uid[w] = t.uid[0] as number;
    t.gid[w] = t.gid[0] as number;
    t.mtimeHi[w] = t.mtimeHi[0] as number;
    t.mtimeLo[w] = t.mtimeLo[0] as number;
    t.mtimeNsec[w] = t.mtimeNsec[0] as number;
    if (selinux !== NONE) t.setXattrOf(w, selinuxKey, t.slotValue[selinux] as string);
    t.addNewChild(0, name, w);
  }
  return keys;
}

function entryName(t: CfsTree, e: number): string {
  return e >= 0 ? (t.name[e] as string) : e === DOT ? '.' : '..';
}

/** A folder's entries in byte order, with `.` and `..` (DOT, DOTDOT) in their places. */
function sortedEntries(t: CfsTree, dir: number): number[] {
  let kids = t.children(dir);
  if (!t.childrenSorted(dir)) {
    let inOrder = true;
    for (let i = 1; i < kids.length && inOrder; i++) if ((t.name[kids[i - 1] as number] as string) > (t.name[kids[i] as number] as string)) inOrder = false;
    if (!inOrder) kids = kids.slice().sort((a, b) => ((t.name[a] as string) < (t.name[b] as string) ? -1 : 1));
  }
  // No child is named `.` or `..`, so each goes before the first name above it.
  const dot = t.lowerBound(kids, '.');
  const dotdot = t.lowerBound(kids, '..');
  const out: number[] = [];
  for (let i = 0; i < dot; i++) out.push(kids[i] as number);
  out.push(DOT);
  for (let i = dot; i < dotdot; i++) out.push(kids[i] as number);
  out.push(DOTDOT);
  for (let i = dotdot; i < kids.length; i++) out.push(kids[i] as number);
  return out;
}

/** The scratch array sortXattrs reuses (an inode has a handful of xattrs). */
const slotScratch: number[] = [];

/** Relinks a node's xattr slots in key order (its keys are distinct: any sort gives the same order). */
function sortXattrs(t: CfsTree, rank: Int32Array, n: number): void {
  const first = t.xHead[n] as number;
  const second = t.slotNext[first] as number;
  if (t.slotNext[second] === NONE) {
    // Two (a file's metacopy and redirect): at most a swap.
    if ((rank[t.slotKey[first] as number] as number) > (rank[t.slotKey[second] as number] as number)) {
      t.xHead[n] = second;
      t.slotNext[second] = first;
      t.slotNext[first] = NONE;
    }
    return;
  }
  const xs = slotScratch;
  xs.length = 0;
  for (let s = t.xHead[n] as number; s !== NONE; s = t.slotNext[s] as number) {
    const r = rank[t.slotKey[s] as number] as number;
    let j = xs.length - 1;
    xs.push(s);
    while (j >= 0 && (rank[t.slotKey[xs[j] as number] as number] as number) > r) {
      xs[j + 1] = xs[j] as number;
      j--;
    }
    xs[j + 1] = s;
  }
  t.xHead[n] = xs[0] as number;
  for (let i = 0; i < xs.length; i++) t.slotNext[xs[i] as number] = i + 1 < xs.length ? (xs[i + 1] as number) : NONE;
}

/** Per key id: its EROFS prefix index, the rest of its name, and its bit in the inode's xattr filter. */
class KeyFacts {
  readonly index: number[] = [];
  readonly rest: string[] = [];
  readonly bit: number[] = [];
  /** What each value of a key is written after (held without it): REDIRECT_PREFIX for redirects. */
  readonly valuePrefix: string[] = [];
  /** Each key's place in byte order. */
  readonly rank: Int32Array;
  constructor(keys: readonly string[]) {
    this.rank = new Int32Array(keys.length);
    const byName = keys.map((_, i) => i).sort((a, b) => ((keys[a] as string) < (keys[b] as string) ? -1 : 1));
    for (let r = 0; r < byName.length; r++) this.rank[byName[r] as number] = r;
    for (const key of keys) {
      let index = 0;
      let rest = key;
      for (const [prefix, i] of PREFIXES) {
        if (key.startsWith(prefix)) {
          index = i;
          rest = key.slice(prefix.length);
          break;
        }
      }
      this.index.push(index);
      this.rest.push(rest);
      this.valuePrefix.push('');
      this.bit.push(xxh32(Buffer.from(rest, 'latin1'), (XATTR_FILTER_SEED + index) >>> 0) & 31);
    }
  }
}

/**
 * What the writer works out per row (lcfs_node_s's erofs_* fields), and the image-wide facts:
 * breadth-first order, folder entries, shared xattrs.
 */
class Layout {
  readonly t: CfsTree;
  /** Rows in inode order (breadth first from the root). */
  readonly order: number[] = [0];
  /** Per folder row, its sorted entries; empty for others. */
  readonly entries: number[][];
  readonly inodeNum: Int32Array;
  readonly nid: Float64Array;
  readonly ipad: Int32Array;
  readonly xattrSize: Int32Array;
  readonly nShared: Int32Array;
  readonly isize: Int32Array;
  readonly nBlocks: Float64Array;
  readonly tailSize: Int32Array;
  readonly compact: Uint8Array;
  /** Per slot: its offset in the shared area, or -1 when written in the inode. */
  readonly slotShared: Int32Array;
  readonly keys: KeyFacts;
  minHi: number;
  minLo: number;
  minNsec: number;
  hasAcl = false;
  /** The shared area: its xattrs (as slots that hold them) and size. */
  sharedSlots: number[] = [];
  sharedSize = 0;

  constructor(t: CfsTree, overlay: OverlayKeys) {
    this.t = t;
    const rows = t.count;
    this.entries = new Array<number[]>(rows).fill(NO_ENTRIES);
    this.inodeNum = new Int32Array(rows);
    this.nid = new Float64Array(rows);
    this.ipad = new Int32Array(rows);
    this.xattrSize = new Int32Array(rows);
    this.nShared = new Int32Array(rows);
    this.isize = new Int32Array(rows);
    this.nBlocks = new Float64Array(rows);
    this.tailSize = new Int32Array(rows);
    this.compact = new Uint8Array(rows);
    this.slotShared = new Int32Array(t.slotCount).fill(-1);
    this.keys = new KeyFacts(t.keys);
    this.keys.valuePrefix[overlay.redirect] = REDIRECT_PREFIX;
    this.minHi = t.mtimeHi[0] as number;
    this.minLo = t.mtimeLo[0] as number;
    this.minNsec = t.mtimeNsec[0] as number;
  }

  isMinMtime(n: number): boolean {
    const t = this.t;
    return t.mtimeHi[n] === this.minHi && t.mtimeLo[n] === this.minLo && t.mtimeNsec[n] === this.minNsec;
  }

  /** The row an entry of folder `dir` names. */
  target(dir: number, e: number): number {
    if (e === DOT) return dir;
    if (e === DOTDOT) return this.t.parent[dir] === NONE ? dir : (this.t.parent[dir] as number);
    return this.t.followLinks(e);
  }

  /** The size of one xattr entry as written (header, name's rest, value; 4-aligned). */
  entrySize(slot: number): number {
    const t = this.t;
    const key = t.slotKey[slot] as number;
    return roundUp(XATTR_ENTRY + (this.keys.rest[key] as string).length + (this.keys.valuePrefix[key] as string).length + (t.slotValue[slot] as string).length, 4);
  }
}

const NO_ENTRIES: number[] = [];

/** lcfs_compute_tree: breadth-first order, sorted children, folder link counts, xattrs by key. */
function computeTree(l: Layout, signal?: AbortSignal): void {
  const t = l.t;
  const order = l.order;
  const aclAccess = t.knownKey('system.posix_acl_access');
  const aclDefault = t.knownKey('system.posix_acl_default');
  const rank = l.keys.rank;
  for (let i = 0; i < order.length; i++) {
    if ((i & 4095) === 0) signal?.throwIfAborted();
    const n = order[i] as number;
    if (t.isDir(n)) {
      const kids = sortedEntries(t, n);
      l.entries[n] = kids;
      let links = 2;
      for (let k = 0; k < kids.length; k++) {
        const e = kids[k] as number;
        if (e >= 0 && t.isDir(e)) links++;
      }
      t.nlink[n] = links;
    }
    if ((t.xCount[n] as number) > 1) sortXattrs(t, rank, n);
    const hi = t.mtimeHi[n] as number;
    const lo = t.mtimeLo[n] as number;
    const ns = t.mtimeNsec[n] as number;
    if (hi < l.minHi || (hi === l.minHi && (lo < l.minLo || (lo === l.minLo && ns < l.minNsec)))) {
      l.minHi = hi;
      l.minLo = lo;
      l.minNsec = ns;
    }
    l.inodeNum[n] = i;
    if (!l.hasAcl && (t.xCount[n] as number) > 0 && ((aclAccess !== NONE && t.slotOf(n, aclAccess) !== NONE) || (aclDefault !== NONE && t.slotOf(n, aclDefault) !== NONE))) l.hasAcl = true;
    const kids = l.entries[n] as number[];
    for (let k = 0; k < kids.length; k++) {
      const e = kids[k] as number;
      if (e >= 0 && t.linkTo[e] === NONE) order.push(e);
    }
  }
}

/** Each slot's pair (a distinct key and value), each pair's first slot, and its use count. */
interface Pairs {
  pairOf: Int32Array;
  pairSlot: Int32Array;
  pairCount: Int32Array;
  pairs: number;
}

function newPairs(slots: number): Pairs {
  return { pairOf: new Int32Array(slots), pairSlot: new Int32Array(slots), pairCount: new Int32Array(slots), pairs: 0 };
}

/** A hash of a value from its length and at most 24 of its bytes: a redirect is tens of bytes, and V8's maps hash every one. */
function sampleHash(seed: number, key: number, v: string): number {
  let h = Math.imul(seed ^ key, 0x01000193);
  const n = v.length;
  h = Math.imul(h ^ n, 0x01000193);
  if (n <= 24) {
    for (let i = 0; i < n; i++) h = Math.imul(h ^ v.charCodeAt(i), 0x01000193);
  } else {
    for (let i = 0; i < 12; i++) h = Math.imul(h ^ v.charCodeAt(i), 0x01000193);
    for (let i = n - 12; i < n; i++) h = Math.imul(h ^ v.charCodeAt(i), 0x01000193);
  }
  return h;
}

/**
 * The pairs, through an open-addressed table on sampleHash. Values that share their sampled
 * bytes (made so, or by chance) make long probes and whole-string comparisons: past a bound of
 * a few times the input's size, @returns null and the caller counts with maps instead.
 */
function pairsBySample(t: CfsTree, order: readonly number[]): Pairs | null {
  const slots = t.slotCount;
  let size = 16;
  while (size < 2 * slots) size *= 2;
  const mask = size - 1;
  const table = new Int32Array(size).fill(NONE);
  const hashOf = new Int32Array(slots);
  const p = newPairs(slots);
  let probes = 8 * slots + 64;
  let compared = 64 * slots + 4096;
  const seed = (Math.random() * 2 ** 32) | 0;
  // Each key's empty value, the commonest (a metacopy without a digest, a whiteout), by key: no hashing.
  const emptyPair = new Int32Array(t.keys.length).fill(NONE);
  for (let i = 0; i < order.length; i++) {
    for (let s = t.xHead[order[i] as number] as number; s !== NONE; s = t.slotNext[s] as number) {
      const key = t.slotKey[s] as number;
      const value = t.slotValue[s] as string;
      if (value.length === 0) {
        let id = emptyPair[key] as number;
        if (id === NONE) {
          id = p.pairs++;
          emptyPair[key] = id;
          p.pairSlot[id] = s;
        }
        p.pairCount[id] = (p.pairCount[id] as number) + 1;
        p.pairOf[s] = id;
        continue;
      }
      const h = sampleHash(seed, key, value);
      let at = h & mask;
      for (;;) {
        const pair = table[at] as number;
        if (pair === NONE) {
          const id = p.pairs++;
          table[at] = id;
          hashOf[id] = h;
          p.pairSlot[id] = s;
          p.pairCount[id] = 1;
          p.pairOf[s] = id;
          break;
        }
        if (hashOf[pair] === h) {
          const first = p.pairSlot[pair] as number;
          if (t.slotKey[first] === key) {
            compared -= value.length;
            if (compared < 0) return null;
            if (t.slotValue[first] === value) {
              p.pairCount[pair] = (p.pairCount[pair] as number) + 1;
              p.pairOf[s] = pair;
              break;
            }
          }
        }
        if (--probes < 0) return null;
        at = (at + 1) & mask;
      }
    }
  }
  return p;
}

/** The pairs, through V8's maps (whose hash is seeded per process): the bounded fallback. */
function pairsByMap(t: CfsTree, order: readonly number[]): Pairs {
  const p = newPairs(t.slotCount);
  const byKey: (Map<string, number> | undefined)[] = [];
  for (let i = 0; i < order.length; i++) {
    for (let s = t.xHead[order[i] as number] as number; s !== NONE; s = t.slotNext[s] as number) {
      const key = t.slotKey[s] as number;
      let values = byKey[key];
      if (values === undefined) byKey[key] = values = new Map();
      const value = t.slotValue[s] as string;
      let pair = values.get(value);
      if (pair === undefined) {
        pair = p.pairs++;
        values.set(value, pair);
        p.pairSlot[pair] = s;
      }
      p.pairCount[pair] = (p.pairCount[pair] as number) + 1;
      p.pairOf[s] = pair;
    }
  }
  return p;
}

/**
 * Xattrs (key and value) used by more than one inode go to the shared area, in a canonical order;
 * an inode refers to at most MAX_SHARED_PER_INODE of them and holds the rest itself. Also sizes
 * each inode's xattr area.
 */
function computeSharedXattrs(l: Layout): void {
  const t = l.t;
  const order = l.order;
  const { pairOf, pairSlot, pairCount, pairs } = pairsBySample(t, order) ?? pairsByMap(t, order);
  const shared: number[] = [];
  for (let p = 0; p < pairs; p++) if ((pairCount[p] as number) > 1) shared.push(p);
  const rank = l.keys.rank;
  const rankOf = (p: number): number => rank[t.slotKey[pairSlot[p] as number] as number] as number;
  const valueOf = (p: number): string => t.slotValue[pairSlot[p] as number] as string;
  shared.sort((a, b) => {
    const ka = rankOf(a);
    const kb = rankOf(b);
    if (ka !== kb) return kb - ka;
    const va = valueOf(a);
    const vb = valueOf(b);
    if (va.length !== vb.length) return vb.length - va.length;
    return va < vb ? 1 : va > vb ? -1 : 0;
  });
  const pairOffset = new Int32Array(pairs).fill(-1);
  let offset = 0;
  for (const p of shared) {
    pairOffset[p] = offset;
    const s = pairSlot[p] as number;
    l.sharedSlots.push(s);
    offset += l.entrySize(s);
  }
  l.sharedSize = offset;
  for (let i = 0; i < order.length; i++) {
    const n = order[i] as number;
    if (t.xHead[n] === NONE) continue;
    let nShared = 0;
    let unshared = 0;
    for (let s = t.xHead[n] as number; s !== NONE; s = t.slotNext[s] as number) {
      const at = pairOffset[pairOf[s] as number] as number;
      if (at >= 0 && nShared < MAX_SHARED_PER_INODE) {
        l.slotShared[s] = at;
        nShared++;
      } else {
        unshared += l.entrySize(s);
      }
    }
    l.nShared[n] = nShared;
    l.xattrSize[n] = roundUp(XATTR_HEADER + nShared * 4 + unshared, 4);
  }
}

/** Folder data: whole blocks of dirents, and a tail kept inline when it is at most half a block. */
function dirSize(l: Layout, n: number): void {
  const t = l.t;
  let blocks = 0;
  let used = 0;
  const kids = l.entries[n] as number[];
  for (let i = 0; i < kids.length; i++) {
    const len = DIRENT_SIZE + entryName(t, kids[i] as number).length;
    if (used + len > BLOCK) {
      blocks++;
      used = 0;
    }
    used += len;
  }
  if (used > BLOCK / 2) {
    blocks++;
    used = 0;
  }
  l.nBlocks[n] = blocks;
  l.tailSize[n] = used;
}

function inodeDataSize(l: Layout, n: number): void {
  const t = l.t;
  const type = t.type(n);
  l.nBlocks[n] = 0;
  l.tailSize[n] = 0;
  if (type === S_IFDIR) dirSize(l, n);
  else if (type === S_IFLNK) l.tailSize[n] = (t.payload[n] as string).length;
  else if (type === S_IFREG && (t.size[n] as number) > 0) {
    const content = t.content[n] as string | null;
    if (content !== null) {
      const size = content.length;
      let blocks = Math.floor(size / BLOCK);
      let tail = size % BLOCK;
      if (tail > BLOCK / 2) {
        blocks++;
        tail = 0;
      }
      l.nBlocks[n] = blocks;
      l.tailSize[n] = tail;
    } else {
      l.tailSize[n] = chunkCount(t.size[n] as number) * 4;
    }
  }
}

function fitsCompact(l: Layout, n: number): boolean {
  const t = l.t;
  if (!l.isMinMtime(n)) return false;
  if ((t.nlink[n] as number) > 0xffff || (t.uid[n] as number) > 0xffff || (t.gid[n] as number) > 0xffff) return false;
  const size = t.type(n) === S_IFDIR ? (l.nBlocks[n] as number) * BLOCK + (l.tailSize[n] as number) : (t.size[n] as number);
  return size <= 0xffffffff;
}

/** Padding before an inode so that its tail does not straddle a block (or the tail goes to a block). */
function tailPadding(l: Layout, n: number, pos: number, inodeSize: number, xattrSize: number): number {
  const nonTail = inodeSize + xattrSize;
  const tailSize = l.tailSize[n] as number;
  const total = nonTail + tailSize;
  if (l.t.type(n) === S_IFLNK) {
    // A symlink's target stays with its inode in one block, or goes to a block of its own.
    const startBlock = Math.floor(pos / BLOCK);
    const endBlock = Math.floor((pos + total - 1) / BLOCK);
    if (Math.floor(total / BLOCK) > 0) {
      l.nBlocks[n] = (l.nBlocks[n] as number) + 1;
      l.tailSize[n] = 0;
    }
    return startBlock !== endBlock ? roundUp(pos, BLOCK) - pos : 0;
  }
  let remainder = BLOCK - ((pos + nonTail) % BLOCK);
  if (remainder < tailSize) {
    const pad = roundUp(remainder, SLOT);
    remainder = BLOCK - ((pos + nonTail + pad) % BLOCK);
    if (tailSize <= remainder) return pad;
    l.nBlocks[n] = (l.nBlocks[n] as number) + 1;
    l.tailSize[n] = 0;
    return roundUp(pos, BLOCK) - pos;
  }
  return 0;
}

interface Placement {
  inodesEnd: number;
  dataBlocks: number;
}

/** compute_erofs_inodes: where each inode goes, its padding, nid and block count. */
function placeInodes(l: Layout): Placement {
  let pos = SUPER_OFFSET + SUPER_SIZE;
  const metaStart = Math.floor(pos / BLOCK) * BLOCK;
  let dataBlocks = 0;
  const order = l.order;
  for (let i = 0; i < order.length; i++) {
    const n = order[i] as number;
    inodeDataSize(l, n);
    const compact = fitsCompact(l, n);
    l.compact[n] = compact ? 1 : 0;
    const inodeSize = compact ? COMPACT_SIZE : EXTENDED_SIZE;
    const xattrSize = l.xattrSize[n] as number;
    const before = pos;
    pos = roundUp(pos, SLOT);
    let ipad = pos - before;
    const extra = tailPadding(l, n, pos, inodeSize, xattrSize);
    ipad += extra;
    pos += extra;
    l.ipad[n] = ipad;
    const isize = inodeSize + xattrSize + (l.tailSize[n] as number);
    l.isize[n] = isize;
    dataBlocks += l.nBlocks[n] as number;
    l.nid[n] = (pos - metaStart) / SLOT;
    if (ipad >= BLOCK) throw internal(`inode padding of ${ipad} bytes`);
    pos += isize;
  }
  return { inodesEnd: roundUp(pos, SLOT), dataBlocks };
}

/** A little-endian u64 from a number below 2^53. */
function writeU64(v: DataView, x: number, at: number): void {
  v.setUint32(at, x % 2 ** 32, true);
  v.setUint32(at + 4, Math.floor(x / 2 ** 32), true);
}

function internal(why: string): VeritreeError {
  return new VeritreeError(ERROR_CODES.INTERNAL, `composefs image writer: ${why}`);
}

/** A cursor over the image buffer (zero-filled, so padding is a skip). */
class Out {
  pos = 0;
  readonly b: Buffer;
  /** Little-endian numbers go through a DataView: the optimiser inlines its stores. */
  readonly v: DataView;
  constructor(b: Buffer) {
    this.b = b;
    this.v = new DataView(b.buffer, b.byteOffset, b.length);
  }
  pad(n: number): void {
    this.pos += n;
  }
  align(to: number): void {
    this.pos = roundUp(this.pos, to);
  }
  text(s: string): void {
    // Most strings here are a name or a short value: a loop beats the native call's set-up.
    if (s.length > 256) {
      this.pos += this.b.write(s, this.pos, 'latin1');
      return;
    }
    const b = this.b;
    let p = this.pos;
    for (let i = 0; i < s.length; i++) b[p++] = s.charCodeAt(i);
    this.pos = p;
  }
}

function writeXattr(out: Out, l: Layout, slot: number): void {
  const key = l.t.slotKey[slot] as number;
  const rest = l.keys.rest[key] as string;
  const prefix = l.keys.valuePrefix[key] as string;
  const value = l.t.slotValue[slot] as string;
  out.b[out.pos] = rest.length;
  out.b[out.pos + 1] = l.keys.index[key] as number;
  out.v.setUint16(out.pos + 2, prefix.length + value.length, true);
  out.pos += 4;
  out.text(rest);
  if (prefix.length > 0) out.text(prefix);
  out.text(value);
  out.align(4);
}

function xattrFilter(l: Layout, n: number): number {
  const t = l.t;
  let bits = 0;
  for (let s = t.xHead[n] as number; s !== NONE; s = t.slotNext[s] as number) bits |= 1 << (l.keys.bit[t.slotKey[s] as number] as number);
  return ~bits >>> 0;
}

/** One run of dirents: the entries, then their names, then padding to `align`. */
function writeDirents(out: Out, l: Layout, dir: number, first: number, count: number, align: number): void {
  const t = l.t;
  const kids = l.entries[dir] as number[];
  const b = out.b;
  const v = out.v;
  let nameoff = count * DIRENT_SIZE;
  for (let i = first; i < first + count; i++) {
    const e = kids[i] as number;
    const target = l.target(dir, e);
    writeU64(v, l.nid[target] as number, out.pos);
    v.setUint16(out.pos + 8, nameoff & 0xffff, true);
    b[out.pos + 10] = FILE_TYPE[t.type(target) >> 12] as number;
    out.pos += DIRENT_SIZE;
    nameoff += entryName(t, e).length;
  }
  for (let i = first; i < first + count; i++) out.text(entryName(t, kids[i] as number));
  out.align(align);
}

/** write_erofs_dentries: the whole blocks (into the data area) or the inline tail. */
function writeDentries(out: Out, l: Layout, dir: number, blocks: boolean, tail: boolean): void {
  let used = 0;
  let written = 0;
  let first = 0;
  const kids = l.entries[dir] as number[];
  for (let i = 0; i < kids.length; i++) {
    const len = DIRENT_SIZE + entryName(l.t, kids[i] as number).length;
    if (used + len > BLOCK) {
      if (blocks) writeDirents(out, l, dir, first, i - first, BLOCK);
      written++;
      used = 0;
      first = i;
    }
    used += len;
  }
  if (written < (l.nBlocks[dir] as number)) {
    if (blocks) writeDirents(out, l, dir, first, kids.length - first, BLOCK);
    written++;
    used = 0;
    first = kids.length;
  }
  if (tail && used > 0) writeDirents(out, l, dir, first, kids.length - first, 1);
}

function writeNullChunks(out: Out, count: number): void {
  const end = out.pos + count * 4;
  // Most files have a chunk or two: a loop beats the native fill's set-up.
  if (count <= 16) for (let i = out.pos; i < end; i++) out.b[i] = 0xff;
  else out.b.fill(0xff, out.pos, end);
  out.pos = end;
}

interface WriteState {
  dataEnd: number;
  inodesEnd: number;
}

function writeInode(out: Out, l: Layout, n: number, st: WriteState): void {
  const t = l.t;
  const start = out.pos;
  out.pad(l.ipad[n] as number);
  const type = t.type(n);
  // The area's size was laid out with the inode (placeInodes); written and checked against it below.
  const xattrSize = l.xattrSize[n] as number;
  const nBlocks = l.nBlocks[n] as number;
  const tailSize = l.tailSize[n] as number;
  const compact = l.compact[n] === 1;
  const icount = xattrSize === 0 ? 0 : (xattrSize - XATTR_HEADER) / 4 + 1;
  if (icount > 0xffff) throw refused(t, n, 'too many xattrs for one inode');
  let layout = tailSize > 0 ? LAYOUT_FLAT_INLINE : LAYOUT_FLAT_PLAIN;
  let size: number;
  let chunks = 0;
  let chunkFormat = 0;
  const content = t.content[n] as string | null;
  if (type === S_IFDIR) size = nBlocks * BLOCK + tailSize;
  else if (type === S_IFREG) {
    size = t.size[n] as number;
    if (size > 0 && content === null) {
      const bits = chunkBits(size);
      chunks = chunkCount(size);
      layout = LAYOUT_CHUNK_BASED;
      chunkFormat = bits - BLOCK_BITS;
    }
  } else if (type === S_IFLNK) size = nBlocks === 0 ? tailSize : (t.size[n] as number);
  else size = 0;
  const format = (layout << 1) | (compact ? 0 : 1);
  const b = out.b;
  const v = out.v;
  const at = out.pos;
  const mode = t.mode[n] as number;
  v.setUint16(at, format, true);
  v.setUint16(at + 2, icount, true);
  v.setUint16(at + 4, mode & 0xffff, true);
  // i_u (offset 16): a block address, a device number, or the chunk format over the address's low half.
  let blkaddr = -1;
  if ((type === S_IFDIR || type === S_IFREG || type === S_IFLNK) && nBlocks > 0) {
    blkaddr = st.dataEnd / BLOCK;
    st.dataEnd += BLOCK * nBlocks;
  }
  if (blkaddr >= 0) v.setUint32(at + 16, blkaddr >>> 0, true);
  if (type === S_IFCHR || type === S_IFBLK) v.setUint32(at + 16, (t.rdev[n] as number) >>> 0, true);
  if (layout === LAYOUT_CHUNK_BASED) v.setUint16(at + 16, chunkFormat, true);
  v.setUint32(at + 20, (l.inodeNum[n] as number) >>> 0, true);
  const nlink = t.nlink[n] as number;
  if (compact) {
    v.setUint16(at + 6, nlink, true);
    v.setUint32(at + 8, size, true);
    v.setUint16(at + 24, t.uid[n] as number, true);
    v.setUint16(at + 26, t.gid[n] as number, true);
    out.pos += COMPACT_SIZE;
  } else {
    writeU64(v, size, at + 8);
    v.setUint32(at + 24, (t.uid[n] as number) >>> 0, true);
    v.setUint32(at + 28, (t.gid[n] as number) >>> 0, true);
    const [lo, hi] = mtimeWords(t.mtimeHi[n] as number, t.mtimeLo[n] as number);
    v.setUint32(at + 32, lo, true);
    v.setUint32(at + 36, hi, true);
    v.setUint32(at + 40, (t.mtimeNsec[n] as number) >>> 0, true);
    v.setUint32(at + 44, nlink >>> 0, true);
    out.pos += EXTENDED_SIZE;
  }
  if (xattrSize > 0) {
    const xstart = out.pos;
    v.setUint32(out.pos, xattrFilter(l, n), true);
    b[out.pos + 4] = l.nShared[n] as number;
    out.pos += XATTR_HEADER;
    const head = t.xHead[n] as number;
    for (let s = head; s !== NONE; s = t.slotNext[s] as number) {
      const shared = l.slotShared[s] as number;
      if (shared < 0) continue;
      v.setUint32(out.pos, ((st.inodesEnd % BLOCK) + shared) / 4, true);
      out.pos += 4;
    }
    for (let s = head; s !== NONE; s = t.slotNext[s] as number) if ((l.slotShared[s] as number) < 0) writeXattr(out, l, s);
    if (out.pos - xstart !== xattrSize) throw internal('xattr area size');
  }
  if (type === S_IFDIR) writeDentries(out, l, n, false, true);
  else if (type === S_IFLNK) {
    if (nBlocks === 0) out.text(t.payload[n] as string);
  } else if (type === S_IFREG && tailSize > 0) {
    if (content !== null) out.text(content.slice(content.length - tailSize));
    else writeNullChunks(out, chunks);
  }
  if (out.pos - start !== (l.isize[n] as number) + (l.ipad[n] as number)) throw internal(`inode ${l.inodeNum[n]} size`);
}

/** write_erofs_file_content: what did not fit inline, one block (as libcomposefs writes it). */
function writeFileBlocks(out: Out, l: Layout, n: number): void {
  if (l.nBlocks[n] === 0) return;
  const t = l.t;
  const type = t.type(n);
  if (type === S_IFREG) {
    const content = t.content[n] as string | null;
    if (content === null) {
      writeNullChunks(out, 1024);
      return;
    }
    out.text(content.slice(0, BLOCK));
    out.align(BLOCK);
  } else if (type === S_IFLNK) {
    out.text((t.payload[n] as string).slice(0, BLOCK));
    out.align(BLOCK);
  }
}

export interface ComposefsImage {
  bytes: Buffer;
  /** The format version written (0 or 1). */
  version: number;
  inodes: number;
}

/**
 * Writes the image of a tree (from parseDumpfile; consumed).
 * @throws VeritreeError DUMPFILE_INVALID for a tree no composefs image can hold
 */
export function writeComposefsImage(tree: CfsTree, opts: ImageOptions = {}): ComposefsImage {
  const min = opts.minVersion ?? 0;
  let max = opts.maxVersion ?? FORMAT_VERSION_MAX;
  if (min < 0 || min > FORMAT_VERSION_MAX || max > FORMAT_VERSION_MAX) {
    throw new VeritreeError(ERROR_CODES.USAGE, `format versions go from 0 to ${FORMAT_VERSION_MAX}`);
  }
  if (max < min) max = min;
  if (tree.count === 0 || !tree.isDir(0)) throw new VeritreeError(ERROR_CODES.DUMPFILE_INVALID, 'dumpfile: the root must be a directory');
  const version = formatVersion(tree, min, max);
  const overlay = rewriteTree(tree, version, opts.signal);
  const l = new Layout(tree, overlay);
  computeTree(l, opts.signal);
  computeSharedXattrs(l);
  const { inodesEnd, dataBlocks } = placeInodes(l);
  const dataStart = roundUp(inodesEnd + l.sharedSize, BLOCK);
  const total = dataStart + dataBlocks * BLOCK;
  if ((l.nid[0] as number) >= 0xffff) throw refused(tree, 0, 'the root inode lies too far into the image');
  const out = new Out(Buffer.alloc(total));
  const b = out.b;
  b.writeUInt32LE(COMPOSEFS_MAGIC, 0);
  b.writeUInt32LE(COMPOSEFS_HEADER_VERSION, 4);
  b.writeUInt32LE(l.hasAcl ? FLAG_HAS_ACL : 0, 8);
  b.writeUInt32LE(version, 12);
  const sb = SUPER_OFFSET;
  b.writeUInt32LE(EROFS_MAGIC, sb);
  b.writeUInt32LE(FEATURE_COMPAT_MTIME | FEATURE_COMPAT_XATTR_FILTER, sb + 8);
  b[sb + 12] = BLOCK_BITS;
  b.writeUInt16LE(l.nid[0] as number, sb + 14);
  writeU64(out.v, l.order.length, sb + 16);
  const [lo, hi] = mtimeWords(l.minHi, l.minLo);
  b.writeUInt32LE(lo, sb + 24);
  b.writeUInt32LE(hi, sb + 28);
  b.writeUInt32LE(l.minNsec >>> 0, sb + 32);
  b.writeUInt32LE((dataStart / BLOCK + dataBlocks) >>> 0, sb + 36);
  b.writeUInt32LE(Math.floor((SUPER_OFFSET + SUPER_SIZE) / BLOCK), sb + 40);
  b.writeUInt32LE(Math.floor(inodesEnd / BLOCK), sb + 44);
  out.pos = SUPER_OFFSET + SUPER_SIZE;
  const st: WriteState = { dataEnd: dataStart, inodesEnd };
  const order = l.order;
  for (let i = 0; i < order.length; i++) {
    if ((i & 4095) === 0) opts.signal?.throwIfAborted();
    writeInode(out, l, order[i] as number, st);
  }
  out.align(SLOT);
  if (out.pos !== inodesEnd) throw internal('end of inodes');
  for (const s of l.sharedSlots) writeXattr(out, l, s);
  out.align(BLOCK);
  if (out.pos !== dataStart) throw internal('start of data blocks');
  for (let i = 0; i < order.length; i++) {
    const n = order[i] as number;
    if (tree.type(n) === S_IFDIR) writeDentries(out, l, n, true, false);
    writeFileBlocks(out, l, n);
  }
  if (out.pos !== total || st.dataEnd !== total) throw internal(`image ends at ${out.pos}, expected ${total}`);
  return { bytes: b, version, inodes: order.length };
}
