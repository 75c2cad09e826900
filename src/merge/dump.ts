/** The merged tree of an image as a composefs dumpfile, for `mkcomposefs --from-file`. */
import { nameBytes } from '../oci/names.ts';
import { objectPayload } from '../store/layout.ts';
import { formatDumpLine, type DumpRecord } from './dumpfile.ts';
import { sortedPaths, type MergedTree, type TreeNode } from './merge.ts';

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

export function* dumpLines(tree: MergedTree): Generator<string> {
  const paths = sortedPaths(tree.nodes);
  // Link counts: a directory has 2 plus its subdirectories; a file one per name.
  const nlink = new Map<string, number>();
  for (const p of paths) {
    const n = tree.nodes.get(p) as TreeNode;
    if (n.type === 'dir') nlink.set(p, (nlink.get(p) ?? 0) + 2);
    if (p !== '') {
      const parent = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '';
      if (n.type === 'dir') nlink.set(parent, (nlink.get(parent) ?? 0) + 1);
    }
    if (n.hardlinkTo !== null) nlink.set(n.hardlinkTo, (nlink.get(n.hardlinkTo) ?? 1) + 1);
  }
  for (const p of paths) {
    const n = tree.nodes.get(p) as TreeNode;
    const isLink = n.hardlinkTo !== null;
    const links = nlink.get(isLink ? (n.hardlinkTo as string) : p) ?? 1;
    const rec: DumpRecord = {
      path: nameBytes(`/${p}`),
      size: n.type === 'file' ? n.size : n.type === 'symlink' ? n.symlinkTarget.length : 0,
      mode: S_IFMT[n.type] | n.mode,
      hardlink: isLink,
      nlink: links,
      uid: n.uid,
      gid: n.gid,
      rdev: n.type === 'char' || n.type === 'block' ? makedev(n.devmajor, n.devminor) : 0,
      mtimeSec: n.mtimeSec,
      mtimeNsec: n.mtimeNsec,
      payload: isLink ? nameBytes(`/${n.hardlinkTo}`) : n.type === 'symlink' ? nameBytes(n.symlinkTarget) : n.object ? Buffer.from(objectPayload(n.object)) : null,
      content: !isLink && n.type === 'file' && !n.object && n.size > 0 ? Buffer.from(n.inline ?? new Uint8Array(0)) : null,
      digest: n.object,
      xattrs: [...n.xattrs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => [nameBytes(k), v]),
    };
    yield formatDumpLine(rec);
  }
}
