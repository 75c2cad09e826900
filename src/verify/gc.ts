/**
 * Garbage collection: mark from the roots (every link under streams/refs/ and images/refs/),
 * following each stream's object refs and, through its stream refs, other streams; then sweep
 * every object nobody marked, every stream link whose object is gone or unmarked, and every
 * stray tmp file. It holds the exclusive repository lock, so no import writes meanwhile.
 * @module
 */
import { lstat, readdir, readlink, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ERROR_CODES, VeritreeError, errnoCode, isVeritreeError, storeIoError, throwIfAborted } from '../errors.ts';
import { IMAGES_DIR, STREAM_PREFIX, STREAMS_DIR, classifyNamedRef, objectIdFromLink } from '../store/layout.ts';
import { listRefs, type ResolvedRef } from '../store/links.ts';
import { composefsImageObjects } from '../erofs/reader.ts';
import { lockOptionsFrom, type LockWaitOptions } from '../store/lock.ts';
import { STREAM_TMP_PREFIX, type Repository } from '../store/repository.ts';
import { readRefs } from '../store/splitstream-reader.ts';

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

/** Stream links in the order gc may remove them: whatever names others before what it names. */
function removalRank(name: string): number {
  if (name.startsWith(STREAM_PREFIX.manifest)) return 0;
  if (name.startsWith(STREAM_PREFIX.config)) return 1;
  if (name.startsWith(STREAM_PREFIX.layer)) return 3;
  return 2;
}

/**
 * Every root (each link under streams/refs/ and images/refs/), followed by the one resolver
 * (store/links.ts) every other command uses: a root gc cannot follow stops it, since whatever
 * that root keeps would otherwise be swept.
 */
async function rootsOf(repo: Repository, category: typeof STREAMS_DIR | typeof IMAGES_DIR, signal: AbortSignal | undefined): Promise<ResolvedRef[]> {
  const found = await listRefs(repo, category, undefined, signal);
  const bad = found.filter((r) => r.error);
  if (bad.length > 0) {
    const shown = bad.slice(0, 3).map((r) => r.error?.message.replace(/; run veritree fsck$/, '')).join('; ');
    throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `gc stopped, nothing removed: ${bad.length} root link(s) cannot be followed: ${shown}${bad.length > 3 ? '; ...' : ''}; run veritree fsck`, { path: join(repo.root, bad[0]?.link ?? category) });
  }
  return found.flatMap((r) => (r.ref ? [r.ref] : []));
}

/** readdir of a folder gc sweeps: absent is empty, any other error stops gc. */
async function namesIn(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return [];
    throw storeIoError(e, dir, 'listing a folder', 'read');
  }
}

/** Whether `path` is a symlink; any error but its absence stops gc. */
async function isLink(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isSymbolicLink();
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return false;
    throw storeIoError(e, path, 'looking at a link');
  }
}

/**
 * The object a stream or image link being swept names; null when absent or not a link. Read
 * loosely (any target ending in objects/XX/<rest>, as composefs-rs's gc reads it): a link whose
 * object is kept is never removed, whatever its form; fsck reports a form it does not write.
 */
async function linkedObject(path: string): Promise<string | null> {
  let target: string;
  try {
    target = await readlink(path);
  } catch (e) {
    // Gone (ENOENT) or not a link (EINVAL): it names no object.
    if (errnoCode(e) === 'ENOENT' || errnoCode(e) === 'EINVAL') return null;
    throw storeIoError(e, path, 'reading a link', 'read');
  }
  return objectIdFromLink(target);
}

/** What Repository.atomicSymlink leaves if killed (`.tmp-link-*`), or older versions did (`<name>.tmp-<pid>-<rand>`). */
function isStreamTmp(name: string): boolean {
  return name.startsWith(STREAM_TMP_PREFIX) || /\.tmp-\d+-[0-9a-z]+$/.test(name);
}

/**
 * Removes what no tag keeps alive: marks from every tag (streams/refs) and image ref (images/refs)
 * through manifests, configs, layers and composefs images to objects, then sweeps unmarked
 * streams (manifests first), image links, objects and stray tmp files. Fails closed: a root link
 * it cannot follow, an error reading a folder of roots, or a reachable stream or image that
 * cannot be read or does not hash to its name stops it before anything is removed (STORE_CORRUPT). Holds
 * the exclusive repository lock. `dryRun` reports without removing.
 */
export async function gc(repo: Repository, opts: GcOptions = {}): Promise<GcReport> {
  const started = performance.now();
  const lock = await repo.lockExclusive(lockOptionsFrom(opts));
  try {
    const streamRoots = await rootsOf(repo, STREAMS_DIR, opts.signal);
    const imageRoots = await rootsOf(repo, IMAGES_DIR, opts.signal);
    const marked = new Set<string>();
    // Streams and images already queued to be read, apart from `marked`: an object kept as a
    // file's content (an image may ship a copy of another image's stream) must still be read
    // when a stream or image ref names it, or what it names is swept.
    const streamsSeen = new Set<string>();
    const imagesSeen = new Set<string>();
    const queue: { id: string; root: string; known?: boolean }[] = [];
    // A composefs image keeps itself and every object its files name (read below).
    const images: { id: string; from: string }[] = [];
    for (const r of imageRoots) {
      marked.add(r.id);
      if (!imagesSeen.has(r.id)) {
        imagesSeen.add(r.id);
        images.push({ id: r.id, from: r.link });
      }
    }
    for (const r of streamRoots) {
      marked.add(r.id);
      if (!streamsSeen.has(r.id)) {
        streamsSeen.add(r.id);
        queue.push({ id: r.id, root: r.link });
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
        refs = readRefs(await repo.readObject(id, `a stream reachable from ${root}`));
      } catch (e) {
        if (!known) {
          opaque.push(`object ${id} (named by a ref veritree does not know, reachable from ${root})`);
          continue;
        }
        const why = e instanceof Error ? e.message : String(e);
        throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `gc stopped, nothing removed: stream object ${id} (reachable from ${root}) cannot be read: ${why}; run veritree fsck --repair`, { path: repo.objectPath(id), cause: e });
      }
      for (const o of refs.objectRefs) marked.add(o);
      const kindOf = new Map<number, ReturnType<typeof classifyNamedRef>['kind']>();
      for (const r of refs.namedRefs) kindOf.set(r.index, classifyNamedRef(r.name).kind);
      for (const [i, s] of refs.streamRefs.entries()) {
        marked.add(s);
        const kind = kindOf.get(i);
        const seen = kind === 'image' ? imagesSeen : streamsSeen;
        if (seen.has(s)) continue;
        seen.add(s);
        if (kind === 'image') images.push({ id: s, from: `a composefs.image ref of a stream reachable from ${root}` });
        else queue.push({ id: s, root, known: kind !== 'unknown' });
      }
    }
    // Each kept composefs image keeps the objects its files name (trusted.overlay.redirect). One
    // that cannot be read stops gc, as a stream does: what it names is unknown.
    for (const im of images) {
      throwIfAborted(opts.signal);
      try {
        for (const o of composefsImageObjects(await repo.readObject(im.id, im.from), opts.signal).objects) marked.add(o);
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
    const names = (await namesIn(streamsDir)).filter((n) => n !== 'refs');
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
      // Not a link (a folder, a file): not gc's to judge; fsck reports it.
      if (!(await isLink(p))) continue;
      const id = await linkedObject(p);
      if (id && marked.has(id)) continue;
      report.streamsRemoved.push(name);
      if (!report.dryRun) await unlink(p).catch((e: unknown) => {
        throw storeIoError(e, p, 'removing a stream link');
      });
    }
    // images/<hex> links whose image is not kept go with it (composefs-rs prunes them too).
    const imagesDir = join(repo.root, IMAGES_DIR);
    for (const name of await namesIn(imagesDir)) {
      if (name === 'refs') continue;
      const p = join(imagesDir, name);
      if (!(await isLink(p))) continue;
      const id = await linkedObject(p);
      if (id && marked.has(id)) continue;
      report.imagesRemoved.push(name);
      if (!report.dryRun) await unlink(p).catch((e: unknown) => {
        throw storeIoError(e, p, 'removing an image link');
      });
    }
    if (!report.dryRun && (report.streamsRemoved.length > 0 || report.imagesRemoved.length > 0)) await repo.sync();
    let swept = 0;
    const folders = (await namesIn(repo.objectsDir)).filter((n) => /^[0-9a-f]{2}$/.test(n)).length;
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
        const st = await stat(e.path).catch((err: unknown) => {
          throw storeIoError(err, e.path, 'looking at an object');
        });
        report.objectsRemoved++;
        report.bytesFreed += st.size;
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
