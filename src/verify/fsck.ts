/**
 * fsck: re-hashes every object in the pool (workers read the files; the main thread walks and
 * collects) and checks every reference: stream links, split-stream headers and the objects and
 * streams they name, config/manifest JSON against their digests, tags, and each image's layers.
 * It reports every problem it finds, then a summary.
 * @module
 */
import { createHash } from 'node:crypto';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { lockOptionsFrom, type LockWaitOptions, type RepoLock } from '../store/lock.ts';
import { ERROR_CODES, errnoCode, isVeritreeError, storeIoError, throwIfAborted, whenAbsent } from '../errors.ts';
import { composefsImageObjects } from '../erofs/reader.ts';
import { listRefs } from '../store/links.ts';
import { IMAGES_DIR, STREAM_PREFIX, STREAMS_DIR, TAGS_DIR, classifyNamedRef, isObjectId, objectIdFromLink } from '../store/layout.ts';
import { rebuildHashed } from '../store/rebuild.ts';
import type { Repository } from '../store/repository.ts';
import type { SplitStream } from '../store/splitstream.ts';
import { readRefs, readSplitStream } from '../store/splitstream-reader.ts';
import type { HashImpl } from '../verity/backends.ts';
import { defaultIoLimit } from '../pipeline/io-limit.ts';
import { poolSize, VerityPool } from '../pipeline/pool.ts';
import { verifyObjects, type FsckProgress } from './verify-objects.ts';
import type { StoreIssue } from './issues.ts';

export interface FsckOptions extends LockWaitOptions {
  /** Only re-hash objects; skip streams, tags and images. */
  objectsOnly?: boolean;
  /** Also rebuild every layer from its stream and check its SHA-256 against the diff_id. */
  deep?: boolean;
  jobs?: number | undefined;
  ioLimit?: number | undefined;
  pool?: VerityPool;
  hashImpl?: HashImpl;
  signal?: AbortSignal;
  onProgress?: (p: FsckProgress) => void;
  /** `--deep`: called before each layer is rebuilt (`done` of `total`), and once more at the end. */
  onRebuild?: (p: { done: number; total: number; bytes: number }) => void;
  /**
   * The repository lock fsck takes: `shared` (the default) keeps gc and repair out while it
   * runs, and lets imports go on; `exclusive` for a check followed by a repair; `held` when the
   * caller holds one already.
   */
  lock?: 'shared' | 'exclusive' | 'held';
}

export interface FsckReport {
  ok: boolean;
  repo: string;
  objectsOnly: boolean;
  objects: number;
  bytes: number;
  streams: number;
  tags: number;
  layersRebuilt: number;
  /** composefs images under images/ whose files' objects were checked. */
  images: number;
  issues: StoreIssue[];
  /** Named refs of kinds veritree does not know (written by a newer composefs-rs, say): kept, not damage. */
  unknownRefs: UnknownRef[];
  seconds: number;
}

export interface UnknownRef {
  stream: string;
  ref: string;
  object: string;
}

interface Ctx {
  repo: Repository;
  issues: StoreIssue[];
  /** Object ids whose content is known bad or missing. */
  bad: Set<string>;
  present: Set<string>;
  pool: VerityPool;
  impl: HashImpl;
  unknownRefs: UnknownRef[];
}

/**
 * Checks the store: re-hashes every object in the worker pool (a digest other than its name is
 * `object-digest-mismatch`), then every reference (tags → manifests → configs → layers → objects,
 * composefs images and the objects they name); `deep` also rebuilds each layer and checks its
 * diff_id. Problems are reported, never thrown: see FsckReport.issues and docs/json.md. Takes the
 * shared repository lock (gc and repair wait; imports go on).
 * @throws VeritreeError STORE_* when the store cannot be read at all, ABORTED on the signal
 */
export async function fsck(repo: Repository, options: FsckOptions = {}): Promise<FsckReport> {
  const started = performance.now();
  const lockOpts = lockOptionsFrom(options);
  const mode = options.lock ?? 'shared';
  const lock: RepoLock | null = mode === 'held' ? null : mode === 'shared' ? await repo.lockShared(lockOpts) : await repo.lockExclusive(lockOpts);
  const pool = options.pool ?? new VerityPool(poolSize({ jobs: options.jobs, ioLimit: options.ioLimit ?? (await defaultIoLimit(repo.root)) }, availableParallelism()), { lazy: true });
  try {
    return await fsckLocked(repo, options, pool, started);
  } finally {
    if (!options.pool) await pool.close();
    await lock?.release();
  }
}

/**
 * Whether the store has streams/ or images/: a store without meta.json is objects alone only
 * when it has neither (what mkcomposefs --digest-store writes). A cfsctl store from before
 * meta.json, or a veritree store that lost it, still has its references checked.
 */
async function holdsRefs(repo: Repository): Promise<boolean> {
  for (const d of [STREAMS_DIR, IMAGES_DIR]) {
    try {
      await lstat(join(repo.root, d));
      return true;
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') throw storeIoError(e, join(repo.root, d), 'looking for references');
    }
  }
  return false;
}

async function fsckLocked(repo: Repository, options: FsckOptions, pool: VerityPool, started: number): Promise<FsckReport> {
  const issues: StoreIssue[] = [];
  const impl = options.hashImpl ?? 'auto';
  const objectsOnly = options.objectsOnly === true || (!repo.hasMeta && !(await holdsRefs(repo)));
  const checked = await verifyObjects(repo, pool, { impl, signal: options.signal, onProgress: options.onProgress });
  for (const i of checked.issues) issues.push(i);
  const ctx: Ctx = { repo, issues, bad: checked.bad, present: checked.present, pool, impl, unknownRefs: [] };

  let streams = 0;
  let tags = 0;
  let layersRebuilt = 0;
  let images = 0;
  if (!objectsOnly) {
    streams = await checkStreams(ctx, options.signal);
    tags = await checkTags(ctx);
    images = await checkImages(ctx, options.signal);
    if (options.deep) layersRebuilt = await rebuildLayers(ctx, options.signal, options.onRebuild);
  }
  return {
    ok: issues.length === 0,
    repo: repo.root,
    objectsOnly,
    objects: checked.objects,
    bytes: checked.bytes,
    streams,
    tags,
    layersRebuilt,
    images,
    issues,
    unknownRefs: ctx.unknownRefs,
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * An object that was not there when objects/ was walked may have been published since by an
 * import running beside fsck (the shared lock lets imports run): it is checked now, by the same
 * re-hash, instead of being reported missing.
 */
async function presentNow(ctx: Ctx, id: string): Promise<boolean> {
  if (ctx.present.has(id)) return true;
  if (!isObjectId(id, ctx.repo.alg)) return false;
  const path = ctx.repo.objectPath(id);
  const st = await lstat(path).catch(whenAbsent(null));
  if (!st?.isFile()) return false;
  const r = await ctx.pool.run({ kind: 'digest-file', path, alg: ctx.repo.alg, impl: ctx.impl, noFollow: true });
  ctx.present.add(id);
  if (!r.ok) {
    ctx.bad.add(id);
    ctx.issues.push({ type: 'object-unreadable', path, detail: r.message });
  } else if (r.id !== id) {
    ctx.bad.add(id);
    ctx.issues.push({ type: 'object-digest-mismatch', path, detail: `the content (${r.size} bytes) does not hash to the object's name`, expected: id, found: r.id });
  }
  return true;
}

function usable(ctx: Ctx, id: string): boolean {
  return ctx.present.has(id) && !ctx.bad.has(id);
}

/** The object a stream link names, or null (with an issue) when the link is not sound. */
/** For `.catch` on streamObject: a link that is not sound (STORE_CORRUPT) as no object; anything else thrown. */
function unsoundLink(e: unknown): null {
  if (isVeritreeError(e) && e.code === ERROR_CODES.STORE_CORRUPT) return null;
  throw e;
}

async function streamTarget(ctx: Ctx, name: string): Promise<string | null> {
  const path = ctx.repo.streamPath(name);
  const st = await lstat(path);
  if (!st.isSymbolicLink()) {
    ctx.issues.push({ type: 'stream-not-symlink', path, detail: `stream ${name} is not a symlink` });
    return null;
  }
  const target = await readlink(path);
  const id = objectIdFromLink(target, true);
  if (!id || !(await presentNow(ctx, id))) {
    if (id && ctx.bad.has(id)) return id;
    ctx.issues.push({ type: 'broken-symlink', path, detail: `stream ${name} points to ${target}, which is not an object in the store`, found: target });
    return null;
  }
  return id;
}

async function checkStreams(ctx: Ctx, signal: AbortSignal | undefined): Promise<number> {
  const dir = join(ctx.repo.root, 'streams');
  const names = (await readdir(dir).catch(whenAbsent([] as string[]))).filter((n) => n !== 'refs').sort();
  for (const name of names) {
    throwIfAborted(signal);
    const id = await streamTarget(ctx, name);
    if (!id || ctx.bad.has(id)) continue;
    const path = ctx.repo.streamPath(name);
    let bytes: Buffer;
    let refs: ReturnType<typeof readRefs>;
    try {
      bytes = await ctx.repo.readObject(id);
      refs = readRefs(bytes);
    } catch (e) {
      ctx.issues.push({ type: 'stream-corrupt', path, detail: `stream ${name}: ${e instanceof Error ? e.message : String(e)}` });
      ctx.bad.add(id);
      continue;
    }
    const images = new Set(refs.namedRefs.filter((r) => classifyNamedRef(r.name).kind === 'image').map((r) => refs.streamRefs[r.index]));
    for (const list of [refs.objectRefs, refs.streamRefs]) {
      for (const ref of list) {
        // A layer names tens of thousands of objects: no promise for the ones the walk found.
        if (ctx.present.has(ref)) continue;
        if (await presentNow(ctx, ref)) continue;
        const detail = images.has(ref) ? `stream ${name} names its composefs image ${ref}, which is missing: veritree fsck --repair writes it again` : `stream ${name} needs object ${ref}, which is missing`;
        ctx.issues.push({ type: 'missing-object', path, detail, expected: ref });
      }
    }
    const expectType = name.startsWith(STREAM_PREFIX.layer) ? 'layer' : name.startsWith(STREAM_PREFIX.config) ? 'config' : name.startsWith(STREAM_PREFIX.manifest) ? 'manifest' : null;
    if (expectType && refs.contentType !== expectType) {
      ctx.issues.push({ type: 'stream-content-type', path, detail: `stream ${name} holds content type ${refs.contentType}`, expected: expectType, found: String(refs.contentType) });
      continue;
    }
    if (expectType === 'config' || expectType === 'manifest') await checkJson(ctx, name, bytes, expectType);
  }
  return names.length;
}

/** A config or manifest stream's JSON must hash to the digest in its name; its references must resolve. */
async function checkJson(ctx: Ctx, name: string, bytes: Buffer, kind: 'config' | 'manifest'): Promise<void> {
  const path = ctx.repo.streamPath(name);
  let s;
  try {
    s = readSplitStream(bytes);
  } catch (e) {
    ctx.issues.push({ type: 'stream-corrupt', path, detail: `stream ${name}: ${e instanceof Error ? e.message : String(e)}` });
    return;
  }
  const first = s.chunks[0];
  const jsonId = first?.kind === 'object' ? s.objectRefs[first.index] : undefined;
  if (s.chunks.length !== 1 || !jsonId) {
    ctx.issues.push({ type: 'stream-corrupt', path, detail: `stream ${name} is not one JSON object` });
    return;
  }
  if (usable(ctx, jsonId)) {
    const found = createHash('sha256').update(await ctx.repo.readObject(jsonId)).digest('hex');
    const expected = name.slice(name.indexOf(':') + 1);
    if (found !== expected) ctx.issues.push({ type: 'json-digest-mismatch', path, detail: `the ${kind} JSON of ${name} hashes to sha256:${found}`, expected: `sha256:${expected}`, found: `sha256:${found}` });
  }
  for (const ref of s.namedRefs) {
    const target = s.streamRefs[ref.index] as string;
    const what = classifyNamedRef(ref.name);
    // An EROFS image (composefs.image*) is an object, not a stream: that it exists is checked
    // with every stream ref above. A ref veritree does not know is kept and reported, not judged.
    if (what.kind === 'image') continue;
    if (what.kind === 'unknown') {
      ctx.unknownRefs.push({ stream: name, ref: ref.name, object: target });
      continue;
    }
    // A link of a form composefs-rs does not write is reported where streams are checked.
    const linked = await ctx.repo.streamObject(what.stream).catch(unsoundLink);
    if (linked === null) ctx.issues.push({ type: 'missing-stream', path, detail: `${name} names ${ref.name}, but there is no stream ${what.stream}`, expected: what.stream });
    else if (linked !== target && !(what.kind === 'config' && (await imageRelinkPending(ctx, s, target, linked)))) {
      ctx.issues.push({ type: 'missing-stream', path, detail: `${name} names ${ref.name} as object ${target}, but ${what.stream} is ${linked}`, expected: target, found: linked });
    }
  }
}

/**
 * Whether a manifest whose `config:` ref names `named` while the config link names `linked` is
 * a `veritree image` between its relinks (store-image.ts): the manifest also holds `linked` as
 * an unnamed stream ref, and both are config streams of the same JSON object. The next
 * `veritree image` finishes it; until then both objects are kept and either reads the same.
 */
async function imageRelinkPending(ctx: Ctx, manifest: SplitStream, named: string, linked: string): Promise<boolean> {
  const index = manifest.streamRefs.indexOf(linked);
  if (index < 0 || manifest.namedRefs.some((r) => r.index === index)) return false;
  if (!usable(ctx, named) || !usable(ctx, linked)) return false;
  try {
    const [a, b] = [readSplitStream(await ctx.repo.readObject(named)), readSplitStream(await ctx.repo.readObject(linked))];
    const json = (x: SplitStream): string | undefined => (x.chunks.length === 1 && x.chunks[0]?.kind === 'object' ? x.objectRefs[x.chunks[0].index] : undefined);
    return a.contentType === 'config' && b.contentType === 'config' && json(a) !== undefined && json(a) === json(b);
  } catch (e) {
    if (isVeritreeError(e) && e.code === ERROR_CODES.ABORTED) throw e;
    return false;
  }
}

/**
 * composefs images (images/<hex>, as composefs-rs writes them): the link names the object whose
 * fs-verity digest is its name, that object is a readable composefs image, and every object its
 * files name is in the store.
 */
async function checkImages(ctx: Ctx, signal: AbortSignal | undefined): Promise<number> {
  const dir = join(ctx.repo.root, IMAGES_DIR);
  const names = (await readdir(dir).catch(whenAbsent([] as string[]))).filter((n) => n !== 'refs').sort();
  for (const name of names) {
    throwIfAborted(signal);
    const path = join(dir, name);
    // EINVAL: not a link, reported below as a broken one.
    const target = await readlink(path).catch(whenAbsent(null, 'EINVAL'));
    const id = target === null ? null : objectIdFromLink(target, true);
    if (id === null || !(await presentNow(ctx, id))) {
      ctx.issues.push({ type: 'broken-symlink', path, detail: `image ${name} points to ${target ?? '(not a link)'}, which is not an object in the store`, found: target ?? undefined });
      continue;
    }
    if (id !== name) ctx.issues.push({ type: 'image-misnamed', path, detail: `image link ${name} names object ${id}`, expected: name, found: id });
    if (!usable(ctx, id)) continue;
    let named: Set<string>;
    try {
      named = composefsImageObjects(await ctx.repo.readObject(id), signal).objects;
    } catch (e) {
      if (isVeritreeError(e) && e.code === ERROR_CODES.ABORTED) throw e;
      ctx.issues.push({ type: 'image-corrupt', path, detail: `image ${name}: ${e instanceof Error ? e.message : String(e)}` });
      continue;
    }
    for (const o of named) {
      if (!(await presentNow(ctx, o))) ctx.issues.push({ type: 'missing-object', path, detail: `image ${name} names object ${o}, which is missing`, expected: o });
    }
  }
  return names.length;
}

/**
 * Every root link (streams/refs/, images/refs/), followed by the one resolver gc uses
 * (store/links.ts): a root gc would refuse is reported here. @returns the number of tags
 */
async function checkTags(ctx: Ctx): Promise<number> {
  let tags = 0;
  for (const category of [STREAMS_DIR, IMAGES_DIR] as const) {
    for (const r of await listRefs(ctx.repo, category)) {
      const path = join(ctx.repo.root, r.link);
      const isTag = r.link.startsWith(`${TAGS_DIR}/`);
      if (isTag) tags++;
      if (r.error) ctx.issues.push({ type: 'broken-symlink', path, detail: r.error.message.replace(/; run veritree fsck$/, '') });
      else if (isTag && !r.ref.entry.startsWith(STREAM_PREFIX.manifest)) ctx.issues.push({ type: 'tag-not-manifest', path, detail: `tag ${r.link.slice(TAGS_DIR.length + 1)} points to ${r.ref.entry}, not a manifest stream`, found: r.ref.entry });
    }
  }
  return tags;
}

async function rebuildLayers(ctx: Ctx, signal: AbortSignal | undefined, onRebuild: FsckOptions['onRebuild']): Promise<number> {
  const dir = join(ctx.repo.root, 'streams');
  const names = (await readdir(dir).catch(whenAbsent([] as string[]))).filter((n) => n.startsWith(STREAM_PREFIX.layer)).sort();
  let n = 0;
  let bytes = 0;
  let shown = 0;
  for (const [i, name] of names.entries()) {
    throwIfAborted(signal);
    onRebuild?.({ done: i, total: names.length, bytes });
    const id = await ctx.repo.streamObject(name).catch(unsoundLink);
    if (!id || !usable(ctx, id)) continue;
    const path = ctx.repo.streamPath(name);
    try {
      const bytesOfStream = await ctx.repo.readObject(id);
      if (readRefs(bytesOfStream).objectRefs.some((r) => !usable(ctx, r))) continue;
      const before = bytes;
      const { sha256: found } = await rebuildHashed(ctx.repo, bytesOfStream, {
        signal,
        onBytes: (b) => {
          bytes = before + b;
          if (bytes - shown >= 8 << 20) {
            shown = bytes;
            onRebuild?.({ done: i, total: names.length, bytes });
          }
        },
      });
      const expected = name.slice(STREAM_PREFIX.layer.length);
      n++;
      if (found !== expected) ctx.issues.push({ type: 'layer-diff-id-mismatch', path, detail: `layer ${name} rebuilds to sha256:${found}`, expected: `sha256:${expected}`, found: `sha256:${found}` });
    } catch (e) {
      if (isVeritreeError(e) && e.code === ERROR_CODES.ABORTED) throw e;
      ctx.issues.push({ type: 'stream-corrupt', path, detail: `stream ${name}: ${e instanceof Error ? e.message : String(e)}` });
    }
  }
  onRebuild?.({ done: names.length, total: names.length, bytes });
  return n;
}
