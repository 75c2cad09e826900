/**
 * Splits a layer tar into what stays inline in its split stream (headers, PAX and long-name
 * records, padding, small files, the end-of-archive blocks and any trailing bytes) and the
 * contents that become objects (every file over 64 bytes). Every byte goes to exactly one of
 * the two, in order, so the stream rebuilds the tar byte for byte.
 *
 * Layers come from the wild: paths like `../x` or `/x`, and entries beneath a symlink, are kept
 * (the bytes must round-trip) and reported as warnings; nothing here writes a path anywhere. A
 * tar that ends without its end-of-archive blocks or without the last file's padding (umoci
 * 0.4.7's `insert` writes those; Go's reader accepts them) imports with a warning.
 * @module
 */
import { posix } from 'node:path';
import { ERROR_CODES, VeritreeError, throwIfAborted } from '../errors.ts';
import { INLINE_MAX } from '../verity/constants.ts';
import { ChunkReader } from './chunk-reader.ts';
import { byteString, quoted } from './names.ts';
import { TAR_BLOCK, TYPE, decodeHeader, decodePax, isMetaType, isRegularType, isZeroBlock, type TarHeader } from './tar-header.ts';

/** tar-stream buffers PAX headers without a cap; we cap metadata records. */
export const MAX_META_BYTES = 1 << 20;
/** Bytes after the end-of-archive blocks kept inline (GNU tar pads to 10 KiB records). */
export const MAX_TRAILING_BYTES = 16 << 20;

export interface TarEntry {
  /** The path as the archive names it (after PAX / GNU long names). */
  path: string;
  linkpath: string;
  typeflag: string;
  size: number;
  /** Offset of the entry's header in the tar. */
  offset: number;
  header: TarHeader;
  pax: ReadonlyMap<string, string>;
}

export type TarWarningCode = 'TAR_PATH_UNSAFE' | 'TAR_BENEATH_SYMLINK' | 'TAR_NO_END' | 'TAR_UNPADDED' | 'TAR_TRAILING_DATA' | 'TAR_UNKNOWN_TYPE';

export interface SplitSink {
  /** Bytes kept inline; a returned promise is awaited before the next read (backpressure). */
  inline(bytes: Uint8Array): void | Promise<void>;
  /** A content to store as an object: consume `content` (exactly `entry.size` bytes) to its end. */
  external(entry: TarEntry, content: AsyncIterable<Uint8Array>): Promise<void>;
  /** Every entry that is not a metadata record, before its content (fuzzing compares these). */
  entry?(entry: TarEntry): void;
  /** Small files' contents, inline (they are also passed here so callers can count them). */
  smallFile?(entry: TarEntry): void;
  warn(code: TarWarningCode, message: string): void;
  /** Checked before every entry. */
  signal?: AbortSignal | undefined;
}

export interface SplitStats {
  entries: number;
  externalFiles: number;
  inlineFiles: number;
  tarBytes: number;
}

function unsafePath(p: string): boolean {
  if (p.startsWith('/')) return true;
  return p.split('/').includes('..');
}

function clean(p: string): string {
  const n = posix.normalize(p.replace(/^\/+/, ''));
  return n === '.' ? '' : n.replace(/\/$/, '');
}

/** Tracks symlinks seen so far, to warn about entries that would be created beneath one. */
class SymlinkWatch {
  private readonly links = new Set<string>();

  note(entry: TarEntry): string | null {
    const p = clean(entry.path);
    let hit: string | null = null;
    const parts = p.split('/');
    for (let i = 1; i < parts.length && !hit; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (this.links.has(prefix)) hit = prefix;
    }
    if (entry.typeflag === TYPE.symlink) this.links.add(p);
    else this.links.delete(p);
    return hit;
  }
}

const KNOWN_TYPES = new Set<string>([TYPE.file, TYPE.oldFile, TYPE.hardlink, TYPE.symlink, TYPE.char, TYPE.block, TYPE.dir, TYPE.fifo, TYPE.contiguous]);

/**
 * Sparse files are refused, in every GNU encoding: the old `S` type, and PAX 0.0, 0.1 and 1.0
 * (`GNU.sparse.*` records). Their content in the tar is a map plus the data runs, not the file,
 * so storing it as an object would name the wrong bytes; composefs-rs refuses them too (see
 * docs/merge.md). No OCI builder writes them; GNU tar does only when asked (`--sparse`).
 * @throws VeritreeError TAR_UNSUPPORTED
 */
function refuseSparse(h: TarHeader, pax: ReadonlyMap<string, string>, path: string, at: number): void {
  let how: string | null = null;
  if (h.typeflag === TYPE.gnuSparse) how = "the old GNU type 'S'";
  else {
    for (const k of pax.keys()) {
      if (!k.startsWith('GNU.sparse.')) continue;
      const major = pax.get('GNU.sparse.major');
      const minor = pax.get('GNU.sparse.minor');
      how = major !== undefined ? `PAX sparse format ${major}.${minor ?? '?'}` : pax.has('GNU.sparse.map') ? 'PAX sparse format 0.1' : 'PAX sparse format 0.0';
      break;
    }
  }
  if (how === null) return;
  throw new VeritreeError(
    ERROR_CODES.TAR_UNSUPPORTED,
    `entry ${quoted(path)} at offset ${at} is a sparse file (${how}); veritree does not import sparse files (neither does composefs-rs): rebuild the layer without tar --sparse`
  );
}

async function readMeta(r: ChunkReader, size: number, at: number): Promise<Uint8Array> {
  if (size > MAX_META_BYTES) {
    throw new VeritreeError(ERROR_CODES.TAR_LIMIT_EXCEEDED, `tar metadata record at offset ${at} is ${size} bytes (limit ${MAX_META_BYTES})`);
  }
  const b = await r.exact(size);
  if (b.length < size) throw truncated(`a metadata record at offset ${at}`);
  return b;
}

function truncated(what: string): VeritreeError {
  return new VeritreeError(ERROR_CODES.TAR_CORRUPT, `layer tar is truncated: it ends inside ${what}`);
}

/** Runs the whole tar through `sink`. @throws VeritreeError TAR_CORRUPT / TAR_LIMIT_EXCEEDED */
export async function splitTar(source: AsyncIterable<Uint8Array>, sink: SplitSink): Promise<SplitStats> {
  const r = new ChunkReader(source);
  try {
    return await split(r, sink);
  } finally {
    // An error part-way must not leave the source (and the blob it reads) open.
    await r.close();
  }
}

async function split(r: ChunkReader, sink: SplitSink): Promise<SplitStats> {
  const emit = async (b: Uint8Array): Promise<void> => {
    const p = sink.inline(b);
    if (p) await p;
  };
  const stats: SplitStats = { entries: 0, externalFiles: 0, inlineFiles: 0, tarBytes: 0 };
  const watch = new SymlinkWatch();
  let pax = new Map<string, string>();
  let longName: string | null = null;
  let longLink: string | null = null;

  for (;;) {
    throwIfAborted(sink.signal);
    const at = r.offset;
    const block = await r.exact(TAR_BLOCK);
    if (block.length === 0) {
      sink.warn('TAR_NO_END', 'layer tar ends without its end-of-archive blocks');
      break;
    }
    if (block.length < TAR_BLOCK) {
      await emit(block);
      if (!isZeroBlock(block)) throw truncated(`a header at offset ${at}`);
      sink.warn('TAR_NO_END', 'layer tar ends inside its end-of-archive blocks');
      break;
    }
    await emit(block);
    if (isZeroBlock(block)) {
      const rest = await r.rest(MAX_TRAILING_BYTES);
      if (rest === null) throw new VeritreeError(ERROR_CODES.TAR_LIMIT_EXCEEDED, `more than ${MAX_TRAILING_BYTES} bytes follow the end of the layer tar`);
      await emit(rest);
      if (rest.length < TAR_BLOCK) sink.warn('TAR_NO_END', 'layer tar has one end-of-archive block, not two');
      else if (!isZeroBlock(rest)) sink.warn('TAR_TRAILING_DATA', `${rest.length} bytes after the end of the layer tar are not zero`);
      break;
    }
    const h = decodeHeader(block, at);
    refuseSparse(h, pax, pax.get('path') ?? longName ?? h.name, at);
    const sizeOverride = pax.get('size');
    const size = sizeOverride !== undefined && !isMetaType(h.typeflag) ? Number(sizeOverride) : h.size;
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new VeritreeError(ERROR_CODES.TAR_LIMIT_EXCEEDED, `tar entry at offset ${at}: size ${String(sizeOverride)} is not a usable number`);
    }

    if (isMetaType(h.typeflag)) {
      const meta = await readMeta(r, size, at);
      await emit(meta);
      if (h.typeflag === TYPE.paxNext) pax = decodePax(meta, at);
      else if (h.typeflag === TYPE.gnuLongName) longName = byteString(meta);
      else if (h.typeflag === TYPE.gnuLongLink) longLink = byteString(meta);
      else decodePax(meta, at); // global records: validated, applied by nobody (OCI layers do not rely on them)
    } else {
      const entry: TarEntry = {
        path: pax.get('path') ?? longName ?? h.name,
        linkpath: pax.get('linkpath') ?? longLink ?? h.linkname,
        typeflag: h.typeflag,
        size,
        offset: at,
        header: h,
        pax,
      };
      stats.entries++;
      sink.entry?.(entry);
      if (!KNOWN_TYPES.has(h.typeflag)) {
        sink.warn('TAR_UNKNOWN_TYPE', `entry ${quoted(entry.path)} at offset ${at} has the unknown type ${JSON.stringify(h.typeflag)}: kept in the layer's stream, left out of checkouts and dumps`);
      }
      if (unsafePath(entry.path)) sink.warn('TAR_PATH_UNSAFE', `entry ${quoted(entry.path)} at offset ${at} points outside the image root`);
      const beneath = watch.note(entry);
      if (beneath !== null) sink.warn('TAR_BENEATH_SYMLINK', `entry ${quoted(entry.path)} at offset ${at} lies beneath the symlink ${quoted(beneath)}`);

      if (size > INLINE_MAX && (isRegularType(h.typeflag) || size > MAX_META_BYTES)) {
        await storeExternal(r, sink, entry);
        stats.externalFiles++;
      } else {
        const content = await r.exact(size);
        await emit(content);
        if (content.length < size) throw truncated(`the content of ${quoted(entry.path)} (${content.length} of ${size} bytes)`);
        if (isRegularType(h.typeflag)) {
          stats.inlineFiles++;
          sink.smallFile?.(entry);
        }
      }
      pax = new Map();
      longName = null;
      longLink = null;
    }
    const pad = (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
    if (pad) {
      const p = await r.exact(pad);
      await emit(p);
      if (p.length < pad) {
        sink.warn('TAR_UNPADDED', `the last entry of the layer tar is not padded to a 512-byte block`);
        break;
      }
    }
  }
  stats.tarBytes = r.offset;
  return stats;
}

async function storeExternal(r: ChunkReader, sink: SplitSink, entry: TarEntry): Promise<void> {
  let got = 0;
  async function* counted(): AsyncGenerator<Uint8Array> {
    for await (const v of r.views(entry.size)) {
      got += v.length;
      yield v;
    }
  }
  await sink.external(entry, counted());
  // A sink that stopped early must not desynchronise the parser.
  for await (const v of r.views(entry.size - got)) got += v.length;
  if (got < entry.size) throw truncated(`the content of ${quoted(entry.path)} (${got} of ${entry.size} bytes)`);
}
