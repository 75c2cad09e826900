/**
 * The verity worker: runs in each Piscina thread. It hashes (and, for store tasks, publishes)
 * and returns plain results. Piscina parks the thread in Atomics.wait between tasks, so every
 * write and close is awaited before a task returns: nothing may be left pending.
 * Module top level only imports (piscina masks load errors).
 */
import { open } from 'node:fs/promises';
import { ERROR_CODES, describeFsError, errnoCode, isVeritreeError, type ErrorCode } from '../src/errors.ts';
import { writeObject } from '../src/store/objects.ts';
import { hashRangeToLevel1, toHex, verityDigest, VerityHasher } from '../src/verity/merkle.ts';
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

async function digestFile(path: string, task: VerityTask): Promise<TaskResults['digest-file']> {
  const fh = await open(path, 'r');
  try {
    const st = await fh.stat();
    if (st.isDirectory()) {
      return { ok: false, code: ERROR_CODES.FILE_UNREADABLE, message: 'Is a directory', path };
    }
    const hasher = new VerityHasher(task.alg, task.impl);
    const buf = new Uint8Array(READ_CHUNK);
    let size = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hasher.update(buf.subarray(0, bytesRead));
      size += bytesRead;
    }
    return { ok: true, id: hasher.digestHex(), size };
  } finally {
    await fh.close();
  }
}

async function digestRange(task: Extract<VerityTask, { kind: 'digest-range' }>): Promise<TaskResults['digest-range']> {
  const fh = await open(task.path, 'r');
  try {
    const buf = new Uint8Array(task.length);
    let got = 0;
    while (got < task.length) {
      const { bytesRead } = await fh.read(buf, got, task.length - got, task.offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got !== task.length) {
      return { ok: false, code: ERROR_CODES.FILE_UNREADABLE, message: `file shrank while hashing (range at ${task.offset})`, path: task.path };
    }
    return { ok: true, level1: hashRangeToLevel1(buf, task.alg, task.impl) };
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
        return { ok: true, ...(await writeObject(task.objectsDir, id, task.data)) };
      }
    }
  } catch (e) {
    return failure(e, path);
  }
}
