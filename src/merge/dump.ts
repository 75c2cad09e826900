/** The merged tree of an image as a composefs dumpfile, for `mkcomposefs --from-file`. */
import { nameBytes } from '../oci/names.ts';
import { objectPayload } from '../store/layout.ts';
import { formatDumpLine, type DumpRecord } from './dumpfile.ts';
import type { MergedTree, TreeNode } from './merge.ts';
import { NONE, type TreeNodes } from './tree-nodes.ts';

const S_IFMT: Record<TreeNode['type'], number> = {
  file: 0o100000,
  hardlink: 0o100000,
  dir: 0o040000,
  symlink: 0o120000,
  char: 0o020000,
  block: 0o060000,
  fifo: 0o010000,
};

/** Linux's makedev(3). */
export function makedev(major: number, minor: number): number {
  return Number(
    (BigInt(minor & 0xff) | (BigInt(major & 0xfff) << 8n) | (BigInt(minor & ~0xff) << 12n) | (BigInt(major & ~0xfff) << 32n)) & 0xffffffffffffffffn
  );
}

/**
 * The tree's dumpfile lines, in sorted order, made as they are asked for: the tree is walked once
 * to count links, then once to write; no line, path or node object is held past its turn.
 */
export function* dumpLines(tree: MergedTree, signal?: AbortSignal): Generator<string> {
  const t = tree.nodes;
  const nlink = linkCounts(t, signal);
  for (const [n, p] of t.walk(signal)) {
    const type = t.typeOf(n);
    const first = t.hardlinkTo[n] as number;
    const isLink = first !== NONE;
    const object = t.object.get(n) ?? null;
    const target = t.symlinkTarget.get(n) ?? '';
    const size = t.bytes[n] as number;
    const dev = t.dev.get(n);
    const xattrs = t.xattrs.get(n);
    const rec: DumpRecord = {
      path: nameBytes(`/${p}`),
      size: type === 'file' ? size : type === 'symlink' ? target.length : 0,
      mode: S_IFMT[type] | (t.mode[n] as number),
      hardlink: isLink,
      nlink: nlink[isLink ? first : n] as number,
      uid: t.uid[n] as number,
      gid: t.gid[n] as number,
      rdev: dev && (type === 'char' || type === 'block') ? makedev(dev[0], dev[1]) : 0,
      mtimeSec: t.mtimeSec[n] as number,
      mtimeNsec: t.mtimeNsec[n] as number,
      payload: isLink ? nameBytes(`/${t.pathOf(first)}`) : type === 'symlink' ? nameBytes(target) : object ? Buffer.from(objectPayload(object)) : null,
      content: !isLink && type === 'file' && !object && size > 0 ? Buffer.from(t.inline(n) ?? new Uint8Array(0)) : null,
      digest: object,
      xattrs: xattrs ? [...xattrs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => [nameBytes(k), v]) : [],
    };
    yield formatDumpLine(rec);
  }
}

/** Link counts as a dump states them: a folder 2 plus its subfolders, a file one per name. */
export function linkCounts(t: TreeNodes, signal?: AbortSignal): Uint32Array {
  const nlink = new Uint32Array(t.count).fill(1);
  for (let n = 0; n < t.count; n++) {
    if ((n & 4095) === 0) signal?.throwIfAborted();
    if (!t.isAlive(n)) continue;
    if (t.isDir(n)) {
      nlink[n] = (nlink[n] as number) + 1;
      const p = t.parent[n] as number;
      if (p !== NONE) nlink[p] = (nlink[p] as number) + 1;
    }
    const first = t.hardlinkTo[n] as number;
    if (first !== NONE) nlink[first] = (nlink[first] as number) + 1;
  }
  return nlink;
}
