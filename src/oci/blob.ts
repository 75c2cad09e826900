/**
 * Reading blobs of an OCI layout, verified: every byte is checked against the descriptor's size
 * and SHA-256 while it is read. Small JSON blobs are read whole; layers are streamed.
 * @module
 */
import { createHash, type Hash } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { ERROR_CODES, VeritreeError, errnoCode } from '../errors.ts';
import { describeKind } from '../store/sys.ts';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
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

export function blobPath(layoutDir: string, digest: string, what: string): string {
  return join(layoutDir, 'blobs', 'sha256', digestHex(digest, what));
}

export function assertDescriptor(d: unknown, what: string): asserts d is Descriptor {
  const o = d as Partial<Descriptor> | null;
  if (!o || typeof o !== 'object' || typeof o.digest !== 'string' || typeof o.size !== 'number' || !Number.isSafeInteger(o.size) || o.size < 0 || typeof o.mediaType !== 'string') {
    throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${what}: not a valid descriptor (needs mediaType, digest, size)`);
  }
}

function missing(path: string, what: string, e: unknown): VeritreeError {
  if (errnoCode(e) === 'ENOENT') return new VeritreeError(ERROR_CODES.OCI_BLOB_MISSING, `${what}: blob ${path} is missing`, { path, cause: e });
  return new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${what}: cannot read ${path}: ${e instanceof Error ? e.message : String(e)}`, { path, cause: e });
}

/**
 * Opens a file of the layout without ever blocking (O_NONBLOCK: a FIFO opens at once) and
 * refuses anything that is not a regular file: a FIFO, a device (/dev/zero), a folder. A symlink
 * to a regular file is followed: its bytes are checked against the digest like any other.
 */
export async function openLayoutFile(path: string, what: string): Promise<FileHandle> {
  let fh: FileHandle;
  try {
    fh = await open(path, fsc.O_RDONLY | fsc.O_NONBLOCK);
  } catch (e) {
    throw missing(path, what, e);
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${what}: ${path} is ${describeKind(st)}, not a regular file`, { path });
  }
  return fh;
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
export async function readVerifiedBlob(layoutDir: string, d: Descriptor, what: string, max = MAX_JSON_BLOB): Promise<Buffer> {
  const path = blobPath(layoutDir, d.digest, what);
  if (d.size > max) throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${what}: ${d.size} bytes is over the ${max}-byte limit for JSON blobs`, { path });
  let buf: Buffer;
  try {
    const fh = await openLayoutFile(path, what);
    try {
      // Read one byte more than promised, to tell "exact" from "longer" without reading a huge file.
      buf = Buffer.alloc(d.size + 1);
      let got = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
        if (got === buf.length) break;
      }
      if (got !== d.size) throw sizeMismatch(what, d, got > d.size ? `more than ${d.size}` : got, path);
      buf = buf.subarray(0, got);
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

/** Passes bytes through, hashing and counting them; fails at the first byte past the size, and at the end on any mismatch. */
export class VerifyingStream extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private readonly desc: Descriptor;
  private readonly what: string;
  private readonly path: string;
  bytes = 0;
  /** The blob's SHA-256, once it has been read to the end. */
  digestHexFound = '';

  constructor(desc: Descriptor, what: string, path: string) {
    super();
    this.desc = desc;
    this.what = what;
    this.path = path;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.desc.size) {
      cb(sizeMismatch(this.what, this.desc, `more than ${this.desc.size}`, this.path));
      return;
    }
    this.hash.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.bytes !== this.desc.size) {
      cb(sizeMismatch(this.what, this.desc, this.bytes, this.path));
      return;
    }
    const found = this.hash.digest('hex');
    this.digestHexFound = found;
    if (found !== digestHex(this.desc.digest, this.what)) cb(mismatch(this.what, this.desc, found, this.path));
    else cb();
  }
}

/** The blob's bytes as a stream, plus the verifier that checks them (and counts them for progress). */
export async function openVerifiedBlob(layoutDir: string, d: Descriptor, what: string): Promise<{ stream: NodeJS.ReadableStream; verifier: VerifyingStream; path: string }> {
  const path = blobPath(layoutDir, d.digest, what);
  const fh = await openLayoutFile(path, what);
  const stream = fh.createReadStream({ highWaterMark: 1 << 20 });
  return { stream, verifier: new VerifyingStream(d, what, path), path };
}

/**
 * Checks a whole blob file against its descriptor, for the error path: when decompression or the
 * tar fails, a blob that does not match its digest is the cause worth reporting.
 * @returns the mismatch error, or null when the blob is as described.
 */
export async function checkBlobFile(layoutDir: string, d: Descriptor, what: string): Promise<VeritreeError | null> {
  const path = blobPath(layoutDir, d.digest, what);
  const hash = createHash('sha256');
  let size = 0;
  try {
    const fh = await openLayoutFile(path, what);
    // Only as far as the descriptor promised (and one byte more): a huge or endless file is not read whole.
    for await (const chunk of fh.createReadStream({ highWaterMark: 1 << 20, end: d.size })) {
      size += (chunk as Buffer).length;
      hash.update(chunk as Buffer);
    }
  } catch (e) {
    return e instanceof VeritreeError ? e : missing(path, what, e);
  }
  if (size !== d.size) return sizeMismatch(what, d, size, path);
  const found = hash.digest('hex');
  return found === digestHex(d.digest, what) ? null : mismatch(what, d, found, path);
}
