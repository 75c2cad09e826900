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
import { defaultIoLimit } from './io-limit.ts';
import { poolSize, VerityPool } from './pool.ts';

/** Files from this size on are split across workers. */
export const SPLIT_THRESHOLD_BYTES = 64 << 20;
/** One range task: a multiple of level1Span (512 KiB for SHA-256); each worker holds one range. */
export const RANGE_BYTES = 8 << 20;

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

/** Digest of one large file, its leaf level hashed by several workers at once. */
export async function digestLargeFile(
  pool: VerityPool,
  path: string,
  size: number,
  opts: { alg: HashAlgorithm; impl: HashImpl; rangeBytes?: number; signal?: AbortSignal }
): Promise<string> {
  const span = level1Span(opts.alg);
  const rangeBytes = Math.max(span, Math.floor((opts.rangeBytes ?? RANGE_BYTES) / span) * span);
  const parts: Promise<Uint8Array>[] = [];
  for (let offset = 0; offset < size; offset += rangeBytes) {
    const length = Math.min(rangeBytes, size - offset);
    parts.push(
      pool
        .run({ kind: 'digest-range', path, offset, length, alg: opts.alg, impl: opts.impl }, opts.signal ? { signal: opts.signal } : {})
        .then((r) => {
          if (!r.ok) throw new VeritreeError(r.code, r.message, { path });
          return r.level1;
        })
    );
  }
  const level1 = await Promise.all(parts);
  return toHex(digestFromLevel1(level1, BigInt(size), opts.alg, opts.impl));
}

async function digestOne(pool: VerityPool, path: string, opts: DigestOptions & { alg: HashAlgorithm; impl: HashImpl }): Promise<FileDigest> {
  try {
    const st = await stat(path);
    if (st.isDirectory()) return { path, ok: false, code: ERROR_CODES.FILE_UNREADABLE, message: 'Is a directory' };
    if (st.isFile() && st.size >= (opts.splitThreshold ?? SPLIT_THRESHOLD_BYTES) && pool.size > 1) {
      const id = await digestLargeFile(pool, path, st.size, opts);
      return { path, ok: true, id, size: st.size };
    }
    const r = await pool.run({ kind: 'digest-file', path, alg: opts.alg, impl: opts.impl }, opts.signal ? { signal: opts.signal } : {});
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
  const pool = opts.pool ?? new VerityPool(poolSize({ jobs: opts.jobs, ioLimit }));
  try {
    return await Promise.all(
      paths.map(async (p, i) => {
        const r = await digestOne(pool, p, opts);
        opts.onResult?.(i, r);
        return r;
      })
    );
  } finally {
    if (!opts.pool) await pool.close();
  }
}
