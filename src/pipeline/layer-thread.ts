/**
 * The layer threads of an import run: each layer's whole chain (read, verify, inflate, split,
 * batch, its split stream) runs in a worker thread (workers/layer.worker.ts), one layer at a time
 * per thread, threads reused across layers. The main thread keeps the pool and the byte budget:
 * it answers each thread's leases and hands its tasks to the pool and their results back, one
 * message per batch of files, so its work grows with batches, not with files or bytes.
 * @module
 */
import { Worker } from 'node:worker_threads';
import { ERROR_CODES, VeritreeError, interrupted, isVeritreeError, throwIfAborted } from '../errors.ts';
import type { TarWarningCode } from '../oci/tar-split.ts';
import type { Budget, Lease } from './budget.ts';
import { importLayer, verifyStoredLayer, type LayerContext, type LayerRead, type LayerResult } from './layer-import.ts';
import { fromWire, layoutOf, threadDied, toWire, type FromThread, type LayerJob, type ToThread } from './layer-messages.ts';
import type { VerityPool } from './pool.ts';
import type { TaskResults, VerityTask } from './protocol.ts';
import { INLINE_LAYER_BYTES, LAYER_THREAD_YOUNG_MB, MAX_SPARE_LAYER_THREADS } from '../tuning.ts';

// Compiled, dist/workers/layer.worker.js; from source (.ts under a loader), the .ts file.
const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const LAYER_WORKER_URL = new URL(`../../workers/layer.worker${ext}`, import.meta.url);

function newThread(): Worker {
  return new Worker(LAYER_WORKER_URL, { resourceLimits: { maxYoungGenerationSizeMb: LAYER_THREAD_YOUNG_MB } });
}

/**
 * Threads waiting for a run, booted ahead of it or kept from the last one (unref'd: a spare
 * never keeps the process alive). A thread loads its modules (over 100 ms of its own CPU, more
 * under load), so this takes that off the critical path.
 */
const spares: Worker[] = [];
const spareDied = (w: Worker) => (): void => {
  const i = spares.indexOf(w);
  if (i >= 0) spares.splice(i, 1);
};

/**
 * Takes off the listeners this module put on a thread. Only those: removeAllListeners() on a
 * Worker also took Node's own, and a reused thread's messages were then lost (a layer waited
 * for ever on a lease the main thread never heard of).
 */
const detachers = new WeakMap<Worker, () => void>();
function detach(w: Worker): void {
  detachers.get(w)?.();
  detachers.delete(w);
}

function keepSpare(w: Worker): void {
  detach(w);
  w.unref();
  const died = spareDied(w);
  w.once('error', died);
  w.once('exit', died);
  detachers.set(w, () => {
    w.off('error', died);
    w.off('exit', died);
  });
  spares.push(w);
}

/** Boots one layer thread ahead of the run that will use it, unless one waits already. */
export function bootLayerThread(): void {
  if (spares.length === 0) keepSpare(newThread());
}

export interface LayerHooks {
  onBytes(compressed: number, tar: number, entries: number): void;
  onFinishing(): void;
  onWarning(code: TarWarningCode, message: string): void;
}

/** A lease the main thread holds for a thread: granted, or still waited for (`stop` gives up). */
interface HeldLease {
  id: number;
  lease: Lease | null;
  stop: AbortController;
}

interface Running {
  hooks: LayerHooks;
  leases: Map<number, HeldLease>;
  settle(r: LayerRead | LayerResult | null, e?: unknown): void;
}

class LayerThread {
  readonly worker: Worker;
  running: Running | null = null;
  dead = false;

  constructor(worker: Worker) {
    this.worker = worker;
  }

  send(msg: ToThread, transfer?: ArrayBuffer[]): void {
    if (!this.dead) this.worker.postMessage(msg, transfer);
  }
}

/** The buffer a task or result carries, to transfer rather than copy. */
function carried(x: { data?: Uint8Array | undefined }): ArrayBuffer[] | undefined {
  return x.data && x.data.buffer instanceof ArrayBuffer ? [x.data.buffer] : undefined;
}

export class LayerThreads {
  private readonly pool: VerityPool;
  private readonly budget: Budget;
  private readonly threads: LayerThread[] = [];
  private closed = false;

  /** Whether layers over INLINE_LAYER_BYTES go to threads; off, every layer runs here. */
  private readonly threaded: boolean;

  constructor(pool: VerityPool, budget: Budget, threaded: boolean) {
    this.pool = pool;
    this.budget = budget;
    this.threaded = threaded;
  }

  /**
   * Runs one layer in an idle thread, or a new one: the caller (the layer scheduler) bounds how
   * many run at once. An abort stops the thread's layer, which settles every task it started
   * before it reports, so nothing is still written when this rejects.
   */
  async run(job: LayerJob, hooks: LayerHooks, signal: AbortSignal): Promise<LayerRead | LayerResult> {
    throwIfAborted(signal);
    if (this.closed) throw new VeritreeError(ERROR_CODES.INTERNAL, 'layer threads used after close');
    if (!this.threaded || job.layer.descriptor.size <= INLINE_LAYER_BYTES) return this.runHere(job, hooks, signal);
    const t = this.threads.find((x) => !x.running && !x.dead) ?? this.spawn();
    t.worker.ref();
    const onAbort = (): void => t.send({ type: 'abort' });
    try {
      return await new Promise<LayerRead | LayerResult>((resolve, reject) => {
        t.running = {
          hooks,
          leases: new Map(),
          settle: (r, e) => {
            const running = t.running;
            t.running = null;
            for (const held of running?.leases.values() ?? []) held.lease?.release() ?? held.stop.abort();
            if (r) resolve(r);
            else reject(e);
          },
        };
        signal.addEventListener('abort', onAbort, { once: true });
        t.send({ type: 'job', job });
      });
    } catch (e) {
      throw signal.aborted && isVeritreeError(e) && e.code === ERROR_CODES.ABORTED ? interrupted(signal) : e;
    } finally {
      signal.removeEventListener('abort', onAbort);
      if (!t.dead) t.worker.unref();
    }
  }

  /** A small layer's chain on this thread, over the pool and budget directly. */
  private runHere(job: LayerJob, hooks: LayerHooks, signal: AbortSignal): Promise<LayerRead | LayerResult> {
    const ctx: LayerContext = {
      target: job.target,
      root: job.root,
      pool: this.pool,
      budget: this.budget,
      impl: job.impl,
      limits: job.limits,
      spoolThreshold: job.spoolThreshold,
      signal,
      onBytes: (_l, compressed, tar, entries) => hooks.onBytes(compressed, tar, entries),
      onFinishing: () => hooks.onFinishing(),
      onWarning: (_l, code, message) => hooks.onWarning(code, message),
    };
    const layout = layoutOf(job.layout);
    return job.mode === 'import' ? importLayer(ctx, job.layer, layout) : verifyStoredLayer(ctx, job.layer, layout);
  }

  private spawn(): LayerThread {
    const spare = spares.shift();
    if (spare) detach(spare);
    const t = new LayerThread(spare ?? newThread());
    this.threads.push(t);
    const died = (why: string): void => {
      if (t.dead) return;
      t.dead = true;
      this.threads.splice(this.threads.indexOf(t), 1);
      t.running?.settle(null, threadDied(why));
    };
    const onMessage = (msg: FromThread): void => this.receive(t, msg);
    const onError = (e: Error): void => died(e.message);
    const onExit = (code: number): void => died(`exited with code ${code}`);
    t.worker.on('message', onMessage);
    t.worker.on('error', onError);
    t.worker.on('exit', onExit);
    detachers.set(t.worker, () => {
      t.worker.off('message', onMessage);
      t.worker.off('error', onError);
      t.worker.off('exit', onExit);
    });
    return t;
  }

  private receive(t: LayerThread, msg: FromThread): void {
    const r = t.running;
    if (!r) return;
    switch (msg.type) {
      case 'lease':
        this.lease(t, r, msg.id, msg.bytes);
        return;
      case 'unlease': {
        const held = r.leases.get(msg.id);
        r.leases.delete(msg.id);
        if (held?.lease) held.lease.release();
        else held?.stop.abort();
        return;
      }
      case 'run':
        this.forward(t, msg.id, msg.task, msg.holds === undefined ? undefined : r.leases.get(msg.holds));
        return;
      case 'bytes':
        r.hooks.onBytes(msg.compressed, msg.tar, msg.entries);
        return;
      case 'finishing':
        r.hooks.onFinishing();
        return;
      case 'warning':
        r.hooks.onWarning(msg.code, msg.message);
        return;
      case 'done':
        r.settle(msg.result);
        return;
      case 'failed':
        r.settle(null, fromWire(msg.error));
        return;
    }
  }

  private lease(t: LayerThread, r: Running, id: number, bytes: number): void {
    const held: HeldLease = { id, lease: null, stop: new AbortController() };
    r.leases.set(id, held);
    this.budget.lease(bytes, held.stop.signal).then(
      (lease) => {
        // Given up meanwhile (an unlease, or the layer ended): back at once.
        if (r.leases.get(id) !== held) return lease.release();
        held.lease = lease;
        t.send({ type: 'grant', id });
      },
      (e: unknown) => {
        if (r.leases.get(id) !== held) return;
        r.leases.delete(id);
        t.send({ type: 'refuse', id, error: toWire(e) });
      }
    );
  }

  /** Hands a thread's task to the pool and its result back; a pool failure is a failed result. */
  private forward(t: LayerThread, id: number, task: VerityTask, holds: HeldLease | undefined): void {
    const transfer = carried(task as { data?: Uint8Array });
    const done = (): void => {
      // The thread handed this lease over with the task: released as the task ends.
      if (holds?.lease && t.running?.leases.get(holds.id) === holds) t.running.leases.delete(holds.id);
      holds?.lease?.release();
    };
    this.pool.run(task, transfer ? { transfer } : {}).finally(done).then(
      (result) => t.send({ type: 'result', id, result }, carried(result as { data?: Uint8Array })),
      (e: unknown) => {
        const result: TaskResults[VerityTask['kind']] = { ok: false, code: isVeritreeError(e) ? e.code : ERROR_CODES.WORKER_FAILED, message: e instanceof Error ? e.message : String(e) };
        t.send({ type: 'result', id, result });
      }
    );
  }

  /**
   * Ends the run's threads: up to MAX_SPARE_LAYER_THREADS idle ones are kept as the next run's spares (an
   * import after this one skips their boot), the others are stopped.
   */
  async close(): Promise<void> {
    this.closed = true;
    const all = this.threads.splice(0);
    const stop: Worker[] = [];
    for (const t of all) {
      t.dead = true;
      const idle = t.running === null;
      t.running?.settle(null, threadDied('the run ended'));
      if (idle && spares.length < MAX_SPARE_LAYER_THREADS) keepSpare(t.worker);
      else stop.push(t.worker);
    }
    await Promise.all(stop.map((w) => w.terminate()));
  }
}
