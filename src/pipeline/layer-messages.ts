/**
 * The messages between the main thread and a layer thread (layer-thread.ts, layer.worker.ts).
 * Plain data only: an error crosses as its code and message (and path, expected, found) and is
 * made a VeritreeError again on the other side; an untyped one stays untyped (INTERNAL).
 * @module
 */
import { ERROR_CODES, VeritreeError, isVeritreeError, type ErrorCode } from '../errors.ts';
import { OciArchive, type LayoutLocation } from '../oci/layout-files.ts';
import type { ResolvedLayer } from '../oci/layout.ts';
import type { LayerLimits } from '../oci/layer-stream.ts';
import type { TarWarningCode } from '../oci/tar-split.ts';
import type { ObjectTarget } from '../store/objects.ts';
import type { HashImpl } from '../verity/backends.ts';
import type { LayerRead, LayerResult } from './layer-import.ts';
import type { TaskResults, VerityTask } from './protocol.ts';

/** A layout as it crosses: a folder, or an archive's fields (its class does not cross). */
export type WireLayout = string | Pick<OciArchive, 'path' | 'entries' | 'identity'>;

/** The layout a job names, as this thread can read it (an archive is rebuilt from its fields). */
export function layoutOf(w: WireLayout): LayoutLocation {
  if (typeof w === 'string' || w instanceof OciArchive) return w;
  return new OciArchive(w.path, w.entries, w.identity);
}

/** One layer for a thread: `import` reads and stores it; `verify` only reads and checks its blob. */
export interface LayerJob {
  mode: 'import' | 'verify';
  layer: ResolvedLayer;
  layout: WireLayout;
  target: ObjectTarget;
  root: string;
  impl: HashImpl;
  limits: LayerLimits;
  spoolThreshold: number;
  /** The byte budget's bound (files above it are spooled) and the pool's size. */
  maxBytes: number;
  poolSize: number;
}

export interface WireError {
  /** Null for an error that was not a VeritreeError: a bug, reported as INTERNAL. */
  code: ErrorCode | null;
  message: string;
  path?: string | undefined;
  expected?: string | undefined;
  found?: string | undefined;
}

export type ToThread =
  | { type: 'job'; job: LayerJob }
  | { type: 'abort' }
  | { type: 'grant'; id: number }
  | { type: 'refuse'; id: number; error: WireError }
  | { type: 'result'; id: number; result: TaskResults[VerityTask['kind']] };

export type FromThread =
  /** Waits for `bytes` and a task slot of the run's budget. */
  | { type: 'lease'; id: number; bytes: number }
  /** Gives a lease back, or gives up waiting for it. */
  | { type: 'unlease'; id: number }
  /** A task for the pool; its buffers were transferred with the message. `holds`: a lease to release as it ends. */
  | { type: 'run'; id: number; task: VerityTask; holds?: number | undefined }
  | { type: 'bytes'; compressed: number; tar: number; entries: number }
  | { type: 'finishing' }
  | { type: 'warning'; code: TarWarningCode; message: string }
  | { type: 'done'; result: LayerRead | LayerResult }
  | { type: 'failed'; error: WireError };

export function toWire(e: unknown): WireError {
  if (isVeritreeError(e)) return { code: e.code, message: e.message, path: e.path, expected: e.expected, found: e.found };
  return { code: null, message: e instanceof Error ? (e.stack ?? e.message) : String(e) };
}

export function fromWire(w: WireError): Error {
  if (w.code === null) return new Error(w.message);
  return new VeritreeError(w.code, w.message, { path: w.path, expected: w.expected, found: w.found });
}

/** The error for a layer thread that died (a crash, or a load failure). */
export function threadDied(why: string): VeritreeError {
  return new VeritreeError(ERROR_CODES.WORKER_FAILED, `layer thread failed: ${why}`);
}
