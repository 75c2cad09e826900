/**
 * Reading blobs of an OCI layout, verified: every byte is checked against the descriptor's size
 * and SHA-256 while it is read. Small JSON blobs are read whole; layers are streamed.
 * @module
 */
import { createHash } from 'node:crypto';
import { createSha256Stream, type ShaStream } from '../verity/sha-stream.ts';
import { HASH_BACKLOG_BYTES, READ_CHUNK_BYTES } from '../tuning.ts';
import type { FileHandle } from 'node:fs/promises';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { ERROR_CODES, VeritreeError, throwIfAborted } from '../errors.ts';
import { readAll } from '../store/sys.ts';
import type { ChunkPool } from './chunk-pool.ts';
import { missing, openInLayout, regionSize, type LayoutLocation, type LayoutRegion } from './layout-files.ts';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  /** An artifact's type, repeated on its index entry (OCI image-spec 1.1). */
  artifactType?: string;
  platform?: { os?: string; architecture?: string; variant?: string };
}

/** Manifests, configs and indexes larger than this are refused (the spec suggests 4 MiB). */
export const MAX_JSON_BLOB = 4 << 20;

const DIGEST = /^sha256:([0-9a-f]{64})$/;

export function digestHex(d: string, what: string): string {
  const m = DIGEST.exec(d);
  if (!m?.[1]) throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${what}: unsupported or malformed digest ${JSON.stringify(d)} (only sha256 is supported)`);
  return m[1];
}

/** The blob's name in its layout: blobs/sha256/HEX. */
export function blobName(digest: string, what: string): string {
  return `blobs/sha256/${digestHex(digest, what)}`;
}

export function assertDescriptor(d: unknown, what: string): asserts d is Descriptor {
  const o = d as Partial<Descriptor> | null;
  if (!o || typeof o !== 'object' || typeof o.digest !== 'string' || typeof o.size !== 'number' || !Number.isSafeInteger(o.size) || o.size < 0 || typeof o.mediaType !== 'string') {
    throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${what}: not a valid descriptor (needs mediaType, digest, size)`);
  }
}

function mismatch(what: string, d: Descriptor, foundHex: string, path: string): VeritreeError {
  return new VeritreeError(ERROR_CODES.OCI_DIGEST_MISMATCH, `${what}: blob digest mismatch: expected ${d.digest}, found sha256:${foundHex}`, {
    path,
    expected: d.digest,
    found: `sha256:${foundHex}`,
  });
}

function sizeMismatch(what: string, d: Descriptor, found: number | string, path: string): VeritreeError {
  return new VeritreeError(ERROR_CODES.OCI_SIZE_MISMATCH, `${what}: blob size mismatch: descriptor says ${d.size} bytes, blob has ${found}`, {
    path,
    expected: String(d.size),
    found: String(found),
  });
}

/** A whole small blob, checked against its descriptor. */
export async function readVerifiedBlob(layout: LayoutLocation, d: Descriptor, what: string, max = MAX_JSON_BLOB): Promise<Buffer> {
  const name = blobName(d.digest, what);
  if (d.size > max) throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${what}: ${d.size} bytes is over the ${max}-byte limit for JSON blobs`, { path: name });
  let buf: Buffer;
  let path = name;
  try {
    const region = await openInLayout(layout, name, what);
    const { fh, start } = region;
    path = region.path;
    try {
      // Read one byte more than promised, to tell "exact" from "longer" without reading a huge file.
      buf = await readAll(fh, Math.min(d.size + 1, region.bound ?? Infinity), start);
      const got = buf.length;
      if (got !== d.size) throw sizeMismatch(what, d, got > d.size ? `more than ${d.size}` : got, path);
    } finally {
      await fh.close();
    }
  } catch (e) {
    if (e instanceof VeritreeError) throw e;
    throw missing(path, what, e);
  }
  const found = createHash('sha256').update(buf).digest('hex');
  if (found !== digestHex(d.digest, what)) throw mismatch(what, d, found, path);
  return buf;
}

export function parseJson<T>(buf: Buffer, what: string, path?: string): T {
  try {
    return JSON.parse(buf.toString('utf8')) as T;
  } catch (e) {
    throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${what} is not JSON: ${e instanceof Error ? e.message : String(e)}`, { path, cause: e });
  }
}

/** The most of a blob's rest hashed after a failure to tell whether the blob itself is damaged. */
export const MAX_REMAINDER_CHECK = 256 << 20;

/**
 * Hashes `chunk` where it lies (no copy) and hands it on at once, but takes the next only when
 * the hash is at most HASH_BACKLOG_BYTES behind: a read faster than the hash must wait for it,
 * not queue the blob in memory. Nothing downstream writes to a chunk or transfers it (file
 * contents are copied out of it); `release`, when given, is told once the hash is done with the
 * chunk (the hash is one of a recycled chunk's holders, oci/chunk-pool.ts).
 */
export function hashAndPass(stream: Transform, hash: ShaStream, chunk: Buffer, release: ((chunk: Uint8Array) => void) | null, cb: TransformCallback): void {
  const hashed = hash.updateInPlace(chunk);
  if (release) hashed.then(() => release(chunk), () => release(chunk));
  stream.push(chunk);
  const wait = hash.backlogAbove(HASH_BACKLOG_BYTES);
  if (wait) void wait.then(() => cb());
  else cb();
}

/** Passes bytes through, hashing and counting them; fails at the first byte past the size, and at the end on any mismatch. */
export class VerifyingStream extends Transform {
  private readonly hash: ShaStream = createSha256Stream();
  private readonly desc: Descriptor;
  private readonly what: string;
  private readonly layout: LayoutLocation;
  private readonly path: string;
  bytes = 0;
  /** The blob's SHA-256, once it has been read to the end. */
  digestHexFound = '';
  /** Called once per chunk when the hash is done with it (a recycled chunk's holder); null: none. */
  release: ((chunk: Uint8Array) => void) | null = null;

  constructor(desc: Descriptor, what: string, layout: LayoutLocation, path: string) {
    super();
    this.desc = desc;
    this.what = what;
    this.layout = layout;
    this.path = path;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.desc.size) {
      cb(sizeMismatch(this.what, this.desc, `more than ${this.desc.size}`, this.path));
      return;
    }
    hashAndPass(this, this.hash, chunk, this.release, cb);
  }

  /**
   * For the error path: when decompression or the tar failed part-way, hashes the rest of the blob
   * from where this stream stopped (nothing is read twice) to tell a damaged blob, the cause
   * worth reporting, from a well-formed blob holding a bad layer. At most MAX_REMAINDER_CHECK
   * bytes: past that, null (the caller reports the error the read met).
   * @returns the mismatch error, or null when the blob is as described (or too big to tell).
   */
  async checkRemainder(signal?: AbortSignal): Promise<VeritreeError | null> {
    const want = digestHex(this.desc.digest, this.what);
    if (this.digestHexFound) return this.digestHexFound === want ? null : mismatch(this.what, this.desc, this.digestHexFound, this.path);
    if (this.bytes > this.desc.size) return sizeMismatch(this.what, this.desc, `more than ${this.desc.size}`, this.path);
    // A hostile blob can be huge: past this, the error the read met is reported as it is.
    if (this.desc.size - this.bytes > MAX_REMAINDER_CHECK) return null;
    // Where the stream stopped and its hash there, taken together.
    const from = this.bytes;
    const hash = await this.hash.copy();
    let region: LayoutRegion;
    try {
      region = await openInLayout(this.layout, blobName(this.desc.digest, this.what), this.what);
    } catch (e) {
      return e instanceof VeritreeError ? e : missing(this.path, this.what, e);
    }
    const { fh, start } = region;
    try {
      const size = await regionSize(region);
      if (size !== this.desc.size) return sizeMismatch(this.what, this.desc, size, this.path);
      const buf = Buffer.allocUnsafe(1 << 20);
      for (let pos = from; pos < this.desc.size; ) {
        throwIfAborted(signal);
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, this.desc.size - pos), start + pos);
        if (bytesRead === 0) return sizeMismatch(this.what, this.desc, pos, this.path);
        hash.update(buf.subarray(0, bytesRead));
        pos += bytesRead;
        const behind = hash.backlogAbove(HASH_BACKLOG_BYTES);
        if (behind) await behind;
      }
    } finally {
      await fh.close();
    }
    const found = await hash.digestHex();
    return found === want ? null : mismatch(this.what, this.desc, found, this.path);
  }

  override _flush(cb: TransformCallback): void {
    if (this.bytes !== this.desc.size) {
      cb(sizeMismatch(this.what, this.desc, this.bytes, this.path));
      return;
    }
    this.hash.digestHex().then((found) => {
      this.digestHexFound = found;
      if (found !== digestHex(this.desc.digest, this.what)) cb(mismatch(this.what, this.desc, found, this.path));
      else cb();
    }, cb);
  }
}

/**
 * The blob's bytes as a stream, plus the verifier that checks them (and counts them for progress).
 * A blob whose size on disk is not the descriptor's is refused before a byte is read. The caller
 * closes the region's descriptor through the stream (destroy) or after it ends.
 */
export async function openVerifiedBlob(
  layout: LayoutLocation,
  d: Descriptor,
  what: string,
  reads?: PooledReads
): Promise<{ region: LayoutRegion; stream: NodeJS.ReadableStream & { destroy(e?: Error): void }; verifier: VerifyingStream }> {
  const region = await openInLayout(layout, blobName(d.digest, what), what);
  const { fh, path, start, bound } = region;
  try {
    const size = await regionSize(region);
    if (size !== d.size) throw sizeMismatch(what, d, size, path);
  } catch (e) {
    await fh.close();
    throw e;
  }
  // An archive's entry ends where the next one's header begins: read to the entry's end only.
  const verifier = new VerifyingStream(d, what, layout, path);
  if (bound === 0) return { region, stream: emptyOver(fh), verifier };
  if (!reads) return { region, stream: fh.createReadStream({ highWaterMark: READ_CHUNK_BYTES, start, ...(bound === null ? {} : { end: start + bound - 1 }) }), verifier };
  // The size was checked above: read exactly that many bytes, and no further.
  verifier.release = (c) => reads.pool.release(c);
  return { region, stream: pooledReads(fh, start, d.size, reads), verifier };
}

/** Where a blob's reads go: buffers of `pool`, each chunk lent to the verifier and to `holders - 1` more. */
export interface PooledReads {
  pool: ChunkPool;
  holders: number;
}

/**
 * `size` bytes from `start` as chunks in recycled buffers, closing `fh` when destroyed (as a read
 * stream would). A read that comes back short before the end (the file shrank) is an end: the
 * verifier's size check then fails the blob.
 */
function pooledReads(fh: FileHandle, start: number, size: number, { pool, holders }: PooledReads): Readable {
  let pos = 0;
  return new Readable({
    highWaterMark: pool.chunkBytes,
    read() {
      if (pos >= size) {
        this.push(null);
        return;
      }
      const buf = pool.take();
      fh.read(buf, 0, Math.min(buf.length, size - pos), start + pos).then(
        ({ bytesRead }) => {
          if (bytesRead === 0) {
            this.push(null);
            return;
          }
          pos += bytesRead;
          const chunk = buf.subarray(0, bytesRead);
          pool.lend(chunk, holders);
          this.push(chunk);
        },
        (e: unknown) => this.destroy(e as Error)
      );
    },
    destroy(err, cb) {
      fh.close().then(
        () => cb(err),
        (e: unknown) => cb(err ?? (e as Error))
      );
    },
  });
}

/** No bytes, closing `fh` when done, as a read stream would (a read stream cannot read none). */
function emptyOver(fh: FileHandle): Readable {
  return new Readable({
    read() {
      this.push(null);
    },
    // A close that fails is the stream's error, as a read stream's would be.
    destroy(err, cb) {
      fh.close().then(
        () => cb(err),
        (e: unknown) => cb(err ?? (e as Error))
      );
    },
  });
}
