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
import { objectFailureMessage, strayTmp, verityAbsentAt } from '../store/sys.ts';
import { toHex } from '../verity/merkle.ts';
import { threadpoolHasher, type DirEntryDigest, type ThreadpoolHasher } from '../verity/threadpool.ts';
import { digestSize } from '../verity/constants.ts';
import type { VerifyDirResult } from '../pipeline/protocol.ts';
import type { Repository } from '../store/repository.ts';
import type { HashImpl } from '../verity/backends.ts';
import type { VerityPool } from '../pipeline/pool.ts';
import type { StoreIssue } from './issues.ts';

export interface ObjectCheck {
  objects: number;
  bytes: number;
  /** Every well-named object found (good or bad); filled as each folder is done, while others hash. */
  present: Set<string>;
  /** Objects whose content does not match their name, or that cannot be read. */
  bad: Set<string>;
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
  const out: ObjectCheck = { objects: 0, bytes: 0, present: new Set(), bad: new Set(), issues: [] };
  const top = await readdir(repo.objectsDir, { withFileTypes: true }).catch((e: unknown) => {
    throw storeIoError(e, repo.objectsDir, 'listing objects', 'read');
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
  const progress = (): void => {
    done++;
    opts.onProgress?.({ objectsDone: out.objects, objectsTotal: 0, bytesDone: out.bytes, bytesTotal: 0, dirsDone: done, dirsTotal: dirs.length });
  };
  // Where the filesystem has no fs-verity and libuv has a thread per job, folders are hashed on
  // libuv's thread pool (no workers to start); else one pool task per objects/XX folder, the
  // worker listing and reading it. As many folders at once as the pool has threads.
  const threads = threadpoolHasher(opts.impl, repo.alg);
  const onThreads: string[] = [];
  const rest: string[] = [];
  const threadsFit = threads !== null && pool.size <= threads.threads;
  // A secure repository's objects must each be asked for fs-verity: the workers do that.
  for (const d of dirs) (threadsFit && !repo.secure && verityAbsentAt(join(repo.objectsDir, d)) ? onThreads : rest).push(d);
  if (threads && onThreads.length > 0) {
    await verifyDirsOnThreads(threads, repo.objectsDir, onThreads, restLength, pool.size, opts.signal, (d, dir, r) => {
      collect(out, d, dir, r);
      progress();
    });
  }
  let next = 0;
  const walk = async (): Promise<void> => {
    while (next < rest.length) {
      throwIfAborted(opts.signal);
      const d = rest[next++] as string;
      const dir = join(repo.objectsDir, d);
      const r = await pool.run({ kind: 'verify-dir', dir, restLength, tmpPrefix: TMP_PREFIX, alg: repo.alg, impl: opts.impl, secure: repo.secure });
      if (!r.ok) throw new VeritreeError(r.code, r.message, { path: dir });
      collect(out, d, dir, r);
      progress();
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: Math.min(pool.size, rest.length) }, walk));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason instanceof VeritreeError ? failed.reason : new VeritreeError(ERROR_CODES.WORKER_FAILED, String(failed.reason), { cause: failed.reason });
  out.issues.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return out;
}

/**
 * objects/XX folders as the worker's verify-dir task checks them, in `lanes` jobs on libuv's
 * thread pool: each folder listed and hashed through its descriptor, each digest compared there,
 * and its result judged here (`judged`) while the jobs hash the next. The first folder that
 * cannot be listed stops the jobs and is thrown.
 */
async function verifyDirsOnThreads(
  threads: ThreadpoolHasher,
  objectsDir: string,
  prefixes: string[],
  restLength: number,
  lanes: number,
  signal: AbortSignal | undefined,
  judged: (d: string, dir: string, r: VerifyDirResult & { ids: string[] }) => void,
): Promise<void> {
  const stop = new AbortController();
  let failure: unknown = null;
  let handed = 0;
  await threads.digestDirs(objectsDir, prefixes, restLength, lanes, (d, r) => {
    handed++;
    if (failure !== null) return;
    const dir = join(objectsDir, d);
    try {
      if (!Array.isArray(r)) throw storeIoError(Object.assign(new Error(r.message), { code: r.code }), dir, 'listing objects', 'read');
      judged(d, dir, dirResult(dir, r));
    } catch (e) {
      failure = e;
      stop.abort();
    }
  }, signal ? AbortSignal.any([signal, stop.signal]) : stop.signal);
  throwIfAborted(signal);
  if (failure !== null) throw failure;
  if (handed !== prefixes.length) throw new VeritreeError(ERROR_CODES.WORKER_FAILED, `fsck: ${prefixes.length - handed} of ${prefixes.length} object folders were not checked`, { path: objectsDir });
}

function dirResult(dir: string, entries: DirEntryDigest[]): VerifyDirResult & { ids: string[] } {
  const ids: string[] = [];
  const out: VerifyDirResult & { ids: string[] } = { ok: true, names: [], ids, objects: 0, bytes: 0, bad: [], tmp: [], invalid: [], noVerity: [] };
  for (const e of entries) {
    if (e.kind === 'other') {
      // Names are bytes (latin1 here); a message shows them as node:fs would.
      const name = Buffer.from(e.id.slice(2), 'latin1').toString();
      if (!name.startsWith(TMP_PREFIX)) out.invalid.push(name);
      else {
        const stray = strayTmp(`${dir}/${name}`);
        if (stray) out.tmp.push({ name, size: stray.size });
      }
      continue;
    }
    ids.push(e.id);
    out.objects++;
    if (e.kind === 'unreadable') out.bad.push({ name: e.id.slice(2), error: objectFailureMessage(e, `${dir}/${e.id.slice(2)}`) });
    else {
      out.bytes += e.size;
      if (e.kind === 'mismatch') out.bad.push({ name: e.id.slice(2), found: toHex(e.digest), size: e.size });
    }
  }
  return out;
}

function noteTmp(out: ObjectCheck, path: string): void {
  const stray = strayTmp(path);
  if (stray) out.issues.push({ type: 'stray-tmp', path, detail: `temporary file left by an interrupted write (${stray.size} bytes)` });
}

/** A folder's result into the whole check; `ids` (XX + name) where they come whole, else made here. */
function collect(out: ObjectCheck, d: string, dir: string, r: VerifyDirResult & { ids?: string[] }): void {
  out.objects += r.objects;
  out.bytes += r.bytes;
  if (r.ids) for (const id of r.ids) out.present.add(id);
  else for (const n of r.names) out.present.add(d + n);
  for (const b of r.bad) {
    const id = d + b.name;
    const path = join(dir, b.name);
    out.bad.add(id);
    if (b.error !== undefined) out.issues.push({ type: 'object-unreadable', path, detail: b.error });
    else out.issues.push({ type: 'object-digest-mismatch', path, detail: `the content (${b.size} bytes) does not hash to the object's name`, expected: id, found: b.found });
  }
  for (const name of r.noVerity) {
    const id = d + name;
    out.bad.add(id);
    out.issues.push({ type: 'object-verity-missing', path: join(dir, name), detail: 'the repository is secure (meta.json has fs-verity) and this object has none: the kernel would refuse it under verity=require' });
  }
  for (const t of r.tmp) {
    out.issues.push({ type: 'stray-tmp', path: join(dir, t.name), detail: `temporary file left by an interrupted write (${t.size} bytes)` });
  }
  for (const name of r.invalid) out.issues.push({ type: 'object-invalid-name', path: join(dir, name), detail: 'not an object name (objects/XX/<hex>)' });
}
