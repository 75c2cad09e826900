/**
 * Garbage collection: mark from the roots (every link under streams/refs/ and images/refs/),
 * following each stream's object refs and, through its stream refs, other streams; then sweep
 * every object nobody marked, every stream link whose object is gone or unmarked, and every
 * stray tmp file. It holds the exclusive repository lock, so no import writes meanwhile.
 * @module
 */
import { lstat, readdir, readlink, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { ERROR_CODES, VeritreeError, isVeritreeError, storeIoError, throwIfAborted } from '../errors.ts';
import { IMAGES_DIR, STREAM_PREFIX, STREAMS_DIR, classifyNamedRef, objectIdFromLink } from '../store/layout.ts';
import { composefsImageObjects } from '../erofs/reader.ts';
import { lockOptionsFrom, type LockWaitOptions } from '../store/lock.ts';
import { STREAM_TMP_PREFIX, type Repository } from '../store/repository.ts';
import { readRefs } from '../store/splitstream.ts';

export interface GcOptions extends LockWaitOptions {
  dryRun?: boolean;
  signal?: AbortSignal;
  /**
   * mark: `done` streams read of `total` found so far. sweep: `done` of `total` folders of
   * objects/ swept, `entries` objects and tmp files looked at.
   */
  onProgress?: (p: { phase: 'mark' | 'sweep'; done: number; total: number; entries?: number }) => void;
}

export interface GcReport {
  dryRun: boolean;
  roots: number;
  objectsKept: number;
  objectsRemoved: number;
  bytesFreed: number;
  streamsRemoved: string[];
  /** images/<hex> links removed with their image (not under images/refs, not named by a kept stream). */
  imagesRemoved: string[];
  tmpRemoved: number;
  seconds: number;
}

/** Every symlink below `dir`, walked with an explicit stack (no recursion over depth). */
async function linksUnder(dir: string, out: string[]): Promise<void> {
  const stack = [dir];
  for (let d = stack.pop(); d !== undefined; d = stack.pop()) {
    const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.isSymbolicLink()) out.push(p);
    }
  }
}

/** Stream links in the order gc may remove them: whatever names others before what it names. */
function removalRank(name: string): number {
  if (name.startsWith(STREAM_PREFIX.manifest)) return 0;
  if (name.startsWith(STREAM_PREFIX.config)) return 1;
  if (name.startsWith(STREAM_PREFIX.layer)) return 3;
  return 2;
}

/** The object a link resolves to (through a tag's stream link, if need be). */
async function resolveToObject(link: string): Promise<string | null> {
  let p = link;
  for (let hops = 0; hops < 4; hops++) {
    const target = await readlink(p).catch(() => null);
    if (target === null) return null;
    const id = objectIdFromLink(target);
    if (id) return id;
    p = join(p, '..', target);
  }
  return null;
}

/** resolveToObject for every link, 64 at a time: a store with 100,000 tags is not 100,000 waits in a row. */
async function resolveAll(links: string[], signal: AbortSignal | undefined): Promise<(string | null)[]> {
  const out: (string | null)[] = new Array<string | null>(links.length).fill(null);
  for (let i = 0; i < links.length; i += 64) {
    throwIfAborted(signal);
    const slice = links.slice(i, i + 64);
    const ids = await Promise.all(slice.map(resolveToObject));
    for (let k = 0; k < ids.length; k++) out[i + k] = ids[k] ?? null;
  }
  return out;
}

/** What Repository.atomicSymlink leaves if killed (`.tmp-link-*`), or older versions did (`<name>.tmp-<pid>-<rand>`). */
function isStreamTmp(name: string): boolean {
  return name.startsWith(STREAM_TMP_PREFIX) || /\.tmp-\d+-[0-9a-z]+$/.test(name);
}

/**
 * Removes what no tag keeps alive: marks from every tag (streams/refs) and image ref (images/refs)
 * through manifests, configs, layers and composefs images to objects, then sweeps unmarked
 * streams (manifests first), image links, objects and stray tmp files. Fails closed: a reachable
 * stream or image that cannot be read stops it before anything is removed (STORE_CORRUPT). Holds
 * the exclusive repository lock. `dryRun` reports without removing.
 */
export async function gc(repo: Repository, opts: GcOptions = {}): Promise<GcReport> {
  const started = performance.now();
  const lock = await repo.lockExclusive(lockOptionsFrom(opts));
  try {
    const streamRoots: string[] = [];
    const imageRoots: string[] = [];
    await linksUnder(join(repo.root, STREAMS_DIR, 'refs'), streamRoots);
    await linksUnder(join(repo.root, IMAGES_DIR, 'refs'), imageRoots);
    const marked = new Set<string>();
    const queue: { id: string; root: string; known?: boolean }[] = [];
    // A composefs image keeps itself and every object its files name (read below).
    const images: { id: string; from: string }[] = [];
    for (const [i, id] of (await resolveAll(imageRoots, opts.signal)).entries()) {
      if (id && !marked.has(id)) {
        marked.add(id);
        images.push({ id, from: relative(repo.root, imageRoots[i] as string) });
      }
    }
    const streamIds = await resolveAll(streamRoots, opts.signal);
    for (const [i, id] of streamIds.entries()) {
      if (id && !marked.has(id)) {
        marked.add(id);
        queue.push({ id, root: streamRoots[i] as string });
      }
    }
    // Every stream reachable from a root keeps its objects and, through stream refs, other
    // streams. A reachable stream that cannot be read stops gc: what it names is unknown, and
    // sweeping on would delete live objects.
    // Objects kept whose own references veritree cannot read: what refs of unknown kinds name
    // (when it is not a split stream). Each may name objects no stream names, so with any of
    // them gc removes nothing (see the end of the mark phase).
    const opaque: string[] = [];
    for (let done = 0; queue.length > 0; done++) {
      throwIfAborted(opts.signal);
      const { id, root, known = true } = queue.pop() as { id: string; root: string; known?: boolean };
      opts.onProgress?.({ phase: 'mark', done, total: done + queue.length });
      let refs;
      try {
        refs = readRefs(await repo.readObject(id));
      } catch (e) {
        if (!known) {
          opaque.push(`object ${id} (named by a ref veritree does not know, reachable from ${relative(repo.root, root)})`);
          continue;
        }
        const why = e instanceof Error ? e.message : String(e);
        throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `gc stopped, nothing removed: stream object ${id} (reachable from ${relative(repo.root, root)}) cannot be read: ${why}; run veritree fsck --repair`, { path: repo.objectPath(id), cause: e });
      }
      for (const o of refs.objectRefs) marked.add(o);
      const kindOf = new Map<number, ReturnType<typeof classifyNamedRef>['kind']>();
      for (const r of refs.namedRefs) kindOf.set(r.index, classifyNamedRef(r.name).kind);
      for (const [i, s] of refs.streamRefs.entries()) {
        if (marked.has(s)) continue;
        marked.add(s);
        const kind = kindOf.get(i);
        if (kind === 'image') images.push({ id: s, from: `a composefs.image ref of a stream reachable from ${relative(repo.root, root)}` });
        else queue.push({ id: s, root, known: kind !== 'unknown' });
      }
    }
    // Each kept composefs image keeps the objects its files name (trusted.overlay.redirect). One
    // that cannot be read stops gc, as a stream does: what it names is unknown.
    for (const im of images) {
      throwIfAborted(opts.signal);
      try {
        for (const o of composefsImageObjects(await repo.readObject(im.id), opts.signal).objects) marked.add(o);
      } catch (e) {
        if (isVeritreeError(e) && e.code === ERROR_CODES.ABORTED) throw e;
        const why = e instanceof Error ? e.message : String(e);
        throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `gc stopped, nothing removed: the composefs image ${im.id} (from ${im.from}) cannot be read: ${why}; run veritree fsck`, { path: repo.objectPath(im.id), cause: e });
      }
    }
    if (opaque.length > 0) {
      throw new VeritreeError(
        ERROR_CODES.STORE_UNSUPPORTED,
        `gc stopped, nothing removed: ${opaque.length} kept object(s) of a kind veritree does not know may name other objects: ${opaque.slice(0, 3).join('; ')}${opaque.length > 3 ? '; ...' : ''}. Use the tool that wrote them (cfsctl gc) on this repository.`,
        { path: repo.root }
      );
    }

    if (!opts.dryRun) repo.assertWritable();
    const report: GcReport = { dryRun: opts.dryRun === true, roots: streamRoots.length + imageRoots.length, objectsKept: 0, objectsRemoved: 0, bytesFreed: 0, streamsRemoved: [], imagesRemoved: [], tmpRemoved: 0, seconds: 0 };
    // Stream links first: a link must never outlive its object. Manifests before the configs
    // and layers they name, so a gc killed part-way never leaves an image that looks whole.
    const streamsDir = join(repo.root, STREAMS_DIR);
    const names = (await readdir(streamsDir).catch(() => [] as string[])).filter((n) => n !== 'refs');
    names.sort((a, b) => removalRank(a) - removalRank(b) || (a < b ? -1 : a > b ? 1 : 0));
    let rank = 0;
    for (const name of names) {
      throwIfAborted(opts.signal);
      if (!report.dryRun && removalRank(name) > rank && report.streamsRemoved.length > 0) await repo.sync();
      rank = removalRank(name);
      const p = join(streamsDir, name);
      if (isStreamTmp(name)) {
        // A link being published when its writer died: no import runs under this lock.
        report.tmpRemoved++;
        if (!report.dryRun) await rm(p, { force: true });
        continue;
      }
      const st = await lstat(p).catch(() => null);
      if (!st?.isSymbolicLink()) continue;
      const id = objectIdFromLink((await readlink(p).catch(() => '')) ?? '');
      if (id && marked.has(id)) continue;
      report.streamsRemoved.push(name);
      if (!report.dryRun) await unlink(p).catch((e: unknown) => {
        throw storeIoError(e, p, 'removing a stream link');
      });
    }
    // images/<hex> links whose image is not kept go with it (composefs-rs prunes them too).
    const imagesDir = join(repo.root, IMAGES_DIR);
    for (const name of await readdir(imagesDir).catch(() => [] as string[])) {
      if (name === 'refs') continue;
      const p = join(imagesDir, name);
      const id = objectIdFromLink((await readlink(p).catch(() => '')) ?? '');
      if (id && marked.has(id)) continue;
      report.imagesRemoved.push(name);
      if (!report.dryRun) await unlink(p).catch((e: unknown) => {
        throw storeIoError(e, p, 'removing an image link');
      });
    }
    if (!report.dryRun && (report.streamsRemoved.length > 0 || report.imagesRemoved.length > 0)) await repo.sync();
    let swept = 0;
    const folders = (await readdir(repo.objectsDir).catch(() => [] as string[])).filter((n) => /^[0-9a-f]{2}$/.test(n)).length;
    let folder = '';
    let foldersDone = 0;
    for await (const e of repo.walkObjects()) {
      if (swept % 256 === 0) throwIfAborted(opts.signal);
      const at = dirname(e.path);
      if (at !== folder) {
        if (folder !== '') foldersDone++;
        folder = at;
        opts.onProgress?.({ phase: 'sweep', done: Math.min(foldersDone, folders), total: folders, entries: swept });
      }
      if (++swept % 1000 === 0) opts.onProgress?.({ phase: 'sweep', done: Math.min(foldersDone, folders), total: folders, entries: swept });
      if (e.kind === 'object') {
        if (marked.has(e.id)) {
          report.objectsKept++;
          continue;
        }
        const st = await stat(e.path).catch(() => null);
        report.objectsRemoved++;
        report.bytesFreed += st?.size ?? 0;
        if (!report.dryRun) await unlink(e.path).catch((err: unknown) => {
          throw storeIoError(err, e.path, 'removing an object');
        });
      } else if (e.kind === 'tmp') {
        // The exclusive lock means no import is running: every tmp file is stray.
        report.tmpRemoved++;
        if (!report.dryRun) await rm(e.path, { force: true });
      }
    }
    report.seconds = (performance.now() - started) / 1000;
    return report;
  } finally {
    await lock.release();
  }
}
