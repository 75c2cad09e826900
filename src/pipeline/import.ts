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
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { digestHex } from '../oci/blob.ts';
import { layoutLabel, type LayoutLocation } from '../oci/layout-files.ts';
import { parsePlatform, parseSource, resolveImage, type ResolvedImage, type ResolvedLayer } from '../oci/layout.ts';
import { DEFAULT_LAYER_LIMITS } from '../oci/layer-stream.ts';
import type { TarWarningCode } from '../oci/tar-split.ts';
import { STREAM_PREFIX, manifestStreamName, validateTag } from '../store/layout.ts';
import { lockOptionsFrom } from '../store/lock.ts';
import type { Repository } from '../store/repository.ts';
import { Budget } from './budget.ts';
import { failure, report, summarise, type Prepared } from './import-report.ts';
import type { BulkImportOptions, BulkImportReport, ImageResult, ImportJob, ImportOptions, ImportSummary } from './import-types.ts';
import { defaultIoLimit } from './io-limit.ts';
import { presentLayer, type LayerResult } from './layer-import.ts';
import type { LayerJob } from './layer-messages.ts';
import { bootLayerThread, LayerThreads, type LayerHooks } from './layer-thread.ts';
import { poolSize, VerityPool } from './pool.ts';
import { imageComplete, publishImage } from './publish-image.ts';
import { LayerScheduler } from './scheduler.ts';
import { checkSourceSeal } from './seal-gate.ts';
import { INLINE_LAYER_BYTES, LAYER_CONCURRENCY, LAYER_THREAD_MEMORY, LAYER_THREADS_MEMORY, LAYER_THREADS_MIN_JOBS, MAX_INFLIGHT_BYTES, SPOOL_THRESHOLD_BYTES } from '../tuning.ts';


/**
 * Layers read at once: without layer threads, LAYER_CONCURRENCY; with them, one per job (the
 * pool's size), at least 3 (a small layer then overlaps a big one on 2 cores), and no more than
 * the memory left to layer threads holds.
 */
export function layerConcurrency(jobs: number, threaded: boolean): number {
  if (!threaded) return LAYER_CONCURRENCY;
  return Math.max(1, Math.min(Math.max(jobs, 3), Math.floor(LAYER_THREADS_MEMORY / LAYER_THREAD_MEMORY)));
}

/**
 * Whether an import uses layer threads: the option; else VERITREE_LAYER_THREADS (1 or 0); else
 * whether the pool has LAYER_THREADS_MIN_JOBS workers. Below that the main thread is not what
 * limits an import (the stage model puts its ceiling at 2.3 to 5.9 cores), and threads cost a
 * little memory for nothing.
 */
function layerThreadsOn(options: Pick<ImportOptions, 'layerThreads'>, jobs: number): boolean {
  if (options.layerThreads !== undefined) return options.layerThreads;
  const env = process.env.VERITREE_LAYER_THREADS;
  if (env === '1' || env === '0') return env === '1';
  return jobs >= LAYER_THREADS_MIN_JOBS;
}

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

function defaultTag(image: ResolvedImage): string {
  return image.ref ?? layoutLabel(image.layout);
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
  let threads: LayerThreads | null = null;
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
    const threaded = layerThreadsOn(options, poolJobs);
    /**
     * The end of one image: its layers (`layers`), its seal checked, its tag set (after a sync
     * when it wrote), `tagged` told its layers, its result recorded. Whatever fails is this
     * image's failure alone.
     */
    const finish = async (p: Prepared, status: 'present' | 'imported', sync: boolean, layers: () => Promise<LayerResult[]>, tagged?: (mine: LayerResult[]) => void): Promise<void> => {
      try {
        const mine = await layers();
        p.seals = await checkSourceSeal(repo, p.image, p.source, controller.signal);
        p.retaggedFrom = await repo.setTag(p.tag, manifestStreamName(digestHex(p.image.manifestDescriptor.digest, 'manifest')), p.move);
        if (sync) await repo.sync();
        tagged?.(mine);
        results[p.index] = summarise(p, status, mine, poolJobs, threaded);
        options.onProgress?.({ type: 'image-done', image: p.index, ok: true });
      } catch (e) {
        results[p.index] = failure(p.source, p.tag, controller.signal.aborted && options.signal?.aborted ? aborted() : e);
        options.onProgress?.({ type: 'image-done', image: p.index, ok: false });
        if (options.failFast) controller.abort();
      }
    };
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
        // Its layers are reported done once its tag is set: an image that fails reports none.
        await finish(
          p,
          'present',
          false,
          async () => p.image.layers.map(presentLayer),
          (layers) => {
            for (const l of layers) options.onProgress?.({ type: 'layer-done', image: p.index, index: l.index, status: 'present', size: p.image.layers[l.index]?.descriptor.size ?? 0 });
          }
        );
      } else {
        p.complete = complete;
        pending.push(p);
      }
    }
    if (pending.length > 0) {
      // A thread boots while the pool does, when some layer is big enough to need one.
      if (threaded && pending.some((p) => p.image.layers.some((l) => l.descriptor.size > INLINE_LAYER_BYTES))) bootLayerThread();
      ownPool = options.pool ? null : new VerityPool(poolJobs);
      const pool = (options.pool ?? ownPool) as VerityPool;
      const budget = new Budget(options.maxInflightBytes ?? MAX_INFLIGHT_BYTES, Math.max(4, poolJobs * 4));
      const limits = { ...DEFAULT_LAYER_LIMITS, ...options.limits };
      const spoolThreshold = options.spoolThreshold ?? SPOOL_THRESHOLD_BYTES;
      const lt = (threads = new LayerThreads(pool, budget, threaded));
      const job = (mode: LayerJob['mode'], layer: ResolvedLayer, layout: LayoutLocation): LayerJob => ({ mode, layer, layout, target: repo.target, root: repo.root, impl, limits, spoolThreshold, maxBytes: budget.maxBytes, poolSize: pool.size });
      const quiet = { onBytes: () => undefined, onFinishing: () => undefined, onWarning: () => undefined };
      const scheduler = new LayerScheduler(options.layerConcurrency ?? layerConcurrency(poolJobs, threaded), async (layer, layout, image) => {
        if (controller.signal.aborted) throw aborted();
        const owner = pending.find((p) => p.index === image) as Prepared;
        options.onProgress?.({ type: 'layer-start', image, index: layer.index, digest: layer.descriptor.digest, diffId: layer.diffId, size: layer.descriptor.size });
        const index = layer.index;
        const hooks = {
          onBytes: (bytes: number, tarBytes: number, entries: number) => options.onProgress?.({ type: 'layer-bytes', image, index, bytes, tarBytes, entries }),
          onFinishing: () => options.onProgress?.({ type: 'layer-finishing', image, index }),
          onWarning: (code: TarWarningCode, message: string) => {
            const w = { layer: index + 1, digest: layer.descriptor.digest, code, message };
            owner.warnings.push(w);
            options.onWarning?.({ ...w, image });
          },
        };
        const r = await readLayer(repo, lt, job, layer, layout, hooks, controller.signal, options.verifySource === true);
        options.onProgress?.({ type: 'layer-done', image, index, status: r.status, size: layer.descriptor.size });
        return r;
      });
      scheduler.plan(pending.flatMap((p) => p.image.layers.map((layer) => ({ layer, layout: p.image.layout, image: p.index }))));
      controller.signal.addEventListener('abort', () => scheduler.cancelPending(), { once: true });
      await Promise.all(
        pending.map((p) =>
          finish(p, p.complete ? 'present' : 'imported', true, async () => {
            const layers = await Promise.all(p.image.layers.map((l) => scheduler.request(l.diffId, p.index)));
            if (controller.signal.aborted) throw aborted();
            // verifySource: a layer another image's blob served is checked from this image's own blob too.
            if (options.verifySource) {
              for (const [i, o] of layers.entries()) if (!o.read) await lt.run(job('verify', p.image.layers[i] as ResolvedLayer, p.image.layout), quiet, controller.signal);
            }
            // A layer another image read carries that image's counters: here it is "present".
            const mine = layers.map((o, i): LayerResult => (o.read ? o.result : presentLayer(p.image.layers[i] as ResolvedLayer)));
            options.onProgress?.({ type: 'image-publishing', image: p.index });
            if (!p.complete) await publishImage(repo, impl, p.image, mine);
            return mine;
          })
        )
      );
      return report(results, scheduler.blobOpens, started, poolJobs, threaded);
    }
    return report(results, {}, started, poolJobs, threaded);
  } finally {
    options.signal?.removeEventListener('abort', onOuterAbort);
    await threads?.close();
    if (ownPool) await ownPool.close();
    await lock.release();
  }
}

/**
 * One layer for the scheduler: read in a layer thread unless its stream is stored (then only its
 * blob is checked, with verifySource). The thread writes the stream's object; here it is made
 * durable, then named: after a crash a named stream is complete or absent.
 */
async function readLayer(repo: Repository, threads: LayerThreads, job: (m: LayerJob['mode'], l: ResolvedLayer, at: LayoutLocation) => LayerJob, layer: ResolvedLayer, layout: LayoutLocation, hooks: LayerHooks, signal: AbortSignal, verifySource: boolean): Promise<LayerResult> {
  const present = presentLayer(layer);
  const stored = await repo.hasStream(present.stream);
  if (stored && !verifySource) return present;
  const r = await threads.run(job(stored ? 'verify' : 'import', layer, layout), hooks, signal);
  if (!('object' in r)) return r;
  const { object, ...result } = r;
  await repo.sync();
  await repo.publishStream(present.stream, object);
  return result;
}

/** Imports one image. @throws VeritreeError (the image's error) */
export async function importImage(repo: Repository, source: string, options: ImportOptions = {}): Promise<ImportSummary> {
  const { tag, moveTag, ...rest } = options;
  const r = await importImages(repo, [{ source, tag, moveTag }], { ...rest, failFast: true });
  const one = r.images[0] as ImageResult;
  if (!one.ok) throw one.error;
  return one;
}
