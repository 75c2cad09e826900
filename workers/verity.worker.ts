/**
 * The verity worker: runs in each Piscina thread. It hashes (and, for store tasks, publishes)
 * and returns plain results. Piscina parks the thread in Atomics.wait between tasks, so every
 * write and close is awaited before a task returns: nothing may be left pending.
 * Module top level only imports (piscina masks load errors).
 */
import { open, type FileHandle } from 'node:fs/promises';
import { ERROR_CODES, describeFsError, errnoCode, isVeritreeError, type ErrorCode } from '../src/errors.ts';
import { writeObjectSync } from '../src/store/objects.ts';
import { RangeHasher, toHex, verityDigest, VerityHasher } from '../src/verity/merkle.ts';
import type { Failure, TaskResults, VerityTask } from '../src/pipeline/protocol.ts';

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

async function digestFile(path: string, task: VerityTask): Promise<TaskResults['digest-file']> {
  const fh = await open(path, 'r');
  try {
    const st = await fh.stat();
    if (st.isDirectory()) {
      return { ok: false, code: ERROR_CODES.FILE_UNREADABLE, message: 'Is a directory', path };
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

export default async function verityWorker(task: VerityTask): Promise<TaskResults[VerityTask['kind']]> {
  const path = 'path' in task ? task.path : undefined;
  try {
    switch (task.kind) {
      case 'digest-file':
      case 'verify-object':
        return await digestFile(task.path, task);
      case 'digest-range':
        return await digestRange(task);
      case 'store-buffer': {
        const id = toHex(verityDigest(task.data, task.alg, task.impl));
        return { ok: true, ...writeObjectSync(task.objectsDir, id, task.data) };
      }
      case 'store-batch': {
        const items = [];
        let off = 0;
        for (const size of task.sizes) {
          const data = task.data.subarray(off, off + size);
          off += size;
          items.push(writeObjectSync(task.objectsDir, toHex(verityDigest(data, task.alg, task.impl)), data));
        }
        return { ok: true, items };
      }
    }
  } catch (e) {
    return failure(e, path);
  }
}
