/**
 * The one error class of veritree. Every failure that reaches a caller carries a stable `code`
 * (see ERROR_CODES) so that the CLI can map it to a message and an exit status, and scripts can
 * match on it. Errors from dependencies are wrapped with `cause`, never swallowed.
 * @module
 */

import { deniedFolder, modeAndOwner } from './store/denied.ts';

export const ERROR_CODES = {
  USAGE: 'USAGE',
  FILE_UNREADABLE: 'FILE_UNREADABLE',
  OCI_LAYOUT_INVALID: 'OCI_LAYOUT_INVALID',
  OCI_BLOB_MISSING: 'OCI_BLOB_MISSING',
  OCI_DIGEST_MISMATCH: 'OCI_DIGEST_MISMATCH',
  OCI_SIZE_MISMATCH: 'OCI_SIZE_MISMATCH',
  OCI_DIFF_ID_MISMATCH: 'OCI_DIFF_ID_MISMATCH',
  OCI_MEDIA_TYPE_UNSUPPORTED: 'OCI_MEDIA_TYPE_UNSUPPORTED',
  OCI_REF_NOT_FOUND: 'OCI_REF_NOT_FOUND',
  /** A sealed image's content does not have a digest its seal claims (sealing_spec.rs). */
  SEAL_MISMATCH: 'SEAL_MISMATCH',
  LAYER_DECOMPRESS: 'LAYER_DECOMPRESS',
  TAR_CORRUPT: 'TAR_CORRUPT',
  TAR_LIMIT_EXCEEDED: 'TAR_LIMIT_EXCEEDED',
  TAR_UNSUPPORTED: 'TAR_UNSUPPORTED',
  TAG_INVALID: 'TAG_INVALID',
  TAG_IN_USE: 'TAG_IN_USE',
  TAG_NOT_FOUND: 'TAG_NOT_FOUND',
  DUMPFILE_INVALID: 'DUMPFILE_INVALID',
  MOUNT_FAILED: 'MOUNT_FAILED',
  STORE_NOT_FOUND: 'STORE_NOT_FOUND',
  STORE_IO: 'STORE_IO',
  STORE_NO_SPACE: 'STORE_NO_SPACE',
  STORE_CORRUPT: 'STORE_CORRUPT',
  STORE_LOCKED: 'STORE_LOCKED',
  STORE_VERITY_REQUIRED: 'STORE_VERITY_REQUIRED',
  STORE_UNSUPPORTED: 'STORE_UNSUPPORTED',
  WORKER_FAILED: 'WORKER_FAILED',
  INTERNAL: 'INTERNAL',
  ABORTED: 'ABORTED',
} as const;

export type ErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];

export interface VeritreeErrorOptions {
  path?: string | undefined;
  cause?: unknown;
  expected?: string | undefined;
  found?: string | undefined;
}

export class VeritreeError extends Error {
  readonly code: ErrorCode;
  readonly path: string | undefined;
  readonly expected: string | undefined;
  readonly found: string | undefined;

  constructor(code: ErrorCode, message: string, options: VeritreeErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.path = options.path;
    this.expected = options.expected;
    this.found = options.found;
  }

  override get name(): string {
    return 'VeritreeError';
  }
}

export function isVeritreeError(e: unknown): e is VeritreeError {
  return e instanceof VeritreeError;
}

/** Node's system errors carry `code` (ENOENT, ENOSPC...): a narrow type guard for them. */
export function errnoCode(e: unknown): string | undefined {
  if (typeof e === 'object' && e !== null && 'code' in e) {
    const c = (e as { code: unknown }).code;
    return typeof c === 'string' ? c : undefined;
  }
  return undefined;
}

/**
 * For `.catch` on a file-system call: a path that is not there (ENOENT, or ENOTDIR: a path
 * through something that is not a folder), or one of the `also` codes, is answered `fallback`;
 * any other error (EIO, EACCES) is thrown on, never taken for "absent".
 */
export function whenAbsent<T>(fallback: T, ...also: string[]): (e: unknown) => T {
  return (e) => {
    const code = errnoCode(e);
    if (code === 'ENOENT' || code === 'ENOTDIR' || (code !== undefined && also.includes(code))) return fallback;
    throw e;
  };
}

/**
 * Marks a promise that is awaited later (or raced), so that Node does not report its rejection
 * as unhandled in the meantime. Nothing is swallowed: whoever awaits the promise still gets it.
 */
export function handledLater(p: Promise<unknown>): void {
  p.then(undefined, seenWhereAwaited);
}

function seenWhereAwaited(): void {}

/**
 * Wraps an fs error on the store; a full disk gets its own code and the words users look for.
 * A permission error names its real cause: a folder on the way this user cannot enter (its mode
 * and owner), else the path itself, "not readable" for a read (`access` 'read') and "not
 * writable" for a write.
 */
export function storeIoError(e: unknown, path: string, what: string, access: 'read' | 'write' = 'write'): VeritreeError {
  if (isVeritreeError(e)) return e;
  const code = errnoCode(e);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new VeritreeError(ERROR_CODES.STORE_NO_SPACE, `no space left on ${path} (${what})`, { path, cause: e });
  }
  if (code === 'EACCES' || code === 'EPERM') {
    const denied = deniedFolder(path);
    const uid = process.getuid?.() ?? -1;
    if (denied !== null) {
      const mode = denied.mode.toString(8).padStart(4, '0');
      return new VeritreeError(ERROR_CODES.STORE_IO, `cannot enter ${denied.folder} (mode ${mode}, owner uid ${denied.uid} gid ${denied.gid}): this user (uid ${uid}) may not search it: ${describeFsError(e)} (${what})`, { path: denied.folder, cause: e });
    }
    const how = modeAndOwner(path);
    return new VeritreeError(ERROR_CODES.STORE_IO, `${path} is not ${access === 'read' ? 'readable' : 'writable'}: ${describeFsError(e)} (${what}; ${how ? `${how}, ` : ''}this user uid ${uid})`, { path, cause: e });
  }
  if (code === 'EROFS') {
    return new VeritreeError(ERROR_CODES.STORE_IO, `${path} is not writable: ${describeFsError(e)} (${what})`, { path, cause: e });
  }
  const msg = e instanceof Error ? e.message : String(e);
  return new VeritreeError(ERROR_CODES.STORE_IO, `${what}: ${msg}`, { path, cause: e });
}

const STRERROR: Record<string, string> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  EISDIR: 'Is a directory',
  ENOTDIR: 'Not a directory',
  ELOOP: 'Too many levels of symbolic links',
  EIO: 'Input/output error',
  ENOSPC: 'No space left on device',
  EROFS: 'Read-only file system',
};

/** The plain words of an fs error (what C tools print), without Node's "EACCES: ..., open 'x'". */
export function describeFsError(e: unknown): string {
  const code = errnoCode(e);
  if (code && STRERROR[code]) return STRERROR[code];
  return e instanceof Error ? e.message : String(e);
}

/** The error of a stop asked for by an AbortSignal (Ctrl-C, a timeout, --fail-fast). */
export function interrupted(signal?: AbortSignal): VeritreeError {
  const reason: unknown = signal?.reason;
  // The caller's own reason is kept as the cause and named in the message; the DOMException
  // that abort() makes without one says nothing more than "interrupted".
  const own = reason instanceof Error && reason.name !== 'AbortError' && reason.message !== '' ? `: ${reason.message}` : '';
  return new VeritreeError(ERROR_CODES.ABORTED, `interrupted${own}`, signal ? { cause: reason } : {});
}

/** Throws `interrupted` when `signal` has fired: the one check every loop makes. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw interrupted(signal);
}
