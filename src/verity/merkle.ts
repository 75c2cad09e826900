/**
 * The fs-verity Merkle tree, streaming: memory is O(tree depth) (one 4 KiB buffer a level), never
 * O(file size). Data blocks are hashed in batches straight from the caller's chunks; only a
 * partial block is copied. The same tree accepts level-1 digests computed elsewhere, so workers
 * can hash ranges of one huge file in parallel (see RangeHasher and digestFromLevel1).
 * @module
 */
import { assertHashAlgorithm, BLOCK_SIZE, type HashAlgorithm } from './constants.ts';
import { buildDescriptor } from './descriptor.ts';
import { digestBufferNative, getBackend, type HashImpl, type ShaBackend } from './backends.ts';

import { MERKLE_BATCH_BLOCKS as BATCH_BLOCKS } from '../tuning.ts';

class Level {
  readonly buf = new Uint8Array(BLOCK_SIZE);
  len = 0;
  total = 0;
}

/** One batch's worth of digests: shared by every hasher of a thread (hashing is synchronous). */
let sharedScratch: Uint8Array | null = null;

/** Accumulates digests level by level; a full block of digests is hashed into the next level at once. */
class MerkleTree {
  private readonly levels: Level[] = [];
  private readonly one: Uint8Array;
  private readonly backend: ShaBackend;

  constructor(backend: ShaBackend) {
    this.backend = backend;
    this.one = new Uint8Array(backend.digestSize);
  }

  private level(k: number): Level {
    let l = this.levels[k];
    while (!l) {
      this.levels.push(new Level());
      l = this.levels[k];
    }
    return l;
  }

  push(k: number, digests: Uint8Array): void {
    const ds = this.backend.digestSize;
    const l = this.level(k);
    let off = 0;
    while (off < digests.length) {
      const n = Math.min(digests.length - off, BLOCK_SIZE - l.len);
      l.buf.set(digests.subarray(off, off + n), l.len);
      l.len += n;
      off += n;
      if (l.len === BLOCK_SIZE) this.flush(k, l);
    }
    l.total += digests.length / ds;
  }

  private flush(k: number, l: Level): void {
    l.buf.fill(0, l.len);
    this.backend.hashBlocksInto(l.buf, 1, this.one, 0);
    l.len = 0;
    this.push(k + 1, this.one);
  }

  /** The root: climbs from `start`, padding each level's last block, until one digest remains. */
  root(start: number): Uint8Array {
    const ds = this.backend.digestSize;
    for (let k = start; ; k++) {
      const l = this.level(k);
      if (l.total === 0) return new Uint8Array(ds);
      if (l.total === 1 && l.len === ds) return l.buf.slice(0, ds);
      if (l.len > 0) this.flush(k, l);
    }
  }
}

/** Streaming fs-verity hasher: `update(chunk)` any number of times, then `digest()` once. */
export class VerityHasher {
  private readonly backend: ShaBackend;
  private readonly tree: MerkleTree;
  private readonly partial = new Uint8Array(BLOCK_SIZE);
  private partialLen = 0;
  private size = 0n;
  private done = false;

  constructor(alg: HashAlgorithm = 'sha256', impl: HashImpl = 'auto') {
    assertHashAlgorithm(alg);
    this.backend = getBackend(impl, alg);
    this.tree = new MerkleTree(this.backend);
  }

  get bytesHashed(): bigint {
    return this.size;
  }

  update(chunk: Uint8Array): this {
    if (this.done) throw new Error('VerityHasher: update() after digest()');
    this.size += BigInt(chunk.length);
    let off = 0;
    if (this.partialLen > 0) {
      const n = Math.min(chunk.length, BLOCK_SIZE - this.partialLen);
      this.partial.set(chunk.subarray(0, n), this.partialLen);
      this.partialLen += n;
      off = n;
      if (this.partialLen < BLOCK_SIZE) return this;
      this.hashBlocks(this.partial, 1);
      this.partialLen = 0;
    }
    while (chunk.length - off >= BLOCK_SIZE) {
      const n = Math.min(BATCH_BLOCKS, Math.floor((chunk.length - off) / BLOCK_SIZE));
      this.hashBlocks(chunk.subarray(off, off + n * BLOCK_SIZE), n);
      off += n * BLOCK_SIZE;
    }
    if (off < chunk.length) {
      this.partial.set(chunk.subarray(off));
      this.partialLen = chunk.length - off;
    }
    return this;
  }

  private hashBlocks(data: Uint8Array, n: number): void {
    // Used and copied out within this call, so one scratch serves every hasher of the thread.
    sharedScratch ??= new Uint8Array(BATCH_BLOCKS * 64);
    this.backend.hashBlocksInto(data, n, sharedScratch, 0);
    this.tree.push(0, sharedScratch.subarray(0, n * this.backend.digestSize));
  }

  /** The fs-verity digest (hash of the descriptor). */
  digest(): Uint8Array {
    if (this.done) throw new Error('VerityHasher: digest() called twice');
    this.done = true;
    if (this.partialLen > 0) {
      this.partial.fill(0, this.partialLen);
      this.hashBlocks(this.partial, 1);
    }
    const root = this.tree.root(0);
    return this.backend.hash(buildDescriptor(this.backend.alg, this.size, root));
  }

  digestHex(): string {
    return Buffer.from(this.digest()).toString('hex');
  }
}

/**
 * One-shot fs-verity digest of an in-memory buffer: the same tree, built a level at a time with
 * one batched back-end call per level and no streaming state. Most files of an image are small,
 * and the per-file cost of a streaming hasher (its buffers) is what this path avoids.
 */
export function verityDigest(data: Uint8Array, alg: HashAlgorithm = 'sha256', impl: HashImpl = 'auto'): Uint8Array {
  assertHashAlgorithm(alg);
  const native = digestBufferNative(impl, alg, data);
  if (native) return native;
  const backend = getBackend(impl, alg);
  return backend.hash(buildDescriptor(alg, BigInt(data.length), treeRoot(backend, data)));
}

function paddedLength(bytes: number): number {
  return Math.ceil(bytes / BLOCK_SIZE) * BLOCK_SIZE;
}

function treeRoot(backend: ShaBackend, data: Uint8Array): Uint8Array {
  const ds = backend.digestSize;
  const blocks = Math.ceil(data.length / BLOCK_SIZE);
  if (blocks === 0) return new Uint8Array(ds);
  const whole = Math.floor(data.length / BLOCK_SIZE);
  // Each level is zero-padded to whole blocks, as the tree pads each level's last block.
  let level = new Uint8Array(paddedLength(blocks * ds));
  backend.hashBlocksInto(data, whole, level, 0);
  if (whole < blocks) {
    const last = new Uint8Array(BLOCK_SIZE);
    last.set(data.subarray(whole * BLOCK_SIZE));
    backend.hashBlocksInto(last, 1, level, whole * ds);
  }
  for (let count = blocks; count > 1; ) {
    const next = Math.ceil((count * ds) / BLOCK_SIZE);
    const up = new Uint8Array(paddedLength(next * ds));
    backend.hashBlocksInto(level, next, up, 0);
    level = up;
    count = next;
  }
  return level.subarray(0, ds);
}

/** Bytes of data covered by one level-1 digest: a range for parallel hashing must start on one. */
export function level1Span(alg: HashAlgorithm): number {
  return (BLOCK_SIZE / getBackend('node', alg).digestSize) * BLOCK_SIZE;
}

/**
 * Level-1 digests of one range of a file, fed in chunks. The range must start on a level1Span
 * boundary of the file; every chunk but the range's last must be whole blocks; only the range
 * that ends the file may end off a block or group boundary (it is zero-padded, as the tree pads
 * the file's last block and each level's last block).
 */
export class RangeHasher {
  private readonly backend: ShaBackend;
  private readonly level0: Uint8Array;
  private blocks = 0;
  private ended = false;

  constructor(rangeLength: number, alg: HashAlgorithm, impl: HashImpl = 'auto') {
    this.backend = getBackend(impl, alg);
    const perGroup = BLOCK_SIZE / this.backend.digestSize;
    this.level0 = new Uint8Array(Math.ceil(Math.ceil(rangeLength / BLOCK_SIZE) / perGroup) * BLOCK_SIZE);
  }

  update(chunk: Uint8Array): this {
    if (this.ended) throw new Error('RangeHasher: update() after a partial block');
    const whole = Math.floor(chunk.length / BLOCK_SIZE);
    const ds = this.backend.digestSize;
    for (let b = 0; b < whole; b += BATCH_BLOCKS * 16) {
      const n = Math.min(BATCH_BLOCKS * 16, whole - b);
      this.backend.hashBlocksInto(chunk.subarray(b * BLOCK_SIZE), n, this.level0, (this.blocks + b) * ds);
    }
    this.blocks += whole;
    if (whole * BLOCK_SIZE < chunk.length) {
      const last = new Uint8Array(BLOCK_SIZE);
      last.set(chunk.subarray(whole * BLOCK_SIZE));
      this.backend.hashBlocksInto(last, 1, this.level0, this.blocks * ds);
      this.blocks++;
      this.ended = true;
    }
    return this;
  }

  level1(): Uint8Array {
    const groups = this.level0.length / BLOCK_SIZE;
    const out = new Uint8Array(groups * this.backend.digestSize);
    this.backend.hashBlocksInto(this.level0, groups, out, 0);
    return out;
  }
}

/** Level-1 digests of a whole in-memory range (see RangeHasher). */
export function hashRangeToLevel1(data: Uint8Array, alg: HashAlgorithm, impl: HashImpl = 'auto'): Uint8Array {
  return new RangeHasher(data.length, alg, impl).update(data).level1();
}

/** The fs-verity digest of a file of `size` bytes from its level-1 digests, in file order. */
export function digestFromLevel1(level1: Uint8Array[], size: bigint, alg: HashAlgorithm, impl: HashImpl = 'auto'): Uint8Array {
  const backend = getBackend(impl, alg);
  const perGroup = BigInt(BLOCK_SIZE / backend.digestSize);
  const blocks = (size + BigInt(BLOCK_SIZE) - 1n) / BigInt(BLOCK_SIZE);
  if (blocks <= perGroup) throw new RangeError('"size" too small for a level-1 assembly; hash it whole');
  const tree = new MerkleTree(backend);
  for (const part of level1) tree.push(1, part);
  return backend.hash(buildDescriptor(alg, size, tree.root(1)));
}

export function toHex(d: Uint8Array): string {
  return Buffer.from(d.buffer, d.byteOffset, d.length).toString('hex');
}
