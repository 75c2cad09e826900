/**
 * Tasks the main thread sends to the verity workers and what comes back. Plain data only:
 * errors do not keep their class or properties across threads (piscina#141), so a worker returns
 * `{ok:false, code, message}` instead of throwing.
 * @module
 */
import type { ErrorCode } from '../errors.ts';
import type { Lease } from './budget.ts';
import type { ObjectTarget } from '../store/objects.ts';
import type { HashImpl } from '../verity/backends.ts';
import type { HashAlgorithm } from '../verity/constants.ts';

interface Common {
  alg: HashAlgorithm;
  impl: HashImpl;
}

/** The fs-verity digest of a whole file, read by the worker. */
export interface DigestFileTask extends Common {
  kind: 'digest-file';
  path: string;
  /** Refuse a symlink (the store's own files); a FIFO or device is always refused, unopened. */
  noFollow?: boolean;
}

/** Level-1 digests of one range of a large file (see merkle.ts hashRangeToLevel1). */
export interface DigestRangeTask extends Common {
  kind: 'digest-range';
  path: string;
  offset: number;
  length: number;
}

/** Hash `data` and publish it as an object (the buffer is transferred, not copied). */
export interface StoreBufferTask extends Common {
  kind: 'store-buffer';
  target: ObjectTarget;
  data: Uint8Array;
}

/** Many small files in one task: `data` holds them back to back, `sizes` says where each ends. */
export interface StoreBatchTask extends Common {
  kind: 'store-batch';
  target: ObjectTarget;
  data: Uint8Array;
  sizes: number[];
}

/**
 * fsck: list one objects/XX folder and re-hash every object in it. The worker walks the folder
 * itself so that the main thread (which shares the cores) does almost nothing per object.
 */
export interface VerifyDirTask extends Common {
  kind: 'verify-dir';
  dir: string;
  /** Hex digits of an object name after the two of the folder (62 for SHA-256). */
  restLength: number;
  tmpPrefix: string;
  /** A secure repository: every object must have fs-verity (those without are listed in noVerity). */
  secure: boolean;
}

export interface VerifyDirResult {
  ok: true;
  /** Names (the 62 hex digits) of the well-named objects, good or bad. */
  names: string[];
  objects: number;
  bytes: number;
  bad: { name: string; found?: string; size?: number; error?: string }[];
  /** tmp files that no writer holds (stray); live ones are left out. */
  tmp: { name: string; size: number }[];
  invalid: string[];
  /** Objects whose content is right but that have no fs-verity, in a secure repository. */
  noVerity: string[];
}

/** One file of a checkout: which object, the file checkout created for it, and its metadata. */
export interface CopyItem {
  /** The object's path in the store (opened without following a symlink; must be regular). */
  object: string;
  /** The object's name (hex): what the copy must hash to. */
  id: string;
  /**
   * `dest` is not a new file but the object itself, already hard-linked into the checkout
   * (--hardlink without fs-verity): it is only hashed, not copied nor changed.
   */
  checkOnly?: boolean;
  /** The size the entry says the object has. */
  size: number;
  /** Descriptor (of this process: threads share them) of the new, empty file. */
  dest: number;
  uid: number;
  gid: number;
  mode: number;
  /** Whole seconds (negative before 1970) and nanoseconds past them. */
  mtimeSec: number;
  mtimeNsec: number;
}

/**
 * checkout: many files per task, so that one message carries the work of dozens of small files.
 * Each is reflinked (FICLONE) where the filesystem can, else copied with copy_file_range, and
 * the copy is hashed from its own descriptor: it must hash to the object's name (STORE_CORRUPT
 * otherwise). Then, with `finish`, its owner (when `chown`), mode and times are set on it.
 */
export interface CopyBatchTask extends Common {
  kind: 'copy-batch';
  items: CopyItem[];
  finish: boolean;
  chown: boolean;
}

/**
 * The worker's OS thread id (for per-thread CPU time in benchmarks). It holds its worker for
 * `holdMs`, so that as many such tasks at once as the pool has workers reach every worker.
 */
export interface ThreadIdTask extends Common {
  kind: 'thread-id';
  holdMs: number;
}

export type VerityTask = DigestFileTask | DigestRangeTask | StoreBufferTask | StoreBatchTask | VerifyDirTask | CopyBatchTask | ThreadIdTask;

export interface Failure {
  ok: false;
  code: ErrorCode;
  message: string;
  path?: string;
}

export type DigestResult = { ok: true; id: string; size: number } | Failure;
export type RangeResult = { ok: true; level1: Uint8Array } | Failure;
/** `data`: the task's buffer, given back (transferred) for the next task to reuse (buffers.ts). */
export type StoreResult = { ok: true; id: string; size: number; written: boolean; data?: Uint8Array } | Failure;
/**
 * A batch's outcome as two arrays, no object per file (the main thread hands it on unread):
 * `ids` the files' digests back to back, in order; `written[i]` 1 when file i was written, 0
 * when it was already there.
 */
export type StoreBatchResult = { ok: true; ids: Uint8Array; written: Uint8Array; data?: Uint8Array } | Failure;

export interface TaskResults {
  'digest-file': DigestResult;
  'digest-range': RangeResult;
  'store-buffer': StoreResult;
  'store-batch': StoreBatchResult;
  'verify-dir': VerifyDirResult | Failure;
  /** On failure, `index` is the item that failed; the ones before it are done. */
  'copy-batch': { ok: true } | (Failure & { index: number });
  'thread-id': { ok: true; tid: number } | Failure;
}

/**
 * What runs pool tasks: the pool itself on the main thread, or, in a layer thread, its line to
 * the main thread, which hands each task to the pool (layer-remote.ts).
 */
export interface TaskRunner {
  readonly size: number;
  /**
   * `signal` may cancel a task not yet started (a layer thread's line ignores it: its layer
   * settles every task). `holds`: the budget lease the task holds, released as the task ends
   * (the caller's own release then does nothing; a layer thread saves a message per task).
   */
  run<T extends VerityTask>(task: T, opts?: { transfer?: ArrayBuffer[]; signal?: AbortSignal; holds?: Lease }): Promise<TaskResults[T['kind']]>;
}
