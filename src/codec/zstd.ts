/**
 * zstd, wherever the running Node has it: node:zlib on Node >= 22.15, else the optional
 * zstd-napi package (built from source at install), else Debian's `zstd` command for layer
 * streams. Split streams need zstd frames too; without any compressor, frames are written with
 * raw (stored) blocks, which every zstd decoder reads.
 * @module
 */
import { handledLater } from '../errors.ts';
import { spawn, spawnSync } from 'node:child_process';
import type { ChunkPool } from '../oci/chunk-pool.ts';
import { createRequire } from 'node:module';
import { Readable, pipeline, type Transform } from 'node:stream';
import * as zlib from 'node:zlib';
import { ZstdFrameScanner, zstdFrames } from './zstd-frames.ts';

interface ZstdNapi {
  compress(data: Uint8Array, params?: { compressionLevel?: number }): Buffer;
}

interface ZlibZstd {
  zstdCompressSync?: (data: Uint8Array, opts?: object) => Buffer;
  zstdDecompressSync?: (data: Uint8Array, opts?: object) => Buffer;
  createZstdDecompress?: () => Transform;
}

const nodeZstd = zlib as unknown as ZlibZstd;
/** `VERITREE_DISABLE_NATIVE=zstd-napi` forces the fallbacks (tests use it). */
function napiDisabled(): boolean {
  return process.env.VERITREE_DISABLE_NATIVE?.split(',').includes('zstd-napi') === true;
}

/** A module of the optional zstd-napi package, loaded once on first use; null where it did not build. */
function optionalModule<T>(id: string): () => T | null {
  let mod: T | null | undefined;
  return () => {
    if (napiDisabled()) return null;
    if (mod === undefined) {
      try {
        mod = createRequire(import.meta.url)(id) as T;
      } catch {
        mod = null;
      }
    }
    return mod;
  };
}

const loadNapi = optionalModule<ZstdNapi>('zstd-napi');

/** Split-stream sections are small and compress well; level 3 is zstd's own default. */
const LEVEL = 3;
const MAX_RAW_BLOCK = 128 * 1024 - 1;

export function zstdCompress(data: Uint8Array): Uint8Array {
  if (nodeZstd.zstdCompressSync) return nodeZstd.zstdCompressSync(data);
  const z = loadNapi();
  if (z) return z.compress(data, { compressionLevel: LEVEL });
  return rawZstdFrame(data);
}

/** A valid zstd frame of raw blocks: no compression, but readable by any decoder. */
export function rawZstdFrame(data: Uint8Array): Uint8Array {
  const blocks = Math.max(1, Math.ceil(data.length / MAX_RAW_BLOCK));
  const out = new Uint8Array(4 + 1 + 8 + blocks * 3 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, 0xfd2fb528, true);
  out[4] = 0b1110_0000; // single segment, 8-byte content size, no checksum, no dictionary
  dv.setBigUint64(5, BigInt(data.length), true);
  let o = 13;
  for (let i = 0, off = 0; i < blocks; i++) {
    const n = Math.min(MAX_RAW_BLOCK, data.length - off);
    const last = i === blocks - 1 ? 1 : 0;
    const header = (n << 3) | last; // block type 0 = raw
    out[o] = header & 0xff;
    out[o + 1] = (header >> 8) & 0xff;
    out[o + 2] = (header >> 16) & 0xff;
    out.set(data.subarray(off, off + n), o + 3);
    o += 3 + n;
    off += n;
  }
  return out;
}

/**
 * Decodes every frame of `data`, producing at most `maxOutputLength` bytes: the bound holds
 * while decoding, whatever sizes the frame headers claim (a header can claim terabytes).
 * @throws Error when no zstd decoder is available, or a frame is corrupt, truncated or too large
 */
export function zstdDecompress(data: Uint8Array, maxOutputLength: number): Uint8Array {
  const b = loadBinding();
  if (b) return boundedDctx(b, data, maxOutputLength);
  const oneShot = nodeZstd.zstdDecompressSync;
  if (oneShot) {
    // node:zlib decodes the first frame only: each frame on its own (zstd-frames.ts).
    const pieces: Uint8Array[] = [];
    let total = 0;
    for (const f of zstdFrames(data)) {
      if (f.skippable) continue;
      const out = oneShot(data.subarray(f.start, f.end), { maxOutputLength: Math.max(0, maxOutputLength - total) });
      total += out.length;
      pieces.push(out);
    }
    return pieces.length === 1 ? (pieces[0] as Uint8Array) : Buffer.concat(pieces);
  }
  // The last resort, as for layers: Debian's zstd, bounded like the others.
  const r = spawnSync('zstd', ['-dc', '-q'], { input: data, maxBuffer: maxOutputLength });
  if (r.error || r.status !== 0) throw new Error(`no zstd decoder (install zstd-napi, use Node >= 22.15, or install zstd): ${r.error?.message ?? r.stderr.toString().trim()}`);
  return r.stdout;
}

/** The first `produced` bytes of `dst`: the buffer itself when mostly full, else a copy (so a few bytes never pin 128 KiB). */
function handOut(dst: Buffer, produced: number): Buffer {
  return produced >= dst.length / 4 ? dst.subarray(0, produced) : Buffer.from(dst.subarray(0, produced));
}

/** zstd-napi's streaming context driven synchronously, one output buffer at a time. */
function boundedDctx(b: ZstdBinding, data: Uint8Array, maxOutputLength: number): Uint8Array {
  const dctx = new b.DCtx();
  const outSize = b.dStreamOutSize();
  const pieces: Buffer[] = [];
  let total = 0;
  let src = data;
  let inFrame = false;
  let dst = Buffer.allocUnsafe(outSize);
  for (;;) {
    const [ret, produced, consumed] = dctx.decompressStream(dst, src);
    src = src.subarray(consumed);
    total += produced;
    if (total > maxOutputLength) throw new RangeError(`zstd data inflates past ${maxOutputLength} bytes`);
    if (produced > 0) {
      const piece = handOut(dst, produced);
      if (piece.buffer === dst.buffer) dst = Buffer.allocUnsafe(outSize);
      pieces.push(piece);
    }
    inFrame = ret !== 0;
    if (src.length === 0 && (produced < dst.length || ret === 0)) break;
  }
  if (inFrame) throw new Error('the data ends in the middle of a zstd frame');
  return pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces, total);
}

interface DCtx {
  decompressStream(dst: Uint8Array, src: Uint8Array): [number, number, number];
}
interface ZstdBinding {
  DCtx: new () => DCtx;
  dStreamOutSize(): number;
}
const loadBinding = optionalModule<ZstdBinding>('zstd-napi/binding');

/** Decodes a zstd stream (every frame to the end), one output buffer at a time. */
export type ZstdDecoder = (source: AsyncIterable<Uint8Array>, onConsumed?: (bytes: number) => void) => AsyncGenerator<Uint8Array>;

/**
 * Recycled buffers for a decoder (oci/chunk-pool.ts): its output comes from `out`, each full
 * buffer lent to `outHolders` holders; each input chunk is released once decoded.
 */
export interface DecoderBuffers {
  out: ChunkPool;
  outHolders: number;
  releaseInput(chunk: Uint8Array): void;
}

/** Whether createZstdDecoder takes DecoderBuffers (zstd-napi's decoder; the others keep their own buffers). */
export function zstdDecoderRecycles(): boolean {
  return loadBinding() !== null;
}

/** The size of zstd-napi's output buffers (ZSTD_DStreamOutSize, a block and a bit). */
export function zstdDecoderOutSize(): number {
  return loadBinding()?.dStreamOutSize() ?? 128 << 10;
}

/**
 * A streaming decoder that reads every frame to the end (zstd:chunked layers are multi-frame),
 * with output bounded as it is produced. With zstd-napi: a generator that yields one
 * ZSTD_DStreamOutSize buffer per ZSTD_decompressStream call and waits for its reader before the
 * next, so a bomb inflates no further than the reader lets it (zstd-napi's own DecompressStream
 * pushes a whole input chunk's output at once: 33 KB became 1 GiB in memory). Else node:zlib's
 * stream (which waits for its reader between output chunks), else a `zstd -dc` child (pipes
 * bound it).
 */
export function createZstdDecoder(buffers?: DecoderBuffers): ZstdDecoder {
  const b = loadBinding();
  if (b) {
    const bb = b;
    return async function* (source: AsyncIterable<Uint8Array>, onConsumed?: (bytes: number) => void): AsyncGenerator<Uint8Array> {
      const dctx = new bb.DCtx();
      const outSize = buffers?.out.chunkBytes ?? bb.dStreamOutSize();
      const fresh = (): Buffer => buffers?.out.take() ?? Buffer.allocUnsafe(outSize);
      let inFrame = false;
      // A small output is copied out and the buffer reused; only a full-ish one is handed out
      // (input in small pieces must not cost, nor keep alive, a 128 KiB buffer per call).
      // zstd keeps neither buffer past a call: its window is its own.
      let dst = fresh();
      for await (const chunk of source) {
        let src = chunk;
        for (;;) {
          const [ret, produced, consumed] = dctx.decompressStream(dst, src);
          src = src.subarray(consumed);
          onConsumed?.(consumed);
          if (produced > 0) {
            const piece = handOut(dst, produced);
            if (piece.buffer === dst.buffer) {
              buffers?.out.lend(piece, buffers.outHolders);
              dst = fresh();
            }
            yield piece;
          }
          if (src.length === 0 && (produced < dst.length || ret === 0)) {
            inFrame = ret !== 0;
            break;
          }
        }
        buffers?.releaseInput(chunk);
      }
      if (inFrame) throw new Error('the stream ends in the middle of a zstd frame');
    };
  }
  const streaming = nodeZstd.createZstdDecompress;
  if (streaming) return (source, onConsumed) => eachFrame(source, streaming, onConsumed);
  return zstdCommand;
}

/**
 * Debian's `zstd -dc` as a decoder: its output is read as it comes (the pipe bounds it), and the
 * end is reported only once the child has exited 0, so a truncated or damaged input is an error
 * even when zstd wrote everything it could before saying so.
 */
async function* zstdCommand(source: AsyncIterable<Uint8Array>, onConsumed?: (bytes: number) => void): AsyncGenerator<Uint8Array> {
  const child = spawn('zstd', ['-dc', '-q'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', (e) => reject(new Error(`zstd -dc could not run (install zstd-napi, use Node >= 22.15, or install zstd): ${e.message}`)));
    child.on('close', (code) => resolve(code));
  });
  handledLater(exited);
  // stdin is fed beside the reading of stdout; zstd stopping early (damaged input) ends the
  // feeding with EPIPE, which the exit status then explains.
  child.stdin.on('error', () => undefined);
  const feeding = (async () => {
    for await (const c of source) {
      onConsumed?.(c.length);
      if (!child.stdin.write(c)) await new Promise((r) => child.stdin.once('drain', r).once('close', r));
      if (child.stdin.destroyed) return;
    }
    child.stdin.end();
  })();
  // A failed feed stops zstd; the failure itself is thrown by `await feeding` below.
  feeding.then(undefined, () => child.kill('SIGKILL'));
  try {
    for await (const out of child.stdout as AsyncIterable<Buffer>) yield out;
    await feeding;
    const code = await exited;
    if (code !== 0) throw new Error(`zstd -dc: ${stderr.trim() || `exit ${code}`}`);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

/**
 * node:zlib's stream decoder, one per frame: it stops after its first frame and drops what
 * follows, silently. Frames are cut apart by their headers (ZstdFrameScanner); skippable frames
 * (zstd:chunked's table of contents) are passed over.
 */
async function* eachFrame(source: AsyncIterable<Uint8Array>, decoder: () => Transform, onConsumed?: (bytes: number) => void): AsyncGenerator<Uint8Array> {
  const scanner = new ZstdFrameScanner();
  const input = source[Symbol.asyncIterator]();
  let pending: Uint8Array | null = null;
  /** The next piece of the current frame, and whether it ends it; null at a clean end of input. */
  const piece = async (): Promise<{ bytes: Uint8Array; ended: boolean } | null> => {
    let c: Uint8Array | null = pending;
    pending = null;
    if (c === null) {
      const r = await input.next();
      c = r.done ? null : r.value;
    }
    if (c === null) {
      if (scanner.inFrame) throw new Error('the stream ends in the middle of a zstd frame');
      return null;
    }
    const end = scanner.feed(c);
    if (end >= 0 && end < c.length) pending = c.subarray(end);
    return { bytes: end < 0 ? c : c.subarray(0, end), ended: end >= 0 };
  };
  for (;;) {
    // The frame's first bytes, until its magic number says what kind it is.
    const head: Uint8Array[] = [];
    let length = 0;
    let ended = false;
    while (!ended && length < 4) {
      const p = await piece();
      if (p === null) return;
      head.push(p.bytes);
      length += p.bytes.length;
      ended = p.ended;
    }
    if (scanner.skippable) {
      while (!ended) {
        const p = await piece();
        if (p === null) return;
        length += p.bytes.length;
        ended = p.ended;
      }
      onConsumed?.(length);
      continue;
    }
    const frame = async function* (): AsyncGenerator<Uint8Array> {
      yield* head;
      while (!ended) {
        const p = await piece();
        if (p === null) throw new Error('the stream ends in the middle of a zstd frame');
        length += p.bytes.length;
        ended = p.ended;
        yield p.bytes;
      }
    };
    // What the decoder consumed (bytesWritten), not what was read ahead for it: the inflation
    // guard of the layer reader divides by this.
    const dec = decoder() as Transform & { bytesWritten?: number };
    let reported = 0;
    const out = pipeline(Readable.from(frame(), { highWaterMark: 1 }), dec, () => undefined) as unknown as AsyncIterable<Uint8Array>;
    for await (const o of out) {
      const consumed = dec.bytesWritten ?? 0;
      if (consumed > reported) {
        onConsumed?.(consumed - reported);
        reported = consumed;
      }
      yield o;
    }
    if (length > reported) onConsumed?.(length - reported);
  }
}

/** Decodes zstd bytes (every frame) as a stream of output pieces, with whichever decoder is here. */
export async function* zstdDecodePieces(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield* createZstdDecoder()(source);
}

export function zstdBackendName(): string {
  if (loadBinding()) return 'zstd-napi';
  if (nodeZstd.createZstdDecompress) return 'node:zlib';
  return 'zstd command (raw frames when writing)';
}
