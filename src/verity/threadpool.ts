/**
 * fs-verity digests on libuv's thread pool, by the native kernel (native/verity_kernel.c's
 * digestPaths and digestRange): many files, or one range of a big file, per job. fsck and
 * `digest` hash here when the pool they would use is no larger than libuv's: no JavaScript
 * workers to boot (each costs tens of milliseconds of CPU before its first digest), no message
 * per task, no JavaScript per file. Without the kernel, or for more parallel jobs than libuv has
 * threads, callers use the Piscina pool instead.
 * @module
 */
import { throwIfAborted } from '../errors.ts';
import { nativeFileFailure, stopFlag, type NativeFileFailure } from '../native-addon.ts';
import { loadNativeKernel, resolveImpl, type HashImpl } from './backends.ts';
import { HASH_ALGORITHMS, BLOCK_SIZE, type HashAlgorithm } from './constants.ts';

interface KernelJobs {
  digestPaths(alg: number, paths: string[], sizes: Float64Array, digests: Uint8Array, stop?: Int32Array, follow?: boolean): Promise<number>;
  digestRange(alg: number, path: string, offset: number, length: number, level1: Uint8Array, stop?: Int32Array): Promise<number>;
  digestDirs(alg: number, objectsDir: string, prefixes: string, nameLength: number, lanes: number, onFolder: RawFolderCallback, stop?: Int32Array): Promise<void>;
}

/** A folder's result as native/verity_kernel.c's digestDirs hands it over: see there. */
type RawFolderCallback = (index: number, code: string | null, text: string, status?: Uint8Array, sizes?: Float64Array, digests?: Uint8Array) => void;

interface RawDirDigests {
  names: string;
  status: Uint8Array;
  sizes: Float64Array;
  digests: Uint8Array;
}

/**
 * One entry of an objects/XX folder as digestDirs found it (see native/verity_kernel.c): `id` is
 * XX + the entry's name (bytes as latin1), the object id when it is one.
 */
export type DirEntryDigest =
  | { id: string; kind: 'match'; size: number }
  | { id: string; kind: 'mismatch'; size: number; digest: Uint8Array }
  /** Not a regular file named like an object: the caller decides what it is. */
  | { id: string; kind: 'other' }
  | ({ id: string; kind: 'unreadable' } & NativeFileFailure);

/** A folder digestDirs could not list: the errno's code (ENOENT, ECANCELED after a stop, ...) and why. */
export interface DirListingFailure {
  code: string;
  message: string;
}

export type PathDigest = { digest: Uint8Array; size: number } | NativeFileFailure;

export interface ThreadpoolHasher {
  /** libuv's pool size, fixed when the process started (UV_THREADPOOL_SIZE, else 4). */
  readonly threads: number;
  /** Each path opened without blocking (or following a symlink, unless `follow`), checked regular, digested, closed. */
  digestPaths(paths: string[], opts?: { signal?: AbortSignal | undefined; follow?: boolean }): Promise<PathDigest[]>;
  /**
   * The level-1 digests of [offset, offset + length) of a file (offset a multiple of the level-1
   * span): as RangeHasher.level1() gives them. A number instead: bytes read when the file was
   * shorter, or a failure.
   */
  digestRange(path: string, offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array | number | NativeFileFailure>;
  /**
   * Every entry of the object folders `objectsDir/XX` (XX from `prefixes`), in `lanes` jobs that
   * each take the next folder when done with the last: each regular file named by `nameLength`
   * hex digits hashed (no symlink followed, no open that blocks) and compared with XX + its name.
   * `onFolder` gets each folder as it is done, on the main thread, while the jobs go on; a folder
   * that cannot be listed comes with the errno's code instead. Settles when all are handed over
   * (those after a stop asked by the signal are not).
   */
  digestDirs(objectsDir: string, prefixes: readonly string[], nameLength: number, lanes: number, onFolder: (prefix: string, r: DirEntryDigest[] | DirListingFailure) => void, signal?: AbortSignal): Promise<void>;
}

/** libuv reads UV_THREADPOOL_SIZE once, when its pool starts (before any module of ours runs). */
export function libuvThreads(env: NodeJS.ProcessEnv = process.env): number {
  const n = Number(env.UV_THREADPOOL_SIZE);
  return Number.isInteger(n) && n >= 1 ? Math.min(n, 1024) : 4;
}

/** The hasher, or null when `impl` does not resolve to the native kernel or it lacks these calls. */
export function threadpoolHasher(impl: HashImpl, alg: HashAlgorithm): ThreadpoolHasher | null {
  if (resolveImpl(impl) !== 'native') return null;
  const k = loadNativeKernel() as (Partial<KernelJobs> & object) | null;
  if (!k?.digestPaths || !k.digestRange || !k.digestDirs) return null;
  const jobs = k as KernelJobs;
  const { id, digestSize } = HASH_ALGORITHMS[alg];
  return {
    threads: libuvThreads(),
    async digestPaths(paths, opts = {}) {
      const sizes = new Float64Array(paths.length);
      const digests = new Uint8Array(paths.length * digestSize);
      const stop = stopFlag(opts.signal);
      try {
        await jobs.digestPaths(id, paths, sizes, digests, stop.flag, opts.follow === true);
      } finally {
        stop.done();
      }
      throwIfAborted(opts.signal);
      return Array.from(sizes, (r, i): PathDigest => (r >= 0 ? { digest: digests.subarray(i * digestSize, (i + 1) * digestSize), size: r } : nativeFileFailure(r)));
    },
    async digestDirs(objectsDir, prefixes, nameLength, lanes, onFolder, signal) {
      if (prefixes.length === 0) return;
      const stop = stopFlag(signal);
      try {
        await jobs.digestDirs(id, objectsDir, prefixes.join(''), nameLength, lanes, (index, code, text, status, sizes, digests) => {
          const prefix = prefixes[index] as string;
          if (code !== null || !status || !sizes || !digests) onFolder(prefix, { code: code ?? 'EIO', message: text });
          else onFolder(prefix, dirEntries({ names: text, status, sizes, digests }, digestSize));
        }, stop.flag);
      } finally {
        stop.done();
      }
    },
    async digestRange(path, offset, length, signal) {
      const perGroup = BLOCK_SIZE / digestSize;
      const level1 = new Uint8Array(Math.ceil(Math.ceil(length / BLOCK_SIZE) / perGroup) * digestSize);
      const stop = stopFlag(signal);
      let r: number;
      try {
        r = await jobs.digestRange(id, path, offset, length, level1, stop.flag);
      } finally {
        stop.done();
      }
      throwIfAborted(signal);
      if (r < 0) return nativeFileFailure(r);
      return r === length ? level1 : r;
    },
  };
}

function dirEntries(r: RawDirDigests, digestSize: number): DirEntryDigest[] {
  // Split, not concatenated here: flat strings, cheap to hash into fsck's set of ids.
  const ids = r.status.length === 0 ? [] : r.names.split('/');
  return ids.map((id, i): DirEntryDigest => {
    const size = r.sizes[i] as number;
    switch (r.status[i]) {
      case 0:
        return { id, kind: 'match', size };
      case 1:
        return { id, kind: 'mismatch', size, digest: r.digests.subarray(i * digestSize, (i + 1) * digestSize) };
      case 3:
        return { id, kind: 'unreadable', ...nativeFileFailure(size) };
      default:
        return { id, kind: 'other' };
    }
  });
}
