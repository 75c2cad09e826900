/**
 * Importing one layer, in a layer thread of its own (layer.worker.ts): its blob is read, checked
 * and inflated and its tar split there; each file over 64 bytes goes to the pool (in memory up to
 * a threshold, spooled to a tmp file inside the store above it). Its split stream is written as
 * an object only after its blob and diff_id are verified and every object it names is stored;
 * the main thread then makes it durable and names it (layer-thread.ts).
 * @module
 */
import { ERROR_CODES, VeritreeError, interrupted, isVeritreeError, storeIoError } from '../errors.ts';
import type { LayoutLocation } from '../oci/layout-files.ts';
import type { ResolvedLayer } from '../oci/layout.ts';
import { layerWhat, openLayerTar, type LayerLimits, type LayerTar } from '../oci/layer-stream.ts';
import { splitTar, type SplitSink, type TarEntry, type TarWarningCode } from '../oci/tar-split.ts';
import { layerStreamName } from '../store/layout.ts';
import { TmpObjectFile, writeObject, type ObjectTarget, type PublishResult } from '../store/objects.ts';
import { SplitStreamBuilder } from '../store/splitstream.ts';
import type { HashImpl } from '../verity/backends.ts';
import { toHex, verityDigest } from '../verity/merkle.ts';
import type { Leases } from './budget.ts';
import { SmallFileBatcher } from './batcher.ts';
import { digestLargeFile } from './digest-files.ts';
import { BATCH_ITEM_MAX, MAX_HELD_INLINE, SPLIT_THRESHOLD_BYTES } from '../tuning.ts';
import type { TaskRunner } from './protocol.ts';
import { OrderedStreamFeed } from './stream-feed.ts';
import { bufferBytesFor, giveBack, takeBuffer } from './buffers.ts';

export interface LayerContext {
  target: ObjectTarget;
  /** The store's folder, for messages. */
  root: string;
  pool: TaskRunner;
  budget: Leases;
  impl: HashImpl;
  limits: LayerLimits;
  /** Files larger than this are spooled to a tmp file instead of held in memory. */
  spoolThreshold: number;
  signal: AbortSignal;
  /** Read and check the blob of a layer that is already stored (size, SHA-256, diff_id), storing nothing. */
  verifySource?: boolean | undefined;
  /** Progress: blob bytes read so far (a position in the compressed blob), tar bytes, entries. */
  onBytes(layer: ResolvedLayer, compressedBytes: number, tarBytes: number, entries: number): void;
  /** The layer's tar has been read whole: what is left is storing, syncing and publishing. */
  onFinishing?(layer: ResolvedLayer): void;
  onWarning(layer: ResolvedLayer, code: TarWarningCode, message: string): void;
}

export interface LayerResult {
  index: number;
  digest: string;
  diffId: string;
  stream: string;
  status: 'imported' | 'present';
  objectsWritten: number;
  objectsPresent: number;
  inlined: number;
  tarBytes: number;
  compressedBytes: number;
  /** How many times the layer's blob was opened (0 when the layer was already present). */
  blobOpens: number;
}

function withContext(e: unknown, what: string): unknown {
  if (isVeritreeError(e) && !/^layer \d+ \(/.test(e.message) && e.code !== ERROR_CODES.ABORTED && !e.code.startsWith('STORE')) {
    return new VeritreeError(e.code, `${what}: ${e.message}`, { cause: e, path: e.path, expected: e.expected, found: e.found });
  }
  return e;
}

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

async function fill(content: AsyncIterable<Uint8Array>, size: number): Promise<Uint8Array | null> {
  // Not zeroed: it is returned only when every byte was copied in.
  const buf = takeBuffer(size);
  let got = 0;
  for await (const v of content) {
    if (got + v.length > size) return null;
    buf.set(v, got);
    got += v.length;
  }
  return got === size ? buf : null;
}

/**
 * Writes a large file to an unnamed file inside objects/ (every write checked), then hashes it
 * there, in parallel ranges, and names it. Returns null when the tar ended inside the file.
 */
async function spool(ctx: LayerContext, entry: TarEntry, content: AsyncIterable<Uint8Array>): Promise<(() => Promise<PublishResult>) | null> {
  let tmp: TmpObjectFile;
  try {
    tmp = new TmpObjectFile(ctx.target);
  } catch (e) {
    throw storeIoError(e, ctx.root, `spooling ${entry.path}`);
  }
  try {
    for await (const v of content) await tmp.write(v);
  } catch (e) {
    tmp.discard();
    throw storeIoError(e, ctx.root, `spooling ${entry.path}`);
  }
  if (tmp.size !== entry.size) {
    tmp.discard();
    return null;
  }
  return async () => {
    try {
      let id: string;
      if (entry.size >= SPLIT_THRESHOLD_BYTES && ctx.pool.size > 1) {
        id = await digestLargeFile(ctx.pool, tmp.readPath, entry.size, { alg: ctx.target.alg, impl: ctx.impl });
      } else {
        const r = await ctx.pool.run({ kind: 'digest-file', path: tmp.readPath, alg: ctx.target.alg, impl: ctx.impl });
        if (!r.ok) throw new VeritreeError(r.code, r.message, { path: tmp.readPath });
        if (r.size !== entry.size) {
          throw new VeritreeError(ERROR_CODES.STORE_IO, `spooled ${entry.path}: ${r.size} bytes hashed, expected ${entry.size}`, { expected: String(entry.size), found: String(r.size) });
        }
        id = r.id;
      }
      return tmp.publish(id, entry.size);
    } finally {
      tmp.discard();
    }
  };
}

/** The result for a layer this run did not read (its stream was there, or another image read it). */
export function presentLayer(layer: ResolvedLayer): LayerResult {
  const stream = layerStreamName(layer.diffId.slice('sha256:'.length));
  return { index: layer.index, digest: layer.descriptor.digest, diffId: layer.diffId, stream, status: 'present', objectsWritten: 0, objectsPresent: 0, inlined: 0, tarBytes: 0, compressedBytes: 0, blobOpens: 0 };
}


/**
 * Where the splitter sends a layer's bytes: inline bytes to the stream feed, small files into
 * batches, the rest to tasks of their own or to spool files. A class, not an object of closures:
 * the splitter's loop then calls the same methods for every layer, and V8 does not throw away its
 * optimised code each time a new layer's closures show up ("wrong call target").
 */
class LayerSink implements SplitSink {
  inlined = 0;
  entries = 0;
  /** The first object that failed: the layer stops at its next entry. */
  failure: unknown = null;
  readonly signal: AbortSignal;
  private readonly ctx: LayerContext;
  private readonly layer: ResolvedLayer;
  private readonly feed: OrderedStreamFeed;
  private readonly batcher: SmallFileBatcher;
  /** A file above the byte budget is spooled, never held: the budget is a bound, not a hint. */
  private readonly spoolThreshold: number;

  constructor(ctx: LayerContext, layer: ResolvedLayer, feed: OrderedStreamFeed, batcher: SmallFileBatcher, signal: AbortSignal) {
    this.ctx = ctx;
    this.layer = layer;
    this.feed = feed;
    this.batcher = batcher;
    this.signal = signal;
    this.spoolThreshold = Math.min(ctx.spoolThreshold, ctx.budget.maxBytes);
  }

  inline(bytes: Uint8Array): Promise<void> | undefined {
    this.feed.inline(bytes);
    return this.feed.heldBytes > MAX_HELD_INLINE ? this.relieve() : undefined;
  }

  smallFile(): void {
    this.inlined++;
  }

  entry(): void {
    this.entries++;
  }

  warn(code: TarWarningCode, message: string): void {
    this.ctx.onWarning(this.layer, code, message);
  }

  externalBytes(entry: TarEntry, bytes: Uint8Array): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    // Only what `external` would batch takes the fast path: spooling and single tasks are its.
    if (entry.size > BATCH_ITEM_MAX || entry.size > this.spoolThreshold) return this.external(entry, once(bytes));
    return this.batcher.tryAdd(bytes) ? undefined : this.external(entry, once(bytes));
  }

  async external(entry: TarEntry, content: AsyncIterable<Uint8Array>): Promise<void> {
    if (this.failure) throw this.failure;
    const { ctx, feed } = this;
    if (entry.size > this.spoolThreshold) {
      // A task slot, no bytes: the content goes to disk as it is read.
      const lease = await ctx.budget.lease(0, this.signal);
      let job: (() => Promise<PublishResult>) | null;
      try {
        job = await spool(ctx, entry, content);
      } catch (e) {
        lease.release();
        throw e;
      }
      if (!job) lease.release();
      else feed.object(job().finally(lease.release));
      return;
    }
    if (entry.size <= BATCH_ITEM_MAX) {
      await this.batcher.add(entry.size, content);
      return;
    }
    // The buffer's whole size class counts: the budget bounds memory, not file sizes.
    const lease = await ctx.budget.lease(bufferBytesFor(entry.size), this.signal);
    let buf: Uint8Array | null;
    try {
      buf = await fill(content, entry.size);
    } catch (e) {
      lease.release();
      throw e;
    }
    if (!buf) {
      lease.release();
      return;
    }
    const task = { kind: 'store-buffer', target: ctx.target, data: buf, alg: ctx.target.alg, impl: ctx.impl } as const;
    const run = ctx.pool.run(task, { transfer: [buf.buffer as ArrayBuffer], holds: lease }).then((r) => {
      if (!r.ok) throw new VeritreeError(r.code, `${r.message} (storing ${entry.path})`, { path: r.path });
      giveBack(r.data);
      return { id: r.id, size: r.size, written: r.written };
    });
    feed.object(run.finally(lease.release));
  }

  /** Too many inline bytes wait: the oldest unfinished object may sit in the open batch, so send it, then wait for it. */
  private async relieve(): Promise<void> {
    await this.batcher.flush();
    await this.feed.waitHeldBelow(MAX_HELD_INLINE / 2);
  }
}

/** A layer read and stored whole: `object` is its split stream's object, written, not yet named. */
export type LayerRead = LayerResult & { object: string };

/** Reads, checks and splits a layer not in the store. */
export async function importLayer(ctx: LayerContext, layer: ResolvedLayer, layout: LayoutLocation): Promise<LayerRead> {
  const what = layerWhat(layer);
  const base = { index: layer.index, digest: layer.descriptor.digest, diffId: layer.diffId, stream: presentLayer(layer).stream };

  const builder = new SplitStreamBuilder(ctx.target.alg, 'layer');
  const local = new AbortController();
  // The first object that fails stops the layer: its reader and every task still waiting.
  const feed = new OrderedStreamFeed(builder, (e) => {
    sink.failure ??= e;
    local.abort();
  });
  const abortAll = (): void => local.abort(ctx.signal.reason);
  if (ctx.signal.aborted) abortAll();
  else ctx.signal.addEventListener('abort', abortAll, { once: true });
  const batcher = new SmallFileBatcher({ pool: ctx.pool, budget: ctx.budget, target: ctx.target, alg: ctx.target.alg, impl: ctx.impl, signal: local.signal, newResult: () => feed.pendingObject() });
  const sink = new LayerSink(ctx, layer, feed, batcher, local.signal);
  let lt: LayerTar | null = null;
  try {
    lt = await openLayerTar(layout, layer, ctx.limits, local.signal);
    const tar = lt;
    const progress = setInterval(() => ctx.onBytes(layer, tar.compressedBytes(), tar.tarBytes(), sink.entries), 100);
    try {
      await splitTar(tar.tar, sink, tar.release);
      await batcher.flush();
      await tar.done;
    } finally {
      clearInterval(progress);
      ctx.onBytes(layer, tar.compressedBytes(), tar.tarBytes(), sink.entries);
    }
    ctx.onFinishing?.(layer);
    tar.checkDiffId();
    await feed.finish();
    if (sink.failure) throw sink.failure;
    return { ...base, ...(await writeLayerStream(ctx, builder, feed)), inlined: sink.inlined, tarBytes: tar.tarBytes(), compressedBytes: tar.compressedBytes(), blobOpens: 1 };
  } catch (e) {
    batcher.discard(e);
    lt?.close();
    // Let every task in flight settle before reporting: no worker may still write when we return.
    await feed.settleAll();
    const err = ctx.signal.aborted ? interrupted(ctx.signal) : (sink.failure ?? e);
    throw withContext(await rootCause(lt, err, ctx.signal), what);
  } finally {
    ctx.signal.removeEventListener('abort', abortAll);
  }
}

/**
 * `--verify-source` for a layer already stored: its blob is read whole and checked as an import
 * checks it (size and SHA-256 of the blob, the diff_id of its tar), so that a layout that a
 * fresh store refuses is refused here too; nothing is written.
 */
export async function verifyStoredLayer(ctx: LayerContext, layer: ResolvedLayer, layout: LayoutLocation): Promise<LayerResult> {
  let lt: LayerTar | null = null;
  try {
    lt = await openLayerTar(layout, layer, ctx.limits, ctx.signal);
    const tar = lt;
    const progress = setInterval(() => ctx.onBytes(layer, tar.compressedBytes(), tar.tarBytes(), 0), 100);
    try {
      // The signal destroys the blob's stream (openLayerTar), which ends this loop with ABORTED.
      for await (const chunk of tar.tar) tar.release(chunk);
      await tar.done;
    } finally {
      clearInterval(progress);
      ctx.onBytes(layer, tar.compressedBytes(), tar.tarBytes(), 0);
    }
    tar.checkDiffId();
    return { ...presentLayer(layer), compressedBytes: tar.compressedBytes(), blobOpens: 1 };
  } catch (e) {
    lt?.close();
    const err = ctx.signal.aborted ? interrupted(ctx.signal) : e;
    throw withContext(await rootCause(lt, err, ctx.signal), layerWhat(layer));
  }
}

/** A decompression or tar error on a blob that does not match its digest is reported as the mismatch. */
async function rootCause(lt: LayerTar | null, err: unknown, signal: AbortSignal): Promise<unknown> {
  const code = isVeritreeError(err) ? err.code : null;
  const blobChecked = code === ERROR_CODES.OCI_DIGEST_MISMATCH || code === ERROR_CODES.OCI_SIZE_MISMATCH || code === ERROR_CODES.OCI_BLOB_MISSING;
  if (!lt || blobChecked || code === ERROR_CODES.ABORTED || code?.startsWith('STORE') || code === ERROR_CODES.WORKER_FAILED) return err;
  try {
    return (await lt.blobMismatch(signal)) ?? err;
  } catch (e) {
    return isVeritreeError(e) && e.code === ERROR_CODES.ABORTED ? e : err;
  }
}

/** Writes the stream's object; the main thread makes it durable and names it. */
async function writeLayerStream(ctx: LayerContext, builder: SplitStreamBuilder, feed: OrderedStreamFeed): Promise<{ status: 'imported'; object: string; objectsWritten: number; objectsPresent: number }> {
  const bytes = builder.finish();
  const id = toHex(verityDigest(bytes, ctx.target.alg, ctx.impl));
  await writeObject(ctx.target, id, bytes);
  return { status: 'imported', object: id, objectsWritten: feed.objectsWritten, objectsPresent: feed.objectsPresent };
}
