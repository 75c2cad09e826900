/**
 * The split stream (composefs repository v1): a byte stream stored as inline bytes plus
 * references to objects, so a layer tar is kept once per file content and rebuilt byte for byte.
 * The format and its writer (a pure codec: records in, bytes out); splitstream-reader.ts reads it.
 * Layout (all little-endian), see docs/store-format.md:
 *   header 32 B: "SplitStream" version=0 flags=0 alg log2bs info(start,end)
 *   info 80 B:   stream_refs, object_refs, stream, named_refs ranges, content_type u64, stream_size u64
 *   sections:    stream_refs, object_refs (raw digests), named_refs (zstd), stream (zstd chunks)
 * @module
 */
import { zstdCompress } from '../codec/zstd.ts';
import { HASH_ALGORITHMS, LOG_BLOCK_SIZE, type HashAlgorithm } from '../verity/constants.ts';
import { FRAME_RAW_BYTES } from '../tuning.ts';

export const MAGIC = Buffer.from('SplitStream', 'ascii');
export const HEADER_SIZE = 32;
export const INFO_SIZE = 80;
/** A stream section may not inflate past this: a hostile or damaged stream cannot exhaust memory. */
export const MAX_STREAM_SECTION = 1 << 30;

export const CONTENT_TYPES = {
  layer: 'ocilayer',
  config: 'ociconfg',
  manifest: 'ocimanif',
} as const;
export type ContentType = keyof typeof CONTENT_TYPES;

export type StreamChunk = { kind: 'inline'; bytes: Uint8Array } | { kind: 'object'; index: number };

export interface NamedRef {
  name: string;
  index: number;
}

export interface SplitStream {
  alg: HashAlgorithm;
  contentType: ContentType | string;
  streamSize: bigint;
  streamRefs: string[];
  objectRefs: string[];
  namedRefs: NamedRef[];
  chunks: StreamChunk[];
}

/** An inline run longer than this is cut into several (readers concatenate them). */
export const INLINE_RUN_MAX = 1 << 20;

/**
 * Builds a split stream as it goes: inline bytes are coalesced into runs of at most
 * INLINE_RUN_MAX, and the stream section is compressed frame by frame (FRAME_RAW_BYTES of records
 * each; zstd readers read concatenated frames as one), so what it holds is the compressed stream
 * plus one frame and one run, whatever the layer's size or file count.
 */
export class SplitStreamBuilder {
  private readonly alg: HashAlgorithm;
  private readonly contentType: ContentType;
  private readonly objectIndex = new Map<string, number>();
  private readonly streamIndex = new Map<string, number>();
  private readonly named: NamedRef[] = [];
  private readonly frames: Uint8Array[] = [];
  private framesBytes = 0;
  private raw = new Uint8Array(FRAME_RAW_BYTES);
  private rawLen = 0;
  private run = new Uint8Array(INLINE_RUN_MAX);
  private runLen = 0;
  private size = 0n;

  constructor(alg: HashAlgorithm, contentType: ContentType) {
    this.alg = alg;
    this.contentType = contentType;
  }

  get streamSize(): bigint {
    return this.size;
  }

  /** Compressed stream bytes so far (what this builder holds, give or take a frame). */
  get heldBytes(): number {
    return this.framesBytes + this.rawLen + this.runLen;
  }

  addInline(bytes: Uint8Array): void {
    this.size += BigInt(bytes.length);
    for (let off = 0; off < bytes.length; ) {
      if (this.runLen === this.run.length) this.flushInline();
      const n = Math.min(bytes.length - off, this.run.length - this.runLen);
      this.run.set(bytes.subarray(off, off + n), this.runLen);
      this.runLen += n;
      off += n;
    }
  }

  /** A reference to the whole content of object `id` (hex), which is `size` bytes long. */
  addObject(id: string, size: bigint | number): void {
    this.flushInline();
    let k = this.objectIndex.get(id);
    if (k === undefined) {
      k = this.objectIndex.size;
      this.objectIndex.set(id, k);
    }
    this.appendRecord(BigInt(k));
    this.size += BigInt(size);
  }

  /** A named reference to another stream's object (config → layers, manifest → config). */
  addNamedRef(name: string, streamObjectId: string): void {
    let k = this.streamIndex.get(streamObjectId);
    if (k === undefined) {
      k = this.streamIndex.size;
      this.streamIndex.set(streamObjectId, k);
    }
    this.named.push({ name, index: k });
  }

  /**
   * A stream ref no name gives a meaning to: gc keeps the object (and reads it as a stream), fsck
   * checks that it exists. `veritree image` holds the config stream it is about to link this way.
   */
  addStreamRef(streamObjectId: string): void {
    if (!this.streamIndex.has(streamObjectId)) this.streamIndex.set(streamObjectId, this.streamIndex.size);
  }

  private readonly record = new Uint8Array(8);
  private readonly recordView = new DataView(this.record.buffer);

  private appendRecord(v: bigint): void {
    this.recordView.setBigInt64(0, v, true);
    this.appendRaw(this.record);
  }

  private appendRaw(bytes: Uint8Array): void {
    for (let off = 0; off < bytes.length; ) {
      const n = Math.min(bytes.length - off, this.raw.length - this.rawLen);
      this.raw.set(bytes.subarray(off, off + n), this.rawLen);
      this.rawLen += n;
      off += n;
      if (this.rawLen === this.raw.length) this.flushFrame();
    }
  }

  private flushInline(): void {
    if (this.runLen === 0) return;
    this.appendRecord(-BigInt(this.runLen));
    this.appendRaw(this.run.subarray(0, this.runLen));
    this.runLen = 0;
  }

  private flushFrame(): void {
    if (this.rawLen === 0) return;
    const frame = zstdCompress(this.raw.subarray(0, this.rawLen));
    this.frames.push(frame);
    this.framesBytes += frame.length;
    this.rawLen = 0;
  }

  finish(): Uint8Array {
    this.flushInline();
    this.flushFrame();
    if (this.frames.length === 0) {
      const empty = zstdCompress(new Uint8Array(0));
      this.frames.push(empty);
      this.framesBytes += empty.length;
    }
    this.raw = new Uint8Array(0);
    this.run = new Uint8Array(0);
    const ds = HASH_ALGORITHMS[this.alg].digestSize;
    const streamRefs = packDigests(this.streamIndex.keys(), this.streamIndex.size, ds);
    const objectRefs = packDigests(this.objectIndex.keys(), this.objectIndex.size, ds);
    const sorted = this.named.slice().sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const namedRaw = Buffer.from(sorted.map((r) => `${r.index}:${r.name}\0`).join(''), 'utf8');
    const named = zstdCompress(namedRaw);

    let off = HEADER_SIZE + INFO_SIZE;
    const range = (len: number): [bigint, bigint] => {
      const r: [bigint, bigint] = [BigInt(off), BigInt(off + len)];
      off += len;
      return r;
    };
    const sr = range(streamRefs.length);
    const or = range(objectRefs.length);
    const nr = range(named.length);
    const st = range(this.framesBytes);

    const out = Buffer.alloc(off);
    MAGIC.copy(out, 0);
    out[11] = 0;
    out.writeUInt16LE(0, 12);
    out[14] = HASH_ALGORITHMS[this.alg].id;
    out[15] = LOG_BLOCK_SIZE;
    out.writeBigUInt64LE(BigInt(HEADER_SIZE), 16);
    out.writeBigUInt64LE(BigInt(HEADER_SIZE + INFO_SIZE), 24);
    let i = HEADER_SIZE;
    for (const [a, b] of [sr, or, st, nr]) {
      out.writeBigUInt64LE(a, i);
      out.writeBigUInt64LE(b, i + 8);
      i += 16;
    }
    out.write(CONTENT_TYPES[this.contentType], i, 'ascii');
    out.writeBigUInt64LE(this.size, i + 8);
    out.set(streamRefs, Number(sr[0]));
    out.set(objectRefs, Number(or[0]));
    out.set(named, Number(nr[0]));
    let at = Number(st[0]);
    for (const f of this.frames) {
      out.set(f, at);
      at += f.length;
    }
    this.frames.length = 0;
    return out;
  }
}

function packDigests(hexes: Iterable<string>, count: number, ds: number): Buffer {
  const out = Buffer.alloc(count * ds);
  let o = 0;
  for (const h of hexes) {
    if (out.write(h, o, 'hex') !== ds) throw new Error(`bad digest ${h}`);
    o += ds;
  }
  return out;
}
