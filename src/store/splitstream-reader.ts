/**
 * The one reader of split streams (the format: splitstream.ts). The header and references are
 * read without touching the stream section (readHeader, readRefs, objectRefTable: what fsck and
 * gc need); the stream section's records are parsed by one decoder (Records), which is fed
 * either the whole inflated section (readSplitStream, for the small JSON streams and tests) or
 * the zstd decoder's pieces one at a time (SplitStreamReader: runs of segments for the addon's
 * assemble, or runs of chunks), so a layer of a million files is never inflated whole.
 * @module
 */
import { zstdDecodePieces, zstdDecompress } from '../codec/zstd.ts';
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { HASH_ALGORITHMS, LOG_BLOCK_SIZE, type HashAlgorithm } from '../verity/constants.ts';
import { CONTENT_TYPES, HEADER_SIZE, INFO_SIZE, MAGIC, MAX_STREAM_SECTION, type ContentType, type NamedRef, type SplitStream, type StreamChunk } from './splitstream.ts';

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

/** Segments of a rebuilt stream as the addon's assemble takes them (native/store_sys.c). */
export interface SegmentRun {
  /** Two numbers a segment: [0, length] the next `length` bytes of `arena`, [1, i] object ref i. */
  segs: Float64Array;
  /** Segments in `segs`. */
  n: number;
  /** The inline bytes of the run's segments, in order. */
  arena: Uint8Array;
}

/** A run being filled: at most `max` segments and `arenaMax` inline bytes. */
class RunBuilder {
  readonly segs: Float64Array;
  n = 0;
  used = 0;
  arena: Buffer;
  /** Whether the last segment is inline, and so takes the next inline bytes too. */
  inlineOpen = false;
  readonly max: number;
  readonly arenaMax: number;

  constructor(max: number, arenaMax: number) {
    this.max = max;
    this.arenaMax = arenaMax;
    this.segs = new Float64Array(2 * max);
    this.arena = Buffer.allocUnsafe(Math.min(arenaMax, 64 << 10));
  }

  inline(bytes: Uint8Array): void {
    const k = bytes.length;
    if (this.used + k > this.arena.length) {
      const bigger = Buffer.allocUnsafe(Math.min(this.arenaMax, Math.max(2 * this.arena.length, this.used + k)));
      bigger.set(this.arena.subarray(0, this.used));
      this.arena = bigger;
    }
    this.arena.set(bytes, this.used);
    this.used += k;
    if (this.inlineOpen) this.segs[2 * this.n - 1] = (this.segs[2 * this.n - 1] as number) + k;
    else {
      this.segs[2 * this.n] = 0;
      this.segs[2 * this.n + 1] = k;
      this.n++;
      this.inlineOpen = true;
    }
  }

  object(index: number): void {
    this.segs[2 * this.n] = 1;
    this.segs[2 * this.n + 1] = index;
    this.n++;
    this.inlineOpen = false;
  }

  result(): SegmentRun | null {
    return this.n === 0 ? null : { segs: this.segs, n: this.n, arena: this.arena.subarray(0, this.used) };
  }
}

/** A run's segments as chunks (inline chunks are views of its arena). */
function chunksOf(run: SegmentRun): StreamChunk[] {
  const chunks: StreamChunk[] = [];
  for (let i = 0, at = 0; i < run.n; i++) {
    const arg = run.segs[2 * i + 1] as number;
    if (run.segs[2 * i] === 1) chunks.push({ kind: 'object', index: arg });
    else {
      chunks.push({ kind: 'inline', bytes: run.arena.subarray(at, at + arg) });
      at += arg;
    }
  }
  return chunks;
}

/**
 * The stream section's record decoder: fed the inflated section piece by piece (a record may fall
 * across pieces), it lays the records out as segments of a run, consecutive inline records as one.
 */
class Records {
  private readonly refCount: number;
  private piece: Uint8Array = new Uint8Array(0);
  private view = new DataView(this.piece.buffer);
  private at = 0;
  private readonly head = new Uint8Array(8);
  private readonly headView = new DataView(this.head.buffer);
  private headLen = 0;
  private inlineLeft = 0;

  constructor(refCount: number) {
    this.refCount = refCount;
  }

  get drained(): boolean {
    return this.at === this.piece.length;
  }

  feed(piece: Uint8Array): void {
    this.piece = piece;
    this.view = new DataView(piece.buffer, piece.byteOffset, piece.length);
    this.at = 0;
  }

  /**
   * Decodes records of the current piece into `run` (a record is cut where the run ends, and goes
   * on in the next); true when the run can take no more, false when the piece is used up.
   * @throws VeritreeError STORE_CORRUPT
   */
  fill(run: RunBuilder): boolean {
    const piece = this.piece;
    while (this.at < piece.length) {
      if (this.inlineLeft > 0) {
        if (!run.inlineOpen && run.n === run.max) return true;
        const k = Math.min(this.inlineLeft, piece.length - this.at, run.arenaMax - run.used);
        if (k === 0) return true;
        run.inline(piece.subarray(this.at, this.at + k));
        this.at += k;
        this.inlineLeft -= k;
        continue;
      }
      if (run.n === run.max) return true;
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
        run.object(v);
      }
    }
    return false;
  }

  /** The section has ended: it must end on a record. @throws VeritreeError STORE_CORRUPT */
  end(): void {
    if (this.headLen !== 0) throw corrupt('stream section ends inside a chunk header');
    if (this.inlineLeft !== 0) throw corrupt(`an inline chunk runs ${this.inlineLeft} bytes past the section`);
  }
}

/** Chunks a run of chunkRuns holds at most, and inline bytes. */
const CHUNK_RUN = 4096;
const CHUNK_RUN_BYTES = 1 << 20;

/** The object-ref count, with the named refs checked as readRefs checks them. */
function checkedRefCount(bytes: Uint8Array, h: Header): number {
  const ds = HASH_ALGORITHMS[h.alg].digestSize;
  parseNamed(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).subarray(h.namedRefs[0], h.namedRefs[1]), (h.streamRefs[1] - h.streamRefs[0]) / ds);
  return (h.objectRefs[1] - h.objectRefs[0]) / ds;
}

/** Parses a whole split stream, chunks included. @throws VeritreeError STORE_CORRUPT */
export function readSplitStream(bytes: Uint8Array): SplitStream {
  const refs = readRefs(bytes);
  const h = readHeader(bytes);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const records = new Records(refs.objectRefs.length);
  records.feed(inflate(buf.subarray(h.stream[0], h.stream[1]), 'stream'));
  const chunks: StreamChunk[] = [];
  for (;;) {
    const run = new RunBuilder(CHUNK_RUN, CHUNK_RUN_BYTES);
    const full = records.fill(run);
    const got = run.result();
    if (got) for (const c of chunksOf(got)) chunks.push(c);
    if (!full) break;
  }
  records.end();
  return { ...refs, chunks };
}

/**
 * A split stream's records, decoded from its stream section as they are asked for: at most one
 * decoder output buffer (128 KiB), one record header and the run being filled are held, whatever
 * the layer's size. As segments (next: no object per chunk, which for a layer of 50,000 files
 * cost cat-layer more of the main thread than anything else) or as chunks (chunkRuns, chunks).
 * Named refs are checked as readRefs checks them, though a rebuild does not use them.
 */
export class SplitStreamReader {
  private readonly pieces: AsyncIterator<Uint8Array>;
  private readonly records: Records;
  private total = 0;
  private ended = false;

  /** @throws VeritreeError STORE_CORRUPT */
  constructor(bytes: Uint8Array) {
    const h = readHeader(bytes);
    this.records = new Records(checkedRefCount(bytes, h));
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
   * Up to `max` segments and `arenaMax` inline bytes; null when the section is done.
   * @throws VeritreeError STORE_CORRUPT
   */
  async next(max: number, arenaMax: number): Promise<SegmentRun | null> {
    const run = new RunBuilder(max, arenaMax);
    while ((!this.records.drained || (await this.refill())) && !this.records.fill(run));
    return run.result();
  }

  /**
   * The chunks, a run at a time: one await per run instead of one per chunk (a layer of 100,000
   * files has 200,000 of them). Consecutive inline records come as one chunk, a long one may come
   * in pieces. Lets the decoder go when the caller stops.
   * @throws VeritreeError STORE_CORRUPT
   */
  async *chunkRuns(): AsyncGenerator<StreamChunk[]> {
    try {
      for (let run = await this.next(CHUNK_RUN, CHUNK_RUN_BYTES); run; run = await this.next(CHUNK_RUN, CHUNK_RUN_BYTES)) yield chunksOf(run);
    } finally {
      await this.close();
    }
  }

  /** chunkRuns, one chunk at a time. @throws VeritreeError STORE_CORRUPT */
  async *chunks(): AsyncGenerator<StreamChunk> {
    for await (const run of this.chunkRuns()) yield* run;
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
      this.records.end();
      return false;
    }
    this.total += r.value.length;
    if (this.total > MAX_STREAM_SECTION) throw corrupt(`stream section inflates past ${MAX_STREAM_SECTION} bytes`);
    this.records.feed(r.value);
    return true;
  }

  /** Lets the decoder go (a rebuild that stopped early). */
  async close(): Promise<void> {
    await this.pieces.return?.(undefined);
  }
}
