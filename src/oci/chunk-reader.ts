/**
 * Pulls exact byte counts out of an async stream of chunks without copying what it can hand out
 * as views. The tar splitter reads headers (512 bytes) and contents (any size) through it.
 * With `release`, a view is valid only until the next read: once the reader has moved past a
 * chunk it releases it, and its buffer may be reused (oci/chunk-pool.ts), so a caller copies
 * what it keeps. Without, views stay valid, as the chunks are never reused.
 * @module
 */
export class ChunkReader {
  private readonly it: AsyncIterator<Uint8Array>;
  private readonly release: ((chunk: Uint8Array) => void) | undefined;
  private cur: Uint8Array = new Uint8Array(0);
  private pos = 0;
  private ended = false;
  /** Bytes handed out so far: the offset in the stream. */
  offset = 0;

  constructor(source: AsyncIterable<Uint8Array>, release?: (chunk: Uint8Array) => void) {
    this.it = source[Symbol.asyncIterator]();
    this.release = release;
  }

  private async fill(): Promise<boolean> {
    while (this.pos >= this.cur.length) {
      if (this.ended) return false;
      // Every view of the chunk in hand has been used: the caller asked for more.
      this.release?.(this.cur);
      this.cur = new Uint8Array(0);
      const r = await this.it.next();
      if (r.done) {
        this.ended = true;
        return false;
      }
      this.cur = r.value;
      this.pos = 0;
    }
    return true;
  }

  /**
   * The next `n` bytes as a view, when the chunk in hand holds them all; else null and nothing is
   * consumed. The splitter's fast path: most headers and small files need no await and no copy.
   */
  view(n: number): Uint8Array | null {
    if (this.cur.length - this.pos < n) return null;
    const v = this.cur.subarray(this.pos, this.pos + n);
    this.pos += n;
    this.offset += n;
    return v;
  }

  /** Exactly `n` bytes (a copy), or fewer only at the end of the stream. */
  async exact(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n && (await this.fill())) {
      const take = Math.min(n - got, this.cur.length - this.pos);
      out.set(this.cur.subarray(this.pos, this.pos + take), got);
      this.pos += take;
      got += take;
    }
    this.offset += got;
    return got === n ? out : out.subarray(0, got);
  }

  /** Up to `n` bytes as views of the source's chunks; ends early only at the end of the stream. */
  async *views(n: number): AsyncGenerator<Uint8Array> {
    let left = n;
    while (left > 0 && (await this.fill())) {
      const take = Math.min(left, this.cur.length - this.pos);
      const view = this.cur.subarray(this.pos, this.pos + take);
      this.pos += take;
      this.offset += take;
      left -= take;
      yield view;
    }
  }

  /**
   * Ends the source early (its iterator's `return`, which destroys a stream); idempotent. The
   * chunk in hand is not released: a sink that failed may still have been reading it.
   */
  async close(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.cur = new Uint8Array(0);
    this.pos = 0;
    try {
      await this.it.return?.();
    } catch {
      // the source's own error has been (or will be) reported by whoever read it
    }
  }

  /** Everything left, up to `max` bytes; returns null when more than `max` remain. */
  async rest(max: number): Promise<Uint8Array | null> {
    const parts: Uint8Array[] = [];
    let total = 0;
    while (await this.fill()) {
      const view = this.cur.subarray(this.pos);
      this.pos = this.cur.length;
      total += view.length;
      this.offset += view.length;
      if (total > max) return null;
      parts.push(new Uint8Array(view)); // a copy (a Buffer's slice() would be a view)
    }
    return Buffer.concat(parts);
  }
}
