/**
 * The verity worker: runs in each Piscina thread. It hashes (and, for store tasks, publishes)
 * and returns plain results. Piscina parks the thread in Atomics.wait between tasks, so every
 * write and close is awaited before a task returns: nothing may be left pending.
 * Module top level only imports (piscina masks load errors).
 */
import { closeSync, constants as fsc, copyFileSync, fchmodSync, fchownSync, readdirSync, readlinkSync, readSync, statSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { ERROR_CODES, describeFsError, errnoCode, isVeritreeError, type ErrorCode } from '../src/errors.ts';
import { writeBatchSync, type PublishResult } from '../src/store/objects.ts';
import { measureVerity, objectFailureMessage, openRegularSync, strayTmp, verityKnownAbsent } from '../src/store/sys.ts';
import { HASH_ALGORITHMS } from '../src/verity/constants.ts';
import { RangeHasher, toHex, verityDigest, VerityHasher } from '../src/verity/merkle.ts';
import { digestFdNative, digestPathNative } from '../src/verity/backends.ts';
import { setTimesFd } from '../src/merge/dir-handle.ts';
import type { CopyBatchTask, Failure, TaskResults, VerityTask } from '../src/pipeline/protocol.ts';

const READ_CHUNK = 1 << 20;

function failure(e: unknown, path?: string): Failure {
  if (isVeritreeError(e)) return { ok: false, code: e.code, message: e.message, path: e.path ?? path };
  const errno = errnoCode(e);
  const code: ErrorCode =
    errno === 'ENOSPC' || errno === 'EDQUOT'
      ? ERROR_CODES.STORE_NO_SPACE
      : errno
        ? ERROR_CODES.FILE_UNREADABLE
        : ERROR_CODES.WORKER_FAILED;
  const message = describeFsError(e);
  return path === undefined ? { ok: false, code, message } : { ok: false, code, message, path };
}

/**
 * Reads [start, start+length) (to EOF when length is undefined) in chunks of whole blocks, the
 * next read in flight (on libuv's thread pool) while this one is hashed.
 */
async function readPipelined(fh: FileHandle, start: number, length: number | undefined, onChunk: (c: Uint8Array) => void): Promise<number> {
  const bufs = [new Uint8Array(READ_CHUNK), new Uint8Array(READ_CHUNK)] as const;
  const end = length === undefined ? Infinity : start + length;
  let pos = start;
  const readAt = (i: number, at: number): Promise<{ bytesRead: number }> =>
    at >= end ? Promise.resolve({ bytesRead: 0 }) : fh.read(bufs[i % 2] as Uint8Array, 0, Math.min(READ_CHUNK, end - at), at);
  let pending = readAt(0, pos);
  for (let i = 0; ; i++) {
    const { bytesRead } = await pending;
    if (bytesRead === 0) break;
    const cur = (bufs[i % 2] as Uint8Array).subarray(0, bytesRead);
    pos += bytesRead;
    pending = readAt(i + 1, pos);
    onChunk(cur);
  }
  return pos - start;
}

/**
 * Sync reads: a worker is its own OS thread, and fsck reads many small files. The object is
 * opened without following a symlink or blocking on a FIFO, and read whole. Where the file has
 * fs-verity its digest is the kernel's measurement, which reads no data: the read is what finds a
 * block changed under the filesystem (the kernel checks each block as it is read and fails with
 * EIO), so it is never skipped. `verity` says whether the file has fs-verity.
 */
function digestPathSync(path: string, task: VerityTask): { id: string; size: number; measured?: string } | { error: string } {
  let fd: number;
  let dev: number;
  try {
    ({ fd, dev } = openRegularSync(path, 'object'));
  } catch (e) {
    return { error: e instanceof Error ? e.message : describeFsError(e) };
  }
  try {
    // Keyed by st_dev: a filesystem without fs-verity is asked once, not once per object.
    const m = measureVerity(fd, dev);
    const read = hashFdSync(fd, task);
    if (m.state !== 'enabled') return read;
    return { ...read, measured: toHex(m.digest) };
  } catch (e) {
    return { error: describeFsError(e) };
  } finally {
    closeSync(fd);
  }
}

/** The digest of the file open at `fd`, read from its offset to the end. */
function hashFdSync(fd: number, task: VerityTask): { id: string; size: number } {
  // One native call: read and hash in C (the kernel of native/verity_kernel.c).
  const n = digestFdNative(task.impl, task.alg, fd);
  if (n) return { id: toHex(n.digest), size: n.size };
  const buf = syncBuffer();
  // Most objects fit one read: digest them whole, with no tree to build for one block.
  const first = readSync(fd, buf, 0, buf.length, null);
  if (first < buf.length) return { id: toHex(verityDigest(buf.subarray(0, first), task.alg, task.impl)), size: first };
  const hasher = new VerityHasher(task.alg, task.impl);
  hasher.update(buf);
  let size = first;
  for (;;) {
    const n = readSync(fd, buf, 0, buf.length, null);
    if (n === 0) break;
    hasher.update(buf.subarray(0, n));
    size += n;
  }
  return { id: hasher.digestHex(), size };
}

const HEX = /^[0-9a-f]+$/;

/**
 * The fast path of fsck, where the filesystem is known to have no fs-verity (nothing to ask the
 * kernel per file): one native call opens, checks, hashes and closes. Null: take the slow path.
 */
function digestPathFast(path: string, task: VerityTask, dev: number): { id: string; size: number } | { error: string } | null {
  if (!verityKnownAbsent(dev)) return null;
  const r = digestPathNative(task.impl, task.alg, path);
  if (r === null) return null;
  if ('digest' in r) return { id: toHex(r.digest), size: r.size };
  // The same words as the slow path's openRegularSync, for the same refusals.
  return { error: objectFailureMessage(r, path) };
}

function verifyDir(task: Extract<VerityTask, { kind: 'verify-dir' }>): TaskResults['verify-dir'] {
  const out: TaskResults['verify-dir'] = { ok: true, names: [], objects: 0, bytes: 0, bad: [], tmp: [], invalid: [], noVerity: [] };
  const prefix = task.dir.slice(-2);
  const dev = statSync(task.dir).dev;
  for (const e of readdirSync(task.dir, { withFileTypes: true })) {
    const path = `${task.dir}/${e.name}`;
    if (e.name.startsWith(task.tmpPrefix)) {
      const stray = strayTmp(path);
      if (stray) out.tmp.push({ name: e.name, size: stray.size });
      continue;
    }
    if (!e.isFile() || e.name.length !== task.restLength || !HEX.test(e.name)) {
      out.invalid.push(e.name);
      continue;
    }
    out.names.push(e.name);
    out.objects++;
    // A secure repository asks each object for its fs-verity: no fast path that skips it.
    const r = (task.secure ? null : digestPathFast(path, task, dev)) ?? digestPathSync(path, task);
    if ('error' in r) out.bad.push({ name: e.name, error: r.error });
    else {
      out.bytes += r.size;
      // Both must be the name: the bytes read, and the kernel's measurement (which can differ
      // where fs-verity was enabled with another algorithm).
      const measured = (r as { measured?: string }).measured;
      if (r.id !== prefix + e.name) out.bad.push({ name: e.name, found: r.id, size: r.size });
      else if (measured !== undefined && measured !== r.id) out.bad.push({ name: e.name, found: measured, size: r.size });
      else if (task.secure && measured === undefined) out.noVerity.push(e.name);
    }
  }
  return out;
}

let sharedBuffer: Uint8Array | null = null;
function syncBuffer(): Uint8Array {
  sharedBuffer ??= new Uint8Array(READ_CHUNK);
  return sharedBuffer;
}

async function digestFile(path: string, task: Extract<VerityTask, { kind: 'digest-file' }>): Promise<TaskResults['digest-file']> {
  // Never blocks: a FIFO opens at once (O_NONBLOCK) and is refused below.
  const fh = await open(path, fsc.O_RDONLY | fsc.O_NONBLOCK | (task.noFollow ? fsc.O_NOFOLLOW : 0));
  try {
    const st = await fh.stat();
    if (st.isDirectory()) {
      return { ok: false, code: ERROR_CODES.FILE_UNREADABLE, message: 'Is a directory', path };
    }
    if (!st.isFile()) {
      return { ok: false, code: ERROR_CODES.FILE_UNREADABLE, message: 'Not a regular file', path };
    }
    const hasher = new VerityHasher(task.alg, task.impl);
    const size = await readPipelined(fh, 0, undefined, (c) => hasher.update(c));
    return { ok: true, id: hasher.digestHex(), size };
  } finally {
    await fh.close();
  }
}

async function digestRange(task: Extract<VerityTask, { kind: 'digest-range' }>): Promise<TaskResults['digest-range']> {
  const fh = await open(task.path, 'r');
  try {
    const hasher = new RangeHasher(task.length, task.alg, task.impl);
    const got = await readPipelined(fh, task.offset, task.length, (c) => hasher.update(c));
    if (got !== task.length) {
      return { ok: false, code: ERROR_CODES.FILE_UNREADABLE, message: `file shrank while hashing (range at ${task.offset})`, path: task.path };
    }
    return { ok: true, level1: hasher.level1() };
  } finally {
    await fh.close();
  }
}

/** The fs-verity digest (hex) of the file open at `fd`, read from offset 0 (pread: the offset is left alone). */
function digestOfFd(fd: number, task: CopyBatchTask): string {
  const n = digestFdNative(task.impl, task.alg, fd);
  if (n) return toHex(n.digest);
  const buf = syncBuffer();
  const hasher = new VerityHasher(task.alg, task.impl);
  for (let pos = 0; ; ) {
    const got = readSync(fd, buf, 0, buf.length, pos);
    if (got === 0) break;
    hasher.update(buf.subarray(0, got));
    pos += got;
  }
  return hasher.digestHex();
}

/**
 * Each object is opened without following a symlink or blocking, must be a regular file of the
 * size its entry says, and is copied through the /proc links of both descriptors (the very
 * inodes opened: libuv tries FICLONE, then copy_file_range). What was written is then hashed
 * from the destination's descriptor and must hash to the object's name: a damaged object is
 * never handed out as a good file. Owner before mode: chown clears the set-id bits.
 */
function copyBatch(task: CopyBatchTask): TaskResults['copy-batch'] {
  for (let i = 0; i < task.items.length; i++) {
    const it = task.items[i] as CopyBatchTask['items'][number];
    try {
      if (!it.checkOnly) {
        const src = openRegularSync(it.object, 'object');
        try {
          if (src.size !== it.size) {
            return { ok: false, code: ERROR_CODES.STORE_CORRUPT, message: `object ${it.object} is ${src.size} bytes, the layer says ${it.size}: run veritree fsck --repair`, path: it.object, index: i };
          }
          copyFileSync(`/proc/self/fd/${src.fd}`, `/proc/self/fd/${it.dest}`, fsc.COPYFILE_FICLONE);
        } finally {
          closeSync(src.fd);
        }
      }
      const got = digestOfFd(it.dest, task);
      if (got !== it.id) {
        return { ok: false, code: ERROR_CODES.STORE_CORRUPT, message: `object ${it.object} does not hash to its name (its content hashes to ${got}): run veritree fsck --repair`, path: it.object, index: i };
      }
      if (!task.finish || it.checkOnly) continue;
      if (task.chown) fchownSync(it.dest, it.uid, it.gid);
      fchmodSync(it.dest, it.mode);
      setTimesFd(it.dest, it.mtimeSec, it.mtimeNsec);
    } catch (e) {
      return { ...failure(e, it.object), index: i };
    }
  }
  return { ok: true };
}

/**
 * piscina's public move API, loaded with this module as the worker boots (the entry awaits the
 * module before it runs any task), so that a store task answers synchronously: one that awaited
 * the import left a worker idle with its task unanswered under load (Node 24, a full disk).
 */
const piscina = await import('piscina');

/**
 * The result, with the task's buffer riding back to the main thread, moved (not copied), for the
 * next batch to be written into (src/pipeline/buffers.ts).
 */
/** A batch's results as the two arrays of StoreBatchResult. */
function packed(items: PublishResult[], digestSize: number): { ids: Uint8Array; written: Uint8Array } {
  const ids = Buffer.allocUnsafe(items.length * digestSize);
  const written = new Uint8Array(items.length);
  for (const [i, it] of items.entries()) {
    ids.write(it.id, i * digestSize, digestSize, 'hex');
    written[i] = it.written ? 1 : 0;
  }
  return { ids, written };
}

function givingBack<R extends object>(data: Uint8Array, result: R): R {
  const p = piscina;
  // piscina's Transferable: the buffer to move, and the value the main thread gets.
  const carrier = { [p.transferableSymbol]: data.buffer, [p.valueSymbol]: { ...result, data } } as Parameters<typeof p.move>[0];
  // piscina hands the main thread the value, with the buffer moved; the type says neither.
  return p.move(carrier) as unknown as R;
}

export default async function verityWorker(task: VerityTask): Promise<TaskResults[VerityTask['kind']]> {
  const path = 'path' in task ? task.path : undefined;
  try {
    switch (task.kind) {
      case 'digest-file':
        return await digestFile(task.path, task);
      case 'digest-range':
        return await digestRange(task);
      case 'store-buffer':
        return givingBack(task.data, { ok: true, ...(writeBatchSync(task.target, task.data, Uint32Array.of(task.data.length), task.impl)[0] as PublishResult) });
      case 'verify-dir':
        return verifyDir(task);
      case 'copy-batch':
        return copyBatch(task);
      case 'thread-id': {
        // /proc/thread-self is "<pid>/task/<tid>".
        const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, task.holdMs);
        return { ok: true, tid };
      }
      case 'store-batch':
        return givingBack(task.data, { ok: true, ...packed(writeBatchSync(task.target, task.data, Uint32Array.from(task.sizes), task.impl), HASH_ALGORITHMS[task.alg].digestSize) });
    }
  } catch (e) {
    return failure(e, path);
  }
}
