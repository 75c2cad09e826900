/**
 * SHA-256 of a byte stream (a blob against its digest, a layer's tar against its diff_id),
 * hashed on libuv's thread pool where the native kernel has the calls, so that the main thread,
 * which splits the tar, does not spend a core-second per GB on it. The bytes are copied into
 * blocks of 1 MiB that this object owns (the caller may reuse its buffer at once), and the blocks
 * are hashed one after another, in order. Without the kernel: node:crypto, on the calling thread.
 *
 * Nothing here waits for the pool: a caller that feeds bytes faster than one thread hashes them
 * asks `backlogAbove` and waits when it must. Without that, a cached blob read at 1 GB/s while
 * the pool was busy kept 660 MiB of chunks queued for the hash (the 2 GiB file of memory.test).
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
  /**
   * Null when at most `maxBytes` handed over are still to be hashed; else a promise that settles
   * (never rejects: a failed job fails the digest) once that holds again.
   */
  backlogAbove(maxBytes: number): Promise<void> | null;
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

function ignore(): void {}

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

  backlogAbove(): null {
    return null;
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
  /** The jobs not yet settled, oldest first (they settle in that order), and their bytes. */
  private readonly queue: { done: Promise<void>; bytes: number }[] = [];
  private queued = 0;

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
    return this.enqueue(data);
  }

  backlogAbove(maxBytes: number): Promise<void> | null {
    if (this.queued <= maxBytes) return null;
    // The jobs run in order: once the first whose end leaves at most maxBytes behind it settles.
    let rest = this.queued;
    for (const job of this.queue) {
      rest -= job.bytes;
      if (rest <= maxBytes) return job.done.then(ignore, ignore);
    }
    return this.chain.then(ignore, ignore);
  }

  private send(): void {
    if (this.used === 0) return;
    const full = this.block.subarray(0, this.used);
    // The block now belongs to the job; the next bytes go to a fresh one.
    this.block = Buffer.allocUnsafeSlow(BLOCK);
    this.used = 0;
    void this.enqueue(full);
  }

  private enqueue(data: Uint8Array): Promise<void> {
    const ctx = this.ctx;
    const done = this.chain.then(() => this.k.shaUpdate(ctx, data));
    const job = { done, bytes: data.length };
    this.chain = done;
    this.queue.push(job);
    this.queued += job.bytes;
    const settled = (): void => {
      this.queue.shift();
      this.queued -= job.bytes;
    };
    done.then(settled, settled);
    return done;
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
