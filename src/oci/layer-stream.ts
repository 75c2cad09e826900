/**
 * One layer as a stream of tar bytes: blob file → size/SHA-256 check against the descriptor →
 * decompression (what the media type says, confirmed by the magic bytes) → SHA-256 of the tar
 * for the diff_id check, with limits on size and inflation ratio (a gzip bomb is stopped early).
 * @module
 */
import { createSha256Stream } from '../verity/sha-stream.ts';
import { pipeline, Transform, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';
import { createZstdDecoder, zstdDecoderOutSize, zstdDecoderRecycles, type DecoderBuffers } from '../codec/zstd.ts';
import { ERROR_CODES, VeritreeError, interrupted, handledLater } from '../errors.ts';
import { readAll } from '../store/sys.ts';
import { sharedChunkPool } from './chunk-pool.ts';
import { digestHex, hashAndPass, openVerifiedBlob, type VerifyingStream } from './blob.ts';
import type { LayoutLocation, LayoutRegion } from './layout-files.ts';
import type { ResolvedLayer } from './layout.ts';
import { sniffCompression, type Compression } from './media-types.ts';
import { READ_CHUNK_BYTES, RECYCLED_IDLE_BYTES } from '../tuning.ts';

export interface LayerLimits {
  /** Uncompressed bytes a layer may reach. */
  maxLayerSize: number;
  /** Uncompressed/compressed ratio past which (and past 64 MiB) a layer is treated as a bomb. */
  maxRatio: number;
}

export const DEFAULT_LAYER_LIMITS: LayerLimits = {
  maxLayerSize: 64 * 2 ** 30,
  maxRatio: 1000,
};

const RATIO_FLOOR_BYTES = 64 << 20;

export function layerWhat(layer: ResolvedLayer): string {
  return `layer ${layer.index + 1} (${layer.descriptor.digest})`;
}

async function sniff({ fh, start, bound }: LayoutRegion): Promise<Compression | null> {
  const head = await readAll(fh, Math.min(4, bound ?? 4), start);
  return head.length === 0 ? null : sniffCompression(head);
}

/** Hashes and counts the tar bytes, enforcing the limits. */
class DiffIdStream extends Transform {
  private readonly hash = createSha256Stream();
  private readonly limits: LayerLimits;
  private readonly compressed: VerifyingStream;
  private readonly what: string;
  /** An uncompressed layer's tar is its blob: the blob's digest is the diff_id, no second hash. */
  private readonly sameAsBlob: boolean;
  bytes = 0;

  /** Compressed bytes the decoder has consumed (not merely read ahead): what the ratio is of. */
  consumed: () => number;
  /** Called once per chunk when the hash is done with it (a recycled chunk's holder); null: none. */
  release: ((chunk: Uint8Array) => void) | null = null;

  constructor(limits: LayerLimits, compressed: VerifyingStream, what: string, sameAsBlob: boolean) {
    super();
    this.limits = limits;
    this.compressed = compressed;
    this.what = what;
    this.sameAsBlob = sameAsBlob;
    this.consumed = () => compressed.bytes;
  }

  get diffIdHex(): string {
    return this.sameAsBlob ? this.compressed.digestHexFound : this.found;
  }
  private found = '';

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limits.maxLayerSize) {
      cb(new VeritreeError(ERROR_CODES.TAR_LIMIT_EXCEEDED, `${this.what}: inflates past --max-layer-size (${this.limits.maxLayerSize} bytes)`));
      return;
    }
    if (this.bytes > RATIO_FLOOR_BYTES && this.bytes > this.limits.maxRatio * Math.max(1, this.consumed())) {
      cb(new VeritreeError(ERROR_CODES.TAR_LIMIT_EXCEEDED, `${this.what}: inflates more than ${this.limits.maxRatio} times its compressed size (a decompression bomb?)`));
      return;
    }
    if (this.sameAsBlob) {
      cb(null, chunk);
      return;
    }
    // Hashed where it lies, as the blob is.
    hashAndPass(this, this.hash, chunk, this.release, cb);
  }

  override _flush(cb: TransformCallback): void {
    if (this.sameAsBlob) {
      cb();
      return;
    }
    this.hash.digestHex().then((found) => {
      this.found = found;
      cb();
    }, cb);
  }
}

export interface LayerTar {
  /** The tar bytes; iterate to the end. An error in any stage surfaces here. */
  tar: AsyncIterable<Uint8Array>;
  /** Resolves once every stage has finished (blob verified); then check `diffIdMatches()`. */
  done: Promise<void>;
  /**
   * The tar's reader is done with `chunk`: call it once per chunk of `tar`, after the last read
   * of it, so that its buffer can be reused (oci/chunk-pool.ts). A reader that keeps chunks
   * does not call it; they are then never reused.
   */
  release(chunk: Uint8Array): void;
  /** Compressed bytes read so far (progress). */
  compressedBytes(): number;
  tarBytes(): number;
  /** @throws VeritreeError OCI_DIFF_ID_MISMATCH */
  checkDiffId(): void;
  /**
   * After a failure: the blob's own mismatch when the blob is damaged (the rest of it is hashed
   * from where the read stopped), else null.
   */
  blobMismatch(signal?: AbortSignal): Promise<VeritreeError | null>;
  /** Stops every stage and closes the blob (idempotent; safe after success). */
  close(): void;
}

export async function openLayerTar(layout: LayoutLocation, layer: ResolvedLayer, limits: LayerLimits = DEFAULT_LAYER_LIMITS, signal?: AbortSignal): Promise<LayerTar> {
  const what = layerWhat(layer);
  // A plain blob's chunks are the tar's: held by the blob's hash and the tar's reader. A zstd
  // blob's are held by the hash and the decoder, whose output the diff_id hash and the reader
  // hold. gzip's decoder (node:zlib) keeps its input and output to itself: nothing recycled.
  const zstdRecycles = layer.compression === 'zstd' && zstdDecoderRecycles();
  const reads = layer.compression === 'none' || zstdRecycles ? sharedChunkPool(READ_CHUNK_BYTES, RECYCLED_IDLE_BYTES) : null;
  const out = zstdRecycles ? sharedChunkPool(zstdDecoderOutSize(), RECYCLED_IDLE_BYTES) : null;
  const { region, stream, verifier } = await openVerifiedBlob(layout, layer.descriptor, what, reads ? { pool: reads, holders: 2 } : undefined);
  let found: Compression | null;
  try {
    found = await sniff(region);
  } catch (e) {
    stream.destroy();
    throw e;
  }
  if (found !== null && found !== layer.compression) {
    stream.destroy();
    throw new VeritreeError(
      ERROR_CODES.OCI_MEDIA_TYPE_UNSUPPORTED,
      `${what}: media type ${layer.descriptor.mediaType} says ${layer.compression}, but the blob is ${found === 'none' ? 'not compressed' : found}`
    );
  }
  const diff = new DiffIdStream(limits, verifier, what, layer.compression === 'none');
  const stages: unknown[] = [verifier];
  if (layer.compression !== 'none') {
    const buffers = reads && out ? { out, outHolders: 2, releaseInput: (c: Uint8Array) => reads.release(c) } : undefined;
    if (out) diff.release = (c) => out.release(c);
    const d = decoder(layer.compression, what, buffers);
    stages.push(d.stage);
    if (d.consumed) diff.consumed = d.consumed;
  }
  stages.push(diff);
  let resolveDone!: () => void;
  let rejectDone!: (e: unknown) => void;
  const done = new Promise<void>((res, rej) => {
    resolveDone = res;
    rejectDone = rej;
  });
  handledLater(done);
  const last = (pipeline as unknown as (...a: unknown[]) => NodeJS.ReadableStream)(stream, ...stages, (err: Error | null | undefined) => {
    if (err) rejectDone(err);
    else resolveDone();
  });
  const onAbort = (): void => stream.destroy(interrupted(signal));
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  const close = (): void => {
    signal?.removeEventListener('abort', onAbort);
    stream.destroy();
    (last as unknown as { destroy(): void }).destroy();
  };
  done.then(() => signal?.removeEventListener('abort', onAbort), close);
  return {
    tar: last as unknown as AsyncIterable<Uint8Array>,
    done,
    release: (c) => {
      // Each pool counts only the chunks it lent; one pool for both kinds is asked once.
      reads?.release(c);
      if (out !== reads) out?.release(c);
    },
    compressedBytes: () => verifier.bytes,
    tarBytes: () => diff.bytes,
    checkDiffId: () => {
      const want = digestHex(layer.diffId, `${what} diff_id`);
      if (diff.diffIdHex !== want) {
        throw new VeritreeError(ERROR_CODES.OCI_DIFF_ID_MISMATCH, `${what}: diff_id mismatch: the config says ${layer.diffId}, the layer's tar is sha256:${diff.diffIdHex}`, {
          expected: layer.diffId,
          found: `sha256:${diff.diffIdHex}`,
        });
      }
    },
    blobMismatch: (sig) => verifier.checkRemainder(sig),
    close,
  };
}

/**
 * The decompression stage. Its output is bounded as it is produced: zstd through a decoder that
 * yields one 128 KiB buffer at a time and waits for the reader, gzip through node:zlib (which
 * stops when its reader's buffer is full); so the ratio and size limits act before memory is spent.
 */
function decoder(c: Compression, what: string, buffers: DecoderBuffers | undefined): { stage: unknown; consumed: (() => number) | null } {
  if (c === 'gzip') {
    const z = zlib.createGunzip({ chunkSize: 1 << 20 });
    return { stage: wrapErrors(z, c, what), consumed: () => z.bytesWritten };
  }
  const d = createZstdDecoder(buffers);
  let consumed = 0;
  const stage = async function* (source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    try {
      yield* d(source, (n) => (consumed += n));
    } catch (e) {
      throw e instanceof VeritreeError ? e : codecError(e, c, what);
    }
  };
  // What the decoder was handed: exact for zstd-napi and node:zlib; for the `zstd` child, the
  // bytes written to its pipe (at most a pipe's worth ahead of what it consumed).
  return { stage, consumed: () => consumed };
}

function codecError(e: unknown, c: Compression, what: string): VeritreeError {
  const msg = e instanceof Error ? e.message : String(e);
  return new VeritreeError(ERROR_CODES.LAYER_DECOMPRESS, `${what}: cannot decompress (${c}): ${msg}`, { cause: e });
}

function wrapErrors(d: NodeJS.ReadWriteStream, c: Compression, what: string): NodeJS.ReadWriteStream {
  // Codec errors become LAYER_DECOMPRESS naming the layer; pipeline() sees the wrapped error.
  const origEmit = d.emit.bind(d);
  d.emit = ((event: string | symbol, ...args: unknown[]): boolean => {
    if (event === 'error' && !(args[0] instanceof VeritreeError)) return origEmit('error', codecError(args[0], c, what));
    return origEmit(event, ...args);
  }) as typeof d.emit;
  return d;
}
