/**
 * The one Piscina pool of a command. Its size is min(available cores, I/O limit), with --jobs
 * overriding. min = max threads, so no thread is created or destroyed mid-run.
 * @module
 */
import { availableParallelism } from 'node:os';
import type { Piscina } from 'piscina';
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import type { TaskResults, VerityTask } from './protocol.ts';

// piscina loads a CommonJS entry that import()s the ES module worker (see that file for why).
// From source (.ts under a loader) it is the .cts file; compiled, dist/workers/*.cjs.
const ext = import.meta.url.endsWith('.ts') ? '.cts' : '.cjs';
export const WORKER_URL = new URL(`../../workers/verity.worker-entry${ext}`, import.meta.url).href;

export interface PoolSizeOptions {
  jobs?: number | undefined;
  ioLimit?: number | undefined;
}

/** min(available cores, I/O limit), or exactly `jobs` when given. */
export function poolSize(opts: PoolSizeOptions, cores: number = availableParallelism()): number {
  if (opts.jobs !== undefined) return Math.max(1, Math.floor(opts.jobs));
  return Math.max(1, Math.min(cores, Math.floor(opts.ioLimit ?? cores)));
}

export class VerityPool {
  readonly size: number;
  private started: Piscina | null = null;
  private starting: Promise<Piscina> | null = null;
  private closed = false;

  /**
   * `lazy`: boot the workers on the first task, not now (fsck and `digest`, which may hash on
   * libuv's pool instead and never need them). Otherwise they boot while the caller gets ready.
   * piscina itself is loaded then too: a command that never runs a task does not pay for it.
   */
  constructor(size: number, opts: { lazy?: boolean } = {}) {
    this.size = size;
    if (opts.lazy !== true) this.piscina().catch(() => undefined);
  }

  private piscina(): Promise<Piscina> {
    if (this.closed) return Promise.reject(new VeritreeError(ERROR_CODES.INTERNAL, 'worker pool used after close'));
    this.starting ??= import('piscina').then(({ Piscina }) => {
      const pool = new Piscina({
        filename: WORKER_URL,
        minThreads: this.size,
        maxThreads: this.size,
        idleTimeout: 60_000,
        concurrentTasksPerWorker: 1,
      });
      // A worker that dies between tasks emits 'error' on the pool; without a listener it would
      // crash the process. The task in flight (if any) is rejected on its own.
      pool.on('error', () => undefined);
      this.started = pool;
      return pool;
    });
    return this.starting;
  }

  /** Runs one task; `transfer` buffers are moved to the worker (their views become empty here). */
  async run<T extends VerityTask>(task: T, opts: { transfer?: ArrayBuffer[]; signal?: AbortSignal } = {}): Promise<TaskResults[T['kind']]> {
    const pool = await this.piscina();
    try {
      return (await pool.run(task, {
        ...(opts.transfer ? { transferList: opts.transfer } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
      })) as TaskResults[T['kind']];
    } catch (e) {
      if (opts.signal?.aborted) throw new VeritreeError(ERROR_CODES.ABORTED, 'interrupted', { cause: e });
      throw new VeritreeError(ERROR_CODES.WORKER_FAILED, `worker failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }

  get utilization(): number {
    return this.started?.utilization ?? 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await (await this.settledStart())?.close();
  }

  async destroy(): Promise<void> {
    this.closed = true;
    await (await this.settledStart())?.destroy();
  }

  /** The pool, once a start under way has finished; null when none was started (or it failed). */
  private async settledStart(): Promise<Piscina | null> {
    if (this.starting) await this.starting.catch(() => undefined);
    return this.started;
  }
}
