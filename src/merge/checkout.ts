/**
 * Materialises a merged tree in a folder.
 *
 * A checked-out file never shares its inode with a writable object: an edit to a hard link would
 * change the object for every image that uses it, and fsck would find the store damaged. So a
 * file is a hard link to its object only where the object is immutable (fs-verity is enabled on
 * it) or where the caller asked for hard links outright (`hardlink`, the CLI's --hardlink); else
 * it is reflinked (FICLONE) where the filesystem can, or copied with copy_file_range, in the
 * worker pool.
 *
 * Every entry is created relative to an open descriptor of its parent folder, never by a path
 * that a concurrent process could redirect (dir-handle.ts); objects are opened without following
 * symlinks and must be regular files. The merge already refused every path that climbs out and
 * every entry beneath a symlink, and the folder must be new or empty.
 * @module
 */
import { closeSync, constants as fsc, fstatSync, mkdirSync, openSync, readdirSync, statSync, type Stats } from 'node:fs';
import { availableParallelism } from 'node:os';
import { spawnSync } from 'node:child_process';
import { ERROR_CODES, VeritreeError, errnoCode, storeIoError, throwIfAborted } from '../errors.ts';
import { defaultIoLimit } from '../pipeline/io-limit.ts';
import { poolSize, VerityPool } from '../pipeline/pool.ts';
import type { CopyItem, Failure } from '../pipeline/protocol.ts';
import type { Repository } from '../store/repository.ts';
import { measureVerity, openRegularSync, writeAllSync } from '../store/sys.ts';
import {
  applySymlinkMeta,
  chownVia,
  createFileAt,
  handleAt,
  linkAt,
  linkPathAt,
  mkdirAt,
  modeAndTimesVia,
  mknodAt,
  openDirAt,
  canSetXattrs,
  setXattrsVia,
  symlinkAt,
  type EntryMeta,
} from './dir-handle.ts';
import { nameBytes, shown } from '../oci/names.ts';
import { sortedPaths, type MergedTree, type TreeNode } from './merge.ts';

export interface CheckoutOptions {
  /** Copy every file (no reflink attempt is skipped; no hard link is made). */
  copy?: boolean;
  /**
   * Hard-link files to their objects even where the objects are writable (no fs-verity). Fast,
   * but writing to such a file changes the stored object for every image that shares it.
   */
  hardlink?: boolean;
  /** Use this pool (not closed afterwards) for the copies. */
  pool?: VerityPool;
  jobs?: number;
  onWarning?: (path: string, message: string) => void;
  /** Checked before every entry: an abort stops the checkout (DIR keeps what was written). */
  signal?: AbortSignal | undefined;
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

function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

function nameOf(p: string): Buffer {
  return nameBytes(p.slice(p.lastIndexOf('/') + 1));
}

function metaOf(n: TreeNode): EntryMeta {
  return { uid: n.uid, gid: n.gid, mode: n.mode, mtime: n.mtimeSec + n.mtimeNsec / 1e9 };
}

/** How many folder descriptors stay open along the current path; deeper ones are reopened. */
const MAX_OPEN_DIRS = 64;

/**
 * Descriptors of the folders along the path being written, so that siblings share their
 * parent's and a deep tree costs one open per folder. Folders are opened one component at a
 * time with O_NOFOLLOW from the root descriptor: a symlink anywhere fails the open.
 */
class DirStack {
  private readonly stack: { path: string; fd: number }[];

  constructor(rootFd: number) {
    this.stack = [{ path: '', fd: rootFd }];
  }

  /** The descriptor of folder `path` of the tree (opened on the way as needed). */
  get(path: string): number {
    const isWithin = (anc: string): boolean => anc === '' || path === anc || path.startsWith(anc + '/');
    while (this.stack.length > 1 && !isWithin((this.stack[this.stack.length - 1] as { path: string }).path)) this.closeTop();
    let top = this.stack.length - 1;
    // A deep ancestor whose descriptor was let go: reopen from the nearest open one.
    let from = top;
    while ((this.stack[from] as { fd: number }).fd < 0) from--;
    for (let i = from + 1; i <= top; i++) {
      const e = this.stack[i] as { path: string; fd: number };
      e.fd = openDirAt((this.stack[i - 1] as { fd: number }).fd, nameOf(e.path));
    }
    const base = (this.stack[top] as { path: string }).path;
    const rest = path.slice(base === '' ? 0 : base.length + 1);
    if (rest !== '') {
      let cur = base;
      for (const comp of rest.split('/')) {
        const fd = openDirAt((this.stack[top] as { fd: number }).fd, nameBytes(comp));
        cur = cur === '' ? comp : `${cur}/${comp}`;
        this.stack.push({ path: cur, fd });
        top++;
        const old = this.stack[top - MAX_OPEN_DIRS];
        if (old && old.path !== '' && old.fd >= 0) {
          closeSync(old.fd);
          old.fd = -1;
        }
      }
    }
    return (this.stack[top] as { fd: number }).fd;
  }

  private closeTop(): void {
    const e = this.stack.pop() as { fd: number };
    if (e.fd >= 0) closeSync(e.fd);
  }

  close(): void {
    while (this.stack.length > 1) this.closeTop();
  }
}

interface Ctx {
  repo: Repository;
  asRoot: boolean;
  sameFs: boolean;
  hardlink: boolean;
  copyOnly: boolean;
  canSetXattr: boolean;
  pool: VerityPool;
  copies: Set<Promise<void>>;
  maxCopies: number;
  /** Files waiting to be sent to the pool as one task, and their bytes. */
  batch: { node: TreeNode; item: CopyItem }[];
  batchBytes: number;
  /** The store's filesystem has no fs-verity: no object can be immutable. */
  noVerity: boolean;
  firstError: unknown;
  report: CheckoutReport;
  warn: (p: string, m: string) => void;
}

/** Owner first (chown clears security.capability), then xattrs, mode and times. */
function finishEntry(ctx: Ctx, n: TreeNode, fd: number, viaProc: boolean): void {
  const meta = metaOf(n);
  if (ctx.asRoot) chownVia(fd, meta, viaProc);
  applyXattrs(ctx, n, fd, null);
  modeAndTimesVia(fd, meta, viaProc);
}

function applyXattrs(ctx: Ctx, n: TreeNode, fd: number, symlinkName: Buffer | null): void {
  if (n.xattrs.size === 0) return;
  if (!ctx.canSetXattr) {
    ctx.report.xattrsSkipped++;
    ctx.warn(n.path, 'extended attributes not applied (install setfattr, Debian package attr)');
    return;
  }
  for (const m of setXattrsVia(fd, symlinkName, n.xattrs)) ctx.warn(n.path, m);
}

async function placeFile(ctx: Ctx, n: TreeNode, dirFd: number): Promise<void> {
  const name = nameOf(n.path);
  if (!n.object) {
    const fd = createFileAt(dirFd, name);
    try {
      writeAllSync(fd, n.inline ?? new Uint8Array(0));
      finishEntry(ctx, n, fd, false);
    } finally {
      closeSync(fd);
    }
    ctx.report.files++;
    return;
  }
  const objectPath = ctx.repo.objectPath(n.object);
  // A hard link is possible only to an immutable object, or when asked for: once the store's
  // filesystem is known to have no fs-verity, only the asking is left to look at.
  if (!ctx.copyOnly && ctx.sameFs && n.xattrs.size === 0 && (ctx.hardlink || !ctx.noVerity) && linkIfSafe(ctx, n, objectPath, dirFd, name)) return;
  const dest = createFileAt(dirFd, name);
  ctx.report.copied++;
  ctx.report.files++;
  if (n.xattrs.size > 0) {
    // xattrs go between owner and mode (setfattr on the main thread): this file travels alone.
    await sendCopies(ctx, [{ node: n, item: copyItem(n, objectPath, dest) }], false);
    return;
  }
  ctx.batch.push({ node: n, item: copyItem(n, objectPath, dest) });
  ctx.batchBytes += n.size;
  if (ctx.batch.length >= COPY_BATCH_FILES || ctx.batchBytes >= COPY_BATCH_BYTES) await flushCopies(ctx);
}

/** Files per copy task, and bytes past which a batch is sent at once. */
const COPY_BATCH_FILES = 48;
const COPY_BATCH_BYTES = 8 << 20;

function copyItem(n: TreeNode, object: string, dest: number): CopyItem {
  return { object, size: n.size, dest, ...metaOf(n) };
}

function linkIfSafe(ctx: Ctx, n: TreeNode, objectPath: string, dirFd: number, name: Buffer): boolean {
  const src = openRegularSync(objectPath, `object ${n.object}`);
  try {
    const st = fstatSync(src.fd);
    const verity = measureVerity(src.fd, st.dev).state;
    if (verity === 'unsupported') ctx.noVerity = true;
    const ownerOk = !ctx.asRoot || (st.uid === n.uid && st.gid === n.gid);
    if ((verity === 'enabled' || ctx.hardlink) && (st.mode & 0o7777) === n.mode && ownerOk) {
      linkPathAt(objectPath, dirFd, name);
      ctx.report.hardlinkedObjects++;
      ctx.report.files++;
      return true;
    }
    return false;
  } finally {
    closeSync(src.fd);
  }
}

async function flushCopies(ctx: Ctx): Promise<void> {
  if (ctx.batch.length === 0) return;
  const batch = ctx.batch;
  ctx.batch = [];
  ctx.batchBytes = 0;
  await sendCopies(ctx, batch, true);
}

/** A damaged object keeps the worker's words (they name it); a failed write names the entry. */
function copyFailed(r: Failure, node: TreeNode | undefined): VeritreeError {
  const entry = node ? `/${shown(node.path)}` : '';
  if (r.code === ERROR_CODES.STORE_CORRUPT) return new VeritreeError(r.code, `${r.message} (checking out ${entry})`, { path: r.path });
  if (r.code === ERROR_CODES.STORE_NO_SPACE) return new VeritreeError(r.code, `no space left (checking out ${entry})`, { path: entry });
  return new VeritreeError(ERROR_CODES.STORE_IO, `checking out ${entry}: ${r.message}`, { path: entry });
}

/**
 * One task for the pool; the descriptors are closed when it is back. With `finished`, the
 * worker sets owner, mode and times; else the main thread does (xattrs between).
 */
async function sendCopies(ctx: Ctx, batch: { node: TreeNode; item: CopyItem }[], finished: boolean): Promise<void> {
  const task = { kind: 'copy-batch', items: batch.map((b) => b.item), finish: finished, chown: ctx.asRoot, alg: ctx.repo.alg, impl: 'auto' } as const;
  const copy = ctx.pool
    .run(task)
    .then((r) => {
      if (!r.ok) throw copyFailed(r, batch[r.index]?.node);
      if (!finished) for (const b of batch) finishEntry(ctx, b.node, b.item.dest, false);
    })
    .catch((e: unknown) => {
      ctx.firstError ??= storeIoError(e, batch[0]?.node.path ?? '', 'checking out');
    })
    .finally(() => {
      for (const b of batch) closeSync(b.item.dest);
      ctx.copies.delete(copy);
    });
  ctx.copies.add(copy);
  while (ctx.copies.size >= ctx.maxCopies) await Promise.race(ctx.copies);
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
  const dirs = new DirStack(rootFd);
  const paths = sortedPaths(tree.nodes);
  const hardlinks: TreeNode[] = [];
  try {
    for (const p of paths) {
      throwIfAborted(opts.signal);
      if (ctx.firstError) throw ctx.firstError;
      const n = tree.nodes.get(p) as TreeNode;
      if (p === '') {
        report.dirs++;
        continue;
      }
      try {
        await placeEntry(ctx, n, dirs.get(parentOf(p)), hardlinks);
      } catch (e) {
        throw storeIoError(e, `${dir}/${shown(p)}`, `checking out /${shown(p)}`);
      }
    }
    // Hard links last, so that the order of names in the tree does not matter.
    for (const n of hardlinks) {
      throwIfAborted(opts.signal);
      try {
        const target = n.hardlinkTo as string;
        const fromFd = dirs.get(parentOf(target));
        const toFd = dirs.get(parentOf(n.path));
        linkAt(fromFd, nameOf(target), toFd, nameOf(n.path));
        report.hardlinks++;
      } catch (e) {
        throw storeIoError(e, `${dir}/${shown(n.path)}`, `checking out /${shown(n.path)}`);
      }
    }
    await flushCopies(ctx);
    await Promise.all(ctx.copies);
    if (ctx.firstError) throw ctx.firstError;
    // Folders last, deepest first: their modes may forbid writing, their mtimes change as we write.
    for (let i = paths.length - 1; i >= 0; i--) {
      const p = paths[i] as string;
      const n = tree.nodes.get(p) as TreeNode;
      if (n.type !== 'dir') continue;
      const fd = dirs.get(p);
      try {
        finishEntry(ctx, n, fd, false);
      } catch (e) {
        throw storeIoError(e, `${dir}/${shown(p)}`, `checking out /${shown(p)}`);
      }
    }
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

async function placeEntry(ctx: Ctx, n: TreeNode, dirFd: number, hardlinks: TreeNode[]): Promise<void> {
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
      if (n.hardlinkTo !== null) {
        hardlinks.push(n);
        return;
      }
      await placeFile(ctx, n, dirFd);
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
