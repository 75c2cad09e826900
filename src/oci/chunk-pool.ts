/**
 * Recycled chunk buffers for one layer's chain: the blob's reads and zstd's output. A fresh
 * buffer per chunk is garbage a megabyte at a time, and V8 frees a dead ArrayBuffer only at a
 * collection; it starts one for external memory only after about 64 MiB of it have built up, so
 * every thread that reads a layer carried that much dead memory (docs/performance.md).
 *
 * The rule: a chunk is lent to a fixed number of holders, each of which calls `release` once,
 * after its last read of the chunk; the last release puts the buffer back for the next `take`.
 * A holder that never releases (an error, a consumer that keeps chunks) leaves the buffer to the
 * garbage collector: a lost release costs memory, never bytes. Loans are counted by the chunk
 * object lent, not by its buffer: releasing anything else (a copy a stream made, another view,
 * a chunk whose loan has ended) does nothing, so a consumer can release every chunk it sees,
 * and a stale release cannot end a later loan of the same buffer.
 * @module
 */

/**
 * `VERITREE_CHUNK_POISON=1` (tests): a buffer given back is overwritten, so that a holder that
 * reads a chunk after releasing it stores wrong bytes, and the layer no longer rebuilds. Read at
 * each give-back: a test sets it after its modules are loaded, and threads inherit it.
 */
function poisoning(): boolean {
  return process.env.VERITREE_CHUNK_POISON === '1';
}

export class ChunkPool {
  /** The size of every buffer `take` returns. */
  readonly chunkBytes: number;
  private readonly maxIdle: number;
  private readonly free: ArrayBuffer[] = [];
  /** Holders yet to release each lent chunk (weak: a chunk lost on an error is collected). */
  private readonly holders = new WeakMap<Uint8Array, number>();

  /** `maxIdleBytes`: what given-back buffers may take while they wait to be reused. */
  constructor(chunkBytes: number, maxIdleBytes: number) {
    this.chunkBytes = chunkBytes;
    this.maxIdle = Math.max(0, Math.floor(maxIdleBytes / chunkBytes));
  }

  /** A buffer of `chunkBytes`, not zeroed: a given-back one when there is one. */
  take(): Buffer {
    const ab = this.free.pop();
    return ab ? Buffer.from(ab) : Buffer.allocUnsafeSlow(this.chunkBytes);
  }

  /** Hands `chunk` (a view of a buffer from `take`) to `count` holders. */
  lend(chunk: Uint8Array, count: number): void {
    this.holders.set(chunk, count);
  }

  /** One holder is done with `chunk` (the object lent); the last one gives its buffer back. */
  release(chunk: Uint8Array): void {
    const left = this.holders.get(chunk);
    if (left === undefined) return;
    if (left > 1) {
      this.holders.set(chunk, left - 1);
      return;
    }
    this.holders.delete(chunk);
    const ab = chunk.buffer as ArrayBuffer;
    if (poisoning()) new Uint8Array(ab).fill(0xa5);
    if (this.free.length < this.maxIdle) this.free.push(ab);
  }

  /** Buffers waiting to be reused (tests). */
  get idle(): number {
    return this.free.length;
  }

  /** Lets the buffers waiting to be reused go (a thread about to idle). */
  trim(): void {
    this.free.length = 0;
  }
}

const shared = new Map<number, ChunkPool>();

/**
 * This thread's pool of `chunkBytes` buffers, shared by the layers it reads: a layer's chain
 * keeps many chunks in flight (the hash backlogs), and a pool per layer would allocate them all
 * again for each layer.
 */
export function sharedChunkPool(chunkBytes: number, maxIdleBytes: number): ChunkPool {
  let p = shared.get(chunkBytes);
  if (!p) shared.set(chunkBytes, (p = new ChunkPool(chunkBytes, maxIdleBytes)));
  return p;
}

/** Empties every shared pool's idle list. */
export function trimChunkPools(): void {
  for (const p of shared.values()) p.trim();
}
