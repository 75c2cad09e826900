/**
 * Publishing objects: write a tmp file inside objects/, link it to objects/XX/<rest>, unlink the
 * tmp. `link` fails with EEXIST when the object is already there, so an existing object is never
 * replaced (rename would replace it silently). Used by the workers, so it takes plain paths.
 * Durability is not per object: the importer makes the filesystem durable once before it
 * publishes any stream that names these objects (see syncFilesystem).
 * @module
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { link, mkdir, open, stat, unlink } from 'node:fs/promises';
import { closeSync, linkSync, mkdirSync, openSync, statSync, unlinkSync, writeSync, constants as fsc } from 'node:fs';
import { dirname, join } from 'node:path';
import { ERROR_CODES, VeritreeError, errnoCode, storeIoError } from '../errors.ts';
import { objectPathIn, TMP_PREFIX, type ObjectId } from './layout.ts';

export interface PublishResult {
  id: ObjectId;
  size: number;
  /** false when the object was already present (deduplicated). */
  written: boolean;
}

export function tmpPathIn(objectsDir: string): string {
  return join(objectsDir, `${TMP_PREFIX}${process.pid}-${randomBytes(8).toString('hex')}`);
}

/** An object already present under its name with other bytes: never overwritten, reported. */
function wrongSize(id: ObjectId, path: string, expected: number, found: number | null): VeritreeError {
  return new VeritreeError(
    ERROR_CODES.STORE_CORRUPT,
    `object ${id} is present with ${found} bytes, expected ${expected}: the store is damaged (run veritree fsck --repair)`,
    { path, expected: String(expected), found: String(found) }
  );
}

/** Links a finished tmp file to its object name; the tmp is always removed. */
export async function publishTmp(objectsDir: string, tmp: string, id: ObjectId, size: number): Promise<PublishResult> {
  const final = objectPathIn(objectsDir, id);
  try {
    await mkdir(dirname(final), { recursive: true });
    try {
      await link(tmp, final);
      return { id, size, written: true };
    } catch (e) {
      if (errnoCode(e) !== 'EEXIST') throw e;
    }
    const st = await stat(final);
    if (st.size !== size) throw wrongSize(id, final, size, st.size);
    return { id, size, written: false };
  } catch (e) {
    throw storeIoError(e, dirname(objectsDir), `publishing object ${id}`);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

/** Writes `data` as object `id` (already computed by the caller from these very bytes). */
export async function writeObject(objectsDir: string, id: ObjectId, data: Uint8Array): Promise<PublishResult> {
  const final = objectPathIn(objectsDir, id);
  // The common dedup case costs one stat, not a write.
  const existing = await stat(final).catch(() => null);
  if (existing && existing.size === data.length) return { id, size: data.length, written: false };
  const tmp = tmpPathIn(objectsDir);
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(data);
    } finally {
      await fh.close();
    }
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw storeIoError(e, dirname(objectsDir), `writing object ${id}`);
  }
  return publishTmp(objectsDir, tmp, id, data.length);
}

const madeDirs = new Set<string>();

/**
 * writeObject for worker threads: synchronous system calls. A worker is a dedicated OS thread,
 * so blocking it costs nothing, while async fs calls would all queue on libuv's small shared
 * thread pool (4 threads for the whole process) and cost a round trip each.
 */
export function writeObjectSync(objectsDir: string, id: ObjectId, data: Uint8Array): PublishResult {
  const final = objectPathIn(objectsDir, id);
  try {
    const existing = statSyncOrNull(final);
    if (existing !== null && existing === data.length) return { id, size: data.length, written: false };
    const dir = dirname(final);
    if (!madeDirs.has(dir)) {
      mkdirSync(dir, { recursive: true });
      madeDirs.add(dir);
    }
    const tmp = tmpPathIn(objectsDir);
    const fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
    try {
      try {
        for (let off = 0; off < data.length; ) off += writeSync(fd, data, off, data.length - off);
      } finally {
        closeSync(fd);
      }
      try {
        linkOrMakeDir(tmp, final, dir);
        return { id, size: data.length, written: true };
      } catch (e) {
        if (errnoCode(e) !== 'EEXIST') throw e;
      }
    } finally {
      try {
        unlinkSync(tmp);
      } catch {
        // already gone
      }
    }
    const size = statSyncOrNull(final);
    if (size !== data.length) throw wrongSize(id, final, data.length, size);
    return { id, size: data.length, written: false };
  } catch (e) {
    throw storeIoError(e, dirname(objectsDir), `writing object ${id}`);
  }
}

/**
 * link(2), creating the objects/XX folder when it is missing. The per-thread cache of folders
 * made can be stale (a pool outlives a repository deleted and made again): ENOENT is the signal.
 */
function linkOrMakeDir(tmp: string, final: string, dir: string): void {
  try {
    linkSync(tmp, final);
  } catch (e) {
    if (errnoCode(e) !== 'ENOENT') throw e;
    mkdirSync(dir, { recursive: true });
    madeDirs.add(dir);
    linkSync(tmp, final);
  }
}

function statSyncOrNull(path: string): number | null {
  const st = statSync(path, { throwIfNoEntry: false });
  return st ? st.size : null;
}

/**
 * Makes everything written to the repository's filesystem durable. Node has no syncfs(2); the
 * coreutils `sync --file-system` calls it. One call per publication point replaces an fsync per
 * object (composefs-rs makes the same trade).
 */
export async function syncFilesystem(path: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn('sync', ['-f', path], { stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`sync -f ${path}: exit ${code}`))));
  }).catch((e: unknown) => {
    throw storeIoError(e, path, 'syncing the repository');
  });
}
