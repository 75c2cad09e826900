/**
 * Small files travel to the pool in batches: one task (and one message each way) carries up to
 * BATCH_FILES files packed back to back in one transferred buffer. Most files of an image are
 * small, and a pool task costs tens of microseconds of messaging however little it hashes.
 * A batch being filled holds no budget: it leases its bytes when it is sent, so a batch left open
 * while its layer's reader waits can never be what that reader waits for.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import type { ObjectTarget } from '../store/objects.ts';
import type { HashImpl } from '../verity/backends.ts';
import { toHex } from '../verity/merkle.ts';
import type { HashAlgorithm } from '../verity/constants.ts';
import type { Lease, Leases } from './budget.ts';
import type { ObjectSink } from './stream-feed.ts';
import type { TaskRunner } from './protocol.ts';
import { giveBack, takeBuffer } from './buffers.ts';

import { BATCH_BYTES, BATCH_FILES } from '../tuning.ts';

export class SmallFileBatcher {
  private buf: Uint8Array | null = null;
  private off = 0;
  private sizes: number[] = [];
  private pending: ObjectSink[] = [];
  private readonly newResult: () => ObjectSink;
  private readonly pool: TaskRunner;
  private readonly budget: Leases;
  private readonly target: ObjectTarget;
  private readonly alg: HashAlgorithm;
  private readonly impl: HashImpl;
  private readonly signal: AbortSignal;

  /**
   * `newResult` gives each file, as it is taken into a batch, the place its outcome goes (the
   * layer's stream feed): results are delivered there, not through a promise per file.
   */
  constructor(opts: { pool: TaskRunner; budget: Leases; target: ObjectTarget; alg: HashAlgorithm; impl: HashImpl; signal: AbortSignal; newResult: () => ObjectSink }) {
    this.newResult = opts.newResult;
    this.pool = opts.pool;
    this.budget = opts.budget;
    this.target = opts.target;
    this.alg = opts.alg;
    this.impl = opts.impl;
    this.signal = opts.signal;
  }

  /**
   * The open batch's buffer, when it has room for `size` more bytes and one more file; null when
   * it is full (send it first). A batch is started when none is open.
   */
  private room(size: number): Uint8Array | null {
    if (size > BATCH_BYTES) throw new RangeError(`batcher: a ${size}-byte file does not fit a batch`);
    if (this.buf && (this.off + size > this.buf.length || this.sizes.length >= BATCH_FILES)) return null;
    if (!this.buf) {
      // Not zeroed: only the bytes copied in are ever sent. A zeroed 1 MiB per batch cost the
      // main thread more than the copying (a memset, and the kernel clearing fresh pages).
      this.buf = takeBuffer(BATCH_BYTES);
      this.off = 0;
    }
    return this.buf;
  }

  /** Counts the `size` bytes just copied in as one more file of the batch. */
  private push(size: number): void {
    this.off += size;
    this.sizes.push(size);
    this.pending.push(this.newResult());
  }

  /**
   * Copies one file's content into the current batch: true when taken, false (and no result
   * place asked for) when the content ended early (the tar is truncated: the caller's parser
   * reports it).
   */
  async add(size: number, content: AsyncIterable<Uint8Array>): Promise<boolean> {
    let buf = this.room(size);
    if (!buf) {
      await this.flush();
      buf = this.room(size) as Uint8Array;
    }
    let got = 0;
    for await (const v of content) {
      if (got + v.length > size) return false;
      buf.set(v, this.off + got);
      got += v.length;
    }
    if (got !== size) return false;
    this.push(size);
    return true;
  }

  /**
   * Copies a whole content into the open batch at once, or returns false when it does not fit
   * (then `add` it, which sends the full batch first). The fast path: no await for most files.
   */
  tryAdd(bytes: Uint8Array): boolean {
    const buf = this.room(bytes.length);
    if (!buf) return false;
    buf.set(bytes, this.off);
    this.push(bytes.length);
    return true;
  }

  /** Whether files wait in a batch not yet sent. */
  get open(): boolean {
    return this.sizes.length > 0;
  }

  /**
   * Sends the current batch (if any) to the pool, once the budget has room for its bytes. The
   * files' results settle when the pool is done; if the lease is refused (abort), they reject.
   */
  async flush(): Promise<void> {
    const buf = this.buf;
    if (!buf) return;
    const sizes = this.sizes;
    const pending = this.pending;
    const used = this.off;
    this.buf = null;
    this.sizes = [];
    this.pending = [];
    if (sizes.length === 0) {
      giveBack(buf);
      return;
    }
    // The whole buffer travels, however little of it is used (it comes back for the next batch:
    // copying a short batch out into a buffer of its own size cost a fresh page per 4 KiB, a
    // tenth of the main thread on small files), so the whole of it is leased.
    let lease: Lease;
    try {
      lease = await this.budget.lease(buf.buffer.byteLength, this.signal);
    } catch (e) {
      for (const p of pending) p.reject(e);
      throw e;
    }
    const data = buf.subarray(0, used);
    const task = { kind: 'store-batch', target: this.target, data, sizes, alg: this.alg, impl: this.impl } as const;
    this.pool
      .run(task, { transfer: [data.buffer as ArrayBuffer], holds: lease })
      .then((r) => {
        if (!r.ok) throw new VeritreeError(r.code, r.message, { path: r.path });
        giveBack(r.data);
        const n = pending.length;
        const ds = r.ids.length / n;
        if (r.written.length !== n || !Number.isInteger(ds) || ds === 0) {
          throw new VeritreeError(ERROR_CODES.WORKER_FAILED, `batch: the worker returned ${r.written.length} results for ${n} files`);
        }
        let at = 0;
        for (let i = 0; i < n; i++) {
          (pending[i] as ObjectSink).resolve({ id: toHex(r.ids.subarray(at, at + ds)), size: sizes[i] as number, written: r.written[i] === 1 });
          at += ds;
        }
      })
      .catch((e: unknown) => {
        for (const p of pending) p.reject(e);
      })
      .finally(() => lease.release());
  }

  /** Drops a batch not yet sent (the layer failed): its files' results reject with `reason`. */
  discard(reason: unknown): void {
    const pending = this.pending;
    if (this.buf) giveBack(this.buf);
    this.buf = null;
    this.sizes = [];
    this.pending = [];
    for (const p of pending) p.reject(reason);
  }
}
