/**
 * veritree's library API. The CLI (src/cli/) is a thin layer over these functions; nothing here
 * prints or exits.
 * @module
 */
export { VeritreeError, ERROR_CODES, isVeritreeError, type ErrorCode } from './errors.ts';
export {
  VerityHasher,
  verityDigest,
  toHex,
  getBackend,
  resolveImpl,
  HASH_IMPLS,
  type HashImpl,
  type HashAlgorithm,
} from './verity/index.ts';
export { Repository, defaultRepoPath, type OpenOptions } from './store/repository.ts';
export { SplitStreamBuilder, readSplitStream, readRefs, type SplitStream } from './store/splitstream.ts';
export { digestFiles, type DigestOptions, type FileDigest } from './pipeline/digest-files.ts';
export { VerityPool, poolSize } from './pipeline/pool.ts';
export { detectDevice, defaultIoLimit, IO_LIMITS } from './pipeline/io-limit.ts';
