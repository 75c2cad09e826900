/**
 * The tree a composefs image of stored layers is written from: the layers merged by composefs-rs's
 * rules, copied column by column into the writer's tree with the rules the dumpfile reader
 * applies to the lines `veritree dump` prints (src/erofs/dump-parse.ts), so that the image is
 * what `mkcomposefs --from-file` makes of `veritree dump`, without the text: no line, path or
 * record is made per entry, and names are the merged tree's own strings, not copies. A function
 * of its own so that the merged tree is garbage once the writer's tree is made: the image is
 * written from the one tree, not with both held.
 * @module
 */
import { INLINE_CONTENT_MAX, NAME_MAX, PATH_MAX, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, MTIME_SPLIT } from '../erofs/node.ts';
import { CfsTree, NONE as CFS_NONE } from '../erofs/tree.ts';
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { quoted } from '../oci/names.ts';
import { objectPayload } from '../store/layout.ts';
import type { Repository } from '../store/repository.ts';
import type { HashAlgorithm } from '../verity/constants.ts';
import { linkCounts, makedev } from './dump.ts';
import { xattrsRefusal } from './dumpfile.ts';
import { layersTree } from './image-tree.ts';
import { NONE, type TreeNodes } from './tree-nodes.ts';

export interface ComposefsTreeOptions {
  onWarning?: (path: string, message: string) => void;
  signal?: AbortSignal;
}

/** st_mode's type bits by the merged tree's type code (tree-nodes.ts TYPES; a hard link is a file). */
const TYPE_BITS = [0, S_IFREG, S_IFDIR, S_IFLNK, S_IFREG, S_IFCHR, S_IFBLK, S_IFIFO];
const FILE = 1;
const SYMLINK = 3;
const CHAR = 5;
const BLOCK = 6;

const U64 = (1n << 64n) - 1n;

/** A number as the reader takes its decimal text into a 32-bit field (libcomposefs truncates). */
function u32(v: number): number {
  if (v >= 0 && v <= Number.MAX_SAFE_INTEGER) return v % 0x100000000;
  // Past 2^53 the printed decimal is what the reader reads: saturated at 2^64 - 1, then cut.
  let big = BigInt(String(v));
  if (big > U64) big = U64;
  return Number(big & 0xffffffffn);
}

/** Thrown for a node no composefs image can hold, naming it by its path in the image. */
function refusedAt(t: TreeNodes, n: number, why: string): VeritreeError {
  return new VeritreeError(ERROR_CODES.DUMPFILE_INVALID, `${quoted(`/${t.pathOf(n)}`)}: ${why}`);
}

const digestScratch = Buffer.alloc(64);

/** An object id (hex) as its bytes, a latin1 string. */
function digestBytes(hex: string): string {
  const n = hex.length / 2;
  digestScratch.write(hex, 0, 'hex');
  return digestScratch.toString('latin1', 0, n);
}

/** An object id of the repository's hash: 64 hex digits for SHA-256, 128 for SHA-512. */
const OBJECT_HEX: Record<HashAlgorithm, RegExp> = { sha256: /^[0-9a-fA-F]{64}$/, sha512: /^[0-9a-fA-F]{128}$/ };

/**
 * The writer's tree of a merged tree: what parseDumpfile gives for dumpLines(tree), field for
 * field (link counts, the reader's truncations, its refusals, hard links resolved to their
 * chain's end), rows added in the dump's order. `release`: the merged tree is emptied as it is
 * copied (folder maps, object ids, symlink targets, xattrs), for a caller that drops it after.
 * `alg`: the repository's fs-verity hash, which its object ids are digests of.
 * @throws VeritreeError DUMPFILE_INVALID naming the path, for what the reader would refuse
 */
export function cfsTreeOfNodes(t: TreeNodes, signal?: AbortSignal, release = false, alg: HashAlgorithm = 'sha256'): CfsTree {
  const nlink = linkCounts(t, signal);
  const c = new CfsTree();
  // Every live row, and the root's 256 whiteouts the writer adds.
  c.reserve(t.size + 257);
  /** The writer's row of each merged row (NONE until added). */
  const rowOf = new Int32Array(t.count).fill(CFS_NONE);
  const links: number[] = [];
  for (const n of t.walkRows(signal, release)) {
    const code = t.type[n] as number;
    const mode = (TYPE_BITS[code] as number) | (t.mode[n] as number);
    const row = c.add(mode, 0);
    rowOf[n] = row;
    if (n !== 0) {
      const name = t.name[n] as string;
      if (name.length > NAME_MAX) throw refusedAt(t, n, `a name of ${name.length} bytes (at most ${NAME_MAX})`);
      if (name.includes('\0')) throw refusedAt(t, n, 'a name with a NUL byte');
      c.addNewChild(rowOf[t.parent[n] as number] as number, name, row);
    }
    if ((t.hardlinkTo[n] as number) !== NONE) {
      if (c.isDir(row)) throw refusedAt(t, n, 'directories cannot be hard-linked');
      // Resolved once every row is in (a link may come before the name it links to).
      links.push(n);
      continue;
    }
    fill(t, c, n, row, code, nlink[n] as number, OBJECT_HEX[alg]);
    if (release) {
      t.object.delete(n);
      t.symlinkTarget.delete(n);
      t.xattrs.delete(n);
    }
  }
  for (const [i, n] of links.entries()) {
    if ((i & 4095) === 0) signal?.throwIfAborted();
    const to = rowOf[t.hardlinkTo[n] as number] as number;
    if (to === CFS_NONE) throw refusedAt(t, n, 'no target for hard link');
    c.linkTo[rowOf[n] as number] = to;
  }
  const rows = Int32Array.from(links, (n) => rowOf[n] as number);
  const cycle = c.resolveLinkChains(rows);
  for (let i = 0; i < rows.length; i++) {
    if ((i & 4095) === 0) signal?.throwIfAborted();
    const r = rows[i] as number;
    if (r === cycle) throw refusedAt(t, links[i] as number, 'a cycle of hard links');
    if (c.isDir(c.linkTo[r] as number)) throw refusedAt(t, links[i] as number, 'a hard link to a directory');
  }
  return c;
}

/** The fields of a row that is not a hard link, as the reader sets them from its dump line. */
function fill(t: TreeNodes, c: CfsTree, n: number, row: number, code: number, nlink: number, objectHex: RegExp): void {
  const object = t.object.get(n) ?? null;
  // The reader cuts a target at a NUL (a C string).
  const whole = t.symlinkTarget.get(n) ?? '';
  const cut = whole.indexOf('\0');
  const target = cut < 0 ? whole : whole.slice(0, cut);
  c.nlink[row] = nlink;
  c.uid[row] = u32(t.uid[n] as number);
  c.gid[row] = u32(t.gid[n] as number);
  if (code === CHAR || code === BLOCK) {
    const dev = t.dev.get(n);
    c.rdev[row] = dev ? u32(makedev(dev[0], dev[1])) : 0;
  }
  const sec = t.mtimeSec[n] as number;
  const hi = Math.floor(sec / MTIME_SPLIT);
  c.mtimeHi[row] = hi;
  c.mtimeLo[row] = sec - hi * MTIME_SPLIT;
  c.mtimeNsec[row] = u32(t.mtimeNsec[n] as number);
  if (code === SYMLINK) {
    if (target === '') throw refusedAt(t, n, 'a symlink needs a target');
    if (target.length >= PATH_MAX) throw refusedAt(t, n, `symlink target of ${target.length} bytes (under ${PATH_MAX})`);
    c.payload[row] = target;
    c.size[row] = target.length;
  } else {
    // dump writes a size and content for a plain file only; the rest have size 0.
    const size = code === FILE ? (t.bytes[n] as number) : 0;
    c.size[row] = size;
    if (object !== null) c.payload[row] = objectPayload(object);
    if (code === FILE && object === null && size > 0) {
      const inline = t.inline(n);
      const length = inline === null ? 0 : inline.length;
      if (length !== size) throw refusedAt(t, n, `content of ${length} bytes, but size ${size}`);
      if (length > INLINE_CONTENT_MAX) throw refusedAt(t, n, `inline content of ${length} bytes (at most ${INLINE_CONTENT_MAX})`);
      c.content[row] = Buffer.from((inline as Uint8Array).buffer, (inline as Uint8Array).byteOffset, length).toString('latin1');
    }
  }
  if (object !== null) {
    if (objectHex.test(object)) c.digest[row] = digestBytes(object);
    else if (code === FILE && (c.size[row] as number) > 0 && c.content[row] === null) throw refusedAt(t, n, `digest ${JSON.stringify(object)} is not ${objectHex === OBJECT_HEX.sha512 ? 128 : 64} hex digits`);
  }
  const xattrs = t.xattrs.get(n);
  if (xattrs === undefined) return;
  const why = xattrsRefusal(xattrs);
  if (why !== null) throw refusedAt(t, n, why);
  for (const key of [...xattrs.keys()].sort()) {
    // The reader cuts a key at a NUL (a C string); a value is kept whole.
    const nul = key.indexOf('\0');
    const value = xattrs.get(key) as Buffer;
    const refusal = c.setXattr(row, nul < 0 ? key : key.slice(0, nul), value.toString('latin1'));
    if (refusal !== null) throw refusedAt(t, n, refusal);
  }
}

/** The writer's tree of these layers' merged tree (diff_ids, bottom first). */
export async function composefsTreeOf(repo: Repository, diffIds: string[], opts: ComposefsTreeOptions = {}): Promise<CfsTree> {
  const tree = await layersTree(repo, diffIds, 'composefs', opts.signal);
  for (const w of tree.warnings) opts.onWarning?.(w.path, w.message);
  return cfsTreeOfNodes(tree.nodes, opts.signal, true, repo.alg);
}
