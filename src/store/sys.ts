/**
 * The kernel primitives the store relies on, through native/store_sys.c where it built, with a
 * portable fallback for each where it did not (docs/guarantees.md says which is in force):
 *
 * | primitive | native | fallback |
 * |---|---|---|
 * | repository lock | flock(2) on the repository folder | util-linux `flock(1)` holding it in a child |
 * | durability | syncfs(2) on libuv's thread pool | coreutils `sync -f` |
 * | object publication | O_TMPFILE + linkat(2): no name until complete | named tmp file + link + unlink |
 * | fs-verity | FS_IOC_ENABLE_VERITY / FS_IOC_MEASURE_VERITY | none: treated as absent |
 *
 * It also holds the one way the store opens a file it did not just create: without following a
 * symlink and without blocking, then refusing anything that is not a regular file.
 * @module
 */
import { spawn } from 'node:child_process';
import { closeSync, constants as fsc, fstatSync, openSync, writeSync, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { ERROR_CODES, VeritreeError, errnoCode, storeIoError, type ErrorCode } from '../errors.ts';
import { loadAddon, nativeFileFailure, type NativeFileFailure } from '../native-addon.ts';

interface StoreSysAddon {
  flock(fd: number, op: 1 | 2 | 3): boolean;
  linkFd(fd: number, path: string): boolean;
  enableVerity(fd: number, alg: 1 | 2): boolean;
  measureVerity(fd: number): Buffer;
  syncfs(fd: number): Promise<void>;
  /** Older builds of the addon lack it. */
  readSmall?(paths: string[], max: number): Promise<(Buffer | number)[]>;
  /** See native/store_sys.c; older builds lack it. */
  assemble?(objectsDir: string, refs: Uint8Array, digestSize: number, segs: Float64Array, arena: Uint8Array, start: number, out: Uint8Array, result: Float64Array, stop?: Int32Array): Promise<void>;
  /** See native/store_sys.c; older builds lack it. */
  setXattr?(fd: number, entryName: Buffer | null, key: Buffer, value: Buffer): boolean;
  /** See native/store_sys.c; older builds lack it. */
  mknodAt?(dirFd: number, name: Buffer, kind: 1 | 2 | 3, major: number, minor: number): boolean;
  /** See native/store_sys.c; older builds lack it. */
  setTimes?(fd: number, entryName: Buffer | null, sec: number, nsec: number): boolean;
}

let loaded: { addon: StoreSysAddon | null; reason: string } | undefined;

export function storeSys(): StoreSysAddon | null {
  loaded ??= loadAddon<StoreSysAddon>('store_sys');
  return loaded.addon;
}

/** O_RDONLY | O_NOFOLLOW | O_NONBLOCK: a symlink fails (ELOOP), a FIFO opens without waiting. */
export const OPEN_UNTRUSTED = fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK;

/** What a file that should have been regular is, in the words of an error message. */
export function describeKind(st: Stats): string {
  return st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : 'not a regular file';
}

function notRegular(st: Stats, path: string, what: string, code: ErrorCode): VeritreeError {
  return notRegularKind(describeKind(st), path, what, code);
}

/** The refusal of a file that is `kind` ('a FIFO', 'a directory'...) where a regular file was expected. */
export function notRegularKind(kind: string, path: string, what: string, code: ErrorCode = ERROR_CODES.STORE_CORRUPT): VeritreeError {
  return new VeritreeError(code, `${what} ${path} is ${kind}, not a regular file`, { path });
}

/**
 * What the addon found instead of an object's digest or bytes, in the words the JavaScript paths
 * use for the same refusal (openRegular's: a symlink, a missing object, not a regular file).
 */
export function objectFailureMessage(r: NativeFileFailure, path: string, what = 'object'): string {
  // Any other errno was met reading, after the open: said as such, not as openRegular's I/O error.
  if ('errno' in r && r.errno !== 'ELOOP' && r.errno !== 'ENOENT') return `reading ${what} ${path}: ${r.errno}`;
  return nativeOpenError(r, path, what).message;
}

/** The error openRegular would have thrown for what the addon found opening `path`. */
export function nativeOpenError(f: NativeFileFailure, path: string, what: string, code: ErrorCode = ERROR_CODES.STORE_CORRUPT): VeritreeError {
  if ('notRegular' in f) return notRegularKind(f.notRegular, path, what, code);
  return openFailed(Object.assign(new Error(`${f.errno}: ${path}`), { code: f.errno }), path, what, code);
}

/** Why opening a file the store reads failed: a symlink (O_NOFOLLOW), a missing file, else an I/O error. */
export function openFailed(e: unknown, path: string, what: string, code: ErrorCode): VeritreeError {
  if (errnoCode(e) === 'ELOOP') return new VeritreeError(code, `${what} ${path} is a symbolic link, not a regular file`, { path, cause: e });
  if (errnoCode(e) === 'ENOENT') return new VeritreeError(code, `${what} ${path} is missing`, { path, cause: e });
  return storeIoError(e, path, `opening ${what} ${path}`, 'read');
}

/**
 * Opens a file the store reads (object, stream, blob, meta.json) so that no symlink is followed
 * and no open can block; anything but a regular file is refused with `code`, naming the path.
 */
export async function openRegular(path: string, what: string, code: ErrorCode = ERROR_CODES.STORE_CORRUPT): Promise<{ fh: FileHandle; size: number }> {
  let fh: FileHandle;
  try {
    fh = await open(path, OPEN_UNTRUSTED);
  } catch (e) {
    throw openFailed(e, path, what, code);
  }
  const st = await fh.stat().catch(async (e: unknown) => {
    await fh.close();
    throw storeIoError(e, path, `reading ${what}`, 'read');
  });
  if (!st.isFile()) {
    await fh.close();
    throw notRegular(st, path, what, code);
  }
  return { fh, size: st.size };
}

/** openRegular for worker threads (synchronous system calls); `dev` keys measureVerity's cache. */
export function openRegularSync(path: string, what: string, code: ErrorCode = ERROR_CODES.STORE_CORRUPT): { fd: number; size: number; dev: number } {
  let fd: number;
  try {
    fd = openSync(path, OPEN_UNTRUSTED);
  } catch (e) {
    throw openFailed(e, path, what, code);
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw notRegular(st, path, what, code);
  }
  return { fd, size: st.size, dev: st.dev };
}

/** The first `size` bytes of an open file (fewer if it is shorter now): one buffer, no re-open. */
export async function readAll(fh: FileHandle, size: number, start = 0): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(size);
  let got = 0;
  while (got < size) {
    const { bytesRead } = await fh.read(buf, got, size - got, start + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === size ? buf : buf.subarray(0, got);
}

/** Writes every byte of `data` at the descriptor's offset; a write that makes no progress is EIO. */
export function writeAllSync(fd: number, data: Uint8Array): void {
  for (let off = 0; off < data.length; ) {
    const n = writeSync(fd, data, off, data.length - off);
    if (n <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
    off += n;
  }
}

/** Reads a whole regular file, refusing symlinks and special files (openRegular). */
export async function readRegular(path: string, what: string, code: ErrorCode = ERROR_CODES.STORE_CORRUPT, maxBytes = Infinity): Promise<Buffer> {
  const { fh, size } = await openRegular(path, what, code);
  try {
    if (size > maxBytes) throw new VeritreeError(code, `${what} ${path} is ${size} bytes, more than the ${maxBytes} allowed`, { path });
    return await readAll(fh, size);
  } catch (e) {
    throw storeIoError(e, path, `reading ${what}`, 'read');
  } finally {
    await fh.close();
  }
}

/** syncfs(2) of the filesystem holding `path`. */
export async function syncFs(path: string): Promise<void> {
  const sys = storeSys();
  try {
    if (sys) {
      const fd = openSync(path, fsc.O_RDONLY | fsc.O_DIRECTORY);
      try {
        await sys.syncfs(fd);
      } finally {
        closeSync(fd);
      }
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const child = spawn('sync', ['-f', path], { stdio: 'ignore' });
      child.on('error', reject);
      child.on('close', (c) => (c === 0 ? resolve() : reject(new Error(`sync -f ${path}: exit ${c}`))));
    });
  } catch (e) {
    throw storeIoError(e, path, 'syncing the repository');
  }
}

export type VerityMeasure = { state: 'enabled'; digest: Buffer } | { state: 'not-enabled' } | { state: 'unsupported'; why: string };

const UNSUPPORTED = new Set(['ENOTTY', 'EOPNOTSUPP', 'ENOTSUP', 'EINVAL']);

/** Filesystems (by st_dev) that answered "no fs-verity": not asked again for every file. */
const noVerityDevs = new Map<number, string>();

/** Whether the filesystem `dev` is known to have no fs-verity (measureVerity asked it already). */
export function verityKnownAbsent(dev: number): boolean {
  return noVerityDevs.has(dev);
}

/**
 * The kernel's fs-verity digest of an open file, or why there is none. With `dev` (the file's
 * st_dev), a filesystem that has no fs-verity is asked once, not once per file.
 */
export function measureVerity(fd: number, dev?: number): VerityMeasure {
  const sys = storeSys();
  if (!sys) return { state: 'unsupported', why: 'native store_sys module not built' };
  const known = dev === undefined ? undefined : noVerityDevs.get(dev);
  if (known !== undefined) return { state: 'unsupported', why: known };
  try {
    return { state: 'enabled', digest: sys.measureVerity(fd) };
  } catch (e) {
    const c = errnoCode(e);
    if (c === 'ENODATA') return { state: 'not-enabled' };
    if (c && UNSUPPORTED.has(c)) {
      const why = `the filesystem has no fs-verity (${c})`;
      if (dev !== undefined) noVerityDevs.set(dev, why);
      return { state: 'unsupported', why };
    }
    throw e;
  }
}

/**
 * Whether the filesystem of `dir` has no fs-verity (asked through the folder itself, once per
 * filesystem): then a file's digest can only come from hashing it, and nothing needs asking per
 * file. False when it has fs-verity, or the folder cannot be opened (the caller's own read says why).
 */
export function verityAbsentAt(dir: string): boolean {
  let fd: number;
  try {
    fd = openSync(dir, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch {
    return false;
  }
  try {
    const dev = fstatSync(fd).dev;
    return verityKnownAbsent(dev) || measureVerity(fd, dev).state === 'unsupported';
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}

/**
 * Enables fs-verity on an open read-only file. 'unsupported' when the filesystem (or the
 * kernel) has none; any other failure throws (a real error on a filesystem that has it).
 */
export function enableVerity(fd: number, alg: 'sha256' | 'sha512'): 'enabled' | 'unsupported' {
  const sys = storeSys();
  if (!sys) return 'unsupported';
  try {
    sys.enableVerity(fd, alg === 'sha256' ? 1 : 2);
    return 'enabled';
  } catch (e) {
    const c = errnoCode(e);
    if (c === 'EEXIST') return 'enabled';
    if (c && UNSUPPORTED.has(c)) return 'unsupported';
    throw e;
  }
}

/** A named tmp file younger than this is never called stray where no flock can tell. */
const TMP_GRACE_MS = 3600_000;

/**
 * Whether a tmp file in objects/ is stray: no writer holds it. A writer holds an exclusive flock
 * on its named tmp file until it is linked or removed, so a shared flock that succeeds at once
 * proves it abandoned, whichever pid namespace wrote it. Without the native module, age decides.
 * Returns its size when stray, null when it is live or gone.
 */
export function strayTmp(path: string): { size: number } | null {
  let fd: number;
  try {
    fd = openSync(path, OPEN_UNTRUSTED);
  } catch (e) {
    return errnoCode(e) === 'ELOOP' ? { size: 0 } : null; // a symlink is no writer's file
  }
  try {
    const st = fstatSync(fd);
    const sys = storeSys();
    if (sys) return st.isFile() && !sys.flock(fd, 1) ? null : { size: st.size };
    return Date.now() - st.mtimeMs > TMP_GRACE_MS ? { size: st.size } : null;
  } finally {
    closeSync(fd);
  }
}

/** A file readSmallRegular left to the caller: larger than its `max`. */
export const TOO_BIG = Symbol('too big');

/**
 * Reads each file whole, in one job on libuv's thread pool (the addon's readSmall), with
 * openRegular's rules and words: no symlink followed, no open that blocks, anything but a regular
 * file refused with `code` naming the path. A file larger than `max` is TOO_BIG (nothing read).
 * Null where the addon cannot (not built, or an older build): the caller opens files itself.
 */
export function readSmallRegular(paths: string[], max: number, what: (i: number) => string, code: ErrorCode = ERROR_CODES.STORE_CORRUPT): Promise<(Buffer | typeof TOO_BIG | VeritreeError)[]> | null {
  const read = storeSys()?.readSmall;
  if (!read) return null;
  return read(paths, max).then((rs) =>
    rs.map((r, i) => {
      if (typeof r !== 'number') return r;
      const path = paths[i] as string;
      if (r === -2000) return TOO_BIG;
      return nativeOpenError(nativeFileFailure(r), path, what(i), code);
    })
  );
}

/** One batch of a rebuilt stream as the addon's assemble laid it out (see native/store_sys.c). */
export interface AssembledBatch {
  /** Bytes written to `out`. */
  used: number;
  /** Whole segments done. */
  done: number;
  /** Bytes done of the next segment. */
  partial: number;
  /** Why the object of segment `done` could not be read, or null. */
  failure: NativeFileFailure | null;
}

/** The addon's assemble, or null where it did not build (the caller rebuilds chunk by chunk). */
export function assembler(): ((objectsDir: string, refs: Uint8Array, digestSize: number, segs: Float64Array, arena: Uint8Array, start: number, out: Uint8Array, stop?: Int32Array) => Promise<AssembledBatch>) | null {
  const sys = storeSys();
  const assemble = sys?.assemble;
  if (!assemble) return null;
  return async (objectsDir, refs, digestSize, segs, arena, start, out, stop) => {
    const r = new Float64Array(4);
    await assemble.call(sys, objectsDir, refs, digestSize, segs, arena, start, out, r, stop);
    return { used: r[0] as number, done: r[1] as number, partial: r[2] as number, failure: (r[3] as number) < 0 ? nativeFileFailure(r[3] as number) : null };
  };
}
