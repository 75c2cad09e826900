/**
 * The merged tree's nodes, held as columns: a node is a row number, its numbers are typed arrays,
 * its name is one short string (no full path is kept), its folder a row, and contents, symlink
 * targets, object ids and xattrs are held only where a node has them. A million entries held as
 * a Map of paths to objects of sixteen fields took a gigabyte; as columns they take about 60 bytes
 * each plus their names.
 *
 * Rows are never reused: a removed row is marked dead (type 0), so a row number names one node
 * for the life of the tree, and "is this still the node it was" is "is the row alive".
 *
 * The Map-like surface (get, has, size, keys, entries) gives each node as a TreeNode made on
 * demand, for readers that walk the tree by path; `walk` gives rows in sorted order without one.
 * @module
 */
import type { EntryType } from './layer-entries.ts';

export const NONE = -1;

/** The fields a row is made from (a layer entry's, or another row's). */
export interface RowFields {
  type: EntryType;
  /** Permission bits with setuid/setgid/sticky (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  mtimeSec: number;
  mtimeNsec: number;
  size: number;
  object: string | null;
  inline: Uint8Array | null;
  /** Symlink target as stored. */
  symlinkTarget: string;
  devmajor: number;
  devminor: number;
  xattrs: Map<string, Buffer>;
}

/** A node as the readers take it: a copy of one row, its path spelled out. */
export interface TreeNode extends RowFields {
  path: string;
  /** For a hardlink: the path (in the tree) of the file it shares content with. */
  hardlinkTo: string | null;
}

/** EntryType by its code in the `type` column; 0 is a removed row. */
export const TYPES: readonly (EntryType | null)[] = [null, 'file', 'dir', 'symlink', 'hardlink', 'char', 'block', 'fifo'];
export const TYPE_CODE: Readonly<Record<EntryType, number>> = { file: 1, dir: 2, symlink: 3, hardlink: 4, char: 5, block: 6, fifo: 7 };
export const DIR = 2;

const NO_XATTRS: Map<string, Buffer> = new Map();
const EMPTY = new Uint8Array(0);

function grown<T extends Int32Array | Uint32Array | Uint16Array | Uint8Array | Float64Array>(a: T, need: number): T {
  let n = a.length;
  while (n < need) n *= 2;
  const b = new (a.constructor as new (n: number) => T)(n);
  b.set(a);
  return b;
}

/**
 * A name as a string of its own: a slice of 13 or more characters is a view of the string it was
 * cut from (V8's sliced strings), and would keep a whole path (up to 44 KiB deep) alive per node.
 */
export function ownString(s: string): string {
  return s.length < 13 ? s : (' ' + s).slice(1);
}

const START = 1024;

export class TreeNodes {
  private rows = 0;
  private alive = 0;
  type = new Uint8Array(START);
  mode = new Uint16Array(START);
  uid = new Uint32Array(START);
  gid = new Uint32Array(START);
  mtimeSec = new Float64Array(START);
  mtimeNsec = new Uint32Array(START);
  /** A file's size. */
  bytes = new Float64Array(START);
  parent = new Int32Array(START);
  /** For a hard link: the row of its first name (NONE otherwise, or once that name is gone). */
  hardlinkTo = new Int32Array(START);
  /** Inline content: `inlineLength` bytes at `inlineAt` in the arena (-1: none). */
  private inlineAt = new Float64Array(START);
  private inlineLength = new Uint32Array(START);
  private arena = new Uint8Array(1 << 16);
  private arenaUsed = 0;
  readonly name: string[] = [];
  /** Sparse columns: most nodes have none of these. */
  readonly object = new Map<number, string>();
  readonly symlinkTarget = new Map<number, string>();
  readonly dev = new Map<number, [number, number]>();
  readonly xattrs = new Map<number, Map<string, Buffer>>();
  /** A folder's children by name. */
  readonly children = new Map<number, Map<string, number>>();

  constructor() {
    this.add(NONE, '', { type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeSec: 0, mtimeNsec: 0, size: 0, object: null, inline: null, symlinkTarget: '', devmajor: 0, devminor: 0, xattrs: NO_XATTRS });
  }

  /** Rows made, dead ones included (row numbers are below this). */
  get count(): number {
    return this.rows;
  }

  /** Nodes in the tree. */
  get size(): number {
    return this.alive;
  }

  isAlive(n: number): boolean {
    return n >= 0 && n < this.rows && this.type[n] !== 0;
  }

  isDir(n: number): boolean {
    return this.type[n] === DIR;
  }

  typeOf(n: number): EntryType {
    return TYPES[this.type[n] as number] as EntryType;
  }

  private ensure(need: number): void {
    if (need <= this.type.length) return;
    this.type = grown(this.type, need);
    this.mode = grown(this.mode, need);
    this.uid = grown(this.uid, need);
    this.gid = grown(this.gid, need);
    this.mtimeSec = grown(this.mtimeSec, need);
    this.mtimeNsec = grown(this.mtimeNsec, need);
    this.bytes = grown(this.bytes, need);
    this.parent = grown(this.parent, need);
    this.hardlinkTo = grown(this.hardlinkTo, need);
    this.inlineAt = grown(this.inlineAt, need);
    this.inlineLength = grown(this.inlineLength, need);
  }

  /** A new row under folder `parent` (NONE for the root) named `name`, replacing nothing: the caller removed any node of that name. */
  add(parent: number, name: string, f: RowFields): number {
    const n = this.rows;
    this.ensure(n + 1);
    this.rows = n + 1;
    this.alive++;
    this.name.push(ownString(name));
    this.parent[n] = parent;
    this.hardlinkTo[n] = NONE;
    this.set(n, f);
    if (parent !== NONE) {
      let kids = this.children.get(parent);
      if (!kids) this.children.set(parent, (kids = new Map()));
      kids.set(this.name[n] as string, n);
    }
    return n;
  }

  /** Sets a row's fields (its name, folder, link and children stay). */
  set(n: number, f: RowFields): void {
    this.type[n] = TYPE_CODE[f.type];
    this.mode[n] = f.mode;
    this.uid[n] = f.uid;
    this.gid[n] = f.gid;
    this.setTime(n, f.mtimeSec, f.mtimeNsec);
    this.bytes[n] = f.size;
    this.setOptional(this.object, n, f.object);
    this.setOptional(this.symlinkTarget, n, f.symlinkTarget === '' ? null : f.symlinkTarget);
    this.setOptional(this.dev, n, f.devmajor === 0 && f.devminor === 0 ? null : [f.devmajor, f.devminor]);
    this.setXattrs(n, f.xattrs);
    this.inlineAt[n] = -1;
    if (f.inline !== null) this.setInline(n, f.inline);
  }

  setTime(n: number, sec: number, nsec: number): void {
    this.mtimeSec[n] = sec;
    this.mtimeNsec[n] = nsec;
  }

  setXattrs(n: number, x: Map<string, Buffer>): void {
    this.setOptional(this.xattrs, n, x.size === 0 ? null : x);
  }

  private setOptional<V>(col: Map<number, V>, n: number, v: V | null): void {
    if (v === null) col.delete(n);
    else col.set(n, v);
  }

  private setInline(n: number, bytes: Uint8Array): void {
    if (this.arenaUsed + bytes.length > this.arena.length) {
      // Bytes already handed out as views keep the old arena's buffer; new ones go to the copy.
      this.arena = grown(this.arena, this.arenaUsed + bytes.length);
    }
    this.arena.set(bytes, this.arenaUsed);
    this.inlineAt[n] = this.arenaUsed;
    this.inlineLength[n] = bytes.length;
    this.arenaUsed += bytes.length;
  }

  /** A row's inline content (a view: do not change it), or null. */
  inline(n: number): Uint8Array | null {
    const at = this.inlineAt[n] as number;
    if (at < 0) return null;
    const length = this.inlineLength[n] as number;
    return length === 0 ? EMPTY : this.arena.subarray(at, at + length);
  }

  /** The child of folder `dir` named `name`, or NONE. */
  child(dir: number, name: string): number {
    return this.children.get(dir)?.get(name) ?? NONE;
  }

  /** Removes row n and everything beneath it, with an explicit stack (a folder can be 10,000 deep). */
  remove(n: number): void {
    if (!this.isAlive(n)) return;
    const p = this.parent[n] as number;
    if (p !== NONE) this.children.get(p)?.delete(this.name[n] as string);
    const stack = [n];
    for (let r = stack.pop(); r !== undefined; r = stack.pop()) {
      const kids = this.children.get(r);
      if (kids) for (const c of kids.values()) stack.push(c);
      this.children.delete(r);
      this.type[r] = 0;
      this.object.delete(r);
      this.symlinkTarget.delete(r);
      this.dev.delete(r);
      this.xattrs.delete(r);
      this.alive--;
    }
  }

  /** Removes everything in folder n. */
  empty(n: number): void {
    const kids = this.children.get(n);
    if (kids) for (const c of [...kids.values()]) this.remove(c);
  }

  /** The path of row n ('' for the root), spelled from its folders. */
  pathOf(n: number): string {
    const parts: string[] = [];
    for (let r = n; r > 0; r = this.parent[r] as number) parts.push(this.name[r] as string);
    return parts.reverse().join('/');
  }

  /** The row of a path ('' is the root; no `.`, `..` or empty names), or NONE. */
  find(path: string): number {
    if (path === '') return 0;
    let n = 0;
    let at = 0;
    for (;;) {
      const slash = path.indexOf('/', at);
      const c = this.child(n, slash < 0 ? path.slice(at) : path.slice(at, slash));
      if (c === NONE || slash < 0) return c;
      n = c;
      at = slash + 1;
    }
  }

  /** Row n as a TreeNode, at `path` (its path, when the caller has it spelled already). */
  view(n: number, path: string = this.pathOf(n)): TreeNode {
    const link = this.hardlinkTo[n] as number;
    return this.row(n, path, link === NONE ? null : this.pathOf(link));
  }

  /** The fields of row n, to copy into another row (a hard link takes its target's). */
  fieldsOf(n: number): RowFields {
    return this.row(n, '', null);
  }

  /**
   * Row n as one literal of fixed shape. Readers take one per entry: built by spreading the
   * fields into another object, each was several times the size and went to old space.
   */
  private row(n: number, path: string, hardlinkTo: string | null): TreeNode {
    const dev = this.dev.get(n);
    return {
      type: this.typeOf(n),
      mode: this.mode[n] as number,
      uid: this.uid[n] as number,
      gid: this.gid[n] as number,
      mtimeSec: this.mtimeSec[n] as number,
      mtimeNsec: this.mtimeNsec[n] as number,
      size: this.bytes[n] as number,
      object: this.object.get(n) ?? null,
      inline: this.inline(n),
      symlinkTarget: this.symlinkTarget.get(n) ?? '',
      devmajor: dev?.[0] ?? 0,
      devminor: dev?.[1] ?? 0,
      xattrs: this.xattrs.get(n) ?? NO_XATTRS,
      path,
      hardlinkTo,
    };
  }

  /**
   * Every live row with its path, parents before children, each folder's entries in byte order
   * of their names: an explicit stack (a folder can be 10,000 deep), each folder's names sorted
   * once. Paths are built from their folder's (no string per component is kept besides names).
   */
  *walk(signal?: AbortSignal): Generator<[number, string]> {
    const rows: number[] = [0];
    const paths: string[] = [''];
    let steps = 0;
    for (let n = rows.pop(); n !== undefined; n = rows.pop()) {
      if ((++steps & 4095) === 0) signal?.throwIfAborted();
      const path = paths.pop() as string;
      yield [n, path];
      const kids = this.children.get(n);
      if (!kids || kids.size === 0) continue;
      const names = [...kids.keys()].sort();
      const prefix = path === '' ? '' : `${path}/`;
      for (let i = names.length - 1; i >= 0; i--) {
        const name = names[i] as string;
        rows.push(kids.get(name) as number);
        paths.push(prefix + name);
      }
    }
  }

  /**
   * walk's rows without their paths (no string is made per node). `release`: each folder's
   * name map is dropped once its children are taken (the tree can no longer be asked by name:
   * for a caller that copies the tree and drops it, so that both are not held whole).
   */
  *walkRows(signal?: AbortSignal, release = false): Generator<number> {
    const rows: number[] = [0];
    let steps = 0;
    for (let n = rows.pop(); n !== undefined; n = rows.pop()) {
      if ((++steps & 4095) === 0) signal?.throwIfAborted();
      yield n;
      const kids = this.children.get(n);
      if (!kids || kids.size === 0) continue;
      const names = [...kids.keys()].sort();
      for (let i = names.length - 1; i >= 0; i--) rows.push(kids.get(names[i] as string) as number);
      if (release) this.children.delete(n);
    }
  }

  // The Map-like surface, for readers that ask by path.

  /** The recent sorted order handed out by sortedPaths, to answer get() in that order without a walk. */
  private order: { paths: string[]; rows: Int32Array; at: number } | null = null;

  /** sortedPaths' order, remembered so that get() on those paths (forward or back) costs no lookup. */
  sortedPaths(): string[] {
    const paths: string[] = [];
    const rows = new Int32Array(this.alive);
    let i = 0;
    for (const [n, p] of this.walk()) {
      paths.push(p);
      rows[i++] = n;
    }
    // The caller gets its own array (it may change it); the strings are shared.
    this.order = { paths: paths.slice(), rows, at: 0 };
    return paths;
  }

  private rowOf(path: string): number {
    const o = this.order;
    if (o !== null) {
      // Readers walk the order forward, then back: the next or previous path is the usual one.
      for (const k of [o.at + 1, o.at, o.at - 1, 0]) {
        if (o.paths[k] === path && this.isAlive(o.rows[k] as number)) {
          o.at = k;
          return o.rows[k] as number;
        }
      }
    }
    return this.find(path);
  }

  get(path: string): TreeNode | undefined {
    const n = this.rowOf(path);
    return n === NONE ? undefined : this.view(n, path);
  }

  has(path: string): boolean {
    return this.rowOf(path) !== NONE;
  }

  *keys(): Generator<string> {
    for (const [, p] of this.walk()) yield p;
  }

  *values(): Generator<TreeNode> {
    for (const [n, p] of this.walk()) yield this.view(n, p);
  }

  *entries(): Generator<[string, TreeNode]> {
    for (const [n, p] of this.walk()) yield [p, this.view(n, p)];
  }

  [Symbol.iterator](): Generator<[string, TreeNode]> {
    return this.entries();
  }
}
