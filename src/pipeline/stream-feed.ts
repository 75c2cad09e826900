/**
 * Feeds a layer's split stream in tar order while its objects are still being stored. An object
 * reference can only be written once its digest is known, so what follows an unfinished object
 * waits here; everything before the first unfinished object goes to the builder at once. The
 * inline bytes waiting are counted (`heldBytes`): the layer's reader stops when they pass its
 * limit until the oldest object is done, so a layer of a million small files holds at most that
 * limit, however the pool is doing.
 * @module
 */
import type { PublishResult } from '../store/objects.ts';
import type { SplitStreamBuilder } from '../store/splitstream.ts';
import { INLINE_ARENA_BYTES as ARENA_BYTES } from '../tuning.ts';

/**
 * Where one object's outcome goes: a batch's results are delivered straight to these, with no
 * promise per file (a layer of a million small files would otherwise make three promises and
 * their closures per file on the main thread, which is the import's ceiling on a big host).
 */
export interface ObjectSink {
  resolve(r: PublishResult): void;
  reject(e: unknown): void;
}

class ObjectSlot implements ObjectSink {
  readonly kind = 'object';
  state: 'pending' | 'done' | 'failed' = 'pending';
  result: PublishResult | null = null;
  error: unknown = null;
  private readonly feed: OrderedStreamFeed;

  constructor(feed: OrderedStreamFeed) {
    this.feed = feed;
  }

  resolve(r: PublishResult): void {
    if (this.state !== 'pending') return;
    this.state = 'done';
    this.result = r;
    this.feed.onSettled(this);
  }

  reject(e: unknown): void {
    if (this.state !== 'pending') return;
    this.state = 'failed';
    this.error = e;
    this.feed.onSettled(this);
  }
}

type Slot = { kind: 'inline'; bytes: Uint8Array } | ObjectSlot;

export class OrderedStreamFeed {
  private readonly builder: SplitStreamBuilder;
  /** A queue with a moving head: shift() on a long array is quadratic. */
  private slots: (Slot | undefined)[] = [];
  private head = 0;
  private held = 0;
  private arena = new Uint8Array(0);
  private arenaOff = 0;
  /** Objects not yet settled, wherever they stand in the queue. */
  private unsettled = 0;
  /** Settles at the next object's outcome: what every waiter below waits on. */
  private next: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private readonly onFailure: (e: unknown) => void;
  objectsWritten = 0;
  objectsPresent = 0;

  /** `onFailure` hears of each object that fails, as it fails (the layer stops reading then). */
  constructor(builder: SplitStreamBuilder, onFailure: (e: unknown) => void = () => undefined) {
    this.builder = builder;
    this.onFailure = onFailure;
  }

  /** Inline bytes waiting behind an unfinished object. */
  get heldBytes(): number {
    return this.held;
  }

  inline(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (this.head === this.slots.length) {
      this.builder.addInline(bytes);
      return;
    }
    // The caller's bytes may be a view of a buffer that is reused: keep a copy.
    this.held += bytes.length;
    if (bytes.length > ARENA_BYTES / 4) {
      this.slots.push({ kind: 'inline', bytes: new Uint8Array(bytes) }); // a copy, even of a Buffer
      return;
    }
    if (this.arena.length - this.arenaOff < bytes.length) {
      this.arena = Buffer.allocUnsafeSlow(ARENA_BYTES); // only what is copied in is read
      this.arenaOff = 0;
    }
    const at = this.arenaOff;
    this.arena.set(bytes, at);
    this.arenaOff += bytes.length;
    const last = this.slots[this.slots.length - 1];
    if (last?.kind === 'inline' && last.bytes.buffer === this.arena.buffer && last.bytes.byteOffset + last.bytes.length === at) {
      last.bytes = new Uint8Array(this.arena.buffer, last.bytes.byteOffset, last.bytes.length + bytes.length);
    } else this.slots.push({ kind: 'inline', bytes: this.arena.subarray(at, at + bytes.length) });
  }

  /** The next object's place in the stream, settled by whoever stores it. */
  pendingObject(): ObjectSink {
    const slot = new ObjectSlot(this);
    this.slots.push(slot);
    this.unsettled++;
    return slot;
  }

  /** The next object's place, settled by a promise (a task of its own). */
  object(result: Promise<PublishResult>): void {
    const slot = this.pendingObject();
    result.then(
      (r) => slot.resolve(r),
      (e: unknown) => slot.reject(e)
    );
  }

  /** @internal An object's outcome: the stream moves on when it was the oldest; waiters wake. */
  onSettled(slot: ObjectSlot): void {
    this.unsettled--;
    if (slot.state === 'failed') this.onFailure(slot.error);
    else if (this.slots[this.head] === slot) this.drain();
    const wake = this.wake;
    if (wake) {
      this.next = null;
      this.wake = null;
      wake();
    }
  }

  /** Settles when the next object settles. */
  private changed(): Promise<void> {
    this.next ??= new Promise<void>((resolve) => (this.wake = resolve));
    return this.next;
  }

  private drain(): void {
    while (this.head < this.slots.length) {
      const s = this.slots[this.head] as Slot;
      if (s.kind === 'inline') {
        this.builder.addInline(s.bytes);
        this.held -= s.bytes.length;
      } else {
        if (s.state !== 'done') {
          if (this.head > 4096 && this.head * 2 > this.slots.length) {
            this.slots = this.slots.slice(this.head);
            this.head = 0;
          }
          return;
        }
        const r = s.result as PublishResult;
        s.result = null;
        this.builder.addObject(r.id, r.size);
        if (r.written) this.objectsWritten++;
        else this.objectsPresent++;
      }
      this.slots[this.head++] = undefined;
    }
    this.slots = [];
    this.head = 0;
  }

  /** The first unfinished object, or null when nothing waits. @throws its error if it failed */
  private oldest(): ObjectSlot | null {
    const s = this.slots[this.head];
    if (!s || s.kind !== 'object') return null;
    if (s.state === 'failed') throw s.error;
    return s;
  }

  /** Waits until no more than `limit` inline bytes are held. @throws the error of an object that failed */
  async waitHeldBelow(limit: number): Promise<void> {
    while (this.held > limit) {
      if (!this.oldest()) return;
      await this.changed();
    }
    this.oldest();
  }

  /** Waits for every object, in order. @throws the error of the first object that failed */
  async finish(): Promise<void> {
    while (this.oldest()) await this.changed();
  }

  /** Waits until no object is still being stored, whatever their outcome (the failure path). */
  async settleAll(): Promise<void> {
    while (this.unsettled > 0) await this.changed();
  }
}
