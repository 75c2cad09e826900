/**
 * SHA back ends for the Merkle hasher. Each one hashes runs of whole 4096-byte blocks; the tree
 * logic lives in merkle.ts and is shared, so the back ends can only differ in speed.
 * - native: one N-API call per run of blocks (native/verity_kernel.c, OpenSSL inside Node);
 * - node:   one node:crypto call per block (OpenSSL, a few microseconds of call overhead each);
 * - noble:  @noble/hashes, pure JavaScript: portable, and the independent oracle in tests.
 * @module
 */
import { hash as nodeHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { loadAddon, nativeFileFailure, type NativeFileFailure } from '../native-addon.ts';
import { BLOCK_SIZE, HASH_ALGORITHMS, type HashAlgorithm } from './constants.ts';

export const HASH_IMPLS = ['auto', 'native', 'node', 'noble'] as const;
export type HashImpl = (typeof HASH_IMPLS)[number];
export type ConcreteHashImpl = Exclude<HashImpl, 'auto'>;

export interface ShaBackend {
  readonly impl: ConcreteHashImpl;
  readonly alg: HashAlgorithm;
  readonly digestSize: number;
  /** Hashes the first `count` whole blocks of `input` into `out` at `outOffset`, digest after digest. */
  hashBlocksInto(input: Uint8Array, count: number, out: Uint8Array, outOffset: number): void;
  /** Hashes arbitrary bytes (the 256-byte descriptor). */
  hash(data: Uint8Array): Uint8Array;
}

interface NativeKernel {
  hashBlocks(alg: number, input: Uint8Array, out: Uint8Array): number;
  /** Reads the whole open file (pread from 0) and returns its size; `out` gets its fs-verity digest. */
  digestFd?(alg: number, fd: number, out: Uint8Array): number;
  /** Opens (O_NOFOLLOW | O_NONBLOCK), checks, digests and closes: the size, or -errno, or -1000 - (S_IFMT >> 12). */
  digestPath?(alg: number, path: string, out: Uint8Array): number;
  /** The fs-verity digest of bytes in memory, tree and descriptor in one call. */
  digestBuffer?(alg: number, data: Uint8Array, out: Uint8Array): void;
  /** Digests, writes and names small files as objects (see storeBatchNative): how many, from the first, were stored. */
  storeBatch?(alg: number, objectsDir: string, data: Uint8Array, sizes: Uint32Array, digests: Uint8Array, written: Uint8Array): number;
  /** A plain SHA-256 stream, updated on libuv's thread pool (sha-stream.ts). */
  shaCtxSize?(): number;
  shaInit?(ctx: Uint8Array): void;
  shaUpdate?(ctx: Uint8Array, data: Uint8Array): Promise<void>;
  shaFinal?(ctx: Uint8Array, out: Uint8Array): void;
}

let nativeKernel: NativeKernel | null | undefined;
let nativeLoadError = '';

/** Loads native/build/Release/verity_kernel.node from the source or the compiled tree. */
export function loadNativeKernel(): NativeKernel | null {
  if (nativeKernel !== undefined) return nativeKernel;
  const loaded = loadAddon<NativeKernel>('verity_kernel');
  nativeKernel = loaded.addon;
  nativeLoadError = loaded.reason;
  return nativeKernel;
}

export function nativeUnavailableReason(): string {
  loadNativeKernel();
  return nativeKernel ? '' : nativeLoadError;
}

function nativeBackend(alg: HashAlgorithm, kernel: NativeKernel): ShaBackend {
  const algId = HASH_ALGORITHMS[alg].id;
  const ds = HASH_ALGORITHMS[alg].digestSize;
  return {
    impl: 'native',
    alg,
    digestSize: ds,
    hashBlocksInto(input, count, out, outOffset) {
      kernel.hashBlocks(algId, input.subarray(0, count * BLOCK_SIZE), out.subarray(outOffset, outOffset + count * ds));
    },
    hash: (data) => nodeHash(alg, data, 'buffer'),
  };
}

function nodeBackend(alg: HashAlgorithm): ShaBackend {
  const ds = HASH_ALGORITHMS[alg].digestSize;
  return {
    impl: 'node',
    alg,
    digestSize: ds,
    hashBlocksInto(input, count, out, outOffset) {
      for (let i = 0; i < count; i++) {
        const d = nodeHash(alg, input.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE), 'buffer');
        out.set(d, outOffset + i * ds);
      }
    },
    hash: (data) => nodeHash(alg, data, 'buffer'),
  };
}

type NobleSha2 = typeof import('@noble/hashes/sha2.js');

/**
 * @noble/hashes, loaded when first asked for: it is the tests' oracle and the last fallback, and
 * parsing it cost every command, and every pool worker, 12-16 ms at start (require of an ES
 * module, which Node >= 20.19 does synchronously).
 */
function nobleSha2(): NobleSha2 {
  return createRequire(import.meta.url)('@noble/hashes/sha2.js') as NobleSha2;
}

function nobleBackend(alg: HashAlgorithm): ShaBackend {
  const noble = nobleSha2();
  const fn = alg === 'sha256' ? noble.sha256 : noble.sha512;
  const ds = HASH_ALGORITHMS[alg].digestSize;
  return {
    impl: 'noble',
    alg,
    digestSize: ds,
    hashBlocksInto(input, count, out, outOffset) {
      for (let i = 0; i < count; i++) {
        out.set(fn(input.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)), outOffset + i * ds);
      }
    },
    hash: (data) => fn(data),
  };
}

const cache = new Map<string, ShaBackend>();

/**
 * The back end for `impl`; `auto` is the fastest available (native, else node).
 * @throws Error when `native` is asked for and the kernel did not build.
 */
export function getBackend(impl: HashImpl = 'auto', alg: HashAlgorithm = 'sha256'): ShaBackend {
  const key = `${impl}:${alg}`;
  const hit = cache.get(key);
  if (hit) return hit;
  let b: ShaBackend;
  if (impl === 'noble') b = nobleBackend(alg);
  else if (impl === 'node') b = nodeBackend(alg);
  else {
    const kernel = loadNativeKernel();
    if (kernel) b = nativeBackend(alg, kernel);
    else if (impl === 'native') throw new Error(`native hashing kernel unavailable: ${nativeLoadError}`);
    else b = nodeBackend(alg);
  }
  cache.set(key, b);
  return b;
}

/** Which concrete back end `auto` resolves to on this installation. */
/**
 * The fs-verity digest of an open file, read and hashed in one native call (no tree built in
 * JavaScript: fsck's objects are mostly a few KiB). Null when `impl` does not resolve to the
 * native kernel, or the kernel predates this call.
 */
export function digestFdNative(impl: HashImpl, alg: HashAlgorithm, fd: number): { digest: Uint8Array; size: number } | null {
  if (resolveImpl(impl) !== 'native') return null;
  const k = loadNativeKernel();
  if (!k?.digestFd) return null;
  const out = new Uint8Array(64);
  const size = k.digestFd(HASH_ALGORITHMS[alg].id, fd, out);
  return { digest: out.subarray(0, HASH_ALGORITHMS[alg].digestSize), size };
}


/**
 * A file's fs-verity digest by path in one native call: open without following a symlink or
 * blocking, check it is a regular file, read, hash, close (fsck: no JavaScript per object but
 * the call). Null when the native kernel is not what `impl` resolves to.
 */
export function digestPathNative(impl: HashImpl, alg: HashAlgorithm, path: string): { digest: Uint8Array; size: number } | NativeFileFailure | null {
  if (resolveImpl(impl) !== 'native') return null;
  const k = loadNativeKernel();
  if (!k?.digestPath) return null;
  const out = new Uint8Array(64);
  const r = k.digestPath(HASH_ALGORITHMS[alg].id, path, out);
  if (r >= 0) return { digest: out.subarray(0, HASH_ALGORITHMS[alg].digestSize), size: r };
  return nativeFileFailure(r);
}

/**
 * The fs-verity digest of `data` in one native call (most files of an image are small: building
 * their tree in JavaScript costs more than hashing them). Null when the native kernel is not
 * what `impl` resolves to, or is an older build without the call.
 */
export function digestBufferNative(impl: HashImpl, alg: HashAlgorithm, data: Uint8Array): Uint8Array | null {
  if (resolveImpl(impl) !== 'native') return null;
  const k = loadNativeKernel();
  if (!k?.digestBuffer) return null;
  const out = new Uint8Array(64);
  k.digestBuffer(HASH_ALGORITHMS[alg].id, data, out);
  return out.subarray(0, HASH_ALGORITHMS[alg].digestSize);
}

/**
 * Stores files given back to back in `data` as objects under `objectsDir` in one native call:
 * each one's digest, an unnamed file written whole and named by linkat(2), on a filesystem the
 * caller knows has no fs-verity to enable. `digests` (digest size each) and `written` (1 when
 * written, 0 when present) are filled for the files it stored: how many, from the first; it
 * stops at the first it cannot finish as the JavaScript path would, for that path to store it and
 * report what went wrong. Null when the native kernel is not what `impl` resolves to, or is an
 * older build without the call.
 */
export function storeBatchNative(impl: HashImpl, alg: HashAlgorithm, objectsDir: string, data: Uint8Array, sizes: Uint32Array, digests: Uint8Array, written: Uint8Array): number | null {
  if (resolveImpl(impl) !== 'native') return null;
  const k = loadNativeKernel();
  if (!k?.storeBatch) return null;
  return k.storeBatch(HASH_ALGORITHMS[alg].id, objectsDir, data, sizes, digests, written);
}

export function resolveImpl(impl: HashImpl): ConcreteHashImpl {
  if (impl !== 'auto') return impl;
  return loadNativeKernel() ? 'native' : 'node';
}
