/**
 * The one Piscina pool of a command. Its size is min(available cores, I/O limit), with --jobs
 * overriding. min = max threads, so no thread is created or destroyed mid-run.
 * @module
 */
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import type { Piscina } from 'piscina';
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import type { Lease } from './budget.ts';
import type { TaskResults, TaskRunner, VerityTask } from './protocol.ts';

/**
 * piscina, loaded when a pool first starts, not with this module: fsck, `digest` and cat-layer,
 * which hash on libuv's threads, never pay for it. Loaded synchronously (its CommonJS build), so
 * that an import's workers start booting at once, as with a static import.
 */
const loadPiscina = (): typeof import('piscina') => createRequire(import.meta.url)('piscina') as typeof import('piscina');

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

export class VerityPool implements TaskRunner {
  readonly size: number;
  private started: Piscina | null = null;
  private closed = false;

  /**
   * `lazy`: boot the workers on the first task, not now (fsck and `digest`, which may hash on
   * libuv's pool instead and never need them). Otherwise they boot while the caller gets ready.
   */
  constructor(size: number, opts: { lazy?: boolean } = {}) {
    this.size = size;
    if (opts.lazy !== true) void this.piscina;
  }

  private get piscina(): Piscina {
    if (this.started) return this.started;
    if (this.closed) throw new VeritreeError(ERROR_CODES.INTERNAL, 'worker pool used after close');
    const { Piscina: Pool } = loadPiscina();
    this.started = new Pool({
      filename: WORKER_URL,
      minThreads: this.size,
      maxThreads: this.size,
      idleTimeout: 60_000,
      concurrentTasksPerWorker: 1,
    });
    // A worker that dies between tasks emits 'error' on the pool; without a listener it would
    // crash the process. The task in flight (if any) is rejected on its own.
    this.started.on('error', () => undefined);
    return this.started;
  }

  /** Runs one task; `transfer` buffers are moved to the worker (their views become empty here). */
  async run<T extends VerityTask>(task: T, opts: { transfer?: ArrayBuffer[]; signal?: AbortSignal; holds?: Lease } = {}): Promise<TaskResults[T['kind']]> {
    try {
      return (await this.piscina.run(task, {
        ...(opts.transfer ? { transferList: opts.transfer } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
      })) as TaskResults[T['kind']];
    } catch (e) {
      if (opts.signal?.aborted) throw new VeritreeError(ERROR_CODES.ABORTED, 'interrupted', { cause: e });
      throw new VeritreeError(ERROR_CODES.WORKER_FAILED, `worker failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    } finally {
      opts.holds?.release();
    }
  }

  get utilization(): number {
    return this.started?.utilization ?? 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.started?.close();
  }

  async destroy(): Promise<void> {
    this.closed = true;
    await this.started?.destroy();
  }
}

/**
 * A pool started before the command that will use it has loaded: a worker takes about 120 ms to
 * boot here (an isolate, Node's bootstrap, the worker's modules), and the import command spent
 * about 100 ms loading its modules and reading the layout before it made its pool, one after the
 * other. The CLI starts this one first thing for `import`; the command takes it if the size
 * it settles on is the same, and whatever is not taken is stopped at exit. An import with nothing
 * to do (the image already there) pays for it, about 50 ms on 2 cores, where the workers' start
 * competes with the main thread (docs/performance.md).
 */
let early: VerityPool | null = null;

export function bootEarly(size: number): void {
  early ??= new VerityPool(size);
}

/**
 * The early pool when it has as many workers as `size` says (it is the caller's now); else null,
 * and it is stopped. `size` is asked only when there is an early pool: without one, the caller's
 * import works out its own size, and would do it twice.
 */
export async function takeEarly(size: () => Promise<number>): Promise<VerityPool | null> {
  const p = early;
  early = null;
  if (!p) return null;
  if (p.size === (await size())) return p;
  // A pool of the wrong size is dropped: whether its workers stop cleanly changes nothing for
  // the import, which makes its own pool.
  p.destroy().catch(() => undefined);
  return null;
}

/** Ends the early pool if no command took it: its workers ran nothing, so they are stopped, not drained. */
export async function closeEarly(): Promise<void> {
  const p = early;
  early = null;
  await p?.destroy();
}
