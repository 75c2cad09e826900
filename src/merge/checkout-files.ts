/**
 * Checkout's regular files and entry metadata: a file's content written from the stream, or its
 * object reflinked or copied in the worker pool (in batches) and hashed there as copied, or hard-
 * linked to the object when asked for, checked (see checkout.ts); then owner,
 * xattrs, mode and times, in that order.
 * @module
 */
import { closeSync, fstatSync, lstatSync } from 'node:fs';
import { ERROR_CODES, VeritreeError, storeIoError } from '../errors.ts';
import type { VerityPool } from '../pipeline/pool.ts';
import type { CopyItem, Failure } from '../pipeline/protocol.ts';
import type { Repository } from '../store/repository.ts';
import { measureVerity, openRegularSync, writeAllSync } from '../store/sys.ts';
import { at, chownVia, createFileAt, linkPathAt, modeAndTimesVia, setXattrsVia, type EntryMeta } from './dir-handle.ts';
import { shown } from '../oci/names.ts';
import { toHex } from '../verity/merkle.ts';
import type { TreeNode } from './merge.ts';

export function metaOf(n: TreeNode): EntryMeta {
  return { uid: n.uid, gid: n.gid, mode: n.mode, mtimeSec: n.mtimeSec, mtimeNsec: n.mtimeNsec };
}

/** What a checkout made, by kind. */
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

export interface Ctx {
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
export function finishEntry(ctx: Ctx, n: TreeNode, fd: number, viaProc: boolean): void {
  const meta = metaOf(n);
  if (ctx.asRoot) chownVia(fd, meta, viaProc);
  applyXattrs(ctx, n, fd, null);
  modeAndTimesVia(fd, meta, viaProc);
}

export function applyXattrs(ctx: Ctx, n: TreeNode, fd: number, symlinkName: Buffer | null): void {
  if (n.xattrs.size === 0) return;
  if (!ctx.canSetXattr) {
    ctx.report.xattrsSkipped++;
    ctx.warn(n.path, 'extended attributes not applied (install setfattr, Debian package attr)');
    return;
  }
  // One warning per entry, however many attributes failed (a flood of 8,000 keys is one line).
  const f = setXattrsVia(fd, symlinkName, n.xattrs);
  if (f.failed === 0) return;
  const more = f.failed > f.examples.length ? `; and ${f.failed - f.examples.length} more` : '';
  ctx.warn(n.path, f.failed === 1 ? (f.examples[0] as string) : `${f.failed} of ${n.xattrs.size} extended attributes not applied: ${f.examples.join('; ')}${more}`);
}

/** Writes file `n`'s content and metadata under `name` in `dirFd` (its own name, or a link's that sorts first). */
export async function placeFile(ctx: Ctx, n: TreeNode, dirFd: number, name: Buffer): Promise<void> {
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
  // A hard link only when asked for (--hardlink): it shares the object's inode, whose metadata
  // (mode, owner, times) fs-verity does not protect, with every other checkout and the store.
  if (!ctx.copyOnly && ctx.sameFs && n.xattrs.size === 0 && ctx.hardlink && linkIfSafe(ctx, n, objectPath, dirFd, name)) {
    if (ctx.batch.length >= COPY_BATCH_FILES) await flushCopies(ctx);
    return;
  }
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
  return { object, id: n.object as string, size: n.size, dest, uid: n.uid, gid: n.gid, mode: n.mode, mtimeSec: n.mtimeSec, mtimeNsec: n.mtimeNsec };
}

/**
 * A hard link to the object (--hardlink) where its metadata is the file's, checked: an object with
 * fs-verity is measured by the kernel (which checks every block read against that), and the
 * measurement must be its name; without fs-verity (--hardlink) the object's descriptor goes to
 * the pool to be hashed like a copy, once the link is known to name that very inode.
 */
function linkIfSafe(ctx: Ctx, n: TreeNode, objectPath: string, dirFd: number, name: Buffer): boolean {
  const src = openRegularSync(objectPath, `object ${n.object}`);
  let keep = false;
  try {
    const st = fstatSync(src.fd);
    const m = measureVerity(src.fd, st.dev);
    if (m.state === 'unsupported') ctx.noVerity = true;
    const ownerOk = !ctx.asRoot || (st.uid === n.uid && st.gid === n.gid);
    if (!((st.mode & 0o7777) === n.mode && ownerOk)) return false;
    if (m.state === 'enabled' && toHex(m.digest) !== n.object) {
      throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `object ${objectPath} does not hash to its name (fs-verity measures ${toHex(m.digest)}): run veritree fsck --repair`, { path: objectPath });
    }
    linkPathAt(objectPath, dirFd, name);
    ctx.report.hardlinkedObjects++;
    ctx.report.files++;
    if (m.state === 'enabled') return true;
    const linked = lstatSync(at(dirFd, name));
    if (linked.ino !== st.ino || linked.dev !== st.dev) {
      throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `object ${objectPath} was replaced while it was being linked`, { path: objectPath });
    }
    // The descriptor is closed when the pool is done with it (sendCopies).
    ctx.batch.push({ node: n, item: { ...copyItem(n, objectPath, src.fd), checkOnly: true } });
    keep = true;
    return true;
  } finally {
    if (!keep) closeSync(src.fd);
  }
}

export async function flushCopies(ctx: Ctx): Promise<void> {
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

