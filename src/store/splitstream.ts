/**
 * The split stream (composefs repository v1): a byte stream stored as inline bytes plus
 * references to objects, so a layer tar is kept once per file content and rebuilt byte for byte.
 * A pure codec: bytes in, records out. Layout (all little-endian), see docs/store-format.md:
 *   header 32 B: "SplitStream" version=0 flags=0 alg log2bs info(start,end)
 *   info 80 B:   stream_refs, object_refs, stream, named_refs ranges, content_type u64, stream_size u64
 *   sections:    stream_refs, object_refs (raw digests), named_refs (zstd), stream (zstd chunks)
 * @module
 */
import { zstdCompress, zstdDecodePieces, zstdDecompress } from '../codec/zstd.ts';
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { HASH_ALGORITHMS, LOG_BLOCK_SIZE, type HashAlgorithm } from '../verity/constants.ts';

const MAGIC = Buffer.from('SplitStream', 'ascii');
const HEADER_SIZE = 32;
const INFO_SIZE = 80;
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
/** Stream-section bytes per zstd frame: the section is compressed as it is built. */
export const FRAME_RAW_BYTES = 4 << 20;

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

/** The same stream with the header in the layout bootc <= 1.15 wrote (for tests of the reader). */
export function toOldHeaderLayout(stream: Uint8Array): Uint8Array {
  const out = Buffer.from(stream);
  const head = Buffer.from(stream.subarray(0, HEADER_SIZE));
  head.copy(out, 0, 16, 32); // info range
  head.copy(out, 16, 12, 14); // flags
  head.copy(out, 18, 0, 11); // magic
  out[29] = head[11] ?? 0; // version
  out[30] = head[14] ?? 0; // algorithm
  out[31] = head[15] ?? 0; // log2 block size
  return out;
}

function corrupt(msg: string): VeritreeError {
  return new VeritreeError(ERROR_CODES.STORE_CORRUPT, `split stream: ${msg}`);
}

interface Header {
  alg: HashAlgorithm;
  streamRefs: [number, number];
  objectRefs: [number, number];
  stream: [number, number];
  namedRefs: [number, number];
  contentType: string;
  streamSize: bigint;
}

function readRange(buf: Buffer, at: number, name: string): [number, number] {
  const a = buf.readBigUInt64LE(at);
  const b = buf.readBigUInt64LE(at + 8);
  if (a > b || b > BigInt(buf.length)) throw corrupt(`${name} range ${a}..${b} outside the file (${buf.length} bytes)`);
  return [Number(a), Number(b)];
}

/** Parses header and info. @throws VeritreeError STORE_CORRUPT */
export function readHeader(bytes: Uint8Array): Header {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (buf.length < HEADER_SIZE) throw corrupt('bad magic');
  // The header as composefs-rs writes it (repr(C)): magic 0..11, version 11, flags 12, algorithm
  // 14, log2 block size 15, info range 16..32. bootc <= 1.15 wrote the same fields in the order
  // the Rust compiler chose: info range 0..16, flags 16, magic 18..29, version 29, algorithm 30,
  // log2 block size 31. composefs-rs still reads those; so do we (never writes them).
  let version: number, algId: number, lgBlock: number, infoAt: number;
  if (buf.subarray(0, 11).equals(MAGIC)) [version, algId, lgBlock, infoAt] = [buf[11] ?? -1, buf[14] ?? -1, buf[15] ?? -1, 16];
  else if (buf.subarray(18, 29).equals(MAGIC)) [version, algId, lgBlock, infoAt] = [buf[29] ?? -1, buf[30] ?? -1, buf[31] ?? -1, 0];
  else throw corrupt('bad magic');
  if (version !== 0) throw corrupt(`unsupported version ${version}`);
  const alg = (Object.keys(HASH_ALGORITHMS) as HashAlgorithm[]).find((a) => HASH_ALGORITHMS[a].id === algId);
  if (!alg) throw corrupt(`unknown hash algorithm ${algId}`);
  if (lgBlock !== LOG_BLOCK_SIZE) throw corrupt(`unsupported block size 2^${lgBlock}`);
  const [infoStart, infoEnd] = readRange(buf, infoAt, 'info');
  if (infoEnd - infoStart < INFO_SIZE) throw corrupt(`info section of ${infoEnd - infoStart} bytes, need ${INFO_SIZE}`);
  const i = infoStart;
  const h: Header = {
    alg,
    streamRefs: readRange(buf, i, 'stream_refs'),
    objectRefs: readRange(buf, i + 16, 'object_refs'),
    stream: readRange(buf, i + 32, 'stream'),
    namedRefs: readRange(buf, i + 48, 'named_refs'),
    contentType: buf.subarray(i + 64, i + 72).toString('latin1'),
    streamSize: buf.readBigUInt64LE(i + 72),
  };
  const ds = HASH_ALGORITHMS[alg].digestSize;
  for (const [name, [a, b]] of [['stream_refs', h.streamRefs], ['object_refs', h.objectRefs]] as const) {
    if ((b - a) % ds) throw corrupt(`${name} is ${b - a} bytes, not a multiple of ${ds}`);
  }
  return h;
}

function digests(buf: Buffer, [a, b]: [number, number], ds: number): string[] {
  // One hex string cut in pieces: a layer names tens of thousands of objects, and a Buffer and a
  // string per digest cost more than the rest of reading the stream.
  const hex = buf.toString('hex', a, b);
  const out: string[] = new Array<string>((b - a) / ds);
  for (let i = 0; i < out.length; i++) out[i] = hex.slice(i * ds * 2, (i + 1) * ds * 2);
  return out;
}

/** The object references as the stream holds them: the digests' bytes, one after another. */
export function objectRefTable(bytes: Uint8Array): Uint8Array {
  const [a, b] = readHeader(bytes).objectRefs;
  return bytes.subarray(a, b);
}

/** Only the references (what fsck and gc need): no decompression of the stream section. */
export function readRefs(bytes: Uint8Array): Pick<SplitStream, 'alg' | 'contentType' | 'streamSize' | 'streamRefs' | 'objectRefs' | 'namedRefs'> {
  const h = readHeader(bytes);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const ds = HASH_ALGORITHMS[h.alg].digestSize;
  const streamRefs = digests(buf, h.streamRefs, ds);
  const namedRefs = parseNamed(buf.subarray(h.namedRefs[0], h.namedRefs[1]), streamRefs.length);
  return {
    alg: h.alg,
    contentType: contentTypeName(h.contentType),
    streamSize: h.streamSize,
    streamRefs,
    objectRefs: digests(buf, h.objectRefs, ds),
    namedRefs,
  };
}

function contentTypeName(raw: string): ContentType | string {
  const hit = (Object.keys(CONTENT_TYPES) as ContentType[]).find((k) => CONTENT_TYPES[k] === raw);
  return hit ?? raw;
}

function inflate(section: Buffer, what: string): Buffer {
  if (section.length === 0) return Buffer.alloc(0);
  try {
    const out = zstdDecompress(section, MAX_STREAM_SECTION);
    return Buffer.from(out.buffer, out.byteOffset, out.length);
  } catch (e) {
    throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `split stream: ${what} section does not decompress`, { cause: e });
  }
}

function parseNamed(section: Buffer, streamRefCount: number): NamedRef[] {
  const text = inflate(section, 'named_refs').toString('utf8');
  const out: NamedRef[] = [];
  for (const rec of text.split('\0')) {
    if (rec === '') continue;
    const colon = rec.indexOf(':');
    const index = Number(rec.slice(0, colon));
    if (colon < 1 || !Number.isInteger(index) || index < 0 || index >= streamRefCount) {
      throw corrupt(`bad named ref ${JSON.stringify(rec)}`);
    }
    out.push({ name: rec.slice(colon + 1), index });
  }
  return out;
}

/** Parses a whole split stream, chunks included. @throws VeritreeError STORE_CORRUPT */
export function readSplitStream(bytes: Uint8Array): SplitStream {
  const refs = readRefs(bytes);
  const h = readHeader(bytes);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const raw = inflate(buf.subarray(h.stream[0], h.stream[1]), 'stream');
  const chunks: StreamChunk[] = [];
  for (let o = 0; o < raw.length; ) {
    if (o + 8 > raw.length) throw corrupt('stream section ends inside a chunk header');
    const v = raw.readBigInt64LE(o);
    o += 8;
    if (v < 0n) {
      const n = Number(-v);
      if (o + n > raw.length) throw corrupt(`inline chunk of ${n} bytes runs past the section`);
      chunks.push({ kind: 'inline', bytes: raw.subarray(o, o + n) });
      o += n;
    } else {
      const index = Number(v);
      if (index >= refs.objectRefs.length) throw corrupt(`chunk names object ${index} of ${refs.objectRefs.length}`);
      chunks.push({ kind: 'object', index });
    }
  }
  return { ...refs, chunks };
}

/**
 * The chunks of a split stream, decoded from its stream section as the reader asks for them: at
 * most one decoder output buffer (128 KiB) and one record header are held, whatever the layer's
 * size, so rebuilding a layer of a million files does not inflate its whole stream section
 * first. An inline chunk may come in several pieces (in order). @throws VeritreeError STORE_CORRUPT
 */
export async function* streamChunks(bytes: Uint8Array): AsyncGenerator<StreamChunk> {
  for await (const run of streamChunkRuns(bytes)) yield* run;
}

/** Segments of a rebuilt stream as the addon's assemble takes them (native/store_sys.c). */
export interface SegmentRun {
  /** Two numbers a segment: [0, length] the next `length` bytes of `arena`, [1, i] object ref i. */
  segs: Float64Array;
  /** Segments in `segs`. */
  n: number;
  /** The inline bytes of the run's segments, in order. */
  arena: Uint8Array;
}

/**
 * The stream section's records, decoded piece by piece, straight into runs of segments: no object
 * per chunk (a layer of 50,000 files has over 100,000 of them, and cat-layer spent more of the
 * main thread on making and collecting them than on anything else). Consecutive inline records
 * share one segment. streamChunkRuns reads through it too. Named refs are checked as readRefs
 * checks them, though a rebuild does not use them.
 */
export class SegmentSource {
  private readonly pieces: AsyncIterator<Uint8Array>;
  private readonly refCount: number;
  private piece: Uint8Array = new Uint8Array(0);
  private view = new DataView(this.piece.buffer);
  private at = 0;
  private readonly head = new Uint8Array(8);
  private readonly headView = new DataView(this.head.buffer);
  private headLen = 0;
  private inlineLeft = 0;
  private total = 0;
  private ended = false;

  constructor(bytes: Uint8Array) {
    const h = readHeader(bytes);
    const ds = HASH_ALGORITHMS[h.alg].digestSize;
    this.refCount = (h.objectRefs[1] - h.objectRefs[0]) / ds;
    parseNamed(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).subarray(h.namedRefs[0], h.namedRefs[1]), (h.streamRefs[1] - h.streamRefs[0]) / ds);
    const section = bytes.subarray(h.stream[0], h.stream[1]);
    async function* once(): AsyncGenerator<Uint8Array> {
      if (section.length > 0) yield section;
    }
    try {
      this.pieces = zstdDecodePieces(once());
    } catch (e) {
      throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, 'split stream: stream section does not decompress', { cause: e });
    }
  }

  /**
   * Up to `max` segments and `arenaMax` inline bytes (a record is cut where a run ends, and goes
   * on in the next); null when the section is done.
   * @throws VeritreeError STORE_CORRUPT
   */
  async next(max: number, arenaMax: number): Promise<SegmentRun | null> {
    const segs = new Float64Array(2 * max);
    let arena = Buffer.allocUnsafe(Math.min(arenaMax, 64 << 10));
    let n = 0;
    let used = 0;
    // Whether the last segment is inline, and so takes the next inline bytes too.
    let inlineOpen = false;
    while (true) {
      if (this.at === this.piece.length && !(await this.refill())) break;
      const piece = this.piece;
      if (this.inlineLeft > 0) {
        if (!inlineOpen && n === max) break;
        const k = Math.min(this.inlineLeft, piece.length - this.at, arenaMax - used);
        if (k === 0) break;
        if (used + k > arena.length) {
          const bigger = Buffer.allocUnsafe(Math.min(arenaMax, Math.max(2 * arena.length, used + k)));
          bigger.set(arena.subarray(0, used));
          arena = bigger;
        }
        arena.set(piece.subarray(this.at, this.at + k), used);
        used += k;
        this.at += k;
        this.inlineLeft -= k;
        if (inlineOpen) segs[2 * n - 1] = (segs[2 * n - 1] as number) + k;
        else {
          segs[2 * n] = 0;
          segs[2 * n + 1] = k;
          n++;
          inlineOpen = true;
        }
        continue;
      }
      if (n === max) break;
      let v: number;
      // A 64-bit record as a double: exact below 2^53, and anything beyond fails the checks
      // below however it rounds (no ref table or section is that big).
      if (this.headLen === 0 && piece.length - this.at >= 8) {
        v = this.view.getInt32(this.at + 4, true) * 4294967296 + this.view.getUint32(this.at, true);
        this.at += 8;
      } else {
        const k = Math.min(8 - this.headLen, piece.length - this.at);
        this.head.set(piece.subarray(this.at, this.at + k), this.headLen);
        this.headLen += k;
        this.at += k;
        if (this.headLen < 8) continue;
        this.headLen = 0;
        v = this.headView.getInt32(4, true) * 4294967296 + this.headView.getUint32(0, true);
      }
      if (v < 0) {
        if (-v > MAX_STREAM_SECTION) throw corrupt(`inline chunk of ${-v} bytes`);
        this.inlineLeft = -v;
      } else {
        if (v >= this.refCount) throw corrupt(`chunk names object ${v} of ${this.refCount}`);
        segs[2 * n] = 1;
        segs[2 * n + 1] = v;
        n++;
        inlineOpen = false;
      }
    }
    return n === 0 ? null : { segs, n, arena: arena.subarray(0, used) };
  }

  /** The next decoded piece; false at the end of the section (checked to end on a record). */
  private async refill(): Promise<boolean> {
    if (this.ended) return false;
    let r: IteratorResult<Uint8Array>;
    try {
      r = await this.pieces.next();
    } catch (e) {
      if (e instanceof VeritreeError) throw e;
      throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `split stream: stream section does not decompress (${e instanceof Error ? e.message : String(e)})`, { cause: e });
    }
    if (r.done) {
      this.ended = true;
      if (this.headLen !== 0) throw corrupt('stream section ends inside a chunk header');
      if (this.inlineLeft !== 0) throw corrupt(`an inline chunk runs ${this.inlineLeft} bytes past the section`);
      return false;
    }
    this.total += r.value.length;
    if (this.total > MAX_STREAM_SECTION) throw corrupt(`stream section inflates past ${MAX_STREAM_SECTION} bytes`);
    this.piece = r.value;
    this.view = new DataView(r.value.buffer, r.value.byteOffset, r.value.length);
    this.at = 0;
    return true;
  }

  /** Lets the decoder go (a rebuild that stopped early). */
  async close(): Promise<void> {
    await this.pieces.return?.(undefined);
  }
}

/** Chunks a run of streamChunkRuns holds at most, and inline bytes. */
const CHUNK_RUN = 4096;
const CHUNK_RUN_BYTES = 1 << 20;

/**
 * streamChunks, a run of chunks at a time: one await per run instead of one per chunk (a layer
 * of 100,000 files has 200,000 of them). The records are read by SegmentSource; an inline chunk
 * may come in pieces, and consecutive ones as one.
 * @throws VeritreeError STORE_CORRUPT
 */
export async function* streamChunkRuns(bytes: Uint8Array): AsyncGenerator<StreamChunk[]> {
  const source = new SegmentSource(bytes);
  try {
    for (let run = await source.next(CHUNK_RUN, CHUNK_RUN_BYTES); run; run = await source.next(CHUNK_RUN, CHUNK_RUN_BYTES)) {
      const chunks: StreamChunk[] = [];
      for (let i = 0, at = 0; i < run.n; i++) {
        const arg = run.segs[2 * i + 1] as number;
        if (run.segs[2 * i] === 1) chunks.push({ kind: 'object', index: arg });
        else {
          chunks.push({ kind: 'inline', bytes: run.arena.subarray(at, at + arg) });
          at += arg;
        }
      }
      yield chunks;
    }
  } finally {
    await source.close();
  }
}
