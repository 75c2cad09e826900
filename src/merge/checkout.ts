/**
 * Materialises a merged tree in a folder. Regular files are hard links to the store's objects
 * when the folder is on the store's filesystem and the object already has the file's mode (and,
 * as root, its owner): objects are immutable, and a hard link shares the inode, so checkout never
 * changes an object's metadata. Other files are reflinked or copied (`--copy` forces copies).
 * Nothing is written outside the folder: the merge refused every path that climbs out and every
 * entry beneath a symlink, the folder must be new or empty, and each path is created by this
 * function from the tree, never by following what is on disk.
 * @module
 */
import { spawnSync } from 'node:child_process';
import { constants as fsc } from 'node:fs';
import { chmod, chown, copyFile, lchown, link, lutimes, mkdir, readdir, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ERROR_CODES, VeritreeError, errnoCode, storeIoError } from '../errors.ts';
import type { Repository } from '../store/repository.ts';
import { sortedPaths, type MergedTree, type TreeNode } from './merge.ts';

export interface CheckoutOptions {
  /** Copy every file instead of hard-linking objects. */
  copy?: boolean;
  onWarning?: (path: string, message: string) => void;
}

export interface CheckoutReport {
  files: number;
  hardlinkedObjects: number;
  copied: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  specials: number;
  skipped: number;
  xattrsSkipped: number;
}

function commandExists(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

export async function checkout(repo: Repository, tree: MergedTree, dir: string, opts: CheckoutOptions = {}): Promise<CheckoutReport> {
  const existing = await readdir(dir).catch((e: unknown) => (errnoCode(e) === 'ENOENT' ? null : Promise.reject(e)));
  if (existing && existing.length > 0) throw new VeritreeError(ERROR_CODES.USAGE, `${dir} is not empty: checkout writes into a new or empty folder`);
  await mkdir(dir, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  const sameFs = !opts.copy && (await stat(dir)).dev === (await stat(repo.objectsDir)).dev;
  const canSetXattr = commandExists('setfattr');
  const report: CheckoutReport = { files: 0, hardlinkedObjects: 0, copied: 0, dirs: 0, symlinks: 0, hardlinks: 0, specials: 0, skipped: 0, xattrsSkipped: 0 };
  const warn = (p: string, m: string): void => opts.onWarning?.(p, m);
  const objectModes = new Map<string, { mode: number; uid: number; gid: number }>();
  // Paths that are hard links to objects: their inode is the object's, never to be changed.
  const linked = new Set<string>();
  const paths = sortedPaths(tree.nodes);

  for (const p of paths) {
    const n = tree.nodes.get(p) as TreeNode;
    const dest = p === '' ? dir : join(dir, p);
    try {
      switch (n.type) {
        case 'dir':
          if (p !== '') await mkdir(dest);
          report.dirs++;
          break;
        case 'symlink':
          await symlink(n.symlinkTarget, dest);
          report.symlinks++;
          break;
        case 'file':
          if (n.hardlinkTo !== null && tree.nodes.has(n.hardlinkTo)) {
            await link(join(dir, n.hardlinkTo), dest);
            report.hardlinks++;
            continue; // shares the first name's inode and metadata
          }
          if (await placeFile(repo, n, dest, { sameFs, asRoot, objectModes, report })) linked.add(p);
          report.files++;
          break;
        case 'char':
        case 'block':
        case 'fifo':
          if (!asRoot && n.type !== 'fifo') {
            warn(p, `skipped: a ${n.type} device needs root`);
            report.skipped++;
            continue;
          }
          makeSpecial(n, dest);
          report.specials++;
          break;
        case 'hardlink':
          continue;
      }
      if (linked.has(p)) continue;
      if (n.xattrs.size > 0) {
        if (canSetXattr) setXattrs(n, dest, warn);
        else {
          report.xattrsSkipped++;
          warn(p, 'extended attributes not applied (install setfattr, Debian package attr)');
        }
      }
      if (n.type !== 'dir') await applyMetadata(n, dest, asRoot);
    } catch (e) {
      throw storeIoError(e, dest, `checking out /${p}`);
    }
  }
  // Directories last, deepest first: their modes may forbid writing, their mtimes change as we write.
  for (const p of paths.filter((x) => tree.nodes.get(x)?.type === 'dir').reverse()) {
    await applyMetadata(tree.nodes.get(p) as TreeNode, p === '' ? dir : join(dir, p), asRoot);
  }
  return report;
}

interface PlaceCtx {
  sameFs: boolean;
  asRoot: boolean;
  objectModes: Map<string, { mode: number; uid: number; gid: number }>;
  report: CheckoutReport;
}

/** Writes, links or copies one file; true when it is a hard link to the object. */
async function placeFile(repo: Repository, n: TreeNode, dest: string, ctx: PlaceCtx): Promise<boolean> {
  if (!n.object) {
    await writeFile(dest, n.inline ?? new Uint8Array(0), { mode: 0o600 });
    return false;
  }
  const src = repo.objectPath(n.object);
  if (ctx.sameFs) {
    let m = ctx.objectModes.get(n.object);
    if (!m) {
      const st = await stat(src);
      m = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
      ctx.objectModes.set(n.object, m);
    }
    const ownerOk = !ctx.asRoot || (m.uid === n.uid && m.gid === n.gid);
    if (m.mode === n.mode && ownerOk && n.xattrs.size === 0) {
      await link(src, dest);
      ctx.report.hardlinkedObjects++;
      return true;
    }
  }
  await copyFile(src, dest, fsc.COPYFILE_FICLONE);
  ctx.report.copied++;
  return false;
}

async function applyMetadata(n: TreeNode, dest: string, asRoot: boolean): Promise<void> {
  if (asRoot) await (n.type === 'symlink' ? lchown : chown)(dest, n.uid, n.gid);
  if (n.type !== 'symlink') await chmod(dest, n.mode);
  const t = n.mtimeSec + n.mtimeNsec / 1e9;
  await (n.type === 'symlink' ? lutimes : utimes)(dest, t, t);
}

function makeSpecial(n: TreeNode, dest: string): void {
  const args = n.type === 'fifo' ? ['-m', '600', dest, 'p'] : ['-m', '600', dest, n.type === 'char' ? 'c' : 'b', String(n.devmajor), String(n.devminor)];
  const r = spawnSync('mknod', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mknod ${dest}: ${r.stderr.trim()}`);
}

function setXattrs(n: TreeNode, dest: string, warn: (p: string, m: string) => void): void {
  for (const [k, v] of n.xattrs) {
    const r = spawnSync('setfattr', ['-h', '-n', k, '-v', `0x${v.toString('hex')}`, dest], { encoding: 'utf8' });
    if (r.status !== 0) warn(n.path, `xattr ${k} not applied: ${r.stderr.trim()}`);
  }
}
