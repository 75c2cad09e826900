/**
 * The tree a composefs image is written from, with the field widths and rules of libcomposefs's
 * lcfs_node_s (so that the writer gives the same bytes as mkcomposefs).
 *
 * A node is a row number, its fields are columns (typed arrays for numbers, arrays for strings),
 * and its xattrs are slots of one shared table: a distro tree has 60,000 nodes, and one object per
 * node (with its own map of children and list of xattrs) made the collector, not the layout, the
 * writer's largest cost. Row 0 is the root. A hard-link name is a row of its own whose `linkTo`
 * names the row it links to. The reader and the writer read and write the columns directly; a
 * typed column is replaced by a larger copy as rows are added, so hold the tree, not a column.
 *
 * Names, keys, symlink targets, payloads and contents are byte strings held as latin1 JS strings
 * (one char per byte, see oci/names.ts): JS string order is then byte order, which is strcmp's
 * (and memcmp's, for values and contents, kept the same way).
 * @module
 */
import { S_IFDIR, S_IFMT, XATTR_BUDGET, XATTR_NAME_MAX } from './node.ts';

export const NONE = -1;

/** A typed array twice the size, its contents kept. */
function grown<T extends Int32Array | Uint32Array | Float64Array>(a: T, length = a.length * 2): T {
  const b = new (a.constructor as new (n: number) => T)(length);
  b.set(a);
  return b;
}

const START = 1024;

export class CfsTree {
  private rows = 0;
  mode = new Uint32Array(START);
  nlink = new Uint32Array(START);
  uid = new Uint32Array(START);
  gid = new Uint32Array(START);
  rdev = new Uint32Array(START);
  /** st_size; exact to 2^53, Infinity above (no such file fits an image, and no other type stores it). */
  size = new Float64Array(START);
  /** st_mtim_sec (signed 64 bits) as `mtimeHi * 2^24 + mtimeLo`, 0 <= mtimeLo < 2^24 (see MTIME_SPLIT). */
  mtimeHi = new Float64Array(START);
  mtimeLo = new Uint32Array(START);
  mtimeNsec = new Uint32Array(START);
  parent = new Int32Array(START);
  /** The row a hard-link name names (possibly another link until resolved), or NONE. */
  linkTo = new Int32Array(START);
  /** Where the node came from, for messages (a dumpfile line number; 0 when made here). */
  line = new Float64Array(START);
  /** The first of a node's xattr slots (NONE: none); a node's keys are distinct, their order free until sorted. */
  xHead = new Int32Array(START);
  xCount = new Int32Array(START);
  /** libcomposefs's running estimate of the xattr area, checked against XATTR_BUDGET. */
  xBudget = new Int32Array(START);
  /** A folder's children in the order added: an index into `lists`, or NONE. */
  private kidList = new Int32Array(START);
  readonly name: string[] = [];
  readonly payload: (string | null)[] = [];
  /** Inline content (bytes as latin1). */
  readonly content: (string | null)[] = [];
  /** The fs-verity digest (SHA-256, or SHA-512 for a SHA-512 repository), its bytes as latin1. */
  readonly digest: (string | null)[] = [];

  /** Slots: key (an index into `keys`), value (bytes as latin1), next slot of the same node. */
  private slots = 0;
  slotKey = new Int32Array(START);
  slotNext = new Int32Array(START);
  readonly slotValue: string[] = [];
  readonly keys: string[] = [];
  private readonly keyIds = new Map<string, number>();

  private readonly lists: number[][] = [];
  /** Whether each list is in strictly increasing name order (a dumpfile's usual case): then it needs no index. */
  private readonly listSorted: boolean[] = [];
  /** Name → row, for the folders whose children did not come in order. */
  private readonly byName = new Map<number, Map<string, number>>();

  get count(): number {
    return this.rows;
  }

  get slotCount(): number {
    return this.slots;
  }

  /**
   * Room for `rows` rows in all without another copy: a tree of known size (plus the writer's 256
   * root whiteouts) is sized once, where doubling would leave up to twice the room, and the
   * copies' memory, behind.
   */
  reserve(rows: number): void {
    if (rows > this.mode.length) this.grow(rows);
  }

  private grow(length = this.mode.length * 2): void {
    this.mode = grown(this.mode, length);
    this.nlink = grown(this.nlink, length);
    this.uid = grown(this.uid, length);
    this.gid = grown(this.gid, length);
    this.rdev = grown(this.rdev, length);
    this.size = grown(this.size, length);
    this.mtimeHi = grown(this.mtimeHi, length);
    this.mtimeLo = grown(this.mtimeLo, length);
    this.mtimeNsec = grown(this.mtimeNsec, length);
    this.parent = grown(this.parent, length);
    this.linkTo = grown(this.linkTo, length);
    this.line = grown(this.line, length);
    this.xHead = grown(this.xHead, length);
    this.xCount = grown(this.xCount, length);
    this.xBudget = grown(this.xBudget, length);
    this.kidList = grown(this.kidList, length);
  }

  /** A new row: nlink 1, no parent, link, children or xattrs, every other field zero or empty; @returns its number. */
  add(mode: number, line: number): number {
    const n = this.rows;
    if (n === this.mode.length) this.grow();
    this.rows = n + 1;
    this.mode[n] = mode;
    this.nlink[n] = 1;
    this.parent[n] = NONE;
    this.linkTo[n] = NONE;
    this.line[n] = line;
    this.xHead[n] = NONE;
    this.kidList[n] = NONE;
    this.name.push('');
    this.payload.push(null);
    this.content.push(null);
    this.digest.push(null);
    return n;
  }

  type(n: number): number {
    return (this.mode[n] as number) & S_IFMT;
  }

  isDir(n: number): boolean {
    return this.type(n) === S_IFDIR;
  }

  keyId(key: string): number {
    let id = this.keyIds.get(key);
    if (id === undefined) {
      id = this.keys.length;
      this.keys.push(key);
      this.keyIds.set(key, id);
    }
    return id;
  }

  /** The id of a key if any node has it, else NONE (no id is made). */
  knownKey(key: string): number {
    return this.keyIds.get(key) ?? NONE;
  }

  /** The slot of node n holding key `key` (an id), or NONE. */
  slotOf(n: number, key: number): number {
    for (let s = this.xHead[n] as number; s !== NONE; s = this.slotNext[s] as number) if (this.slotKey[s] === key) return s;
    return NONE;
  }

  /**
   * Sets (or replaces) an xattr as lcfs_node_set_xattr does, with its size accounting.
   * @returns why it cannot be set, or null
   */
  setXattr(n: number, key: string, value: string): string | null {
    if (key.length === 0 || key.length > XATTR_NAME_MAX) return `xattr name of ${key.length} bytes (1 to ${XATTR_NAME_MAX})`;
    return this.setXattrOf(n, this.keyId(key), value);
  }

  /**
   * setXattr by key id (a key already checked). `prefixLength`: the value is held without its
   * first bytes, the same for every value of this key, which the writer adds back (a redirect is
   * `/` and the payload: kept as the payload, with no string made per file).
   */
  setXattrOf(n: number, id: number, value: string, prefixLength = 0): string | null {
    const length = prefixLength + value.length;
    if (length > 0xffff) return `xattr value of ${length} bytes (at most 65535)`;
    const keyLength = (this.keys[id] as string).length;
    let slot = this.xHead[n] === NONE ? NONE : this.slotOf(n, id);
    let count = this.xCount[n] as number;
    let budget = this.xBudget[n] as number;
    if (slot !== NONE) {
      count--;
      budget = count > 0 ? budget - (7 + keyLength + prefixLength + (this.slotValue[slot] as string).length) : 0;
    }
    let entry = 7 + keyLength + length;
    if (count === 0) entry += 12;
    // The budget is a size_t in libcomposefs and can be driven below zero (see CfsTree.resetXattrBudgets):
    // a negative sum is a huge unsigned one, and refused as it is there.
    const sum = budget + entry;
    if (sum < 0 || sum > XATTR_BUDGET) return `xattrs of more than ${XATTR_BUDGET} bytes on one inode`;
    if (slot === NONE) {
      slot = this.slots++;
      if (slot === this.slotKey.length) {
        this.slotKey = grown(this.slotKey);
        this.slotNext = grown(this.slotNext);
      }
      this.slotKey[slot] = id;
      this.slotValue.push(value);
      this.slotNext[slot] = this.xHead[n] as number;
      this.xHead[n] = slot;
    } else {
      this.slotValue[slot] = value;
    }
    this.xCount[n] = count + 1;
    this.xBudget[n] = sum;
    return null;
  }

  /**
   * libcomposefs writes from a clone of the tree whose budget starts at zero whatever xattrs the
   * node holds (lcfs_node_clone does not copy it); replacing one of them then subtracts from
   * zero. The writer does the same, for the same refusals.
   */
  resetXattrBudgets(): void {
    this.xBudget.fill(0);
  }

  /**
   * Adds n to folder dir under `name` (a name the caller has checked) unless dir has a child of
   * that name; @returns whether it was added.
   */
  addNewChild(dir: number, name: string, n: number): boolean {
    let li = this.kidList[dir] as number;
    if (li === NONE) {
      li = this.lists.length;
      this.lists.push([]);
      this.listSorted.push(true);
      this.kidList[dir] = li;
    }
    const list = this.lists[li] as number[];
    if (this.listSorted[li] === true) {
      // In order (a dumpfile's usual case), a name past the last one is new: one comparison.
      if (list.length === 0 || name > (this.name[list[list.length - 1] as number] as string)) {
        this.name[n] = name;
        this.parent[n] = dir;
        list.push(n);
        return true;
      }
      if (this.child(dir, name) !== NONE) return false;
      this.listSorted[li] = false;
      this.byName.set(dir, new Map(list.map((k) => [this.name[k] as string, k])));
    }
    const index = this.byName.get(dir) as Map<string, number>;
    if (index.has(name)) return false;
    index.set(name, n);
    this.name[n] = name;
    this.parent[n] = dir;
    list.push(n);
    return true;
  }

  /** The child of folder dir named `name`, or NONE. */
  child(dir: number, name: string): number {
    const li = this.kidList[dir] as number;
    if (li === NONE) return NONE;
    const list = this.lists[li] as number[];
    if (this.listSorted[li] !== true) return (this.byName.get(dir) as Map<string, number>).get(name) ?? NONE;
    // In order: the common question (is a name past the last one new?) costs one comparison.
    if (list.length === 0 || name > (this.name[list[list.length - 1] as number] as string)) return NONE;
    const lo = this.lowerBound(list, name);
    return lo < list.length && this.name[list[lo] as number] === name ? (list[lo] as number) : NONE;
  }

  /** Where `name` would go among `rows` (sorted by name): the first row whose name is not below it. */
  lowerBound(rows: readonly number[], name: string): number {
    let lo = 0;
    let hi = rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.name[rows[mid] as number] as string) < name) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** A folder's children in the order added (the tree's own list: do not change it). */
  children(dir: number): readonly number[] {
    const li = this.kidList[dir] as number;
    return li === NONE ? NO_CHILDREN : (this.lists[li] as number[]);
  }

  /** Whether a folder's children came in name order. */
  childrenSorted(dir: number): boolean {
    const li = this.kidList[dir] as number;
    return li === NONE || this.listSorted[li] === true;
  }

  /**
   * Points each of these hard-link rows straight at the row its chain ends at, walking each row
   * once (a chain of N links followed from each of its names cost N^2 steps). @returns the
   * first of `rows` whose chain is a cycle or runs into one, or NONE; the rows before it are
   * resolved.
   */
  resolveLinkChains(rows: Iterable<number>): number {
    // 0: not seen; 1: on the walk now; 2: resolved (linkTo is the chain's end).
    const state = new Uint8Array(this.rows);
    const walk: number[] = [];
    for (const start of rows) {
      let at = start;
      while ((this.linkTo[at] as number) !== NONE && state[at] === 0) {
        state[at] = 1;
        walk.push(at);
        at = this.linkTo[at] as number;
      }
      if (state[at] === 1) return start;
      const end = state[at] === 2 ? (this.linkTo[at] as number) : at;
      for (const w of walk) {
        this.linkTo[w] = end;
        state[w] = 2;
      }
      walk.length = 0;
    }
    return NONE;
  }

  /** The row a hard-link name ends at; NONE on a cycle. */
  followLinks(n: number): number {
    let at = n;
    for (let steps = 0; (this.linkTo[at] as number) !== NONE; steps++) {
      at = this.linkTo[at] as number;
      if (at === n || steps > 1_000_000) return NONE;
    }
    return at;
  }
}

const NO_CHILDREN: readonly number[] = [];
