/**
 * zstd, wherever the running Node has it: node:zlib on Node >= 22.15, else the optional
 * zstd-napi package (built from source at install), else Debian's `zstd` command for layer
 * streams. Split streams need zstd frames too; without any compressor, frames are written with
 * raw (stored) blocks, which every zstd decoder reads.
 * @module
 */
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { Duplex, Readable, pipeline, type Transform } from 'node:stream';
import * as zlib from 'node:zlib';

interface ZstdNapi {
  compress(data: Uint8Array, params?: { compressionLevel?: number }): Buffer;
  decompress(data: Uint8Array): Buffer;
  DecompressStream: new () => Transform;
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

/** @throws Error when no zstd decoder is available, or the frame is corrupt or too large. */
export function zstdDecompress(data: Uint8Array, maxOutputLength: number): Uint8Array {
  if (nodeZstd.zstdDecompressSync) return nodeZstd.zstdDecompressSync(data, { maxOutputLength });
  const z = loadNapi();
  if (!z) {
    // The last resort, as for layers: Debian's zstd, bounded like the others.
    const r = spawnSync('zstd', ['-dc', '-q'], { input: data, maxBuffer: maxOutputLength });
    if (r.error || r.status !== 0) throw new Error(`no zstd decoder (install zstd-napi, use Node >= 22.15, or install zstd): ${r.error?.message ?? r.stderr.toString().trim()}`);
    return r.stdout;
  }
  const out = z.decompress(data);
  if (out.length > maxOutputLength) throw new RangeError(`zstd frame inflates past ${maxOutputLength} bytes`);
  return out;
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
 * A streaming decoder that reads every frame to the end (zstd:chunked layers are multi-frame),
 * with output bounded as it is produced. With zstd-napi: a generator that yields one
 * ZSTD_DStreamOutSize buffer per ZSTD_decompressStream call and waits for its reader before the
 * next, so a bomb inflates no further than the reader lets it (zstd-napi's own DecompressStream
 * pushes a whole input chunk's output at once: 33 KB became 1 GiB in memory). Else node:zlib's
 * stream (which waits for its reader between output chunks), else a `zstd -dc` child (pipes
 * bound it).
 */
export function createZstdDecoder(): ZstdDecoder | Duplex {
  const b = loadBinding();
  if (b) {
    const bb = b;
    return async function* (source: AsyncIterable<Uint8Array>, onConsumed?: (bytes: number) => void): AsyncGenerator<Uint8Array> {
      const dctx = new bb.DCtx();
      const outSize = bb.dStreamOutSize();
      let inFrame = false;
      for await (const chunk of source) {
        let src = chunk;
        for (;;) {
          const dst = Buffer.allocUnsafe(outSize);
          const [ret, produced, consumed] = dctx.decompressStream(dst, src);
          src = src.subarray(consumed);
          onConsumed?.(consumed);
          if (produced > 0) yield dst.subarray(0, produced);
          if (src.length === 0 && (produced < dst.length || ret === 0)) {
            inFrame = ret !== 0;
            break;
          }
        }
      }
      if (inFrame) throw new Error('the stream ends in the middle of a zstd frame');
    };
  }
  if (nodeZstd.createZstdDecompress) return nodeZstd.createZstdDecompress();
  const child = spawn('zstd', ['-dc', '-q'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const duplex = Duplex.from({ writable: child.stdin, readable: child.stdout });
  child.on('error', (e) => duplex.destroy(e));
  child.on('close', (code) => {
    if (code !== 0) duplex.destroy(new Error(`zstd -dc: ${stderr.trim() || `exit ${code}`}`));
  });
  // A layer that fails part-way destroys the duplex: the child must not outlive it.
  duplex.on('close', () => child.kill('SIGKILL'));
  return duplex;
}

/** Decodes zstd bytes (every frame) as a stream of output pieces, with whichever decoder is here. */
export async function* zstdDecodePieces(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const d = createZstdDecoder();
  if (typeof d === 'function') {
    yield* d(source);
    return;
  }
  const out = pipeline(Readable.from(source), d, () => undefined) as unknown as AsyncIterable<Uint8Array>;
  for await (const piece of out) yield piece;
}

export function zstdBackendName(): string {
  if (loadBinding()) return 'zstd-napi';
  if (nodeZstd.createZstdDecompress) return 'node:zlib';
  return 'zstd command (raw frames when writing)';
}
