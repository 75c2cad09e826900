/**
 * The composefs policy the image writer applies to a tree before laying it out (libcomposefs's
 * lcfs-writer.c: rewrite_tree_for_erofs, add_overlayfs_xattrs, lcfs_write_update_version):
 * overlay xattrs escaped and added (metacopy, redirect, whiteouts), whiteouts turned into files,
 * the root made opaque with its 256 whiteouts, the format version chosen, and the checks that
 * refuse a tree no image can hold. The metacopy value follows the repository's fs-verity hash
 * (metacopyOf); a redirect is the object's path, `/XX/<rest of the hex digest>`, whatever its length.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { MAX_NONINLINE_CHUNKS, S_IFCHR, S_IFMT, S_IFREG, chunkCount, dumpError, validMode } from './node.ts';
import { type CfsTree, NONE } from './tree.ts';
import { HASH_ALGORITHMS, type HashAlgorithm } from '../verity/constants.ts';

const OVERLAY = 'trusted.overlay.';
const ESCAPED = 'trusted.overlay.overlay.';
const USER_OVERLAY = 'user.overlay.';

/** A tree no image can hold, blamed on the node's dumpfile line where it has one, else on its path. */
export function refused(t: CfsTree, n: number, why: string): VeritreeError {
  const line = t.line[n] as number;
  if (line > 0) return dumpError(line, why);
  return new VeritreeError(ERROR_CODES.DUMPFILE_INVALID, `${JSON.stringify(Buffer.from(pathOf(t, n), 'latin1').toString('utf8'))}: ${why}`);
}

/** A row's path in the tree, spelled from its folders (for messages). */
function pathOf(t: CfsTree, n: number): string {
  const parts: string[] = [];
  for (let r = n; r > 0 && (t.parent[r] as number) !== NONE; r = t.parent[r] as number) parts.push(t.name[r] as string);
  return `/${parts.reverse().join('/')}`;
}

/** The version the image is written at: min, raised to 1 by a whiteout when max allows (lcfs_write_update_version). */
export function formatVersion(t: CfsTree, min: number, max: number): number {
  if (min >= 1 || max < 1) return min;
  for (let n = 0; n < t.count; n++) if (t.linkTo[n] === NONE && t.type(n) === S_IFCHR && t.rdev[n] === 0) return 1;
  return min;
}

function setOrRefuse(t: CfsTree, n: number, key: number, value: string, prefixLength = 0): void {
  const why = t.setXattrOf(n, key, value, prefixLength);
  if (why !== null) throw refused(t, n, why);
}


/** The ids of the xattr keys the writer adds, and each key's escaped id as it is found. */
export class OverlayKeys {
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
export const REDIRECT_PREFIX = '/';

/**
 * What a file's `trusted.overlay.metacopy` holds before its digest (overlayfs's struct
 * ovl_metacopy; composefs-rs crates/composefs/src/erofs/composefs.rs OverlayMetacopy): version 0,
 * the length of the whole value (4 + the digest's size), flags 0, and the kernel's
 * FS_VERITY_HASH_ALG_* id of the digest (1 SHA-256, 2 SHA-512).
 */
export interface Metacopy {
  head: string;
  digestSize: number;
}

export function metacopyOf(alg: HashAlgorithm): Metacopy {
  const { id, digestSize } = HASH_ALGORITHMS[alg];
  return { head: String.fromCharCode(0, 4 + digestSize, 0, id), digestSize };
}

/** Escapes the tree's own overlay xattrs and adds the ones overlayfs reads (add_overlayfs_xattrs). */
function addOverlayXattrs(t: CfsTree, n: number, version: number, k: OverlayKeys, m: Metacopy): void {
  for (let s = t.xHead[n] as number; s !== NONE; s = t.slotNext[s] as number) t.slotKey[s] = k.escape(t.slotKey[s] as number);
  const type = t.type(n);
  if (type === S_IFREG && (t.size[n] as number) > 0 && t.content[n] === null) {
    // The metacopy head and the digest; empty when no digest is known.
    const digest = t.digest[n] as string | null;
    if (digest !== null && digest.length !== m.digestSize) throw refused(t, n, `a digest of ${digest.length} bytes in an image of ${m.digestSize}-byte digests`);
    setOrRefuse(t, n, k.metacopy, digest === null ? METACOPY_NONE : m.head + digest);
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
export function rewriteTree(t: CfsTree, version: number, alg: HashAlgorithm, signal?: AbortSignal): OverlayKeys {
  t.resetXattrBudgets();
  const keys = new OverlayKeys(t);
  const m = metacopyOf(alg);
  const rows = t.count;
  for (let n = 0; n < rows; n++) {
    if ((n & 4095) === 0) signal?.throwIfAborted();
    if (t.linkTo[n] !== NONE) continue;
    checkNode(t, n);
    addOverlayXattrs(t, n, version, keys, m);
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
