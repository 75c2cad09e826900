/**
 * Admission control for the pool: bounds the bytes and the tasks in flight. The tar reader awaits
 * `acquire` before it hands the next file on, so a slow pool slows the read of the blob (the
 * await propagates back through decompression to the file stream). piscina's own queue limits
 * reject rather than wait, and `needsDrain` follows worker capacity, not bytes (piscina#868).
 * @module
 */
import { interrupted, throwIfAborted } from '../errors.ts';

export class Budget {
  readonly maxBytes: number;
  readonly maxTasks: number;
  private bytes = 0;
  private tasks = 0;
  private readonly waiters: { bytes: number; resolve: () => void; reject: (e: unknown) => void }[] = [];

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

  private fits(bytes: number): boolean {
    // One item larger than the whole budget still goes, alone: otherwise it would wait forever.
    if (this.tasks === 0) return true;
    return this.tasks < this.maxTasks && this.bytes + bytes <= this.maxBytes;
  }

  async acquire(bytes: number, signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    if (this.waiters.length === 0 && this.fits(bytes)) {
      this.take(bytes);
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(interrupted(signal));
      };
      const w = {
        bytes,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject,
      };
      this.waiters.push(w);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private take(bytes: number): void {
    this.bytes += bytes;
    this.tasks++;
  }

  release(bytes: number): void {
    this.bytes -= bytes;
    this.tasks--;
    while (this.waiters.length > 0 && this.fits((this.waiters[0] as { bytes: number }).bytes)) {
      const w = this.waiters.shift() as (typeof this.waiters)[number];
      this.take(w.bytes);
      w.resolve();
    }
  }
}
