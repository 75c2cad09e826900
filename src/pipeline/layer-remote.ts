/**
 * A layer thread's line to the main thread: the pool and the run's byte budget live there, so
 * that every layer of a run shares one pool and one bound. Each batch of files costs the main
 * thread a lease, a task handed on to the pool and its result handed back: work per batch,
 * none per file or per byte (a batch's buffer is transferred each way, never copied).
 * @module
 */
import { interrupted, throwIfAborted } from '../errors.ts';
import type { Lease, Leases } from './budget.ts';
import { fromWire, type FromThread, type ToThread } from './layer-messages.ts';
import type { TaskResults, TaskRunner, VerityTask } from './protocol.ts';

type Post = (msg: FromThread, transfer?: ArrayBuffer[]) => void;

interface LeaseWait {
  resolve(): void;
  reject(e: unknown): void;
}

export class RemoteLine implements TaskRunner, Leases {
  readonly size: number;
  readonly maxBytes: number;
  private readonly post: Post;
  private nextId = 1;
  private readonly runs = new Map<number, (r: TaskResults[VerityTask['kind']]) => void>();
  private readonly leases = new Map<number, LeaseWait>();

  constructor(post: Post, poolSize: number, maxBytes: number) {
    this.post = post;
    this.size = poolSize;
    this.maxBytes = maxBytes;
  }

  /** The pool's answer to a task, or the budget's to a lease. */
  receive(msg: ToThread): void {
    if (msg.type === 'result') {
      const done = this.runs.get(msg.id);
      this.runs.delete(msg.id);
      done?.(msg.result);
    } else if (msg.type === 'grant' || msg.type === 'refuse') {
      const w = this.leases.get(msg.id);
      this.leases.delete(msg.id);
      // A grant for a wait given up (its unlease is on its way) is released there.
      if (msg.type === 'grant') w?.resolve();
      else w?.reject(fromWire(msg.error));
    }
  }

  /** Tasks and leases still unanswered (none once a layer has settled). */
  get outstanding(): number {
    return this.runs.size + this.leases.size;
  }

  run<T extends VerityTask>(task: T, opts: { transfer?: ArrayBuffer[]; holds?: Lease } = {}): Promise<TaskResults[T['kind']]> {
    const id = this.nextId++;
    // The main thread releases a lease of this line's with the task: its release here is then a no-op.
    const held = opts.holds instanceof RemoteLease && opts.holds.handOver() ? opts.holds.id : undefined;
    return new Promise((resolve) => {
      this.runs.set(id, resolve as (r: TaskResults[VerityTask['kind']]) => void);
      this.post({ type: 'run', id, task, holds: held }, opts.transfer);
    });
  }

  async lease(bytes: number, signal?: AbortSignal): Promise<Lease> {
    throwIfAborted(signal);
    const id = this.nextId++;
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        if (!this.leases.delete(id)) return;
        this.post({ type: 'unlease', id });
        reject(interrupted(signal));
      };
      this.leases.set(id, {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      this.post({ type: 'lease', id, bytes });
    });
    return new RemoteLease(id, bytes, this.post);
  }
}

/** A lease of the main thread's budget, given back once: here, or by the main thread with its task. */
class RemoteLease implements Lease {
  readonly id: number;
  readonly bytes: number;
  private readonly post: Post;
  private held = true;

  constructor(id: number, bytes: number, post: Post) {
    this.id = id;
    this.bytes = bytes;
    this.post = post;
  }

  /** Whether the lease was held: the main thread releases it from now on. */
  handOver(): boolean {
    const was = this.held;
    this.held = false;
    return was;
  }

  /** A property, not a method: callers pass it on unbound (`.finally(lease.release)`). */
  readonly release = (): void => {
    if (this.handOver()) this.post({ type: 'unlease', id: this.id });
  };
}
