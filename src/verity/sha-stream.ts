/**
 * SHA-256 of a byte stream (a blob against its digest, a layer's tar against its diff_id),
 * hashed on libuv's thread pool where the native kernel has the calls, so that the main thread,
 * which splits the tar, does not spend a core-second per GB on it. The bytes are copied into
 * blocks of 1 MiB that this object owns (the caller may reuse its buffer at once), and the blocks
 * are hashed one after another, in order. Without the kernel: node:crypto, on the calling thread.
 * @module
 */
import { createHash, type Hash } from 'node:crypto';
import { loadNativeKernel } from './backends.ts';

const BLOCK = 1 << 20;

export interface ShaStream {
  update(data: Uint8Array): void;
  /**
   * Hashes `data` where it lies, no copy: the caller leaves it untouched until the promise
   * settles (a batch of a rebuilt layer, hashed while the next is read).
   */
  updateInPlace(data: Uint8Array): Promise<void>;
  /** The digest of everything updated so far (the stream is finished). */
  digestHex(): Promise<string>;
  /** An independent stream that has seen what this one has. */
  copy(): Promise<ShaStream>;
}

export function createSha256Stream(): ShaStream {
  const k = loadNativeKernel();
  if (k?.shaCtxSize && k.shaInit && k.shaUpdate && k.shaFinal) return new PooledSha256(null);
  return new NodeSha256(createHash('sha256'));
}

class NodeSha256 implements ShaStream {
  private readonly hash: Hash;

  constructor(hash: Hash) {
    this.hash = hash;
  }

  update(data: Uint8Array): void {
    this.hash.update(data);
  }

  updateInPlace(data: Uint8Array): Promise<void> {
    this.hash.update(data);
    return Promise.resolve();
  }

  digestHex(): Promise<string> {
    return Promise.resolve(this.hash.digest('hex'));
  }

  copy(): Promise<ShaStream> {
    return Promise.resolve(new NodeSha256(this.hash.copy()));
  }
}

type Kernel = Required<Pick<NonNullable<ReturnType<typeof loadNativeKernel>>, 'shaCtxSize' | 'shaInit' | 'shaUpdate' | 'shaFinal'>>;

class PooledSha256 implements ShaStream {
  private readonly k: Kernel;
  /** SHA256_CTX, in an ArrayBuffer of its own (aligned); touched only by one job at a time. */
  private readonly ctx: Uint8Array;
  private block: Uint8Array = Buffer.allocUnsafeSlow(BLOCK);
  private used = 0;
  /** The last update handed to the pool; each waits for the one before. */
  private chain: Promise<void> = Promise.resolve();

  /** `from`: the state to continue from, and the bytes not yet sent (copy()). */
  constructor(from: { ctx: Uint8Array; pending: Uint8Array } | null) {
    this.k = loadNativeKernel() as unknown as Kernel;
    if (from) {
      this.ctx = new Uint8Array(from.ctx);
      this.block.set(from.pending);
      this.used = from.pending.length;
    } else {
      this.ctx = new Uint8Array(this.k.shaCtxSize());
      this.k.shaInit(this.ctx);
    }
  }

  update(data: Uint8Array): void {
    for (let off = 0; off < data.length; ) {
      const n = Math.min(BLOCK - this.used, data.length - off);
      this.block.set(data.subarray(off, off + n), this.used);
      this.used += n;
      off += n;
      if (this.used === BLOCK) this.send();
    }
  }

  updateInPlace(data: Uint8Array): Promise<void> {
    this.send();
    const ctx = this.ctx;
    const done = this.chain.then(() => this.k.shaUpdate(ctx, data));
    this.chain = done;
    this.chain.catch(() => undefined);
    return done;
  }

  private send(): void {
    if (this.used === 0) return;
    const full = this.block.subarray(0, this.used);
    // The block now belongs to the job; the next bytes go to a fresh one.
    this.block = Buffer.allocUnsafeSlow(BLOCK);
    this.used = 0;
    const ctx = this.ctx;
    this.chain = this.chain.then(() => this.k.shaUpdate(ctx, full));
    this.chain.catch(() => undefined);
  }

  async digestHex(): Promise<string> {
    this.send();
    await this.chain;
    // Finished on a copy: a copy() waiting on the same chain must still find the running state.
    const out = new Uint8Array(32);
    this.k.shaFinal(new Uint8Array(this.ctx), out);
    return Buffer.from(out).toString('hex');
  }

  async copy(): Promise<ShaStream> {
    // What has been seen now: the jobs sent so far, and the bytes not yet sent.
    const chain = this.chain;
    const pending = this.block.slice(0, this.used);
    await chain;
    return new PooledSha256({ ctx: this.ctx, pending });
  }
}
