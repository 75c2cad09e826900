/**
 * fsck --repair: corrupt objects (and anything in objects/ that is not an object) are moved to
 * a quarantine folder inside the repository, never deleted; stream links and tags that can no
 * longer be rebuilt are removed; the images whose tags went are named, to be imported again.
 * Importing them again restores a clean store (the missing objects and streams are rewritten).
 * A composefs image that went is written again from its tag's layers (repair-images.ts).
 * @module
 */
import { mkdir, readdir, readlink, realpath, rename, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { ERROR_CODES, errnoCode, isVeritreeError, storeIoError, throwIfAborted } from '../errors.ts';
import { STREAM_PREFIX, STREAMS_DIR, TAGS_DIR, classifyNamedRef, objectIdFromLink, unescapeTag } from '../store/layout.ts';
import type { Repository } from '../store/repository.ts';
import { readRefs } from '../store/splitstream-reader.ts';
import type { FsckReport } from './fsck.ts';
import { repairImages, type ImageRepair } from './repair-images.ts';

export const QUARANTINE_DIR = 'quarantine';

export interface RepairReport extends ImageRepair {
  quarantine: string | null;
  quarantined: string[];
  streamsRemoved: string[];
  /** Stream links that were whole but not of composefs-rs's form, written again in it. */
  streamsRelinked: string[];
  tagsRemoved: { tag: string; manifest: string }[];
  /** Tags that resolved in another form (absolute, `./`) and were rewritten as composefs-rs writes them. */
  tagsRewritten: { tag: string; from: string; to: string }[];
  tmpRemoved: number;
}

// An object without fs-verity in a secure repository goes too: import writes it again, sealed.
const CONTENT_BAD = new Set(['object-digest-mismatch', 'object-unreadable', 'object-verity-missing', 'object-invalid-name']);
const STREAM_BAD = new Set(['json-digest-mismatch', 'layer-diff-id-mismatch', 'stream-content-type', 'stream-corrupt', 'stream-not-symlink']);

/**
 * Acts on `report`. Takes the exclusive repository lock unless `lockHeld` says the caller holds
 * it already (as `fsck --repair` does from the check through the repair, so nothing changes
 * between them).
 */
export async function repair(repo: Repository, report: FsckReport, opts: { lockHeld?: boolean; signal?: AbortSignal | undefined } = {}): Promise<RepairReport> {
  const lock = opts.lockHeld ? null : await repo.lockExclusive();
  try {
    repo.assertWritable();
    const out: RepairReport = { quarantine: null, quarantined: [], streamsRemoved: [], streamsRelinked: [], tagsRemoved: [], tagsRewritten: [], tmpRemoved: 0, imagesRewritten: [], imagesNotRewritten: [], imageLinksRemoved: [] };
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const qdir = join(repo.root, QUARANTINE_DIR, stamp);
    // 64 at a time: a badly damaged store is 100,000s of entries, each one system call.
    const moves = report.issues.filter((i) => i.type === 'stray-tmp' || CONTENT_BAD.has(i.type));
    if (moves.some((i) => CONTENT_BAD.has(i.type))) {
      await mkdir(qdir, { recursive: true });
      out.quarantine = qdir;
    }
    for (let at = 0; at < moves.length; at += 64) {
      throwIfAborted(opts.signal);
      const done = await Promise.all(
        moves.slice(at, at + 64).map(async (issue): Promise<string | null> => {
          if (issue.type === 'stray-tmp') {
            await rm(issue.path, { force: true });
            return null;
          }
          const dest = join(qdir, relative(repo.objectsDir, issue.path).replaceAll('/', '_'));
          await rename(issue.path, dest).catch((e: unknown) => {
            throw storeIoError(e, issue.path, 'moving a corrupt object to quarantine');
          });
          return relative(repo.root, issue.path);
        })
      );
      for (const q of done) {
        if (q === null) out.tmpRemoved++;
        else out.quarantined.push(q);
      }
    }
    const streamBad = new Set(report.issues.filter((i) => STREAM_BAD.has(i.type)).map((i) => i.path));
    await dropBrokenStreams(repo, streamBad, out);
    await dropBrokenTags(repo, out, opts.signal);
    Object.assign(out, await repairImages(repo, report.issues, opts.signal));
    return out;
  } finally {
    await lock?.release();
  }
}

/**
 * For `.catch`: a path that is not there (ENOENT, ENOTDIR; EINVAL for readlink of a non-link) is
 * an answer; any other error (EIO, EACCES) stops repair, which must not remove a stream or a tag
 * for a read that failed.
 */
function absent<T>(fallback: T): (e: unknown) => T {
  return (e) => {
    const code = errnoCode(e);
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EINVAL') return fallback;
    throw storeIoError(e, (e as NodeJS.ErrnoException).path ?? '', 'repairing', 'read');
  };
}

/** Removes a stream entry: a link (unlink), or a folder where a link should be (EISDIR). */
async function removeEntry(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (e) {
    const code = errnoCode(e);
    if (code === 'ENOENT') return;
    if (code !== 'EISDIR' && code !== 'EPERM') throw storeIoError(e, path, 'repairing');
    await rm(path, { recursive: true, force: true });
  }
}

function notWhole(e: unknown): null {
  if (isVeritreeError(e) && e.code === ERROR_CODES.STORE_CORRUPT) return null;
  throw e;
}

async function present(repo: Repository, id: string): Promise<boolean> {
  return (await stat(repo.objectPath(id)).catch(absent(null)))?.isFile() === true;
}

/** Removes stream links until every remaining one is whole (named refs can chain removals). */
async function dropBrokenStreams(repo: Repository, known: Set<string>, out: RepairReport): Promise<void> {
  const dir = join(repo.root, STREAMS_DIR);
  for (let changed = true; changed; ) {
    changed = false;
    const names = (await readdir(dir).catch(absent([] as string[]))).filter((n) => n !== 'refs');
    const live = new Set(names);
    for (const name of names) {
      const path = join(dir, name);
      const target = await readlink(path).catch(absent(null));
      const loose = target === null ? null : objectIdFromLink(target);
      if (target !== null && loose !== null && objectIdFromLink(target, true) === null && (await whole(repo, name, path, known, live, loose))) {
        // Whole, through a link of a form composefs-rs does not write (absolute, say): written
        // again in its form rather than removed with every tag that names it.
        await repo.replaceStream(name, loose);
        out.streamsRelinked.push(name);
        continue;
      }
      if (!(await whole(repo, name, path, known, live))) {
        await removeEntry(path);
        out.streamsRemoved.push(name);
        live.delete(name);
        changed = true;
      }
    }
  }
}

/** Whether stream `name` is whole: its object (`as`, else the one its link names in composefs-rs's form) and all it names are there. */
async function whole(repo: Repository, name: string, path: string, known: Set<string>, live: Set<string>, as?: string): Promise<boolean> {
  if (known.has(path)) return false;
  const target = as === undefined ? await readlink(path).catch(absent(null)) : null;
  const id = as ?? (target ? objectIdFromLink(target, true) : null);
  if (!id || !(await present(repo, id))) return false;
  try {
    const refs = readRefs(await repo.readObject(id));
    for (const r of refs.objectRefs) if (!(await present(repo, r))) return false;
    // A stream ref is judged by the named ref that gives it a meaning: a config or layer stream
    // must be there; an EROFS image (composefs.image*) or a ref veritree does not know is never a
    // reason to remove what names it (composefs-rs opens an image without reading those).
    const judged = new Set<number>();
    for (const ref of refs.namedRefs) {
      const what = classifyNamedRef(ref.name);
      judged.add(ref.index);
      if (what.kind !== 'config' && what.kind !== 'layer') continue;
      if (!(await present(repo, refs.streamRefs[ref.index] as string))) return false;
      if ((name.startsWith(STREAM_PREFIX.config) || name.startsWith(STREAM_PREFIX.manifest)) && !live.has(what.stream)) return false;
    }
    for (const [i, r] of refs.streamRefs.entries()) if (!judged.has(i) && !(await present(repo, r))) return false;
    return true;
  } catch (e) {
    // A stream that does not hash to its name or does not parse is not whole; a read that
    // failed (EIO, EACCES) says nothing about it and stops repair.
    if (isVeritreeError(e) && e.code === ERROR_CODES.STORE_CORRUPT) return false;
    throw e;
  }
}

/**
 * Removes every tag whose manifest stream is gone. Tags may sit in sub-folders of refs/oci/ (a
 * composefs-rs ref name may hold `/`; gc, fsck and images follow them): those are walked with an
 * explicit stack, and a folder is never removed, only the links in it that name nothing whole.
 * A top-level tag that resolves to one of this store's manifest streams in a form the one
 * resolver (store/links.ts) refuses (absolute, `./`, extra hops) is rewritten as
 * `../../<stream>`, so that fsck is clean and gc accepts it again.
 */
async function dropBrokenTags(repo: Repository, out: RepairReport, signal: AbortSignal | undefined): Promise<void> {
  const top = join(repo.root, TAGS_DIR);
  const stack = [''];
  for (let rel = stack.pop(); rel !== undefined; rel = stack.pop()) {
    throwIfAborted(signal);
    let entries;
    try {
      entries = await readdir(join(top, rel), { withFileTypes: true });
    } catch (e) {
      // No refs/oci folder: no tags.
      if (errnoCode(e) === 'ENOENT' && rel === '') continue;
      throw storeIoError(e, join(top, rel), 'listing tags');
    }
    for (const e of entries) {
      const n = rel === '' ? e.name : `${rel}/${e.name}`;
      const path = join(top, n);
      if (e.isDirectory()) {
        stack.push(n);
        continue;
      }
      const target = e.isSymbolicLink() ? await readlink(path) : '';
      const stream = target.split('/').pop() ?? '';
      // streamObject answers null for a missing link; a link that names no object is not whole
      // either (STORE_CORRUPT); any other error stops repair.
      const ok = stream.startsWith(STREAM_PREFIX.manifest) && (await repo.streamObject(stream).catch(notWhole)) !== null;
      if (ok && (await resolvesTo(repo, dirname(path), target, stream))) {
        const canonical = join('..', '..', stream);
        if (rel === '' && target !== canonical) {
          await repo.setTag(unescapeTag(n), stream);
          out.tagsRewritten.push({ tag: unescapeTag(n), from: target, to: canonical });
        }
        continue;
      }
      await unlink(path);
      out.tagsRemoved.push({ tag: unescapeTag(n), manifest: stream.startsWith(STREAM_PREFIX.manifest) ? `sha256:${stream.slice(STREAM_PREFIX.manifest.length)}` : stream });
    }
  }
}

/** Whether `target`, read from a link in `linkDir`, names `streams/<stream>` of this store (the folders compared by realpath). */
async function resolvesTo(repo: Repository, linkDir: string, target: string, stream: string): Promise<boolean> {
  const abs = resolve(linkDir, target);
  if (basename(abs) !== stream) return false;
  // The stream exists (the caller checked), so streams/ does.
  const streamsDir = await realpath(join(repo.root, STREAMS_DIR));
  try {
    return (await realpath(dirname(abs))) === streamsDir;
  } catch (e) {
    // A folder on the way that does not exist: the link names nothing here.
    if (errnoCode(e) === 'ENOENT' || errnoCode(e) === 'ENOTDIR') return false;
    throw storeIoError(e, abs, 'following a tag', 'read');
  }
}
