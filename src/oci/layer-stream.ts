/**
 * One layer as a stream of tar bytes: blob file → size/SHA-256 check against the descriptor →
 * decompression (what the media type says, confirmed by the magic bytes) → SHA-256 of the tar
 * for the diff_id check, with limits on size and inflation ratio (a gzip bomb is stopped early).
 * @module
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { pipeline, Transform, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';
import { createZstdDecompressStream } from '../codec/zstd.ts';
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { digestHex, openVerifiedBlob, type VerifyingStream } from './blob.ts';
import type { ResolvedLayer } from './layout.ts';
import { sniffCompression, type Compression } from './media-types.ts';

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

async function sniff(path: string): Promise<Compression | null> {
  const fh = await open(path, 'r');
  try {
    const head = new Uint8Array(4);
    const { bytesRead } = await fh.read(head, 0, 4, 0);
    return bytesRead === 0 ? null : sniffCompression(head.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/** Hashes and counts the tar bytes, enforcing the limits. */
class DiffIdStream extends Transform {
  private readonly hash = createHash('sha256');
  private readonly limits: LayerLimits;
  private readonly compressed: VerifyingStream;
  private readonly what: string;
  /** An uncompressed layer's tar is its blob: the blob's digest is the diff_id, no second hash. */
  private readonly sameAsBlob: boolean;
  bytes = 0;

  constructor(limits: LayerLimits, compressed: VerifyingStream, what: string, sameAsBlob: boolean) {
    super();
    this.limits = limits;
    this.compressed = compressed;
    this.what = what;
    this.sameAsBlob = sameAsBlob;
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
    if (this.bytes > RATIO_FLOOR_BYTES && this.bytes > this.limits.maxRatio * Math.max(1, this.compressed.bytes)) {
      cb(new VeritreeError(ERROR_CODES.TAR_LIMIT_EXCEEDED, `${this.what}: inflates more than ${this.limits.maxRatio} times its compressed size (a decompression bomb?)`));
      return;
    }
    if (!this.sameAsBlob) this.hash.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (!this.sameAsBlob) this.found = this.hash.digest('hex');
    cb();
  }
}

export interface LayerTar {
  /** The tar bytes; iterate to the end. An error in any stage surfaces here. */
  tar: AsyncIterable<Uint8Array>;
  /** Resolves once every stage has finished (blob verified); then check `diffIdMatches()`. */
  done: Promise<void>;
  /** Compressed bytes read so far (progress). */
  compressedBytes(): number;
  tarBytes(): number;
  /** @throws VeritreeError OCI_DIFF_ID_MISMATCH */
  checkDiffId(): void;
}

export async function openLayerTar(layoutDir: string, layer: ResolvedLayer, limits: LayerLimits = DEFAULT_LAYER_LIMITS, signal?: AbortSignal): Promise<LayerTar> {
  const what = layerWhat(layer);
  const { stream, verifier, path } = await openVerifiedBlob(layoutDir, layer.descriptor, what);
  const found = await sniff(path);
  if (found !== null && found !== layer.compression) {
    (stream as unknown as { destroy(): void }).destroy();
    throw new VeritreeError(
      ERROR_CODES.OCI_MEDIA_TYPE_UNSUPPORTED,
      `${what}: media type ${layer.descriptor.mediaType} says ${layer.compression}, but the blob is ${found === 'none' ? 'not compressed' : found}`
    );
  }
  const diff = new DiffIdStream(limits, verifier, what, layer.compression === 'none');
  const stages: NodeJS.ReadWriteStream[] = [verifier];
  if (layer.compression !== 'none') stages.push(rawDecompressor(layer.compression, what));
  stages.push(diff);
  let resolveDone!: () => void;
  let rejectDone!: (e: unknown) => void;
  const done = new Promise<void>((res, rej) => {
    resolveDone = res;
    rejectDone = rej;
  });
  done.catch(() => undefined);
  const last = (pipeline as unknown as (...a: unknown[]) => NodeJS.ReadableStream)(stream, ...stages, (err: Error | null | undefined) => {
    if (err) rejectDone(err);
    else resolveDone();
  });
  if (signal) {
    const onAbort = (): void => (stream as unknown as { destroy(e: Error): void }).destroy(new VeritreeError(ERROR_CODES.ABORTED, 'interrupted'));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  }
  return {
    tar: last as unknown as AsyncIterable<Uint8Array>,
    done,
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
  };
}

function rawDecompressor(c: Compression, what: string): NodeJS.ReadWriteStream {
  const d = c === 'gzip' ? zlib.createGunzip({ chunkSize: 1 << 18 }) : createZstdDecompressStream();
  // Codec errors become LAYER_DECOMPRESS naming the layer; pipeline() sees the wrapped error.
  const origEmit = d.emit.bind(d);
  d.emit = ((event: string | symbol, ...args: unknown[]): boolean => {
    if (event === 'error' && !(args[0] instanceof VeritreeError)) {
      const e = args[0] as Error;
      return origEmit('error', new VeritreeError(ERROR_CODES.LAYER_DECOMPRESS, `${what}: cannot decompress (${c}): ${e.message}`, { cause: e }));
    }
    return origEmit(event, ...args);
  }) as typeof d.emit;
  return d;
}
