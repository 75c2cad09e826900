/**
 * Materialises a merged tree in a folder.
 *
 * A checked-out file shares no inode with the store unless the caller asks (`hardlink`, the
 * CLI's --hardlink): a hard link shares the object's metadata (a chmod in one checkout changes
 * the object and that file in every other checkout; fs-verity protects contents, not metadata),
 * and, without fs-verity, its contents too. By default a file is reflinked (FICLONE) where the
 * filesystem can, or copied with copy_file_range, in the worker pool, where the copy is hashed
 * and must match the object's name (checkout-files.ts).
 *
 * The walk is in sorted order and finishes each folder (owner, xattrs, mode, times) when it
 * leaves it; hard links are made on the spot (link-placer.ts); folder descriptors are bounded at
 * any depth (dir-stack.ts). Every entry is created relative to an open descriptor of its parent folder, never by a path
 * that a concurrent process could redirect (dir-handle.ts); objects are opened without following
 * symlinks and must be regular files. The merge already refused every path that climbs out and
 * every entry beneath a symlink, and the folder must be new or empty.
 * @module
 */
import { closeSync, constants as fsc, mkdirSync, openSync, readdirSync, statSync, type Stats } from 'node:fs';
import { availableParallelism } from 'node:os';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { spawnSync } from 'node:child_process';
import { ERROR_CODES, VeritreeError, errnoCode, storeIoError, throwIfAborted } from '../errors.ts';
import { defaultIoLimit } from '../pipeline/io-limit.ts';
import { poolSize, VerityPool } from '../pipeline/pool.ts';
import type { LockWaitOptions } from '../store/lock.ts';
import type { Repository } from '../store/repository.ts';
import { applySymlinkMeta, canSetXattrs, exactTimes, handleAt, linkAt, mkdirAt, mknodAt, symlinkAt } from './dir-handle.ts';
import { nameBytes, shown } from '../oci/names.ts';
import { sortedPaths, type MergedTree, type TreeNode } from './merge.ts';
import { DirStack } from './dir-stack.ts';
import { LinkPlacer, openDirPath } from './link-placer.ts';
import { applyXattrs, finishEntry, flushCopies, metaOf, placeFile, type CheckoutReport, type Ctx } from './checkout-files.ts';

export type { CheckoutReport } from './checkout-files.ts';

/** With the lock settings `checkoutImage` takes the repository's shared lock with. */
export interface CheckoutOptions extends LockWaitOptions {
  /** Copy every file (no reflink attempt is skipped; no hard link is made). */
  copy?: boolean;
  /**
   * Hard-link files to their objects. Fast, but each file shares the object's inode: its
   * metadata always (a chmod changes the object and every other checkout's file), and where the
   * object has no fs-verity its contents too.
   */
  hardlink?: boolean;
  /** Use this pool (not closed afterwards) for the copies. */
  pool?: VerityPool;
  jobs?: number;
  onWarning?: (path: string, message: string) => void;
  /** Called before each entry is written: `done` of `total` entries of the merged tree. */
  onProgress?: (p: { done: number; total: number }) => void;
  /** Checked before every entry: an abort stops the checkout (DIR keeps what was written). */
  signal?: AbortSignal | undefined;
}

function commandExists(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** Entries between two turns of the event loop, less one (a mask). */
const TURN_EVERY = 1023;

function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

function nameOf(p: string): Buffer {
  return nameBytes(p.slice(p.lastIndexOf('/') + 1));
}

export async function checkout(repo: Repository, tree: MergedTree, dir: string, opts: CheckoutOptions = {}): Promise<CheckoutReport> {
  let existing: string[] | null = null;
  try {
    existing = readdirSync(dir);
  } catch (e) {
    if (errnoCode(e) !== 'ENOENT') throw storeIoError(e, dir, 'reading the checkout folder');
  }
  if (existing && existing.length > 0) throw new VeritreeError(ERROR_CODES.USAGE, `${dir} is not empty: checkout writes into a new or empty folder`);
  mkdirSync(dir, { recursive: true });
  const rootFd = openSync(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  const pool = opts.pool ?? new VerityPool(poolSize({ jobs: opts.jobs, ioLimit: await defaultIoLimit(dir) }, availableParallelism()));
  const report: CheckoutReport = { files: 0, hardlinkedObjects: 0, copied: 0, dirs: 0, symlinks: 0, hardlinks: 0, specials: 0, skipped: 0, xattrsSkipped: 0 };
  const ctx: Ctx = {
    repo,
    asRoot: process.getuid?.() === 0,
    sameFs: statSync(dir).dev === statSync(repo.objectsDir).dev,
    hardlink: opts.hardlink === true && opts.copy !== true,
    copyOnly: opts.copy === true,
    canSetXattr: canSetXattrs(commandExists),
    pool,
    copies: new Set(),
    maxCopies: pool.size * 2 + 1,
    batch: [],
    batchBytes: 0,
    noVerity: false,
    firstError: null,
    report,
    warn: (p, m) => opts.onWarning?.(p, m),
  };
  const paths = sortedPaths(tree.nodes);
  // Folders a user other than root could not open again once their mode is set: finished last.
  const deferred: string[] = [];
  const onLeave = (p: string, fd: number): void => {
    const n = tree.nodes.get(p) as TreeNode;
    if (!ctx.asRoot && (n.mode & 0o500) !== 0o500) deferred.push(p);
    else finishDir(ctx, n, fd, dir);
  };
  const dirs = new DirStack(rootFd, onLeave, opts.signal);
  const links = new LinkPlacer(tree, paths, opts.signal);
  let inexact = !exactTimes();
  try {
    let done = 0;
    for (const p of paths) {
      // Files written from the stream never leave this loop's microtasks: a turn of the event
      // loop now and then lets V8 finish its collections (without one, garbage piled up to twice
      // the live heap) and lets a signal or progress timer run.
      if ((done & TURN_EVERY) === TURN_EVERY) await nextTurn();
      throwIfAborted(opts.signal);
      if (ctx.firstError) throw ctx.firstError;
      opts.onProgress?.({ done: done++, total: paths.length });
      const n = tree.nodes.get(p) as TreeNode;
      if (inexact && (n.mtimeNsec % 1000 !== 0 || n.mtimeSec < 0)) {
        ctx.warn(p, 'times are set to the microsecond (the millisecond before 1970): the native module store_sys did not build');
        inexact = false;
      }
      if (p === '') {
        report.dirs++;
        continue;
      }
      // Leaving folders here finishes them: everything in a folder is made before the walk leaves it.
      const dirFd = dirs.get(parentOf(p));
      try {
        if (n.type === 'file') await placeLinkable(ctx, n, dirFd, dirs, rootFd, links);
        else await placeEntry(ctx, n, dirFd);
      } catch (e) {
        throw storeIoError(e, `${dir}/${shown(p)}`, `checking out /${shown(p)}`);
      }
    }
    dirs.leaveAll();
    for (const p of deferred) {
      throwIfAborted(opts.signal);
      const fd = openDirPath(rootFd, p, opts.signal);
      try {
        finishDir(ctx, tree.nodes.get(p) as TreeNode, fd, dir);
      } finally {
        closeSync(fd);
      }
    }
    await flushCopies(ctx);
    await Promise.all(ctx.copies);
    if (ctx.firstError) throw ctx.firstError;
    finishDir(ctx, tree.nodes.get('') as TreeNode, rootFd, dir);
    return report;
  } finally {
    for (const b of ctx.batch) closeSync(b.item.dest);
    ctx.batch = [];
    await Promise.allSettled(ctx.copies);
    dirs.close();
    closeSync(rootFd);
    if (!opts.pool) await pool.close();
  }
}

function finishDir(ctx: Ctx, n: TreeNode, fd: number, dir: string): void {
  try {
    finishEntry(ctx, n, fd, false);
  } catch (e) {
    throw storeIoError(e, `${dir}/${shown(n.path)}`, `checking out /${shown(n.path)}`);
  }
}

/**
 * A regular file, which may be one name of several for one inode. The first name of an inode in
 * the walk's order gets the content (the target's: a link may sort before it); each later name
 * is a hard link to that first one, made now, in its own folder, so that the folder is complete
 * when the walk leaves it. The first name's folder is the current one or an ancestor (held by
 * the stack) or is opened afresh from the root, one component at a time without following a
 * symlink, and closed at once: no descriptor that another request may close or reuse.
 */
async function placeLinkable(ctx: Ctx, n: TreeNode, dirFd: number, dirs: DirStack, rootFd: number, links: LinkPlacer): Promise<void> {
  const name = nameOf(n.path);
  const first = links.firstNameOf(n);
  if (first === null) {
    await placeFile(ctx, links.contentOf(n), dirFd, name);
    return;
  }
  const fromDir = parentOf(first);
  const held = dirs.ancestor(fromDir);
  const fromFd = held ?? openDirPath(rootFd, fromDir, undefined);
  try {
    linkAt(fromFd, nameOf(first), dirFd, name);
  } finally {
    if (held === null) closeSync(fromFd);
  }
  ctx.report.hardlinks++;
}

async function placeEntry(ctx: Ctx, n: TreeNode, dirFd: number): Promise<void> {
  const name = nameOf(n.path);
  switch (n.type) {
    case 'dir':
      closeSync(mkdirAt(dirFd, name));
      ctx.report.dirs++;
      return;
    case 'symlink': {
      symlinkAt(dirFd, name, nameBytes(n.symlinkTarget));
      const meta = metaOf(n);
      applySymlinkMeta(dirFd, name, meta, ctx.asRoot);
      applyXattrs(ctx, n, dirFd, name);
      ctx.report.symlinks++;
      return;
    }
    case 'file':
      await placeFile(ctx, n, dirFd, name);
      return;
    case 'char':
    case 'block':
    case 'fifo': {
      if (!ctx.asRoot && n.type !== 'fifo') {
        ctx.warn(n.path, `skipped: a ${n.type} device needs root`);
        ctx.report.skipped++;
        return;
      }
      mknodAt(dirFd, name, n.type, n.devmajor, n.devminor);
      const want = n.type === 'fifo' ? (s: Stats) => s.isFIFO() : n.type === 'char' ? (s: Stats) => s.isCharacterDevice() : (s: Stats) => s.isBlockDevice();
      const h = handleAt(dirFd, name, want);
      try {
        finishEntry(ctx, n, h, true);
      } finally {
        closeSync(h);
      }
      ctx.report.specials++;
      return;
    }
    case 'hardlink':
      return;
  }
}
