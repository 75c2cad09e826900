/**
 * Admission control for the pool: bounds the bytes and the tasks in flight. The tar reader awaits
 * a lease before it hands the next file on, so a slow pool slows the read of the blob (the await
 * propagates back through decompression to the file stream). piscina's own queue limits reject
 * rather than wait, and `needsDrain` follows worker capacity, not bytes (piscina#868).
 *
 * Permits are leases: `lease()` returns an object whose `release()` works once, and `run()`
 * releases in a `finally`, so no error path can leak a permit or give one back twice. A lease
 * must only be held by work that finishes on its own (a pool task, or the holder's own reading):
 * an idle open batch holds none, which is what keeps the budget free of deadlocks.
 * @module
 */
import { interrupted, throwIfAborted } from '../errors.ts';

export interface Lease {
  readonly bytes: number;
  /** Gives the permit back; later calls do nothing. */
  release(): void;
}

/** What a layer's reader leases from: the Budget, or in a layer thread its line to the main thread's. */
export interface Leases {
  readonly maxBytes: number;
  lease(bytes: number, signal?: AbortSignal): Promise<Lease>;
}

interface Waiter {
  bytes: number;
  resolve(): void;
}

export class Budget implements Leases {
  readonly maxBytes: number;
  readonly maxTasks: number;
  private bytes = 0;
  private tasks = 0;
  private readonly waiters: Waiter[] = [];

  constructor(maxBytes: number, maxTasks: number) {
    this.maxBytes = maxBytes;
    this.maxTasks = maxTasks;
  }

  get inFlightBytes(): number {
    return this.bytes;
  }
  get inFlightTasks(): number {
    return this.tasks;
  }
  get waiting(): number {
    return this.waiters.length;
  }

  private fits(bytes: number): boolean {
    // One item larger than the whole budget still goes, alone: otherwise it would wait forever.
    if (this.tasks === 0) return true;
    return this.tasks < this.maxTasks && this.bytes + bytes <= this.maxBytes;
  }

  /** Waits (first come, first served) until `bytes` and one task fit. */
  async lease(bytes: number, signal?: AbortSignal): Promise<Lease> {
    throwIfAborted(signal);
    if (!(bytes >= 0 && Number.isFinite(bytes))) throw new RangeError(`budget: bad lease size ${bytes}`);
    if (this.waiters.length > 0 || !this.fits(bytes)) {
      await new Promise<void>((resolve, reject) => {
        const w: Waiter = {
          bytes,
          resolve: () => {
            signal?.removeEventListener('abort', onAbort);
            resolve();
          },
        };
        const onAbort = (): void => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          // The head may have been all that blocked the ones behind it.
          this.wake();
          reject(interrupted(signal));
        };
        this.waiters.push(w);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    } else this.take(bytes);
    let held = true;
    return {
      bytes,
      release: () => {
        if (!held) return;
        held = false;
        this.bytes -= bytes;
        this.tasks--;
        this.wake();
      },
    };
  }

  /** Runs `fn` holding a lease of `bytes`, released however `fn` ends. */
  async run<T>(bytes: number, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const lease = await this.lease(bytes, signal);
    try {
      return await fn();
    } finally {
      lease.release();
    }
  }

  private take(bytes: number): void {
    this.bytes += bytes;
    this.tasks++;
  }

  private wake(): void {
    while (this.waiters.length > 0 && this.fits((this.waiters[0] as Waiter).bytes)) {
      const w = this.waiters.shift() as Waiter;
      this.take(w.bytes);
      w.resolve();
    }
  }
}
