/**
 * Where zstd frames end, read from their headers alone (RFC 8878: frame header, block headers,
 * optional checksum; skippable frames by their size). Node's own zstd (node:zlib, Node >= 22.15)
 * decodes the first frame of its input and silently drops the rest, in one call
 * (zstdDecompressSync) as in a stream (createZstdDecompress); split-stream sections are written
 * one frame per 4 MiB of records, and zstd:chunked layers are many frames. So the frames are cut
 * apart here and each is given to its own decoder. The scanner is incremental: bytes can arrive in
 * any pieces.
 * @module
 */

const MAGIC = 0xfd2fb528;
const SKIPPABLE_MIN = 0x184d2a50;
const SKIPPABLE_MAX = 0x184d2a5f;

type State = 'magic' | 'skipSize' | 'skip' | 'descriptor' | 'header' | 'blockHeader' | 'block' | 'checksum';

export class ZstdFrameError extends Error {}

/** Follows frames as bytes go by; `feed` says where the current frame ends within a chunk. */
export class ZstdFrameScanner {
  private state: State = 'magic';
  /** Bytes of a fixed-size field gathered so far (a field may span chunks). */
  private field: number[] = [];
  private need = 4;
  /** Bytes left to skip (header rest, block content, skippable frame data). */
  private skip = 0;
  private checksum = false;
  private lastBlock = false;
  /** Whether the current frame is a skippable one (no data to decode). */
  skippable = false;
  /** True between a frame's first byte and its last. */
  inFrame = false;

  /**
   * Consumes `chunk` from `at`. @returns the offset just past the end of the current frame when
   * it ends within the chunk, else -1 (the whole rest of the chunk belongs to it).
   * @throws ZstdFrameError on bytes that are not a zstd frame
   */
  feed(chunk: Uint8Array, at = 0): number {
    let i = at;
    while (i < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        this.skip -= n;
        i += n;
        if (this.skip > 0) return -1;
        if (this.afterSkip()) return i;
        continue;
      }
      this.inFrame = true;
      this.field.push(chunk[i++] as number);
      if (this.field.length < this.need) continue;
      if (this.onField(this.field)) {
        this.field = [];
        return i;
      }
      this.field = [];
    }
    return -1;
  }

  /** What follows a run of skipped bytes; true when that ended the frame. */
  private afterSkip(): boolean {
    switch (this.state) {
      case 'skip':
        return this.endFrame();
      case 'header':
        this.expect('blockHeader', 3);
        return false;
      case 'block':
        if (!this.lastBlock) this.expect('blockHeader', 3);
        else if (this.checksum) this.expect('checksum', 4);
        else return this.endFrame();
        return false;
      default:
        throw new ZstdFrameError(`zstd frame scanner in state ${this.state} after a skip`);
    }
  }

  private expect(state: State, bytes: number): void {
    this.state = state;
    this.need = bytes;
  }

  private endFrame(): boolean {
    this.expect('magic', 4);
    this.inFrame = false;
    return true;
  }

  /** A complete field: @returns true when it ended the frame. */
  private onField(f: number[]): boolean {
    const le = (): number => f.reduce((v, b, k) => v + b * 2 ** (8 * k), 0);
    switch (this.state) {
      case 'magic': {
        const m = le();
        this.skippable = m >= SKIPPABLE_MIN && m <= SKIPPABLE_MAX;
        if (this.skippable) this.expect('skipSize', 4);
        else if (m === MAGIC) this.expect('descriptor', 1);
        else throw new ZstdFrameError(`not a zstd frame (magic ${m.toString(16)})`);
        return false;
      }
      case 'skipSize':
        this.state = 'skip';
        this.skip = le();
        return this.skip === 0 ? this.endFrame() : false;
      case 'descriptor': {
        const d = f[0] as number;
        if (d & 0x08) throw new ZstdFrameError('zstd frame header with its reserved bit set');
        const fcsFlag = d >> 6;
        const single = (d >> 5) & 1;
        this.checksum = ((d >> 2) & 1) === 1;
        const dictBytes = [0, 1, 2, 4][d & 3] as number;
        const fcsBytes = [single, 2, 4, 8][fcsFlag] as number;
        this.state = 'header';
        this.skip = (single ? 0 : 1) + dictBytes + fcsBytes;
        if (this.skip === 0) this.expect('blockHeader', 3);
        return false;
      }
      case 'blockHeader': {
        const h = le();
        this.lastBlock = (h & 1) === 1;
        const type = (h >> 1) & 3;
        if (type === 3) throw new ZstdFrameError('zstd block of the reserved type');
        const size = h >>> 3;
        this.state = 'block';
        this.skip = type === 1 ? 1 : size;
        if (this.skip === 0) return this.afterSkip();
        return false;
      }
      case 'checksum':
        return this.endFrame();
      default:
        throw new ZstdFrameError(`zstd frame scanner in state ${this.state}`);
    }
  }
}

/** The [start, end) of each frame of a whole buffer, with whether it is skippable. @throws ZstdFrameError when the bytes end inside a frame or are not frames */
export function zstdFrames(data: Uint8Array): { start: number; end: number; skippable: boolean }[] {
  const s = new ZstdFrameScanner();
  const out: { start: number; end: number; skippable: boolean }[] = [];
  let at = 0;
  while (at < data.length) {
    const end = s.feed(data, at);
    if (end < 0) throw new ZstdFrameError('the data ends in the middle of a zstd frame');
    out.push({ start: at, end, skippable: s.skippable });
    at = end;
  }
  return out;
}
