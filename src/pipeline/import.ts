/**
 * `importImage`: one OCI image from a local layout into the repository. Layers are imported
 * several at once, largest first, sharing one pool; then the config and manifest streams, then
 * the tag. Each is published only after what it names is durable (see docs/guarantees.md).
 * @module
 */
import { availableParallelism } from 'node:os';
import { basename, resolve } from 'node:path';
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { digestHex } from '../oci/blob.ts';
import { parsePlatform, parseSource, resolveImage, type ResolvedImage, type ResolvedLayer } from '../oci/layout.ts';
import { DEFAULT_LAYER_LIMITS, type LayerLimits } from '../oci/layer-stream.ts';
import type { TarWarningCode } from '../oci/tar-split.ts';
import { configStreamName, layerStreamName, manifestStreamName } from '../store/layout.ts';
import { writeObject } from '../store/objects.ts';
import type { Repository } from '../store/repository.ts';
import { SplitStreamBuilder } from '../store/splitstream.ts';
import type { HashImpl } from '../verity/backends.ts';
import { toHex, verityDigest } from '../verity/merkle.ts';
import { Budget } from './budget.ts';
import { defaultIoLimit } from './io-limit.ts';
import { importLayer, type LayerContext, type LayerResult } from './layer-import.ts';
import { poolSize, VerityPool } from './pool.ts';

/** Files up to this size are handed to the pool in memory; larger ones are spooled. */
export const SPOOL_THRESHOLD_BYTES = 16 << 20;
/** Bytes of file content handed to the pool and not yet stored. */
export const MAX_INFLIGHT_BYTES = 128 << 20;
/** Layers read at once: enough to keep the pool busy between layers, few enough to bound memory. */
export const LAYER_CONCURRENCY = 3;

export type ImportProgress =
  | { type: 'image'; totalBytes: number; layers: number; manifest: string }
  | { type: 'layer-start'; index: number; digest: string; size: number }
  | { type: 'layer-bytes'; index: number; bytes: number }
  | { type: 'layer-done'; index: number; status: 'imported' | 'present' };

export interface ImportWarning {
  layer: number;
  digest: string;
  code: TarWarningCode;
  message: string;
}

export interface ImportOptions {
  /** The tag to create (default: the REF of the source, else the layout folder's name). */
  tag?: string | undefined;
  /** `os/arch[/variant]`; default: the host's. */
  platform?: string | undefined;
  jobs?: number | undefined;
  ioLimit?: number | undefined;
  /** Use this pool (not closed afterwards) instead of making one. */
  pool?: VerityPool | undefined;
  hashImpl?: HashImpl | undefined;
  limits?: Partial<LayerLimits> | undefined;
  spoolThreshold?: number | undefined;
  layerConcurrency?: number | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: ((p: ImportProgress) => void) | undefined;
  onWarning?: ((w: ImportWarning) => void) | undefined;
}

export interface ImportSummary {
  tag: string;
  source: string;
  manifest: string;
  config: string;
  status: 'imported' | 'present';
  layers: LayerResult[];
  layersImported: number;
  layersPresent: number;
  objectsWritten: number;
  objectsPresent: number;
  inlined: number;
  /** Uncompressed layer bytes read. */
  tarBytes: number;
  compressedBytes: number;
  seconds: number;
  /** MB/s of uncompressed layer data. */
  mbPerSecond: number;
  jobs: number;
  /** The process's peak resident memory so far (workers included), for the memory bound. */
  peakRssBytes: number;
  warnings: ImportWarning[];
}

async function runLimited<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>, signal: AbortSignal): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  let failed: unknown = null;
  async function lane(): Promise<void> {
    while (next < items.length && failed === null && !signal.aborted) {
      const i = next++;
      try {
        out[i] = await fn(items[i] as T);
      } catch (e) {
        failed ??= e;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (failed !== null) throw failed;
  return out;
}

/** A stream holding one JSON blob as a single external object, with named refs. */
async function writeJsonStream(repo: Repository, impl: HashImpl, kind: 'config' | 'manifest', json: Buffer, named: [string, string][]): Promise<string> {
  const objId = toHex(verityDigest(json, repo.alg, impl));
  await writeObject(repo.objectsDir, objId, json);
  const b = new SplitStreamBuilder(repo.alg, kind);
  b.addObject(objId, json.length);
  for (const [name, target] of named) b.addNamedRef(name, target);
  const bytes = b.finish();
  const id = toHex(verityDigest(bytes, repo.alg, impl));
  await writeObject(repo.objectsDir, id, bytes);
  return id;
}

function defaultTag(image: ResolvedImage): string {
  return image.ref ?? basename(resolve(image.layoutDir));
}

export async function importImage(repo: Repository, source: string, options: ImportOptions = {}): Promise<ImportSummary> {
  const started = performance.now();
  const src = parseSource(source);
  const image = await resolveImage(src, { platform: options.platform ? parsePlatform(options.platform) : undefined });
  const tag = options.tag ?? defaultTag(image);
  const impl = options.hashImpl ?? 'auto';
  const controller = new AbortController();
  const onOuterAbort = (): void => controller.abort();
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  if (options.signal?.aborted) controller.abort();

  const manifestHex = digestHex(image.manifestDescriptor.digest, 'manifest');
  const configHex = digestHex(image.configDescriptor.digest, 'config');
  const layersBySize = [...image.layers].sort((a, b) => b.descriptor.size - a.descriptor.size);
  options.onProgress?.({ type: 'image', totalBytes: image.layers.reduce((n, l) => n + l.descriptor.size, 0), layers: image.layers.length, manifest: image.manifestDescriptor.digest });

  const warnings: ImportWarning[] = [];
  const lock = await repo.lockShared({ signal: controller.signal });
  const jobs = options.pool?.size ?? poolSize({ jobs: options.jobs, ioLimit: options.ioLimit ?? (await defaultIoLimit(repo.root)) }, availableParallelism());
  const pool = options.pool ?? null;
  let ownPool: VerityPool | null = null;
  try {
    const manifestStream = manifestStreamName(manifestHex);
    let layers: LayerResult[];
    let status: 'imported' | 'present' = 'present';
    if (await repo.hasStream(manifestStream)) {
      layers = image.layers.map((l) => ({ index: l.index, digest: l.descriptor.digest, diffId: l.diffId, stream: layerStreamName(digestHex(l.diffId, 'diff_id')), status: 'present', objectsWritten: 0, objectsPresent: 0, inlined: 0, tarBytes: 0, compressedBytes: 0, blobOpens: 0 }));
      for (const l of image.layers) options.onProgress?.({ type: 'layer-done', index: l.index, status: 'present' });
    } else {
      ownPool = pool ? null : new VerityPool(jobs);
      const ctx: LayerContext = {
        repo,
        pool: (pool ?? ownPool) as VerityPool,
        budget: new Budget(MAX_INFLIGHT_BYTES, Math.max(4, jobs * 4)),
        impl,
        layoutDir: image.layoutDir,
        limits: { ...DEFAULT_LAYER_LIMITS, ...options.limits },
        spoolThreshold: options.spoolThreshold ?? SPOOL_THRESHOLD_BYTES,
        signal: controller.signal,
        onBytes: (l, bytes) => options.onProgress?.({ type: 'layer-bytes', index: l.index, bytes }),
        onWarning: (l, code, message) => {
          const w = { layer: l.index + 1, digest: l.descriptor.digest, code, message };
          warnings.push(w);
          options.onWarning?.(w);
        },
      };
      const one = async (l: ResolvedLayer): Promise<LayerResult> => {
        options.onProgress?.({ type: 'layer-start', index: l.index, digest: l.descriptor.digest, size: l.descriptor.size });
        const r = await importLayer(ctx, l);
        options.onProgress?.({ type: 'layer-done', index: l.index, status: r.status });
        return r;
      };
      const done = await runLimited(layersBySize, options.layerConcurrency ?? LAYER_CONCURRENCY, one, controller.signal).catch((e: unknown) => {
        controller.abort();
        throw e;
      });
      if (options.signal?.aborted) throw new VeritreeError(ERROR_CODES.ABORTED, 'interrupted');
      layers = done.sort((a, b) => a.index - b.index);
      await publishImage(repo, impl, image, layers, configHex, manifestHex);
      status = 'imported';
    }
    await repo.setTag(tag, manifestStream);
    await repo.sync();
    return summarise(tag, source, image, status, layers, warnings, started, jobs);
  } catch (e) {
    if (options.signal?.aborted) throw new VeritreeError(ERROR_CODES.ABORTED, 'interrupted', { cause: e });
    throw e;
  } finally {
    options.signal?.removeEventListener('abort', onOuterAbort);
    if (ownPool) await ownPool.close();
    await lock.release();
  }
}

async function publishImage(repo: Repository, impl: HashImpl, image: ResolvedImage, layers: LayerResult[], configHex: string, manifestHex: string): Promise<void> {
  const layerIds: [string, string][] = [];
  for (const l of layers) {
    const id = await repo.streamObject(l.stream);
    if (!id) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `layer stream ${l.stream} vanished during the import (a concurrent gc?)`);
    layerIds.push([l.diffId, id]);
  }
  const configName = configStreamName(configHex);
  let configId = await repo.streamObject(configName);
  if (!configId) configId = await writeJsonStream(repo, impl, 'config', image.configBytes, layerIds);
  const manifestId = await writeJsonStream(repo, impl, 'manifest', image.manifestBytes, [[`config:${image.configDescriptor.digest}`, configId], ...layerIds]);
  await repo.sync();
  await repo.publishStream(configName, configId);
  await repo.publishStream(manifestStreamName(manifestHex), manifestId);
  await repo.sync();
}

function summarise(tag: string, source: string, image: ResolvedImage, status: 'imported' | 'present', layers: LayerResult[], warnings: ImportWarning[], started: number, jobs: number): ImportSummary {
  const sum = (f: (l: LayerResult) => number): number => layers.reduce((n, l) => n + f(l), 0);
  const seconds = (performance.now() - started) / 1000;
  const tarBytes = sum((l) => l.tarBytes);
  return {
    tag,
    source,
    manifest: image.manifestDescriptor.digest,
    config: image.configDescriptor.digest,
    status,
    layers,
    layersImported: layers.filter((l) => l.status === 'imported').length,
    layersPresent: layers.filter((l) => l.status === 'present').length,
    objectsWritten: sum((l) => l.objectsWritten),
    objectsPresent: sum((l) => l.objectsPresent),
    inlined: sum((l) => l.inlined),
    tarBytes,
    compressedBytes: sum((l) => l.compressedBytes),
    seconds,
    mbPerSecond: seconds > 0 ? tarBytes / 1e6 / seconds : 0,
    jobs,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    warnings,
  };
}

