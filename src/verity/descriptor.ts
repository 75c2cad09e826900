/** The 256-byte fs-verity descriptor whose hash is a file's digest (layout in docs/ and the format doc). */
import { DESCRIPTOR_SIZE, HASH_ALGORITHMS, LOG_BLOCK_SIZE, type HashAlgorithm } from './constants.ts';

const ROOT_OFFSET = 16;
const SIZE_OFFSET = 8;

export function buildDescriptor(alg: HashAlgorithm, dataSize: bigint, root: Uint8Array): Uint8Array {
  const d = new Uint8Array(DESCRIPTOR_SIZE);
  d[0] = 1; // version
  d[1] = HASH_ALGORITHMS[alg].id;
  d[2] = LOG_BLOCK_SIZE;
  d[3] = 0; // salt size
  new DataView(d.buffer).setBigUint64(SIZE_OFFSET, dataSize, true);
  d.set(root, ROOT_OFFSET);
  return d;
}
