/**
 * The files of an OCI image layout, wherever the layout lies: a folder (`oci:DIR`), or one tar of
 * it (`oci-archive:FILE`), read in place. Either way a file is opened as a region: a descriptor,
 * where the file starts in it, and how long it is. Everything above reads regions, so the blob
 * checks are the same code for both.
 * @module
 */
import { constants as fsc } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { ERROR_CODES, VeritreeError, errnoCode } from '../errors.ts';
import { describeKind } from '../store/sys.ts';

/** Where one layout file lies in an oci-archive. */
export interface ArchiveEntry {
  /** Where the file's bytes start in the archive. */
  start: number;
  size: number;
}

/** An oci-archive as scanOciArchive (archive.ts) found it: the layout files in it, and its identity. */
export class OciArchive {
  readonly path: string;
  /** By layout name ('index.json', 'blobs/sha256/HEX'). */
  readonly entries: ReadonlyMap<string, ArchiveEntry>;
  /** The archive as scanned: a region is read only from the same file, unchanged. */
  readonly identity: { dev: number; ino: number; size: number; mtimeMs: number };

  constructor(path: string, entries: ReadonlyMap<string, ArchiveEntry>, identity: OciArchive['identity']) {
    this.path = path;
    this.entries = entries;
    this.identity = identity;
  }
}

/** A folder (its path), or an archive scanned by `scanOciArchive` (archive.ts). */
export type LayoutLocation = string | OciArchive;

export interface LayoutRegion {
  fh: FileHandle;
  /** For messages: the file, or `ARCHIVE:NAME` for a file inside an archive. */
  path: string;
  start: number;
  /**
   * The file's length, when it is fixed: an archive's entry ends where the next begins. Null for a
   * folder's file, which is read to its end, so that a file longer than its descriptor is caught
   * at the first extra byte however it grew.
   */
  bound: number | null;
}

/** The region's length: its bound, or for a folder's file, its size now. */
export async function regionSize(region: LayoutRegion): Promise<number> {
  return region.bound ?? (await region.fh.stat()).size;
}

/** A short name for the layout: the folder's, or the archive's without `.tar`. */
export function layoutLabel(layout: LayoutLocation): string {
  return typeof layout === 'string' ? basename(resolve(layout)) : basename(layout.path).replace(/\.tar$/, '');
}

function blobMissing(path: string, what: string, cause?: unknown): VeritreeError {
  return new VeritreeError(ERROR_CODES.OCI_BLOB_MISSING, `${what}: blob ${path} is missing`, { path, cause });
}

export function missing(path: string, what: string, e: unknown): VeritreeError {
  if (errnoCode(e) === 'ENOENT') return blobMissing(path, what, e);
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

/**
 * Opens `name` ('oci-layout', 'index.json', 'blobs/sha256/HEX') of the layout. The caller closes
 * the descriptor.
 * @throws VeritreeError OCI_BLOB_MISSING (no such file), OCI_LAYOUT_INVALID (not a regular file;
 *   an archive changed since it was scanned)
 */
export async function openInLayout(layout: LayoutLocation, name: string, what: string): Promise<LayoutRegion> {
  if (typeof layout === 'string') {
    const path = join(layout, name);
    return { fh: await openLayoutFile(path, what), path, start: 0, bound: null };
  }
  const path = `${layout.path}:${name}`;
  const entry = layout.entries.get(name);
  // The scan made sure of oci-layout and index.json: what can be missing here is a blob.
  if (!entry) throw blobMissing(path, what);
  const fh = await openLayoutFile(layout.path, what);
  try {
    // The offsets are the scan's: a file replaced or rewritten since would be read at random.
    const st = await fh.stat();
    const was = layout.identity;
    if (st.dev !== was.dev || st.ino !== was.ino || st.size !== was.size || st.mtimeMs !== was.mtimeMs) {
      throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${what}: ${layout.path} changed while it was being imported`, { path: layout.path });
    }
  } catch (e) {
    await fh.close();
    throw e;
  }
  return { fh, path, start: entry.start, bound: entry.size };
}
