/** fs-verity parameters veritree uses: the composefs ones (4 KiB blocks, no salt). */

export const BLOCK_SIZE = 4096;
export const LOG_BLOCK_SIZE = 12;
export const DESCRIPTOR_SIZE = 256;
/** Files of at most this many bytes stay inline in a layer's stream (composefs: changing it breaks the format). */
export const INLINE_MAX = 64;

export const HASH_ALGORITHMS = {
  sha256: { id: 1, digestSize: 32 },
  sha512: { id: 2, digestSize: 64 },
} as const;

export type HashAlgorithm = keyof typeof HASH_ALGORITHMS;

export function assertHashAlgorithm(alg: string): asserts alg is HashAlgorithm {
  if (alg !== 'sha256' && alg !== 'sha512') {
    throw new RangeError(`"hash" must be sha256 or sha512, got ${JSON.stringify(alg)}`);
  }
}

export function digestSize(alg: HashAlgorithm): number {
  return HASH_ALGORITHMS[alg].digestSize;
}
