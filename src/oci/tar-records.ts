/**
 * The tar record state machine, one for the whole program: the splitter (import) and the merge
 * (checkout, dump) both drive it, so they cannot disagree on what an entry is. Header blocks go
 * in; out come the end of the archive, a metadata record to read (PAX `x` and `g`, GNU long
 * names `L` and `K`), or an entry with the PAX records and long names before it applied (path,
 * linkpath, size). Pure and synchronous: each caller reads bytes its own way (a stream, a split
 * stream's inline chunks) and hands over what it read. Names are byte strings (names.ts).
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { byteString } from './names.ts';
import { TAR_BLOCK, TYPE, decodeHeader, decodePaxRaw, isMetaType, isZeroBlock, type TarHeader } from './tar-header.ts';

/** tar-stream buffers PAX headers without a cap; we cap metadata records. */
export const MAX_META_BYTES = 1 << 20;

export interface TarEntry {
  /** The path as the archive names it (after PAX / GNU long names), a byte string. */
  path: string;
  linkpath: string;
  typeflag: string;
  /** Content bytes that follow the header (a PAX `size` applied). */
  size: number;
  /** Offset of the entry's header in the tar. */
  offset: number;
  header: TarHeader;
  /** The PAX records that applied to this entry, values as bytes. */
  pax: ReadonlyMap<string, Buffer>;
}

export type TarRecord =
  | { kind: 'end' }
  /** Read `size` bytes of content (then the padding) and hand them to `meta()`. */
  | { kind: 'meta'; typeflag: string; size: number; offset: number }
  | { kind: 'entry'; entry: TarEntry };

/** Zero bytes after `size` bytes of content, to the next 512-byte block. */
export function paddingOf(size: number): number {
  return (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
}

/** The PAX records of an entry that had none: one shared empty map, not one per entry. */
const NO_PAX: ReadonlyMap<string, Buffer> = new Map();

export class TarRecords {
  private pax: ReadonlyMap<string, Buffer> = NO_PAX;
  private longName: string | null = null;
  private longLink: string | null = null;

  /**
   * Classifies the header block found at `offset`.
   * @throws VeritreeError TAR_CORRUPT (checksum, numbers), TAR_LIMIT_EXCEEDED (a metadata record
   *   over MAX_META_BYTES, a size that is not a number), TAR_UNSUPPORTED (a sparse file)
   */
  next(block: Uint8Array, offset: number): TarRecord {
    if (isZeroBlock(block)) return { kind: 'end' };
    const h = decodeHeader(block, offset);
    const path = this.pax.get('path')?.toString('latin1') ?? this.longName ?? h.name;
    refuseSparse(h, this.pax, path, offset);
    if (isMetaType(h.typeflag)) {
      if (h.size > MAX_META_BYTES) {
        throw new VeritreeError(ERROR_CODES.TAR_LIMIT_EXCEEDED, `tar metadata record at offset ${offset} is ${h.size} bytes (limit ${MAX_META_BYTES})`);
      }
      return { kind: 'meta', typeflag: h.typeflag, size: h.size, offset };
    }
    const sizeOverride = this.pax.get('size')?.toString('latin1');
    const size = sizeOverride !== undefined ? Number(sizeOverride) : h.size;
    if (!Number.isSafeInteger(size) || size < 0 || (sizeOverride !== undefined && !/^\d+$/.test(sizeOverride))) {
      throw new VeritreeError(ERROR_CODES.TAR_LIMIT_EXCEEDED, `tar entry at offset ${offset}: size ${String(sizeOverride)} is not a usable number`);
    }
    const entry: TarEntry = {
      path,
      linkpath: this.pax.get('linkpath')?.toString('latin1') ?? this.longLink ?? h.linkname,
      typeflag: h.typeflag,
      size,
      offset,
      header: h,
      pax: this.pax,
    };
    this.pax = NO_PAX;
    this.longName = null;
    this.longLink = null;
    return { kind: 'entry', entry };
  }

  /** The content of the metadata record `next()` returned. @throws VeritreeError TAR_CORRUPT */
  meta(rec: { typeflag: string; offset: number }, content: Uint8Array): void {
    if (rec.typeflag === TYPE.paxNext) this.pax = decodePaxRaw(content, rec.offset);
    else if (rec.typeflag === TYPE.gnuLongName) this.longName = byteString(content);
    else if (rec.typeflag === TYPE.gnuLongLink) this.longLink = byteString(content);
    else decodePaxRaw(content, rec.offset); // global records: validated, applied by nobody (OCI layers do not rely on them)
  }
}

/**
 * Sparse files are refused, in every GNU encoding: the old `S` type, and PAX 0.0, 0.1 and 1.0
 * (`GNU.sparse.*` records). Their content in the tar is a map plus the data runs, not the file,
 * so storing it as an object would name the wrong bytes; composefs-rs refuses them too (see
 * docs/merge.md). No OCI builder writes them; GNU tar does only when asked (`--sparse`).
 * @throws VeritreeError TAR_UNSUPPORTED
 */
function refuseSparse(h: TarHeader, pax: ReadonlyMap<string, Buffer>, path: string, at: number): void {
  let how: string | null = null;
  if (h.typeflag === TYPE.gnuSparse) how = "the old GNU type 'S'";
  else {
    for (const k of pax.keys()) {
      if (!k.startsWith('GNU.sparse.')) continue;
      const major = pax.get('GNU.sparse.major')?.toString('latin1');
      const minor = pax.get('GNU.sparse.minor')?.toString('latin1');
      how = major !== undefined ? `PAX sparse format ${major}.${minor ?? '?'}` : pax.has('GNU.sparse.map') ? 'PAX sparse format 0.1' : 'PAX sparse format 0.0';
      break;
    }
  }
  if (how === null) return;
  throw new VeritreeError(
    ERROR_CODES.TAR_UNSUPPORTED,
    `entry ${JSON.stringify(Buffer.from(path, 'latin1').toString('utf8'))} at offset ${at} is a sparse file (${how}); veritree does not import sparse files (neither does composefs-rs): rebuild the layer without tar --sparse`
  );
}
