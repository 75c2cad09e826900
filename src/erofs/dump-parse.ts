/**
 * A composefs dumpfile read into the tree the image writer takes, with mkcomposefs 1.0.8's rules
 * (tools/mkcomposefs.c, tree_from_dump): the same accepted inputs give the same tree, so that the
 * image is the same byte for byte. Where mkcomposefs silently reads garbage (an integer field
 * with trailing junk after a bad earlier one, a digest that is not hex), this refuses instead.
 * Every refusal names the line. Lines are read as they arrive: the input is never held whole.
 * @module
 */
import { CfsNode, dumpError, INLINE_CONTENT_MAX, NAME_MAX, PATH_MAX, S_IFBLK, S_IFCHR, S_IFLNK, S_IFREG, MTIME_SPLIT, followLinks, validMode } from './node.ts';

export interface DumpParseOptions {
  /** mkcomposefs's CFS_PARSE_STRICT: also refuse a missing final newline, a device number on a non-device, a symlink whose size is not its target's length or that has content. */
  strict?: boolean;
  signal?: AbortSignal;
}

const HEX: Record<string, number> = {};
for (let i = 0; i < 16; i++) {
  HEX[i.toString(16)] = i;
  HEX[i.toString(16).toUpperCase()] = i;
}
const ESCAPES: Record<string, string> = { '\\': '\\', n: '\n', r: '\r', t: '\t' };

/** unescape_string: `\\ \n \r \t \xHH`; anything else after a backslash is refused. */
function unescape(s: string): string {
  let i = s.indexOf('\\');
  if (i < 0) return s;
  let out = s.slice(0, i);
  while (i < s.length) {
    const c = s[i] as string;
    if (c !== '\\') {
      const next = s.indexOf('\\', i);
      const end = next < 0 ? s.length : next;
      out += s.slice(i, end);
      i = end;
      continue;
    }
    const e = s[i + 1];
    if (e === undefined) throw new SyntaxError('no character after escape');
    if (e === 'x') {
      const hi = HEX[s[i + 2] ?? ''];
      const lo = HEX[s[i + 3] ?? ''];
      if (i + 3 >= s.length) throw new SyntaxError('no hex characters after hex escape');
      if (hi === undefined || lo === undefined) throw new SyntaxError('invalid hex characters after hex escape');
      out += String.fromCharCode((hi << 4) | lo);
      i += 4;
    } else {
      const r = ESCAPES[e];
      if (r === undefined) throw new SyntaxError(`unsupported escape \\${e}`);
      out += r;
      i += 2;
    }
  }
  return out;
}

/** The longest line read: far past any valid one (see parseDumpfile). */
export const MAX_LINE = 1 << 20;

const digestScratch = Buffer.alloc(32);

/** 64 hex digits as their 32 bytes (a latin1 string), through one reused buffer. */
function digestBytes(hex: string): string {
  digestScratch.write(hex, 0, 'hex');
  return digestScratch.toString('latin1', 0, 32);
}

/** A C string made from bytes: it ends at the first NUL. */
function cString(s: string): string {
  const nul = s.indexOf('\0');
  return nul < 0 ? s : s.slice(0, nul);
}

const U64 = (1n << 64n) - 1n;
const DEC = /^[ \t\n\v\f\r]*([+-]?)([0-9]+)$/;
const OCT = /^[ \t\n\v\f\r]*([+-]?)([0-7]+)$/;

/** strtoull's reading of a whole field: sign wraps, overflow saturates. */
function parseU64(field: string, what: string, octal = false): bigint {
  const m = (octal ? OCT : DEC).exec(field);
  if (!m) throw new SyntaxError(`${what} is not an integer: ${JSON.stringify(field)}`);
  let v = BigInt(octal ? `0o${m[2]}` : (m[2] as string));
  if (v > U64) v = U64;
  else if (m[1] === '-') v = (U64 + 1n - v) & U64;
  return v;
}

/*
 * Number fields are read where they lie in the line: plain digits (nearly every field) without a
 * string or a BigInt; anything else (signs, spaces, past 2^53) through parseU64.
 */

/** A field of plain digits (base 10 or 8) read in place, or -1 for anything else. */
function digitsAt(text: string, s: number, e: number, base: 8 | 10): number {
  if (e <= s || e - s > (base === 8 ? 17 : 15)) return -1;
  let v = 0;
  for (let i = s; i < e; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d >= base) return -1;
    v = v * base + d;
  }
  return v;
}

/** text[s, e) as an unsigned 32-bit field (mode, nlink, owner, rdev, nanoseconds), as libcomposefs truncates them. */
function u32At(text: string, s: number, e: number, what: string, base: 8 | 10 = 10): number {
  const v = digitsAt(text, s, e, base);
  return v >= 0 ? v % 0x100000000 : Number(parseU64(text.slice(s, e), what, base === 8) & 0xffffffffn);
}

/** A size: exact to 2^53, Infinity beyond (see CfsNode.size). */
function sizeAt(text: string, s: number, e: number): number {
  const v = digitsAt(text, s, e, 10);
  if (v >= 0) return v;
  const big = parseU64(text.slice(s, e), 'size');
  return big > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(big);
}

/** Seconds since the epoch as time_t (signed 64 bits), split into parts small enough to stay unboxed (see CfsNode.mtimeHi). */
function secondsAt(text: string, s: number, e: number, node: CfsNode): void {
  const n = digitsAt(text, s, e, 10);
  if (n >= 0) {
    node.mtimeHi = Math.floor(n / MTIME_SPLIT);
    node.mtimeLo = n % MTIME_SPLIT;
    return;
  }
  const v = BigInt.asIntN(64, parseU64(text.slice(s, e), 'mtime'));
  node.mtimeHi = Number(v >> 24n);
  node.mtimeLo = Number(v & 0xffffffn);
}

/**
 * The eleven fixed fields of the line text[a, b), split as mkcomposefs's split_at does (a missing
 * field is empty), as [start, end) pairs in `bounds`; @returns where the xattrs begin. Offsets,
 * not strings: most fields are numbers, read in place.
 */
function scanFields(text: string, a: number, b: number, bounds: Int32Array): number {
  let at = a;
  for (let i = 0; i < 11; i++) {
    let sp = at < b ? text.indexOf(' ', at) : -1;
    if (sp < 0 || sp > b) sp = b;
    bounds[2 * i] = at;
    bounds[2 * i + 1] = sp;
    at = sp < b ? sp + 1 : b;
  }
  return at;
}

interface Pending {
  node: CfsNode;
  target: string | null;
}

class DumpTree {
  root: CfsNode | null = null;
  readonly links: Pending[] = [];

  private readonly strict: boolean;

  constructor(strict: boolean) {
    this.strict = strict;
  }

  /** Folders by their path as written (`/a/b`), so that a sorted dumpfile never walks from the root. */
  private readonly dirs = new Map<string, CfsNode>();

  private parentOf(path: string): { parent: CfsNode; name: string } | string {
    const slash = path.lastIndexOf('/');
    if (slash >= 0 && slash < path.length - 1) {
      const dir = this.dirs.get(path.slice(0, slash));
      if (dir !== undefined) return { parent: dir, name: path.slice(slash + 1) };
    }
    return this.walkToParent(path);
  }

  /** The folder a path's last name goes into, walking from the root (lookup_parent_path). */
  private walkToParent(path: string): { parent: CfsNode; name: string } | string {
    let node = this.root as CfsNode;
    const parts = path.split('/');
    let i = 0;
    while (i < parts.length - 1) {
      const part = parts[i++] as string;
      if (part === '') continue;
      if (!node.isDir()) return `parent must be a directory for ${path}`;
      const child = node.child(part);
      if (child === undefined) return `parent directory missing for ${path}`;
      node = child;
    }
    if (!node.isDir()) return `parent must be a directory for ${path}`;
    return { parent: node, name: parts[parts.length - 1] as string };
  }

  lookup(path: string): CfsNode | null {
    let node = this.root as CfsNode;
    for (const part of path.split('/')) {
      if (part === '') continue;
      const child = node.child(part);
      if (child === undefined) return null;
      node = child;
    }
    return node;
  }

  private readonly bounds = new Int32Array(22);

  /** The line text[a, b); `nul`: whether the text holds a NUL byte anywhere (mostly not: no scan per line). */
  addLine(text: string, a: number, b: number, lineNo: number, nul: boolean): void {
    if (nul) {
      const at = text.indexOf('\0', a);
      if (at >= 0 && at < b) throw new SyntaxError(`embedded NUL character at position ${at - a}`);
    }
    const f = this.bounds;
    const restAt = scanFields(text, a, b, f);
    const s = (i: number): number => f[2 * i] as number;
    const e = (i: number): number => f[2 * i + 1] as number;
    const field = (i: number): string => text.slice(s(i), e(i));
    const isDash = (i: number): boolean => e(i) - s(i) === 1 && text.charCodeAt(s(i)) === 45;
    const path = cString(unescape(field(0)));
    if (path === '') throw new SyntaxError('empty path');
    const hardlink = e(2) > s(2) && text.charCodeAt(s(2)) === 64;
    const mode = u32At(text, s(2) + (hardlink ? 1 : 0), e(2), 'mode', 8);
    if (!validMode(mode)) throw new SyntaxError(`invalid mode ${mode.toString(8)}`);
    const node = new CfsNode();
    node.mode = mode;
    node.line = lineNo;
    this.place(path, node);
    if (hardlink) {
      if (node.isDir()) throw new SyntaxError('directories cannot be hard-linked');
      this.links.push({ node, target: isDash(8) ? null : cString(unescape(field(8))) });
      return;
    }
    const size = sizeAt(text, s(1), e(1));
    node.nlink = u32At(text, s(3), e(3), 'nlink');
    node.uid = u32At(text, s(4), e(4), 'uid');
    node.gid = u32At(text, s(5), e(5), 'gid');
    const rdev = u32At(text, s(6), e(6), 'rdev');
    let dot = -1;
    for (let i = s(7); i < e(7); i++) {
      if (text.charCodeAt(i) === 46) {
        dot = i;
        break;
      }
    }
    // "SEC.NSEC"; without a dot the nanoseconds are an empty field, refused as mkcomposefs does.
    const nsec = dot < 0 ? u32At(text, e(7), e(7), 'mtime nanoseconds') : u32At(text, dot + 1, e(7), 'mtime nanoseconds');
    const payloadF = field(8);
    const contentF = field(9);
    const digestF = field(10);
    const rest = restAt < b ? text.slice(restAt, b) : '';
    const payload = payloadF === '-' ? null : cString(unescape(payloadF));
    const content = contentF === '-' ? null : unescape(contentF);
    if (content !== null && content.length !== size) throw new SyntaxError(`content of ${content.length} bytes, but size ${size}`);
    const digest = digestF === '-' ? null : unescape(digestF);
    const type = node.type;
    if (type !== S_IFLNK) node.size = size;
    if (type === S_IFCHR || type === S_IFBLK) node.rdev = rdev;
    else if (this.strict && rdev !== 0) throw new SyntaxError('non-zero device number on a non-device');
    secondsAt(text, s(7), dot < 0 ? e(7) : dot, node);
    node.mtimeNsec = nsec;
    if (type === S_IFLNK) {
      if (payload === null || payload === '') throw new SyntaxError('a symlink needs a target');
      if (payload.length >= PATH_MAX) throw new SyntaxError(`symlink target of ${payload.length} bytes (under ${PATH_MAX})`);
      node.payload = payload;
      node.size = payload.length;
      if (this.strict && size !== node.size) throw new SyntaxError(`symlink size ${size}, but its target has ${payload.length} bytes`);
      if (this.strict && content !== null && content.length > 0) throw new SyntaxError('a symlink cannot have content');
    } else {
      if (payload !== null && payload.length >= PATH_MAX) throw new SyntaxError(`payload of ${payload.length} bytes (under ${PATH_MAX})`);
      node.payload = payload;
      if (content !== null) {
        if (content.length > INLINE_CONTENT_MAX) throw new SyntaxError(`inline content of ${content.length} bytes (at most ${INLINE_CONTENT_MAX})`);
        node.content = content.length > 0 ? content : null;
        node.size = content.length;
      }
    }
    if (digest !== null) {
      // mkcomposefs reads any string here and uses it only for a file kept outside the image;
      // there, what is not 64 hex digits would give an image of undefined bytes, so it is refused.
      if (/^[0-9a-fA-F]{64}$/.test(digest)) node.digest = digestBytes(digest);
      else if (type === S_IFREG && node.size > 0 && node.content === null) throw new SyntaxError(`digest ${JSON.stringify(digest)} is not 64 hex digits`);
    }
    if (rest.length > 0xffff) throw new SyntaxError('too many xattrs');
    for (let at = 0; at < rest.length; ) {
      const sp = rest.indexOf(' ', at);
      const end = sp < 0 ? rest.length : sp;
      const x = rest.slice(at, end);
      at = sp < 0 ? rest.length : sp + 1;
      const eq = x.indexOf('=');
      if (eq < 0) throw new SyntaxError(`missing = in xattr ${JSON.stringify(x)}`);
      const why = node.setXattr(cString(unescape(x.slice(0, eq))), unescape(x.slice(eq + 1)));
      if (why !== null) throw new SyntaxError(why);
    }
  }

  private place(path: string, node: CfsNode): void {
    if (path === '/') {
      if (!node.isDir()) throw new SyntaxError('the root must be a directory');
      if (this.root !== null) throw new SyntaxError('a second root');
      this.root = node;
      this.dirs.set('', node);
      return;
    }
    if (this.root === null) throw new SyntaxError('the root (/) must come first');
    const at = this.parentOf(path);
    if (typeof at === 'string') throw new SyntaxError(at);
    const { parent, name } = at;
    if (name === '.' || name === '..') throw new SyntaxError(`invalid . or .. in path ${path}`);
    if (name === '') throw new SyntaxError(`empty name in path ${path}`);
    if (name.length > NAME_MAX) throw new SyntaxError(`a name of ${name.length} bytes (at most ${NAME_MAX})`);
    if (parent.child(name) !== undefined) throw new SyntaxError(`path ${path} already exists`);
    parent.addChild(name, node);
    // Only a folder's own path as written is remembered; the walk handles any other spelling.
    if (node.isDir() && !path.includes('//') && path.startsWith('/') && !path.endsWith('/')) this.dirs.set(path, node);
  }

  /** tree_resolve_hardlinks: last line first, as mkcomposefs's list does. */
  resolveLinks(): void {
    for (let i = this.links.length - 1; i >= 0; i--) {
      const { node, target } = this.links[i] as Pending;
      if (target === null) throw dumpError(node.line, 'a hard link with no target path');
      const t = this.lookup(target);
      if (t === null) throw dumpError(node.line, `no target at ${target} for hard link`);
      if (t === node) throw dumpError(node.line, `self-referential hard link ${target}`);
      node.linkTo = t;
    }
    for (const { node } of this.links) {
      const end = followLinks(node);
      if (end === null) throw dumpError(node.line, 'a cycle of hard links');
      if (end.isDir()) throw dumpError(node.line, 'a hard link to a directory');
    }
  }
}

/**
 * Reads a dumpfile into a tree.
 * @throws VeritreeError DUMPFILE_INVALID naming the line
 */
export async function parseDumpfile(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: DumpParseOptions = {}): Promise<CfsNode> {
  const tree = new DumpTree(opts.strict ?? false);
  let carry = '';
  let lineNo = 0;
  const take = (text: string, a: number, b: number, nul: boolean): void => {
    lineNo++;
    try {
      tree.addLine(text, a, b, lineNo, nul);
    } catch (e) {
      if (e instanceof SyntaxError) throw dumpError(lineNo, e.message);
      throw e;
    }
  };
  for await (const chunk of input) {
    opts.signal?.throwIfAborted();
    const text = carry + Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length).toString('latin1');
    const nul = text.includes('\0');
    let at = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', at)) {
      take(text, at, nl, nul);
      at = nl + 1;
    }
    carry = text.slice(at);
    // No valid line comes near this (a path, a 5000-byte content and 64 KiB of xattrs, all
    // escaped four times over): a longer one is refused before it is held whole.
    if (carry.length > MAX_LINE) throw dumpError(lineNo + 1, `a line longer than ${MAX_LINE} bytes`);
  }
  if (carry.length > 0) {
    if (opts.strict) throw dumpError(lineNo + 1, 'missing trailing newline');
    take(carry, 0, carry.length, carry.includes('\0'));
  }
  if (tree.root === null) throw dumpError(0, 'no files in the dumpfile');
  tree.resolveLinks();
  return tree.root;
}
