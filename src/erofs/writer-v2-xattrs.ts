/**
 * The xattrs of an EROFS format V2 image, as composefs-rs's legacy writer gives them
 * (crates/composefs/src/erofs/writer.rs InodeCollector::push_inode, InodeXAttrs::add,
 * share_xattrs with FormatEpoch::Epoch2):
 *
 * - a file kept outside the image first gets `trusted.overlay.metacopy` (the overlayfs metacopy
 *   of its fs-verity digest, or empty without one) and `trusted.overlay.redirect` (`/` and its
 *   object path); then the node's own xattrs in name order, `trusted.overlay.X` escaped to
 *   `trusted.overlay.overlay.X`. No sorting after that: this is the order written.
 * - each name takes the longest matching EROFS prefix of the seven (lustre included, which
 *   libcomposefs's table lacks), and sets its bit in the inode's filter.
 * - an xattr (prefix, rest of name, value) more than one inode has is shared: the shared area
 *   holds them in (prefix index, name, value) byte order, each inode refers to them by their
 *   absolute offset in 4-byte words, in the order its own list had them.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { S_IFREG } from './node.ts';
import { type CfsTree, NONE } from './tree.ts';
import { metacopyOf } from './writer-policy.ts';
import { xxh32 } from './xxh32.ts';
import type { HashAlgorithm } from '../verity/constants.ts';

const PREFIXES = ['', 'user.', 'system.posix_acl_access', 'system.posix_acl_default', 'trusted.', 'lustre.', 'security.'];
const FILTER_SEED = 0x25bbe08f;
const OVERLAY = 'trusted.overlay.';
const ESCAPED = 'trusted.overlay.overlay.';
/** An inode's xattr area starts with this header (name filter, shared count, reserved). */
export const V2_XATTR_HEADER = 12;

/** One xattr as written: its prefix index, the rest of its name and its value (bytes as latin1). */
export interface V2Xattr {
  prefix: number;
  suffix: string;
  value: string;
}

export interface V2InodeXattrs {
  /** Indexes into the shared area, in the order the inode's list had them. */
  shared: number[];
  local: V2Xattr[];
  /** The filter's set bits (the header holds its complement); 0 when the inode has no xattrs. */
  filter: number;
}

export interface V2Xattrs {
  inodes: V2InodeXattrs[];
  shared: V2Xattr[];
}

function add(x: V2InodeXattrs, name: string, value: string): void {
  for (let i = PREFIXES.length - 1; i >= 0; i--) {
    const p = PREFIXES[i] as string;
    if (!name.startsWith(p)) continue;
    const suffix = name.slice(p.length);
    x.filter = (x.filter | (1 << (xxh32(Buffer.from(suffix, 'latin1'), (FILTER_SEED + i) >>> 0) % 32))) >>> 0;
    x.local.push({ prefix: i, suffix, value });
    return;
  }
}

/** The size of one xattr entry (4-byte header, name, value, padded to 4). */
export function v2EntrySize(x: V2Xattr): number {
  return (4 + x.suffix.length + x.value.length + 3) & ~3;
}

/** The size of an inode's xattr area: nothing without xattrs, else the header, its refs and its entries. */
export function v2XattrSize(x: V2InodeXattrs): number {
  if (x.filter === 0) return 0;
  let size = V2_XATTR_HEADER + 4 * x.shared.length;
  for (const l of x.local) size += v2EntrySize(l);
  return size;
}

/** `/XX/<rest>` of a digest (to_object_pathname). */
function objectPath(digest: string): string {
  const hex = Buffer.from(digest, 'latin1').toString('hex');
  return `/${hex.slice(0, 2)}/${hex.slice(2)}`;
}

/** A node's xattrs before sharing: what overlayfs needs first, then its own, escaped. */
function ownXattrs(t: CfsTree, row: number, alg: HashAlgorithm): V2InodeXattrs {
  const x: V2InodeXattrs = { shared: [], local: [], filter: 0 };
  if (t.type(row) === S_IFREG && t.content[row] === null && (t.size[row] as number) > 0) {
    const digest = t.digest[row] as string | null;
    const payload = t.payload[row] as string | null;
    if (digest !== null) {
      const m = metacopyOf(alg);
      if (digest.length !== m.digestSize) {
        throw new VeritreeError(ERROR_CODES.DUMPFILE_INVALID, `EROFS format V2: a digest of ${digest.length} bytes in an image of ${m.digestSize}-byte digests`);
      }
      add(x, `${OVERLAY}metacopy`, m.head + digest);
      add(x, `${OVERLAY}redirect`, objectPath(digest));
    } else {
      // composefs-rs's ExternalNoVerity (a path, no digest) and Sparse (neither).
      add(x, `${OVERLAY}metacopy`, '');
      if (payload !== null && payload.length > 0) add(x, `${OVERLAY}redirect`, `/${payload}`);
    }
  }
  const slots: number[] = [];
  for (let s = t.xHead[row] as number; s !== NONE; s = t.slotNext[s] as number) slots.push(s);
  const keyOf = (s: number): string => t.keys[t.slotKey[s] as number] as string;
  slots.sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : keyOf(a) > keyOf(b) ? 1 : 0));
  for (const s of slots) {
    const key = keyOf(s);
    add(x, key.startsWith(OVERLAY) ? ESCAPED + key.slice(OVERLAY.length) : key, t.slotValue[s] as string);
  }
  return x;
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The derived Ord of composefs-rs's XAttr: prefix index, then name, then value, as bytes. */
function order(a: V2Xattr, b: V2Xattr): number {
  return a.prefix - b.prefix || cmp(a.suffix, b.suffix) || cmp(a.value, b.value);
}

/** An xattr's identity as a map key (prefix, name length, name, value). */
const keyOfXattr = (x: V2Xattr): string => `${x.prefix}:${x.suffix.length}:${x.suffix}${x.value}`;

/** Every inode's xattrs (`rows`: each inode's tree row), with those used more than once shared. */
export function v2Xattrs(t: CfsTree, rows: readonly number[], alg: HashAlgorithm): V2Xattrs {
  const inodes = rows.map((row) => ownXattrs(t, row, alg));
  const uses = new Map<string, { x: V2Xattr; count: number; index: number }>();
  for (const i of inodes) {
    for (const x of i.local) {
      const k = keyOfXattr(x);
      const u = uses.get(k);
      if (u === undefined) uses.set(k, { x, count: 1, index: -1 });
      else u.count++;
    }
  }
  const shared: V2Xattr[] = [];
  for (const u of uses.values()) if (u.count > 1) shared.push(u.x);
  shared.sort(order);
  for (let i = 0; i < shared.length; i++) (uses.get(keyOfXattr(shared[i] as V2Xattr)) as { index: number }).index = i;
  for (const i of inodes) {
    if (i.local.length === 0) continue;
    const local: V2Xattr[] = [];
    for (const x of i.local) {
      const u = uses.get(keyOfXattr(x)) as { count: number; index: number };
      if (u.count > 1) i.shared.push(u.index);
      else local.push(x);
    }
    if (i.shared.length > 0xff) throw new VeritreeError(ERROR_CODES.DUMPFILE_INVALID, `EROFS format V2: an inode with ${i.shared.length} shared xattrs (at most 255)`);
    i.local = local;
  }
  return { inodes, shared };
}
