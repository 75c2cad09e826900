/**
 * The xattrs of an EROFS format V2 image, as composefs-rs's legacy writer gives them
 * (crates/composefs/src/erofs/writer.rs InodeCollector::push_inode, InodeXAttrs::add,
 * share_xattrs with FormatEpoch::Epoch2):
 *
 * - a file kept outside the image (v2FileKind) first gets `trusted.overlay.metacopy` (the
 *   overlayfs metacopy of its fs-verity digest, or empty without one) and, unless it is sparse,
 *   `trusted.overlay.redirect` (`/` and its object path); then the node's own xattrs in name
 *   order, `trusted.overlay.X` escaped to `trusted.overlay.overlay.X`. No sorting after that:
 *   this is the order written.
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
const METACOPY = `${OVERLAY}metacopy`;
const REDIRECT = `${OVERLAY}redirect`;
/** An inode's xattr area starts with this header (name filter, shared count, reserved). */
export const V2_XATTR_HEADER = 12;

/** One xattr as written: its prefix index, the rest of its name and its value (bytes as latin1). */
export interface V2Xattr {
  prefix: number;
  suffix: string;
  value: string;
  /** The whole name, the same string for every xattr of that name (a map key hashed once). */
  name: string;
}

/** A name's prefix index, the rest of it, and its filter bit, worked out once per name. */
interface NameFacts {
  prefix: number;
  suffix: string;
  bit: number;
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

/** Names as written (escaped) and their facts; one per image, so that each name is looked at once. */
class Names {
  private readonly facts = new Map<string, NameFacts>();
  private readonly escaped = new Map<string, string>();
  /** The name a tree xattr is written under: `trusted.overlay.X` escaped to `trusted.overlay.overlay.X`. */
  escape(key: string): string {
    if (!key.startsWith(OVERLAY)) return key;
    let e = this.escaped.get(key);
    if (e === undefined) {
      e = ESCAPED + key.slice(OVERLAY.length);
      this.escaped.set(key, e);
    }
    return e;
  }
  /** InodeXAttrs::add: the last of the prefixes the name starts with ("" always does). */
  add(x: V2InodeXattrs, name: string, value: string): void {
    let f = this.facts.get(name);
    if (f === undefined) {
      let i = PREFIXES.length - 1;
      while (!name.startsWith(PREFIXES[i] as string)) i--;
      const suffix = name.slice((PREFIXES[i] as string).length);
      f = { prefix: i, suffix, bit: xxh32(Buffer.from(suffix, 'latin1'), (FILTER_SEED + i) >>> 0) % 32 };
      this.facts.set(name, f);
    }
    x.filter = (x.filter | (1 << f.bit)) >>> 0;
    x.local.push({ prefix: f.prefix, suffix: f.suffix, value, name });
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

/** A regular file's content as composefs-rs's RegularFile holds it. */
export const V2_INLINE = 0;
/** External(id, size): kept outside the image, its fs-verity digest known. */
export const V2_EXTERNAL = 1;
/** ExternalNoVerity(id, size): kept outside the image, named by its payload alone. */
export const V2_NO_VERITY = 2;
/** Sparse(size): a size and nothing else. */
export const V2_SPARSE = 3;

/**
 * What composefs-rs's dumpfile reader makes of a regular file (dumpfile_parse.rs, dumpfile.rs
 * add_entry_to_filesystem): a file with a digest or a payload is kept outside the image whatever
 * its size (an empty one too), one with neither is inline, or sparse when it has a size and no
 * content. Inline content wins over a payload, as in the dumpfiles veritree reads.
 */
export function v2FileKind(t: CfsTree, row: number): number {
  if (t.content[row] !== null) return V2_INLINE;
  if (t.digest[row] !== null) return V2_EXTERNAL;
  const payload = t.payload[row] as string | null;
  if (payload !== null && payload.length > 0) return V2_NO_VERITY;
  return (t.size[row] as number) > 0 ? V2_SPARSE : V2_INLINE;
}

const HEX_BYTE = /^[0-9a-fA-F]{2}$/;

/**
 * The redirect of a file named by its payload alone: FsVerityHashValue::from_object_pathname
 * reads the payload's last `2 * size + 1` bytes as `XX/<rest>` (hex in either case), and
 * to_object_pathname writes that id back in lower case.
 * @throws VeritreeError DUMPFILE_INVALID for a payload that ends in no object path
 */
function payloadObjectPath(payload: string, digestSize: number): string {
  const tail = payload.slice(payload.length - (2 * digestSize + 1));
  const rest = tail.slice(3);
  if (payload.length < 2 * digestSize + 1 || !HEX_BYTE.test(tail.slice(0, 2)) || tail[2] !== '/' || !/^[0-9a-fA-F]*$/.test(rest)) {
    throw new VeritreeError(ERROR_CODES.DUMPFILE_INVALID, `EROFS format V2: payload ${JSON.stringify(payload)} ends in no object path (XX/ and ${2 * digestSize - 2} hex digits)`);
  }
  return `/${tail.slice(0, 2).toLowerCase()}/${rest.toLowerCase()}`;
}

/** A node's xattrs before sharing: what overlayfs needs first, then its own, escaped. */
function ownXattrs(t: CfsTree, row: number, alg: HashAlgorithm, names: Names): V2InodeXattrs {
  const x: V2InodeXattrs = { shared: [], local: [], filter: 0 };
  const kind = t.type(row) === S_IFREG ? v2FileKind(t, row) : V2_INLINE;
  if (kind !== V2_INLINE) {
    const m = metacopyOf(alg);
    if (kind === V2_EXTERNAL) {
      const digest = t.digest[row] as string;
      if (digest.length !== m.digestSize) {
        throw new VeritreeError(ERROR_CODES.DUMPFILE_INVALID, `EROFS format V2: a digest of ${digest.length} bytes in an image of ${m.digestSize}-byte digests`);
      }
      names.add(x, METACOPY, m.head + digest);
      names.add(x, REDIRECT, objectPath(digest));
    } else {
      // ExternalNoVerity: an empty metacopy and the payload's object path; Sparse: the metacopy alone.
      names.add(x, METACOPY, '');
      if (kind === V2_NO_VERITY) names.add(x, REDIRECT, payloadObjectPath(t.payload[row] as string, m.digestSize));
    }
  }
  const slots: number[] = [];
  for (let s = t.xHead[row] as number; s !== NONE; s = t.slotNext[s] as number) slots.push(s);
  const keyOf = (s: number): string => t.keys[t.slotKey[s] as number] as string;
  slots.sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : keyOf(a) > keyOf(b) ? 1 : 0));
  for (const s of slots) names.add(x, names.escape(keyOf(s)), t.slotValue[s] as string);
  return x;
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The derived Ord of composefs-rs's XAttr: prefix index, then name, then value, as bytes. */
function order(a: V2Xattr, b: V2Xattr): number {
  return a.prefix - b.prefix || cmp(a.suffix, b.suffix) || cmp(a.value, b.value);
}

/** How many inodes have an xattr (name and value), and its place in the shared area. */
interface Use {
  x: V2Xattr;
  count: number;
  index: number;
}

/** Every inode's xattrs (`rows`: each inode's tree row), with those used more than once shared. */
export function v2Xattrs(t: CfsTree, rows: readonly number[], alg: HashAlgorithm): V2Xattrs {
  const names = new Names();
  const inodes = rows.map((row) => ownXattrs(t, row, alg, names));
  // By name, then value: no key string is made per xattr.
  const uses = new Map<string, Map<string, Use>>();
  /** Each inode's xattrs' uses, in order (filled in the counting loop, read in the sharing one). */
  const usesOf: Use[][] = [];
  for (const i of inodes) {
    const mine: Use[] = [];
    for (const x of i.local) {
      let byValue = uses.get(x.name);
      if (byValue === undefined) {
        byValue = new Map();
        uses.set(x.name, byValue);
      }
      let u = byValue.get(x.value);
      if (u === undefined) {
        u = { x, count: 0, index: -1 };
        byValue.set(x.value, u);
      }
      u.count++;
      mine.push(u);
    }
    usesOf.push(mine);
  }
  const sharedUses: Use[] = [];
  for (const byValue of uses.values()) for (const u of byValue.values()) if (u.count > 1) sharedUses.push(u);
  sharedUses.sort((a, b) => order(a.x, b.x));
  const shared: V2Xattr[] = [];
  for (let i = 0; i < sharedUses.length; i++) {
    const u = sharedUses[i] as Use;
    u.index = i;
    shared.push(u.x);
  }
  for (let n = 0; n < inodes.length; n++) {
    const i = inodes[n] as V2InodeXattrs;
    if (i.local.length === 0) continue;
    const mine = usesOf[n] as Use[];
    const local: V2Xattr[] = [];
    for (let k = 0; k < i.local.length; k++) {
      const u = mine[k] as Use;
      if (u.count > 1) i.shared.push(u.index);
      else local.push(i.local[k] as V2Xattr);
    }
    if (i.shared.length > 0xff) throw new VeritreeError(ERROR_CODES.DUMPFILE_INVALID, `EROFS format V2: an inode with ${i.shared.length} shared xattrs (at most 255)`);
    i.local = local;
  }
  return { inodes, shared };
}
