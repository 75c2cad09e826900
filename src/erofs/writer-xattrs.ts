/**
 * The image writer's xattrs (libcomposefs's lcfs-writer-erofs.c): each key's EROFS prefix and
 * filter bit, a node's xattrs in key order, and the shared area: an xattr (key and value) that
 * more than one inode has is written once and referred to, in a canonical order, with each
 * inode's xattr area sized to match.
 * @module
 */
import { type CfsTree, NONE } from './tree.ts';
import { xxh32 } from './xxh32.ts';

export const XATTR_HEADER = 12;
export const XATTR_ENTRY = 4;
const XATTR_FILTER_SEED = 0x25bbe08f;
/** At most this many shared xattr references per inode (EROFS_XATTR_LONG_PREFIX). */
const MAX_SHARED_PER_INODE = 0x80;

/** EROFS's short xattr name prefixes, by index (no index 5: lustre is never used here). */
const PREFIXES: [string, number][] = [
  ['user.', 1],
  ['system.posix_acl_access', 2],
  ['system.posix_acl_default', 3],
  ['trusted.', 4],
  ['security.', 6],
];

const roundUp = (x: number, to: number): number => Math.ceil(x / to) * to;

/** The scratch array sortXattrs reuses (an inode has a handful of xattrs). */
const slotScratch: number[] = [];

/** Relinks a node's xattr slots in key order (its keys are distinct: any sort gives the same order). */
export function sortXattrs(t: CfsTree, rank: Int32Array, n: number): void {
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
export class KeyFacts {
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

/** The size of one xattr entry as written (header, name's rest, value; 4-aligned). */
export function entrySize(t: CfsTree, keys: KeyFacts, slot: number): number {
  const key = t.slotKey[slot] as number;
  return roundUp(XATTR_ENTRY + (keys.rest[key] as string).length + (keys.valuePrefix[key] as string).length + (t.slotValue[slot] as string).length, 4);
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
function pairsBySample(t: CfsTree, order: Int32Array, count: number): Pairs | null {
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
  for (let i = 0; i < count; i++) {
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
function pairsByMap(t: CfsTree, order: Int32Array, count: number): Pairs {
  const p = newPairs(t.slotCount);
  const byKey: (Map<string, number> | undefined)[] = [];
  for (let i = 0; i < count; i++) {
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

/** What sharing works out: per inode, its references and area size; per slot, its place in the shared area. */
export interface SharedXattrs {
  /** Per row: how many shared xattrs it refers to, and its xattr area's size (0: none). */
  nShared: Uint8Array;
  xattrSize: Int32Array;
  /** Per slot: its offset in the shared area, or -1 when written in the inode. */
  slotShared: Int32Array;
  /** The shared area: its xattrs (as slots that hold them) and size. */
  sharedSlots: number[];
  sharedSize: number;
}

/**
 * Xattrs (key and value) used by more than one inode go to the shared area, in a canonical order;
 * an inode refers to at most MAX_SHARED_PER_INODE of them and holds the rest itself. Also sizes
 * each inode's xattr area. `order`: the rows that are inodes, `count` of them.
 */
export function shareXattrs(t: CfsTree, keys: KeyFacts, order: Int32Array, count: number): SharedXattrs {
  const { pairOf, pairSlot, pairCount, pairs } = pairsBySample(t, order, count) ?? pairsByMap(t, order, count);
  const shared: number[] = [];
  for (let p = 0; p < pairs; p++) if ((pairCount[p] as number) > 1) shared.push(p);
  const rank = keys.rank;
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
  const out: SharedXattrs = { nShared: new Uint8Array(t.count), xattrSize: new Int32Array(t.count), slotShared: new Int32Array(t.slotCount).fill(-1), sharedSlots: [], sharedSize: 0 };
  let offset = 0;
  for (const p of shared) {
    pairOffset[p] = offset;
    const s = pairSlot[p] as number;
    out.sharedSlots.push(s);
    offset += entrySize(t, keys, s);
  }
  out.sharedSize = offset;
  for (let i = 0; i < count; i++) {
    const n = order[i] as number;
    if (t.xHead[n] === NONE) continue;
    let nShared = 0;
    let unshared = 0;
    for (let s = t.xHead[n] as number; s !== NONE; s = t.slotNext[s] as number) {
      const at = pairOffset[pairOf[s] as number] as number;
      if (at >= 0 && nShared < MAX_SHARED_PER_INODE) {
        out.slotShared[s] = at;
        nShared++;
      } else {
        unshared += entrySize(t, keys, s);
      }
    }
    out.nShared[n] = nShared;
    out.xattrSize[n] = roundUp(XATTR_HEADER + nShared * 4 + unshared, 4);
  }
  return out;
}
