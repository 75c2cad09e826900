/**
 * `veritree digest`: fs-verity digests of many files in the pool. Small files are one task each;
 * a file of at least `splitThreshold` bytes is cut into ranges of whole level-1 groups that
 * several workers hash at once (the leaf level in parallel), and the few upper levels are
 * assembled here. fsverity-utils hashes one file on one core.
 * @module
 */
import { stat } from 'node:fs/promises';
import { ERROR_CODES, VeritreeError, describeFsError, type ErrorCode } from '../errors.ts';
import type { HashImpl } from '../verity/backends.ts';
import type { HashAlgorithm } from '../verity/constants.ts';
import { digestFromLevel1, level1Span, toHex } from '../verity/merkle.ts';
import { threadpoolHasher, type ThreadpoolHasher } from '../verity/threadpool.ts';
import type { NativeFileFailure } from '../native-addon.ts';
import { defaultIoLimit } from './io-limit.ts';
import { poolSize, VerityPool } from './pool.ts';
import type { TaskRunner } from './protocol.ts';
import { RANGE_BYTES, SPLIT_THRESHOLD_BYTES } from '../tuning.ts';


export interface DigestOptions {
  /** sha256 (the default) or sha512, as `fsverity digest --hash-alg`. */
  hash?: HashAlgorithm;
  /** The SHA back end: auto (the default), native, node or noble. */
  hashImpl?: HashImpl;
  jobs?: number | undefined;
  ioLimit?: number | undefined;
  /** Use this pool instead of making one (it is not closed). */
  pool?: VerityPool;
  splitThreshold?: number;
  rangeBytes?: number;
  signal?: AbortSignal;
  /** Called as each file finishes, in any order. */
  onResult?: (index: number, result: FileDigest) => void;
}

export type FileDigest =
  | { path: string; ok: true; id: string; size: number }
  | { path: string; ok: false; code: ErrorCode; message: string };

function failed(path: string, e: unknown): FileDigest {
  const code: ErrorCode = e instanceof VeritreeError ? e.code : ERROR_CODES.FILE_UNREADABLE;
  return { path, ok: false, code, message: describeFsError(e) };
}

/**
 * Where the hashing runs: the Piscina pool, or libuv's thread pool (no workers to boot) when
 * the native kernel is there and libuv has a thread for each job; `slot` keeps at most the
 * pool's size of those jobs running, as the pool would.
 */
interface Engine {
  pool: TaskRunner;
  threads: ThreadpoolHasher | null;
  slot: <T>(fn: () => Promise<T>) => Promise<T>;
}

function engineFor(pool: TaskRunner, impl: HashImpl, alg: HashAlgorithm): Engine {
  const hasher = threadpoolHasher(impl, alg);
  const threads = hasher !== null && pool.size <= hasher.threads ? hasher : null;
  let running = 0;
  const waiting: (() => void)[] = [];
  const slot = async <T>(fn: () => Promise<T>): Promise<T> => {
    // A freed slot passes straight to the next waiter, so no newcomer can take it in between.
    if (running >= pool.size) await new Promise<void>((resolve) => waiting.push(resolve));
    else running++;
    try {
      return await fn();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else running--;
    }
  };
  return { pool, threads, slot };
}

/** The words the worker's own open and read give for the same failure. */
function nativeFailure(r: NativeFileFailure, path: string): VeritreeError {
  const message = 'notRegular' in r ? 'Not a regular file' : describeFsError(Object.assign(new Error(`${r.errno}: ${path}`), { code: r.errno }));
  return new VeritreeError(ERROR_CODES.FILE_UNREADABLE, message, { path });
}

/** Level-1 digests of one range, by the pool or on libuv's threads. */
async function rangeLevel1(e: Engine, path: string, offset: number, length: number, opts: { alg: HashAlgorithm; impl: HashImpl; signal?: AbortSignal | undefined }): Promise<Uint8Array> {
  if (e.threads) {
    const threads = e.threads;
    const r = await e.slot(() => threads.digestRange(path, offset, length, opts.signal));
    if (r instanceof Uint8Array) return r;
    if (typeof r === 'number') throw new VeritreeError(ERROR_CODES.FILE_UNREADABLE, `file shrank while hashing (range at ${offset})`, { path });
    throw nativeFailure(r, path);
  }
  const r = await e.pool.run({ kind: 'digest-range', path, offset, length, alg: opts.alg, impl: opts.impl }, opts.signal ? { signal: opts.signal } : {});
  if (!r.ok) throw new VeritreeError(r.code, r.message, { path });
  return r.level1;
}

/** Digest of one large file, its leaf level hashed by several workers at once. */
export async function digestLargeFile(
  pool: TaskRunner | Engine,
  path: string,
  size: number,
  opts: { alg: HashAlgorithm; impl: HashImpl; rangeBytes?: number; signal?: AbortSignal | undefined }
): Promise<string> {
  const engine = 'slot' in pool ? pool : engineFor(pool, opts.impl, opts.alg);
  const span = level1Span(opts.alg);
  const rangeBytes = Math.max(span, Math.floor((opts.rangeBytes ?? RANGE_BYTES) / span) * span);
  const parts: Promise<Uint8Array>[] = [];
  for (let offset = 0; offset < size; offset += rangeBytes) {
    parts.push(rangeLevel1(engine, path, offset, Math.min(rangeBytes, size - offset), opts));
  }
  const level1 = await Promise.all(parts);
  return toHex(digestFromLevel1(level1, BigInt(size), opts.alg, opts.impl));
}

async function digestOne(e: Engine, path: string, opts: DigestOptions & { alg: HashAlgorithm; impl: HashImpl }): Promise<FileDigest> {
  try {
    const st = await stat(path);
    if (st.isDirectory()) return { path, ok: false, code: ERROR_CODES.FILE_UNREADABLE, message: 'Is a directory' };
    if (st.isFile() && st.size >= (opts.splitThreshold ?? SPLIT_THRESHOLD_BYTES) && e.pool.size > 1) {
      const id = await digestLargeFile(e, path, st.size, opts);
      return { path, ok: true, id, size: st.size };
    }
    if (e.threads) {
      const threads = e.threads;
      // As the worker does: the path followed if it is a symlink, a FIFO never waited on.
      const [r] = await e.slot(() => threads.digestPaths([path], { signal: opts.signal, follow: true }));
      if (r && 'digest' in r) return { path, ok: true, id: toHex(r.digest), size: r.size };
      return failed(path, nativeFailure(r as NativeFileFailure, path));
    }
    const r = await e.pool.run({ kind: 'digest-file', path, alg: opts.alg, impl: opts.impl }, opts.signal ? { signal: opts.signal } : {});
    return r.ok ? { path, ok: true, id: r.id, size: r.size } : { path, ok: false, code: r.code, message: r.message };
  } catch (e) {
    if (e instanceof VeritreeError && (e.code === ERROR_CODES.ABORTED || e.code === ERROR_CODES.WORKER_FAILED)) throw e;
    return failed(path, e);
  }
}

/**
 * fs-verity digests of `paths`, in argument order. A file that cannot be read gives a failed
 * entry; the others are still digested.
 */
export async function digestFiles(paths: string[], options: DigestOptions = {}): Promise<FileDigest[]> {
  const opts = { ...options, alg: options.hash ?? 'sha256', impl: options.hashImpl ?? 'auto' } as const;
  const ioLimit = opts.ioLimit ?? (paths[0] ? await defaultIoLimit(paths[0]) : undefined);
  const pool = opts.pool ?? new VerityPool(poolSize({ jobs: opts.jobs, ioLimit }), { lazy: true });
  const engine = engineFor(pool, opts.impl, opts.alg);
  try {
    return await Promise.all(
      paths.map(async (p, i) => {
        const r = await digestOne(engine, p, opts);
        opts.onResult?.(i, r);
        return r;
      })
    );
  } finally {
    if (!opts.pool) await pool.close();
  }
}
