/**
 * A composefs dumpfile read into the tree the image writer takes, with mkcomposefs 1.0.8's rules
 * (tools/mkcomposefs.c, tree_from_dump): the same accepted inputs give the same tree, so that the
 * image is the same byte for byte. Where mkcomposefs silently reads garbage (an integer field
 * with trailing junk after a bad earlier one, a digest that is not hex), this refuses instead.
 * Every refusal names the line. Lines are read as they arrive: the input is never held whole.
 * @module
 */
import { dumpError, INLINE_CONTENT_MAX, NAME_MAX, PATH_MAX, S_IFBLK, S_IFCHR, S_IFLNK, S_IFMT, S_IFREG, validMode } from './node.ts';
import { CfsTree, NONE } from './tree.ts';
import { cString, detached, unescape } from './dump-fields.ts';
import { digestBytes, isDash, scanFields, secondsAt, sizeAt, u32At } from './dump-numbers.ts';

export interface DumpParseOptions {
  /** mkcomposefs's CFS_PARSE_STRICT: also refuse a missing final newline, a device number on a non-device, a symlink whose size is not its target's length or that has content. */
  strict?: boolean;
  signal?: AbortSignal;
}

/** The longest line read: far past any valid one (see parseDumpfile). */
export const MAX_LINE = 1 << 20;

interface Pending {
  node: number;
  target: string | null;
}

class DumpTree {
  readonly tree = new CfsTree();
  hasRoot = false;
  readonly links: Pending[] = [];

  private readonly strict: boolean;

  constructor(strict: boolean) {
    this.strict = strict;
  }

  /** Folders by their path as written (`/a/b`), so that a sorted dumpfile never walks from the root. */
  private readonly dirs = new Map<string, number>();
  /** The folder of the last line and its path: a sorted dumpfile names it again and again. */
  private lastDir = NONE;
  private lastDirPath = '';

  /** The text the backslash below was looked for in, and where the next one lies from `bsFrom` on (-1: none). */
  private bsText = '';
  private bsFrom = 0;
  private bsAt = -1;

  /** Whether text[s, e) holds a backslash; asked in increasing `s` over a text, it scans each byte once. */
  private hasEscape(text: string, s: number, e: number): boolean {
    if (text !== this.bsText || s < this.bsFrom || (this.bsAt >= 0 && this.bsAt < s)) {
      this.bsText = text;
      this.bsFrom = s;
      this.bsAt = text.indexOf('\\', s);
    }
    return this.bsAt >= 0 && this.bsAt < e;
  }

  /** A byte-string field, unescaped and cut at a NUL as mkcomposefs reads it; a plain one is cut from the text as it is. */
  private bytesField(text: string, s: number, e: number, nul: boolean): string {
    return nul || this.hasEscape(text, s, e) ? cString(unescape(text.slice(s, e))) : detached(text.slice(s, e));
  }

  /**
   * The folder of a plain path text[s, e) (no escape, no NUL, a slash before its last name):
   * the last line's folder when the path continues it, else the folder map's; NONE when neither
   * knows it (the caller walks from the root).
   */
  private knownParent(text: string, s: number, slash: number): number {
    if (this.lastDir !== NONE && slash - s === this.lastDirPath.length && text.startsWith(this.lastDirPath, s)) return this.lastDir;
    const prefix = text.slice(s, slash);
    const dir = this.dirs.get(prefix);
    if (dir === undefined) return NONE;
    this.lastDir = dir;
    this.lastDirPath = prefix;
    return dir;
  }

  /** The folder a path's last name goes into, walking from the root (lookup_parent_path). */
  private walkToParent(path: string): number | string {
    const t = this.tree;
    let node = 0;
    const parts = path.split('/');
    let i = 0;
    while (i < parts.length - 1) {
      const part = parts[i++] as string;
      if (part === '') continue;
      if (!t.isDir(node)) return `parent must be a directory for ${path}`;
      const child = t.child(node, part);
      if (child === NONE) return `parent directory missing for ${path}`;
      node = child;
    }
    if (!t.isDir(node)) return `parent must be a directory for ${path}`;
    return node;
  }

  lookup(path: string): number {
    const t = this.tree;
    let node = 0;
    for (const part of path.split('/')) {
      if (part === '') continue;
      const child = t.child(node, part);
      if (child === NONE) return NONE;
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
    const pathS = f[0] as number;
    const pathE = f[1] as number;
    if (pathE === pathS) throw new SyntaxError('empty path');
    const modeS = f[4] as number;
    const modeE = f[5] as number;
    const hardlink = modeE > modeS && text.charCodeAt(modeS) === 64;
    const mode = u32At(text, modeS + (hardlink ? 1 : 0), modeE, 'mode', 8);
    if (!validMode(mode)) throw new SyntaxError(`invalid mode ${mode.toString(8)}`);
    const t = this.tree;
    const node = t.add(mode, lineNo);
    this.placeField(text, pathS, pathE, node, nul);
    const payloadS = f[16] as number;
    const payloadE = f[17] as number;
    const payloadDash = isDash(text, payloadS, payloadE);
    if (hardlink) {
      if (t.isDir(node)) throw new SyntaxError('directories cannot be hard-linked');
      this.links.push({ node, target: payloadDash ? null : this.bytesField(text, payloadS, payloadE, nul) });
      return;
    }
    const size = sizeAt(text, f[2] as number, f[3] as number);
    t.nlink[node] = u32At(text, f[6] as number, f[7] as number, 'nlink');
    t.uid[node] = u32At(text, f[8] as number, f[9] as number, 'uid');
    t.gid[node] = u32At(text, f[10] as number, f[11] as number, 'gid');
    const rdev = u32At(text, f[12] as number, f[13] as number, 'rdev');
    const timeS = f[14] as number;
    const timeE = f[15] as number;
    let dot = -1;
    for (let i = timeS; i < timeE; i++) {
      if (text.charCodeAt(i) === 46) {
        dot = i;
        break;
      }
    }
    // "SEC.NSEC"; without a dot the nanoseconds are an empty field, refused as mkcomposefs does.
    const nsec = dot < 0 ? u32At(text, timeE, timeE, 'mtime nanoseconds') : u32At(text, dot + 1, timeE, 'mtime nanoseconds');
    const contentS = f[18] as number;
    const contentE = f[19] as number;
    const digestS = f[20] as number;
    const digestE = f[21] as number;
    const payload = payloadDash ? null : this.bytesField(text, payloadS, payloadE, nul);
    const content = isDash(text, contentS, contentE) ? null : unescape(text.slice(contentS, contentE));
    if (content !== null && content.length !== size) throw new SyntaxError(`content of ${content.length} bytes, but size ${size}`);
    const digest = isDash(text, digestS, digestE) ? null : unescape(text.slice(digestS, digestE));
    const type = mode & S_IFMT;
    if (type !== S_IFLNK) t.size[node] = size;
    if (type === S_IFCHR || type === S_IFBLK) t.rdev[node] = rdev;
    else if (this.strict && rdev !== 0) throw new SyntaxError('non-zero device number on a non-device');
    secondsAt(text, timeS, dot < 0 ? timeE : dot, t, node);
    t.mtimeNsec[node] = nsec;
    if (type === S_IFLNK) {
      if (payload === null || payload === '') throw new SyntaxError('a symlink needs a target');
      if (payload.length >= PATH_MAX) throw new SyntaxError(`symlink target of ${payload.length} bytes (under ${PATH_MAX})`);
      t.payload[node] = payload;
      t.size[node] = payload.length;
      if (this.strict && size !== payload.length) throw new SyntaxError(`symlink size ${size}, but its target has ${payload.length} bytes`);
      if (this.strict && content !== null && content.length > 0) throw new SyntaxError('a symlink cannot have content');
    } else {
      if (payload !== null && payload.length >= PATH_MAX) throw new SyntaxError(`payload of ${payload.length} bytes (under ${PATH_MAX})`);
      t.payload[node] = payload;
      if (content !== null) {
        if (content.length > INLINE_CONTENT_MAX) throw new SyntaxError(`inline content of ${content.length} bytes (at most ${INLINE_CONTENT_MAX})`);
        t.content[node] = content.length > 0 ? detached(content) : null;
        t.size[node] = content.length;
      }
    }
    if (digest !== null) {
      // mkcomposefs reads any string here and uses it only for a file kept outside the image;
      // there, what is not 64 hex digits would give an image of undefined bytes, so it is refused.
      if (/^[0-9a-fA-F]{64}$/.test(digest)) t.digest[node] = digestBytes(digest);
      else if (type === S_IFREG && (t.size[node] as number) > 0 && t.content[node] === null) throw new SyntaxError(`digest ${JSON.stringify(digest)} is not 64 hex digits`);
    }
    if (b - restAt > 0xffff) throw new SyntaxError('too many xattrs');
    for (let at = restAt; at < b; ) {
      let end = text.indexOf(' ', at);
      if (end < 0 || end > b) end = b;
      const eq = text.indexOf('=', at);
      if (eq < 0 || eq >= end) throw new SyntaxError(`missing = in xattr ${JSON.stringify(text.slice(at, end))}`);
      const why = t.setXattr(node, detached(cString(unescape(text.slice(at, eq)))), detached(unescape(text.slice(eq + 1, end))));
      if (why !== null) throw new SyntaxError(why);
      at = end < b ? end + 1 : b;
    }
  }

  /** Places the node of path field text[s, e): in place when the path is plain and its folder known, else by place(). */
  private placeField(text: string, s: number, e: number, node: number, nul: boolean): void {
    if (this.hasRoot && !nul && !this.hasEscape(text, s, e)) {
      const slash = text.lastIndexOf('/', e - 1);
      // A name after the slash, and a folder before it that is not the root (`/x` is rare enough).
      if (slash > s && slash < e - 1) {
        const parent = this.knownParent(text, s, slash);
        if (parent !== NONE) {
          this.attach(parent, detached(text.slice(slash + 1, e)), node, text, s, e);
          return;
        }
      }
    }
    this.place(this.bytesField(text, s, e, nul), node);
  }

  /** Adds `node` to `parent` under `name`, with mkcomposefs's checks; text[s, e) is its path as written. */
  private attach(parent: number, name: string, node: number, text: string, s: number, e: number): void {
    const t = this.tree;
    if (name === '.' || name === '..') throw new SyntaxError(`invalid . or .. in path ${text.slice(s, e)}`);
    if (name === '') throw new SyntaxError(`empty name in path ${text.slice(s, e)}`);
    if (name.length > NAME_MAX) throw new SyntaxError(`a name of ${name.length} bytes (at most ${NAME_MAX})`);
    if (!t.addNewChild(parent, name, node)) throw new SyntaxError(`path ${text.slice(s, e)} already exists`);
    // Only a folder's own path as written is remembered; the walk handles any other spelling.
    if (t.isDir(node)) {
      const path = text.slice(s, e);
      if (!path.includes('//') && path.startsWith('/') && !path.endsWith('/')) this.dirs.set(path, node);
    }
  }

  private place(path: string, node: number): void {
    const t = this.tree;
    if (path === '') throw new SyntaxError('empty path');
    if (path === '/') {
      if (!t.isDir(node)) throw new SyntaxError('the root must be a directory');
      if (this.hasRoot) throw new SyntaxError('a second root');
      this.hasRoot = true;
      this.dirs.set('', node);
      return;
    }
    if (!this.hasRoot) throw new SyntaxError('the root (/) must come first');
    // A folder's path as written (escaped names too) is in the map: no walk from the root.
    const slash = path.lastIndexOf('/');
    const known = slash >= 0 && slash < path.length - 1 ? this.dirs.get(path.slice(0, slash)) : undefined;
    const parent = known ?? this.walkToParent(path);
    if (typeof parent === 'string') throw new SyntaxError(parent);
    this.attach(parent, path.slice(slash + 1), node, path, 0, path.length);
  }

  /** tree_resolve_hardlinks: last line first, as mkcomposefs's list does. */
  resolveLinks(): void {
    const t = this.tree;
    for (let i = this.links.length - 1; i >= 0; i--) {
      const { node, target } = this.links[i] as Pending;
      if (target === null) throw dumpError(t.line[node] as number, 'a hard link with no target path');
      const to = this.lookup(target);
      if (to === NONE) throw dumpError(t.line[node] as number, `no target at ${target} for hard link`);
      if (to === node) throw dumpError(t.line[node] as number, `self-referential hard link ${target}`);
      t.linkTo[node] = to;
    }
    // Each chain is walked once, and every link then names its chain's end directly: the writer
    // asks for that end once per name.
    const cycle = t.resolveLinkChains(this.links.map((l) => l.node));
    for (const { node } of this.links) {
      if (node === cycle) throw dumpError(t.line[node] as number, 'a cycle of hard links');
      if (t.isDir(t.linkTo[node] as number)) throw dumpError(t.line[node] as number, 'a hard link to a directory');
    }
  }
}

/**
 * Reads a dumpfile into a tree.
 * @throws VeritreeError DUMPFILE_INVALID naming the line
 */
export async function parseDumpfile(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: DumpParseOptions = {}): Promise<CfsTree> {
  const tree = new DumpTree(opts.strict ?? false);
  let carryBytes: Uint8Array | null = null;
  let lineNo = 0;
  try {
    for await (const chunk of input) {
      opts.signal?.throwIfAborted();
      // The unfinished line goes before the new bytes as bytes: one flat string is decoded,
      // where a string sum would be copied again inside V8 on the first search.
      const bytes: Uint8Array = carryBytes === null ? chunk : Buffer.concat([carryBytes, chunk]);
      const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1');
      const nul = text.includes('\0');
      let at = 0;
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', at)) {
        tree.addLine(text, at, nl, ++lineNo, nul);
        at = nl + 1;
      }
      // A copy: the caller may fill the same buffer with its next chunk.
      carryBytes = at < bytes.length ? new Uint8Array(bytes.subarray(at)) : null;
      // No valid line comes near this (a path, a 5000-byte content and 64 KiB of xattrs, all
      // escaped four times over): a longer one is refused before it is held whole.
      if (carryBytes !== null && carryBytes.length > MAX_LINE) throw dumpError(lineNo + 1, `a line longer than ${MAX_LINE} bytes`);
    }
    if (carryBytes !== null) {
      if (opts.strict) throw dumpError(lineNo + 1, 'missing trailing newline');
      const last = Buffer.from(carryBytes.buffer, carryBytes.byteOffset, carryBytes.length).toString('latin1');
      tree.addLine(last, 0, last.length, ++lineNo, last.includes('\0'));
    }
  } catch (e) {
    // addLine says what is wrong with the line; the line number is put here, once.
    if (e instanceof SyntaxError) throw dumpError(lineNo, e.message);
    throw e;
  }
  if (!tree.hasRoot) throw dumpError(0, 'no files in the dumpfile');
  tree.resolveLinks();
  return tree.tree;
}
