/**
 * The parallel half of fsck: the main thread walks objects/ and hands paths to the pool in
 * batches; each worker reads its objects itself and re-hashes them. Every object's digest must
 * equal its name.
 * @module
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ERROR_CODES, VeritreeError, storeIoError, throwIfAborted } from '../errors.ts';
import { TMP_PREFIX } from '../store/layout.ts';
import { strayTmp } from '../store/sys.ts';
import { digestSize } from '../verity/constants.ts';
import type { VerifyDirResult } from '../pipeline/protocol.ts';
import type { Repository } from '../store/repository.ts';
import type { HashImpl } from '../verity/backends.ts';
import type { VerityPool } from '../pipeline/pool.ts';
import type { StoreIssue } from './issues.ts';

export interface ObjectCheck {
  objects: number;
  bytes: number;
  /** Every well-named object found (good or bad). */
  present: string[];
  /** Objects whose content does not match their name, or that cannot be read. */
  bad: string[];
  issues: StoreIssue[];
}

export interface FsckProgress {
  objectsDone: number;
  /** 0: not known before the walk ends (folders are the unit of progress). */
  objectsTotal: number;
  bytesDone: number;
  bytesTotal: number;
  dirsDone: number;
  dirsTotal: number;
}

export interface VerifyObjectsOptions {
  impl: HashImpl;
  signal?: AbortSignal | undefined;
  onProgress?: ((p: FsckProgress) => void) | undefined;
}

export async function verifyObjects(repo: Repository, pool: VerityPool, opts: VerifyObjectsOptions): Promise<ObjectCheck> {
  const out: ObjectCheck = { objects: 0, bytes: 0, present: [], bad: [], issues: [] };
  const top = await readdir(repo.objectsDir, { withFileTypes: true }).catch((e: unknown) => {
    throw storeIoError(e, repo.objectsDir, 'listing objects');
  });
  const restLength = digestSize(repo.alg) * 2 - 2;
  const dirs: string[] = [];
  for (const e of top) {
    const path = join(repo.objectsDir, e.name);
    if (e.name.startsWith(TMP_PREFIX)) noteTmp(out, path);
    else if (e.isDirectory() && /^[0-9a-f]{2}$/.test(e.name)) dirs.push(e.name);
    else out.issues.push({ type: 'object-invalid-name', path, detail: 'not an object name (objects/XX/<hex>)' });
  }
  let done = 0;
  // One task per objects/XX folder: the worker lists and reads it; the signal is checked between
  // folders rather than handed to each task (a listener per task otherwise).
  const tasks = dirs.map(async (d) => {
    throwIfAborted(opts.signal);
    const dir = join(repo.objectsDir, d);
    const r = await pool.run({ kind: 'verify-dir', dir, restLength, tmpPrefix: TMP_PREFIX, alg: repo.alg, impl: opts.impl });
    if (!r.ok) throw new VeritreeError(r.code, r.message, { path: dir });
    collect(out, d, dir, r);
    done++;
    opts.onProgress?.({ objectsDone: out.objects, objectsTotal: 0, bytesDone: out.bytes, bytesTotal: 0, dirsDone: done, dirsTotal: dirs.length });
  });
  const settled = await Promise.allSettled(tasks);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason instanceof VeritreeError ? failed.reason : new VeritreeError(ERROR_CODES.WORKER_FAILED, String(failed.reason), { cause: failed.reason });
  out.issues.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return out;
}

function noteTmp(out: ObjectCheck, path: string): void {
  const stray = strayTmp(path);
  if (stray) out.issues.push({ type: 'stray-tmp', path, detail: `temporary file left by an interrupted write (${stray.size} bytes)` });
}

function collect(out: ObjectCheck, d: string, dir: string, r: VerifyDirResult): void {
  out.objects += r.objects;
  out.bytes += r.bytes;
  for (const n of r.names) out.present.push(d + n);
  for (const b of r.bad) {
    const id = d + b.name;
    const path = join(dir, b.name);
    out.bad.push(id);
    if (b.error !== undefined) out.issues.push({ type: 'object-unreadable', path, detail: b.error });
    else out.issues.push({ type: 'object-digest-mismatch', path, detail: `the content (${b.size} bytes) does not hash to the object's name`, expected: id, found: b.found });
  }
  for (const t of r.tmp) {
    out.issues.push({ type: 'stray-tmp', path: join(dir, t.name), detail: `temporary file left by an interrupted write (${t.size} bytes)` });
  }
  for (const name of r.invalid) out.issues.push({ type: 'object-invalid-name', path: join(dir, name), detail: 'not an object name (objects/XX/<hex>)' });
}
