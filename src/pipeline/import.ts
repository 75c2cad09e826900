/**
 * Importing OCI images. `importImages` takes any number of sources and runs them over one pool
 * and one layer scheduler: layers of every image are imported together, largest first, a few at
 * a time, and a layer that several images share (the same diff_id) is read, verified and split
 * once, whichever image asks first; the others wait for that result. If it fails, each other
 * image falls back to reading its own blob for that layer (a layer fails for an image only from
 * that image's own blob). Each image is published (config and manifest streams, then the tag)
 * as soon as its own layers are done. A broken image does not stop the others unless `failFast`.
 * `importImage` is the one-image case. See docs/guarantees.md for what is published when.
 * @module
 */
import { availableParallelism } from 'node:os';
import { ERROR_CODES, VeritreeError, isVeritreeError, type ErrorCode } from '../errors.ts';
import { digestHex } from '../oci/blob.ts';
import { layoutLabel } from '../oci/layout-files.ts';
import { parsePlatform, parseSource, resolveImage, type ResolvedImage, type ResolvedLayer } from '../oci/layout.ts';
import type { BulkImportOptions, BulkImportReport, ImageResult, ImportFailure, ImportJob, ImportOptions, ImportSummary, ImportWarning } from './import-types.ts';
import { DEFAULT_LAYER_LIMITS } from '../oci/layer-stream.ts';
import { STREAM_PREFIX, configStreamName, manifestStreamName, validateTag } from '../store/layout.ts';
import { lockOptionsFrom } from '../store/lock.ts';
import { writeObject } from '../store/objects.ts';
import type { Repository } from '../store/repository.ts';
import { SplitStreamBuilder } from '../store/splitstream.ts';
import type { HashImpl } from '../verity/backends.ts';
import type { SealReport } from '../verify/seal-check.ts';
import { checkSourceSeal } from './seal-gate.ts';
import { toHex, verityDigest } from '../verity/merkle.ts';
import { Budget } from './budget.ts';
import { defaultIoLimit } from './io-limit.ts';
import { importLayer, presentLayer, verifyStoredLayer, type LayerContext, type LayerResult } from './layer-import.ts';
import { poolSize, VerityPool } from './pool.ts';
import { LayerScheduler } from './scheduler.ts';

/** Files up to this size are handed to the pool in memory; larger ones are spooled. */
export const SPOOL_THRESHOLD_BYTES = 16 << 20;
/** Bytes of file content handed to the pool and not yet stored. */
export const MAX_INFLIGHT_BYTES = 128 << 20;
/** Layers read at once: enough to keep the pool busy between layers, few enough to bound memory. */
export const LAYER_CONCURRENCY = 3;

export type {
  BulkImportOptions,
  BulkImportReport,
  ImageResult,
  ImportFailure,
  ImportJob,
  ImportOptions,
  ImportProgress,
  ImportSummary,
  ImportWarning,
} from './import-types.ts';

interface Prepared {
  index: number;
  source: string;
  tag: string;
  image: ResolvedImage;
  warnings: ImportWarning[];
  started: number;
  retaggedFrom: string | null;
  /** Every stream of the image is stored already (read again only for verifySource). */
  complete?: boolean;
  /** Whether the tag may move off another image (a NAME given, or --force); else it is only created. */
  move: boolean;
  seals: SealReport | null;
}

/** A stream holding one JSON blob as a single external object, with named refs. */
async function writeJsonStream(repo: Repository, impl: HashImpl, kind: 'config' | 'manifest', json: Buffer, named: [string, string][]): Promise<string> {
  const objId = toHex(verityDigest(json, repo.alg, impl));
  await writeObject(repo.target, objId, json);
  const b = new SplitStreamBuilder(repo.alg, kind);
  b.addObject(objId, json.length);
  for (const [name, target] of named) b.addNamedRef(name, target);
  const bytes = b.finish();
  const id = toHex(verityDigest(bytes, repo.alg, impl));
  await writeObject(repo.target, id, bytes);
  return id;
}

function defaultTag(image: ResolvedImage): string {
  return image.ref ?? layoutLabel(image.layout);
}

function failure(source: string, tag: string | undefined, e: unknown): ImportFailure {
  // A worker's failure arrives as WORKER_FAILED already; anything else untyped is our own bug.
  const code: ErrorCode = isVeritreeError(e) ? e.code : ERROR_CODES.INTERNAL;
  return { ok: false, source, tag, code, message: e instanceof Error ? e.message : String(e), error: e };
}

export async function importImages(repo: Repository, jobsIn: (string | ImportJob)[], options: BulkImportOptions = {}): Promise<BulkImportReport> {
  const started = performance.now();
  const jobs = jobsIn.map((j) => (typeof j === 'string' ? { source: j } : j));
  const impl = options.hashImpl ?? 'auto';
  const controller = new AbortController();
  const onOuterAbort = (): void => controller.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  if (options.signal?.aborted) controller.abort(options.signal.reason);
  const aborted = (): VeritreeError => new VeritreeError(ERROR_CODES.ABORTED, 'interrupted');

  // Up front: a repository we cannot write to fails the run before any image is read.
  const lock = await repo.lockShared(lockOptionsFrom({ ...options, signal: controller.signal }));
  let ownPool: VerityPool | null = null;
  // Everything after the lock is inside this try: no error, wherever it comes from, keeps it.
  try {
    repo.assertWritable();
    const results: ImageResult[] = new Array<ImageResult>(jobs.length);
    const prepared: Prepared[] = [];
    const platform = options.platform ? parsePlatform(options.platform) : undefined;
    // What each tag names now, and the tags this run gives out: a derived tag may neither move
    // off another image nor be given twice in one run.
    const held = new Map((await repo.listTags()).map((t) => [t.tag, t.stream]));
    const givenOut = new Map<string, string>();
    for (const [i, job] of jobs.entries()) {
      try {
        // Before any work: a tag that cannot be stored must not cost a whole import first.
        if (job.tag !== undefined) validateTag(job.tag);
        const image = await resolveImage(parseSource(job.source), { platform, signal: controller.signal });
        const tag = job.tag ?? defaultTag(image);
        validateTag(tag);
        const stream = manifestStreamName(digestHex(image.manifestDescriptor.digest, 'manifest'));
        const move = job.moveTag ?? (job.tag !== undefined || options.moveTags === true);
        if (!move) {
          const other = givenOut.get(tag) ?? held.get(tag);
          if (other !== undefined && other !== stream) {
            const what = other.startsWith(STREAM_PREFIX.manifest) ? `sha256:${other.slice(STREAM_PREFIX.manifest.length)}` : other;
            throw new VeritreeError(ERROR_CODES.TAG_IN_USE, `tag ${JSON.stringify(tag)} ${givenOut.has(tag) ? 'is taken by another image of this run' : 'already names another image'} (${what}): give this image a NAME of its own, or --force to move the tag`);
          }
        }
        givenOut.set(tag, stream);
        prepared.push({ index: i, source: job.source, tag, image, warnings: [], started: performance.now(), retaggedFrom: null, move, seals: null });
      } catch (e) {
        results[i] = failure(job.source, job.tag, e);
        if (options.failFast) controller.abort();
      }
    }
    const totalBytes = prepared.reduce((n, p) => n + p.image.layers.reduce((m, l) => m + l.descriptor.size, 0), 0);
    options.onProgress?.({ type: 'run', images: jobs.length, totalBytes });

    const poolJobs = options.pool?.size ?? poolSize({ jobs: options.jobs, ioLimit: options.ioLimit ?? (await defaultIoLimit(repo.root)) }, availableParallelism());
    const pending: Prepared[] = [];
    for (const p of prepared) {
      // Each image's time runs from here, not from when it was resolved: resolving the run's
      // other images is not its time.
      p.started = performance.now();
      options.onProgress?.({ type: 'image', image: p.index, totalBytes: p.image.layers.reduce((n, l) => n + l.descriptor.size, 0), layers: p.image.layers.length, manifest: p.image.manifestDescriptor.digest });
      // A whole image already in the store: only its tag is (re)written. Whole means every
      // stream the manifest names is there too (a gc killed part-way, or a repair, can leave a
      // manifest stream without them); otherwise what is missing is imported again.
      const manifestStream = manifestStreamName(digestHex(p.image.manifestDescriptor.digest, 'manifest'));
      const complete = await imageComplete(repo, p.image, manifestStream);
      if (complete && !options.verifySource) {
        try {
          p.seals = await checkSourceSeal(repo, p.image, p.source, controller.signal);
          p.retaggedFrom = await repo.setTag(p.tag, manifestStream, p.move);
        } catch (e) {
          results[p.index] = failure(p.source, p.tag, controller.signal.aborted && options.signal?.aborted ? aborted() : e);
          options.onProgress?.({ type: 'image-done', image: p.index, ok: false });
          if (options.failFast) controller.abort();
          continue;
        }
        const layers = p.image.layers.map(presentLayer);
        for (const l of layers) options.onProgress?.({ type: 'layer-done', image: p.index, index: l.index, status: 'present', size: p.image.layers[l.index]?.descriptor.size ?? 0 });
        results[p.index] = summarise(p, 'present', layers, poolJobs);
        options.onProgress?.({ type: 'image-done', image: p.index, ok: true });
      } else {
        p.complete = complete;
        pending.push(p);
      }
    }
    if (pending.length > 0) {
      ownPool = options.pool ? null : new VerityPool(poolJobs);
      const ctx: LayerContext = {
        repo,
        pool: (options.pool ?? ownPool) as VerityPool,
        budget: new Budget(options.maxInflightBytes ?? MAX_INFLIGHT_BYTES, Math.max(4, poolJobs * 4)),
        impl,
        limits: { ...DEFAULT_LAYER_LIMITS, ...options.limits },
        spoolThreshold: options.spoolThreshold ?? SPOOL_THRESHOLD_BYTES,
        signal: controller.signal,
        verifySource: options.verifySource,
        onBytes: () => undefined,
        onWarning: () => undefined,
      };
      const scheduler = new LayerScheduler(options.layerConcurrency ?? LAYER_CONCURRENCY, async (layer, layout, image) => {
        if (controller.signal.aborted) throw aborted();
        const owner = pending.find((p) => p.index === image) as Prepared;
        options.onProgress?.({ type: 'layer-start', image, index: layer.index, digest: layer.descriptor.digest, diffId: layer.diffId, size: layer.descriptor.size });
        const layerCtx: LayerContext = {
          ...ctx,
          onBytes: (l, bytes, tarBytes, entries) => options.onProgress?.({ type: 'layer-bytes', image, index: l.index, bytes, tarBytes, entries }),
          onFinishing: (l) => options.onProgress?.({ type: 'layer-finishing', image, index: l.index }),
          onWarning: (l, code, message) => {
            const w = { layer: l.index + 1, digest: l.descriptor.digest, code, message };
            owner.warnings.push(w);
            options.onWarning?.({ ...w, image });
          },
        };
        const r = await importLayer(layerCtx, layer, layout);
        options.onProgress?.({ type: 'layer-done', image, index: layer.index, status: r.status, size: layer.descriptor.size });
        return r;
      });
      scheduler.plan(pending.flatMap((p) => p.image.layers.map((layer) => ({ layer, layout: p.image.layout, image: p.index }))));
      controller.signal.addEventListener('abort', () => scheduler.cancelPending(), { once: true });
      await Promise.all(
        pending.map(async (p) => {
          try {
            const layers = await Promise.all(p.image.layers.map((l) => scheduler.request(l.diffId, p.index)));
            if (controller.signal.aborted) throw aborted();
            // verifySource: a layer another image's blob served is checked from this image's own blob too.
            if (options.verifySource) {
              for (const [i, o] of layers.entries()) if (!o.read) await verifyStoredLayer({ ...ctx, onBytes: () => undefined }, p.image.layers[i] as ResolvedLayer, p.image.layout);
            }
            // A layer another image read carries that image's counters: here it is "present".
            const mine = layers.map((o, i): LayerResult => (o.read ? o.result : presentLayer(p.image.layers[i] as ResolvedLayer)));
            options.onProgress?.({ type: 'image-publishing', image: p.index });
            if (!p.complete) await publishImage(repo, impl, p.image, mine);
            p.seals = await checkSourceSeal(repo, p.image, p.source, controller.signal);
            p.retaggedFrom = await repo.setTag(p.tag, manifestStreamName(digestHex(p.image.manifestDescriptor.digest, 'manifest')), p.move);
            await repo.sync();
            results[p.index] = summarise(p, p.complete ? 'present' : 'imported', mine, poolJobs);
            options.onProgress?.({ type: 'image-done', image: p.index, ok: true });
          } catch (e) {
            results[p.index] = failure(p.source, p.tag, controller.signal.aborted && options.signal?.aborted ? aborted() : e);
            options.onProgress?.({ type: 'image-done', image: p.index, ok: false });
            if (options.failFast) controller.abort();
          }
        })
      );
      return report(results, scheduler.blobOpens, started, poolJobs);
    }
    return report(results, {}, started, poolJobs);
  } finally {
    options.signal?.removeEventListener('abort', onOuterAbort);
    if (ownPool) await ownPool.close();
    await lock.release();
  }
}

async function imageComplete(repo: Repository, image: ResolvedImage, manifestStream: string): Promise<boolean> {
  if (!(await repo.hasStream(manifestStream))) return false;
  if (!(await repo.hasStream(configStreamName(digestHex(image.configDescriptor.digest, 'config'))))) return false;
  for (const l of image.layers) if (!(await repo.hasStream(presentLayer(l).stream))) return false;
  return true;
}

async function publishImage(repo: Repository, impl: HashImpl, image: ResolvedImage, layers: LayerResult[]): Promise<void> {
  const layerIds: [string, string][] = [];
  for (const l of layers) {
    const id = await repo.streamObject(l.stream);
    if (!id) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `layer stream ${l.stream} vanished during the import (a concurrent gc?)`);
    layerIds.push([l.diffId, id]);
  }
  const configName = configStreamName(digestHex(image.configDescriptor.digest, 'config'));
  let configId = await repo.streamObject(configName);
  if (!configId) configId = await writeJsonStream(repo, impl, 'config', image.configBytes, layerIds);
  const manifestId = await writeJsonStream(repo, impl, 'manifest', image.manifestBytes, [[`config:${image.configDescriptor.digest}`, configId], ...layerIds]);
  // Durable first, then named; the tag (by the caller) last.
  await repo.sync();
  await repo.publishStream(configName, configId);
  await repo.publishStream(manifestStreamName(digestHex(image.manifestDescriptor.digest, 'manifest')), manifestId);
  await repo.sync();
}

function summarise(p: Prepared, status: 'imported' | 'present', layers: LayerResult[], jobs: number): ImportSummary {
  const sum = (f: (l: LayerResult) => number): number => layers.reduce((n, l) => n + f(l), 0);
  const seconds = (performance.now() - p.started) / 1000;
  const tarBytes = sum((l) => l.tarBytes);
  return {
    ok: true,
    tag: p.tag,
    source: p.source,
    manifest: p.image.manifestDescriptor.digest,
    config: p.image.configDescriptor.digest,
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
    warnings: p.warnings,
    retaggedFrom: p.retaggedFrom === null ? null : p.retaggedFrom.startsWith(STREAM_PREFIX.manifest) ? `sha256:${p.retaggedFrom.slice(STREAM_PREFIX.manifest.length)}` : p.retaggedFrom,
    seals: p.seals,
  };
}

function report(images: ImageResult[], blobOpens: Record<string, number>, started: number, jobs: number): BulkImportReport {
  const ok = images.filter((r): r is ImportSummary => r.ok);
  const seconds = (performance.now() - started) / 1000;
  const tarBytes = ok.reduce((n, r) => n + r.tarBytes, 0);
  const layersImported = ok.reduce((n, r) => n + r.layersImported, 0);
  return {
    images,
    total: {
      images: images.length,
      imported: ok.filter((r) => r.status === 'imported').length,
      present: ok.filter((r) => r.status === 'present').length,
      failed: images.length - ok.length,
      layersImported,
      layersShared: ok.reduce((n, r) => n + r.layers.length, 0) - layersImported,
      objectsWritten: ok.reduce((n, r) => n + r.objectsWritten, 0),
      tarBytes,
      seconds,
      mbPerSecond: seconds > 0 ? tarBytes / 1e6 / seconds : 0,
      jobs,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
    },
    blobOpens,
  };
}

/** Imports one image. @throws VeritreeError (the image's error) */
export async function importImage(repo: Repository, source: string, options: ImportOptions = {}): Promise<ImportSummary> {
  const { tag, moveTag, ...rest } = options;
  const r = await importImages(repo, [{ source, tag, moveTag }], { ...rest, failFast: true });
  const one = r.images[0] as ImageResult;
  if (!one.ok) throw one.error;
  return one;
}
