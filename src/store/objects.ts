/**
 * Publishing objects. The content is written to an unnamed file (O_TMPFILE) inside objects/ and
 * given its final name by linkat(2) only when complete, so no half-written object can ever have
 * a name, and a killed writer leaves nothing behind. Where O_TMPFILE is not to be had (no native
 * module, or a filesystem without it) a named tmp file is written, linked and unlinked instead;
 * the writer holds an flock on it, so fsck can tell a live tmp file from a stray one.
 *
 * `link` fails with EEXIST when the object is already there, so an existing object is never
 * replaced, except in a repository that requires fs-verity: there a new object's fs-verity digest
 * is measured equal to its name before it is named, and an object present without fs-verity (or
 * with another digest) is not trusted but replaced by the new sealed copy (rename(2), atomic), as
 * composefs-rs's ensure_verity_equal refuses it. When fs-verity is wanted it is enabled on the
 * complete file before it is named.
 * Durability is not per object: the importer makes the filesystem durable once before it
 * publishes any stream that names these objects (Repository.sync).
 *
 * Used by the worker threads, so it takes plain paths and makes synchronous system calls: a
 * worker is an OS thread of its own, while async calls would all queue on libuv's four shared
 * threads.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, linkSync, mkdirSync, openSync, renameSync, statSync, unlinkSync, constants as fsc } from 'node:fs';
import { write as writeCb } from 'node:fs';
import { promisify } from 'node:util';
import { dirname, join } from 'node:path';
import { ERROR_CODES, VeritreeError, errnoCode, storeIoError } from '../errors.ts';
import { storeBatchNative, type HashImpl } from '../verity/backends.ts';
import { HASH_ALGORITHMS, type HashAlgorithm } from '../verity/constants.ts';
import { toHex, verityDigest } from '../verity/merkle.ts';
import { objectPathIn, TMP_PREFIX, type ObjectId } from './layout.ts';
import { enableVerity, measureVerity, OPEN_UNTRUSTED, storeSys, writeAllSync } from './sys.ts';
import { PRESENT_CHECK_MIN } from '../tuning.ts';

const writeAsync = promisify(writeCb);

export interface PublishResult {
  id: ObjectId;
  size: number;
  /** false when the object was already present (deduplicated). */
  written: boolean;
}

/**
 * What to do about fs-verity on new objects: `try` enables it where the filesystem has it;
 * `require` refuses to write an object without it (a repository whose meta.json has fs-verity,
 * composefs-rs's "secure" mode, or `--require-verity`).
 */
export type VerityPolicy = 'try' | 'require';

export interface ObjectTarget {
  objectsDir: string;
  alg: HashAlgorithm;
  verity: VerityPolicy;
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

function verityMissing(objectsDir: string): VeritreeError {
  return new VeritreeError(
    ERROR_CODES.STORE_VERITY_REQUIRED,
    `the repository requires fs-verity on every object, and the filesystem of ${objectsDir} does not provide it`,
    { path: objectsDir }
  );
}

/** Filesystems (per objects folder) found not to do fs-verity or O_TMPFILE: asked once each. */
const noVerity = new Set<string>();
const noTmpfile = new Set<string>();
const madeDirs = new Set<string>();

/**
 * Turns the complete file open at `fd` (for writing) into a read-only descriptor with fs-verity
 * enabled when the policy wants it: the kernel refuses to enable it while a writable descriptor
 * is open. Returns the descriptor to link from (the same one when nothing was done).
 *
 * It owns `fd` from the call on: when it throws, neither `fd` nor the read-only one is open. A
 * caller that closed `fd` again would close whatever file another thread had opened under that
 * number since (a pool worker's object being written, which then goes on writing elsewhere).
 */
function sealVerity(fd: number, procPath: string, t: ObjectTarget): number {
  if (t.verity === 'try' && noVerity.has(t.objectsDir)) return fd;
  let ro: number;
  try {
    ro = openSync(procPath, fsc.O_RDONLY);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  try {
    // A close that fails (EIO from a filesystem that writes back on close) must not leave the
    // read-only descriptor behind.
    closeSync(fd);
  } catch (e) {
    closeSync(ro);
    throw e;
  }
  try {
    if (enableVerity(ro, t.alg) === 'unsupported') {
      if (t.verity === 'require') throw verityMissing(t.objectsDir);
      noVerity.add(t.objectsDir);
    }
  } catch (e) {
    closeSync(ro);
    throw e;
  }
  return ro;
}

/**
 * Links an open file to its final name: true when linked, false when the name was taken (the
 * object is present). The objects/XX folder is made when missing; the per-thread cache of folders
 * made can be stale (a pool outlives a repository deleted and made again): ENOENT is the signal
 * to make it again, once.
 */
function nameObject(link: () => void, final: string): boolean {
  const dir = dirname(final);
  const makeDir = (): void => {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    madeDirs.add(dir);
  };
  if (!madeDirs.has(dir)) makeDir();
  for (let retried = false; ; retried = true) {
    try {
      link();
      return true;
    } catch (e) {
      const c = errnoCode(e);
      if (c === 'EEXIST') return false;
      if (c !== 'ENOENT' || retried) throw e;
      makeDir();
    }
  }
}

/**
 * Whether the object under `final` has fs-verity whose digest is `id` (its name): only such an
 * object counts as present in a repository that requires fs-verity. Its size says nothing: a
 * copy without fs-verity has the right size. False also when there is nothing under the name.
 */
export function sealedAs(final: string, id: ObjectId): boolean {
  let fd: number;
  try {
    fd = openSync(final, OPEN_UNTRUSTED);
  } catch (e) {
    const c = errnoCode(e);
    // not there, or a symlink (O_NOFOLLOW): nothing sealed under the name
    if (c === 'ENOENT' || c === 'ELOOP') return false;
    throw e;
  }
  try {
    if (!fstatSync(fd).isFile()) return false;
    const m = measureVerity(fd);
    return m.state === 'enabled' && toHex(m.digest) === id;
  } finally {
    closeSync(fd);
  }
}

/** The descriptor's fs-verity digest must be `id`: a secure repository names nothing else. */
function assertSealed(fd: number, id: ObjectId, path: string, t: ObjectTarget): void {
  const m = measureVerity(fd);
  if (m.state === 'enabled' && toHex(m.digest) === id) return;
  if (m.state !== 'enabled') throw verityMissing(t.objectsDir);
  throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `object ${id}: the kernel measures its fs-verity digest as ${toHex(m.digest)}, not its name`, { path, expected: id, found: toHex(m.digest) });
}

function presentResult(id: ObjectId, final: string, size: number): PublishResult {
  const st = statSync(final, { throwIfNoEntry: false });
  const found = st ? st.size : null;
  if (found !== size) throw wrongSize(id, final, size, found);
  return { id, size, written: false };
}

/** open(2)'s O_TMPFILE on Linux (__O_TMPFILE | O_DIRECTORY; node:fs does not export it). */
const O_TMPFILE = 0o20000000 | fsc.O_DIRECTORY;

/** An unnamed (or, in the fallback, flocked named) file inside objects/ being written. */
export class TmpObjectFile {
  readonly target: ObjectTarget;
  /** A path by which this process (any thread) can read the file while it is open. */
  readonly readPath: string;
  private fd: number;
  private readonly named: string | null;
  private written = 0;
  private closed = false;

  constructor(target: ObjectTarget) {
    this.target = target;
    const sys = storeSys();
    if (sys && !noTmpfile.has(target.objectsDir)) {
      try {
        // Opened by Node, not the addon: a worker thread's descriptors are Node's to track (and
        // to close if the worker is stopped); one opened behind its back is neither.
        this.fd = openSync(target.objectsDir, O_TMPFILE | fsc.O_RDWR, 0o644);
        this.named = null;
        this.readPath = `/proc/self/fd/${this.fd}`;
        return;
      } catch (e) {
        const c = errnoCode(e);
        if (c !== 'EOPNOTSUPP' && c !== 'EISDIR' && c !== 'EINVAL') throw e;
        noTmpfile.add(target.objectsDir);
      }
    }
    this.named = tmpPathIn(target.objectsDir);
    this.fd = openSync(this.named, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL, 0o644);
    // Held until the file is linked or removed: fsck tells a live tmp file by this lock.
    sys?.flock(this.fd, 2);
    this.readPath = this.named;
  }

  get size(): number {
    return this.written;
  }

  writeSync(data: Uint8Array): void {
    writeAllSync(this.fd, data);
    this.written += data.length;
  }

  /** Appends every byte of `data`, checking each write: a short write is retried, never ignored. */
  async write(data: Uint8Array): Promise<void> {
    for (let off = 0; off < data.length; ) {
      const { bytesWritten } = await writeAsync(this.fd, data, off, data.length - off, null);
      if (bytesWritten <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
      off += bytesWritten;
    }
    this.written += data.length;
  }

  /** Names the complete file `id` (or finds it present), enabling fs-verity first as wanted. */
  publish(id: ObjectId, size: number): PublishResult {
    const final = objectPathIn(this.target.objectsDir, id);
    try {
      // Every write was checked (writeAllSync), and an unnamed file has no name another process
      // could open it by; a named tmp file could be truncated or written by anyone who can
      // reach objects/, so its size on disk is asked for before it is named.
      const onDisk = this.named === null ? this.written : fstatSync(this.fd).size;
      if (onDisk !== size || this.written !== size) {
        throw new VeritreeError(ERROR_CODES.STORE_IO, `object ${id}: ${onDisk} bytes on disk, ${this.written} written, expected ${size}`, { path: final, expected: String(size), found: String(onDisk) });
      }
      const sys = storeSys();
      const writable = this.fd;
      // sealVerity owns the descriptor now, whether it returns or throws (see there)
      this.fd = -1;
      const fd = sealVerity(writable, this.named ?? this.readPath, this.target);
      this.fd = fd;
      // the named fallback's flock went with the writable descriptor: take it again
      if (fd !== writable && this.named) sys?.flock(fd, 2);
      if (this.target.verity === 'require') assertSealed(fd, id, final, this.target);
      const linked =
        this.named === null
          ? nameObject(() => sys?.linkFd(fd, final), final)
          : nameObject(() => linkSync(this.named as string, final), final);
      if (linked) return { id, size, written: true };
      if (this.target.verity !== 'require') return presentResult(id, final, size);
      if (sealedAs(final, id)) return { id, size, written: false };
      this.replace(fd, final);
      return { id, size, written: true };
    } catch (e) {
      throw storeIoError(e, dirname(this.target.objectsDir), `publishing object ${id}`);
    } finally {
      this.discard();
    }
  }

  /**
   * Puts this sealed file in place of an untrusted object under `final`: named first (the named
   * fallback has its name already), then renamed over the old one, so the name never lacks an object.
   */
  private replace(fd: number, final: string): void {
    let name = this.named;
    if (name === null) {
      name = tmpPathIn(this.target.objectsDir);
      storeSys()?.linkFd(fd, name);
    }
    try {
      renameSync(name, final);
    } catch (e) {
      if (name !== this.named) unlinkSync(name);
      throw e;
    }
  }

  /** Closes the file; an unnamed one vanishes, a named tmp file is removed. Idempotent. */
  discard(): void {
    if (this.closed) return;
    this.closed = true;
    // -1: sealVerity failed and closed it already (never close a number twice: see there)
    if (this.fd >= 0) {
      try {
        closeSync(this.fd);
      } catch {
        // a close that reports an error has still released the number; the caller's own error
        // (discard runs on failure paths) is the one worth reporting
      }
    }
    if (this.named) {
      try {
        unlinkSync(this.named);
      } catch {
        // already gone
      }
    }
  }
}


/** Writes `data` as object `id` (already computed by the caller from these very bytes). */
export function writeObjectSync(target: ObjectTarget, id: ObjectId, data: Uint8Array): PublishResult {
  const final = objectPathIn(target.objectsDir, id);
  try {
    // A large object already present costs one stat, not a write. A small one is written and
    // offered to link(2), whose EEXIST says the same: a stat per object would cost every fresh
    // import more than the rare duplicate saves.
    if (data.length > PRESENT_CHECK_MIN) {
      if (target.verity === 'require') {
        if (sealedAs(final, id)) return { id, size: data.length, written: false };
      } else {
        const existing = statSync(final, { throwIfNoEntry: false });
        if (existing && existing.size === data.length) return { id, size: data.length, written: false };
      }
    }
    const tmp = new TmpObjectFile(target);
    try {
      tmp.writeSync(data);
    } catch (e) {
      tmp.discard();
      throw e;
    }
    return tmp.publish(id, data.length);
  } catch (e) {
    throw storeIoError(e, dirname(target.objectsDir), `writing object ${id}`);
  }
}

/** writeObjectSync for the main thread (streams, configs, manifests: few and small). */
export async function writeObject(target: ObjectTarget, id: ObjectId, data: Uint8Array): Promise<PublishResult> {
  return writeObjectSync(target, id, data);
}

/**
 * Stores small files given back to back in `data` (`sizes` says where each ends): a worker's
 * batch. Where the filesystem is known to have no fs-verity to enable and takes O_TMPFILE, one
 * native call digests, writes and names them all, with no JavaScript per file; the file it cannot
 * finish (an error, or a name taken by an object of another size) and those after it go through
 * verityDigest and writeObjectSync, which report the failure. Until the first object has shown
 * what the filesystem does, every file takes that path.
 */
export function writeBatchSync(target: ObjectTarget, data: Uint8Array, sizes: Uint32Array, impl: HashImpl): PublishResult[] {
  const n = sizes.length;
  const items: PublishResult[] = [];
  let done = 0;
  let off = 0;
  if (target.verity === 'try' && noVerity.has(target.objectsDir) && !noTmpfile.has(target.objectsDir) && storeSys()) {
    const ds = HASH_ALGORITHMS[target.alg].digestSize;
    const digests = new Uint8Array(n * ds);
    const written = new Uint8Array(n);
    done = storeBatchNative(impl, target.alg, target.objectsDir, data, sizes, digests, written) ?? 0;
    for (let i = 0; i < done; i++) {
      const size = sizes[i] as number;
      items.push({ id: toHex(digests.subarray(i * ds, (i + 1) * ds)), size, written: written[i] === 1 });
      off += size;
    }
  }
  for (let i = done; i < n; i++) {
    const size = sizes[i] as number;
    const bytes = data.subarray(off, off + size);
    off += size;
    items.push(writeObjectSync(target, toHex(verityDigest(bytes, target.alg, impl)), bytes));
  }
  return items;
}
