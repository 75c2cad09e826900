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
import { quoted } from './names.ts';
import { TAR_BLOCK, TYPE, isRegularType, isZeroBlock } from './tar-header.ts';
import { MAX_META_BYTES, TarRecords, paddingOf, type TarEntry } from './tar-records.ts';

export type { TarEntry } from './tar-records.ts';

/** Bytes after the end-of-archive blocks kept inline (GNU tar pads to 10 KiB records). */
export const MAX_TRAILING_BYTES = 16 << 20;

export type TarWarningCode = 'TAR_PATH_UNSAFE' | 'TAR_BENEATH_SYMLINK' | 'TAR_NO_END' | 'TAR_UNPADDED' | 'TAR_TRAILING_DATA' | 'TAR_UNKNOWN_TYPE';

export interface SplitSink {
  /** Bytes kept inline; a returned promise is awaited before the next read (backpressure). */
  inline(bytes: Uint8Array): void | Promise<void>;
  /** A content to store as an object: consume `content` (exactly `entry.size` bytes) to its end. */
  external(entry: TarEntry, content: AsyncIterable<Uint8Array>): Promise<void>;
  /**
   * The same, for a content that lies whole in the chunk in hand: `bytes` is all of it, a view
   * that stays valid (see ChunkReader). Without it, every content goes to `external`.
   */
  externalBytes?(entry: TarEntry, bytes: Uint8Array): void | Promise<void>;
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

/** A path with a leading or trailing slash, an empty component, or a `.` or `..` component. */
const IRREGULAR = /^\/|\/$|\/\/|(^|\/)\.\.?(\/|$)/;

/**
 * The path's components once cleaned, and whether it points outside the root. Most paths are
 * already clean (no `..`, no `//`, no leading slash): one split, no normalising.
 */
function pathFacts(p: string): { parts: string[]; unsafe: boolean } {
  if (!IRREGULAR.test(p)) return { parts: p.split('/'), unsafe: false };
  return { parts: clean(p).split('/'), unsafe: unsafePath(p) };
}

interface LinkNode {
  link: boolean;
  kids: Map<string, LinkNode> | null;
}

/**
 * Tracks symlinks seen so far, to warn about entries that would be created beneath one. A tree of
 * path components, so that checking an entry costs one lookup per component: a path 10,000
 * folders deep is not 10,000 prefixes hashed whole.
 */
class SymlinkWatch {
  private readonly root: LinkNode = { link: false, kids: null };

  /** `parts`: the entry's cleaned path components (pathFacts). */
  note(entry: TarEntry, parts: string[]): string | null {
    let node: LinkNode | undefined = this.root;
    let hit: string | null = null;
    for (let i = 0; i < parts.length - 1 && node; i++) {
      node = node.kids?.get(parts[i] as string);
      if (node?.link) {
        hit = parts.slice(0, i + 1).join('/');
        break;
      }
    }
    if (entry.typeflag === TYPE.symlink) {
      let at = this.root;
      for (const part of parts) {
        at.kids ??= new Map();
        let next = at.kids.get(part);
        if (!next) at.kids.set(part, (next = { link: false, kids: null }));
        at = next;
      }
      at.link = true;
    } else if (this.root.kids) {
      let at: LinkNode | undefined = this.root;
      for (let i = 0; i < parts.length && at; i++) at = at.kids?.get(parts[i] as string);
      if (at) at.link = false;
    }
    return hit;
  }
}

const KNOWN_TYPES = new Set<string>([TYPE.file, TYPE.oldFile, TYPE.hardlink, TYPE.symlink, TYPE.char, TYPE.block, TYPE.dir, TYPE.fifo, TYPE.contiguous]);

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
  // Each step takes the synchronous path when the chunk in hand holds the bytes and the sink does
  // not push back: a layer of 100,000 small files must not cost a promise per header and pad.
  const emit = async (b: Uint8Array): Promise<void> => {
    const p = sink.inline(b);
    if (p) await p;
  };
  const stats: SplitStats = { entries: 0, externalFiles: 0, inlineFiles: 0, tarBytes: 0 };
  const watch = new SymlinkWatch();
  const records = new TarRecords();

  for (;;) {
    throwIfAborted(sink.signal);
    const at = r.offset;
    let block = r.view(TAR_BLOCK);
    if (block === null) {
      block = await r.exact(TAR_BLOCK);
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
    }
    const pb = sink.inline(block);
    if (pb) await pb;
    if (isZeroBlock(block)) {
      const rest = await r.rest(MAX_TRAILING_BYTES);
      if (rest === null) throw new VeritreeError(ERROR_CODES.TAR_LIMIT_EXCEEDED, `more than ${MAX_TRAILING_BYTES} bytes follow the end of the layer tar`);
      await emit(rest);
      if (rest.length < TAR_BLOCK) sink.warn('TAR_NO_END', 'layer tar has one end-of-archive block, not two');
      else if (!isZeroBlock(rest)) sink.warn('TAR_TRAILING_DATA', `${rest.length} bytes after the end of the layer tar are not zero`);
      break;
    }
    const rec = records.next(block, at);
    if (rec.kind === 'end') throw new Error('unreachable: zero blocks are handled above');
    let size: number;
    if (rec.kind === 'meta') {
      size = rec.size;
      const meta = r.view(size) ?? (await r.exact(size));
      await emit(meta);
      if (meta.length < size) throw truncated(`a metadata record at offset ${at}`);
      records.meta(rec, meta);
    } else {
      const entry = rec.entry;
      const h = entry.header;
      size = entry.size;
      stats.entries++;
      sink.entry?.(entry);
      if (!KNOWN_TYPES.has(h.typeflag)) {
        sink.warn('TAR_UNKNOWN_TYPE', `entry ${quoted(entry.path)} at offset ${at} has the unknown type ${JSON.stringify(h.typeflag)}: kept in the layer's stream, left out of checkouts and dumps`);
      }
      const facts = pathFacts(entry.path);
      if (facts.unsafe) sink.warn('TAR_PATH_UNSAFE', `entry ${quoted(entry.path)} at offset ${at} points outside the image root`);
      const beneath = watch.note(entry, facts.parts);
      if (beneath !== null) sink.warn('TAR_BENEATH_SYMLINK', `entry ${quoted(entry.path)} at offset ${at} lies beneath the symlink ${quoted(beneath)}`);

      if (size > INLINE_MAX && (isRegularType(h.typeflag) || size > MAX_META_BYTES)) {
        const whole = sink.externalBytes ? r.view(size) : null;
        if (whole) {
          const p = sink.externalBytes?.(entry, whole);
          if (p) await p;
        } else await storeExternal(r, sink, entry);
        stats.externalFiles++;
      } else {
        const content = r.view(size) ?? (await r.exact(size));
        const pc = sink.inline(content);
        if (pc) await pc;
        if (content.length < size) throw truncated(`the content of ${quoted(entry.path)} (${content.length} of ${size} bytes)`);
        if (isRegularType(h.typeflag)) {
          stats.inlineFiles++;
          sink.smallFile?.(entry);
        }
      }
    }
    const pad = paddingOf(size);
    if (pad) {
      const p = r.view(pad) ?? (await r.exact(pad));
      const pp = sink.inline(p);
      if (pp) await pp;
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
