/**
 * Reusable buffers for the bytes that travel to the pool: small-file batches (1 MiB) and held
 * files (rounded up to a power of two, up to 16 MiB). A worker gives each one back with its
 * result (transferred, not copied), and the next batch or file is written into it. A fresh buffer
 * per batch cost the main thread a page fault per 4 KiB, the kernel clearing each page, and the
 * allocator trimming and growing its heap as the buffers died in the workers: about 13% of the
 * main thread on a 132 MB layer (measured with `perf`).
 * @module
 */

import { MAX_IDLE_BUFFER_BYTES as MAX_IDLE, MAX_REUSABLE_BYTES as MAX_CLASS, REUSABLE_BYTES } from '../tuning.ts';

const free = new Map<number, ArrayBuffer[]>();
let idle = 0;

/** The bytes a buffer for `size` bytes takes: the size class, or `size` above the largest. */
export function bufferBytesFor(size: number): number {
  if (size > MAX_CLASS) return size;
  let c = REUSABLE_BYTES;
  while (c < size) c *= 2;
  return c;
}

/** A buffer of `size` bytes, not zeroed, over a given-back one when there is one of its class. */
export function takeBuffer(size: number = REUSABLE_BYTES): Buffer {
  const bytes = bufferBytesFor(size);
  if (bytes > MAX_CLASS) return Buffer.allocUnsafeSlow(size);
  const ab = free.get(bytes)?.pop();
  if (ab) idle -= bytes;
  return Buffer.from(ab ?? Buffer.allocUnsafeSlow(bytes).buffer, 0, size);
}

/** Keeps the buffer under `view` for reuse, when it is one of ours (a size class, its own). */
export function giveBack(view: Uint8Array | undefined): void {
  if (!view) return;
  const ab = view.buffer;
  const bytes = ab.byteLength;
  // A size class is its own bufferBytesFor; anything smaller or between classes is not.
  if (!(ab instanceof ArrayBuffer) || bytes > MAX_CLASS || bytes !== bufferBytesFor(bytes) || idle + bytes > MAX_IDLE) return;
  let list = free.get(bytes);
  if (!list) free.set(bytes, (list = []));
  list.push(ab);
  idle += bytes;
}

/** Bytes kept for reuse now (tests, benchmarks). */
export function idleBufferBytes(): number {
  return idle;
}
