/**
 * The tar entries of a layer, read from its split stream without reading any object: headers
 * and small contents are in the inline chunks; a content stored as an object is one object
 * chunk, named by its id. The merge needs metadata only.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { TAR_BLOCK, TYPE, isRegularType } from '../oci/tar-header.ts';
import { TarRecords, paddingOf, type TarEntry } from '../oci/tar-records.ts';
import type { StreamChunk } from '../store/splitstream.ts';
import { readRefs, SplitStreamReader } from '../store/splitstream-reader.ts';

export type EntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export interface LayerEntry {
  /** As the archive names it (after PAX / GNU long names). */
  rawPath: string;
  type: EntryType;
  /** Permission bits with setuid/setgid/sticky (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  mtimeSec: number;
  mtimeNsec: number;
  size: number;
  object: string | null;
  inline: Uint8Array | null;
  linkname: string;
  devmajor: number;
  devminor: number;
  xattrs: Map<string, Buffer>;
}

const XATTR_PREFIX = 'SCHILY.xattr.';

function typeOf(flag: string): EntryType | null {
  if (isRegularType(flag)) return 'file';
  switch (flag) {
    case TYPE.dir:
      return 'dir';
    case TYPE.symlink:
      return 'symlink';
    case TYPE.hardlink:
      return 'hardlink';
    case TYPE.char:
      return 'char';
    case TYPE.block:
      return 'block';
    case TYPE.fifo:
      return 'fifo';
    default:
      return null;
  }
}

function parseMtime(pax: string | undefined, fallback: number): [number, number] {
  if (!pax) return [fallback, 0];
  const m = /^(-?\d+)(?:\.(\d{1,9})\d*)?$/.exec(pax);
  if (!m) return [fallback, 0];
  const sec = Number(m[1]);
  const frac = Number((m[2] ?? '').padEnd(9, '0'));
  // "-1.5" is a second and a half before 1970 (as Go's archive/tar reads it): -2 s + 0.5 s.
  if ((m[1] as string).startsWith('-') && frac > 0) return [sec - 1, 1e9 - frac];
  return [sec, frac];
}

/**
 * Reads bytes across inline chunks, object chunks taken whole, from the stream section decoded
 * run by run (SplitStreamReader.chunkRuns): what is held is the current run and what is left of the one
 * before, never the whole section (a layer of a million files inflates to over 600 MB).
 */
class Cursor {
  private chunks: StreamChunk[] = [];
  private chunk = 0;
  private off = 0;
  private ended = false;
  private readonly runs: AsyncIterator<StreamChunk[]>;
  private readonly objectRefs: string[];

  constructor(runs: AsyncIterable<StreamChunk[]>, objectRefs: string[]) {
    this.runs = runs[Symbol.asyncIterator]();
    this.objectRefs = objectRefs;
  }

  /** Holds the next `n` inline bytes, or up to the next object chunk or the end of the stream. */
  async want(n: number): Promise<void> {
    for (;;) {
      let have = -this.off;
      for (let k = this.chunk; k < this.chunks.length; k++) {
        const c = this.chunks[k] as StreamChunk;
        if (c.kind !== 'inline') return;
        have += c.bytes.length;
        if (have >= n) return;
      }
      if (this.ended) return;
      const r = await this.runs.next();
      if (r.done === true) {
        this.ended = true;
        return;
      }
      this.chunks = this.chunks.slice(this.chunk).concat(r.value);
      this.chunk = 0;
    }
  }

  async atEnd(): Promise<boolean> {
    await this.want(1);
    this.skipEmpty();
    return this.chunk >= this.chunks.length;
  }

  private skipEmpty(): void {
    for (;;) {
      const c = this.chunks[this.chunk];
      if (!c || c.kind !== 'inline' || this.off < c.bytes.length) return;
      this.chunk++;
      this.off = 0;
    }
  }

  /** The object id if the next chunk is an object (at an inline boundary). */
  async nextObject(): Promise<string | null> {
    await this.want(1);
    this.skipEmpty();
    const c = this.chunks[this.chunk];
    if (c?.kind !== 'object') return null;
    this.chunk++;
    this.off = 0;
    return this.objectRefs[c.index] ?? null;
  }

  /** Up to n inline bytes (fewer only at the end of the stream); a copy when they span chunks. */
  async take(n: number): Promise<Uint8Array> {
    await this.want(n);
    this.skipEmpty();
    const first = this.chunks[this.chunk];
    if (first?.kind === 'inline' && first.bytes.length - this.off >= n) {
      const out = first.bytes.subarray(this.off, this.off + n);
      this.off += n;
      return out;
    }
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      this.skipEmpty();
      const c = this.chunks[this.chunk];
      if (!c) break;
      if (c.kind !== 'inline') throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, 'layer stream: an object where tar bytes were expected');
      const k = Math.min(n - got, c.bytes.length - this.off);
      out.set(c.bytes.subarray(this.off, this.off + k), got);
      this.off += k;
      got += k;
    }
    return got === n ? out : out.subarray(0, got);
  }

  /** Skips n inline bytes. */
  async skip(n: number): Promise<void> {
    if (n > 0) await this.take(n);
  }
}

/**
 * Every entry of a layer, in archive order (the same record machine as the splitter's), from its
 * split stream's bytes (as stored: the stream section is decoded as it is read). An entry's
 * inline content is a view of the decoded run: copy it to keep it.
 */
export async function* layerEntries(stream: Uint8Array): AsyncGenerator<LayerEntry> {
  const cur = new Cursor(new SplitStreamReader(stream).chunkRuns(), readRefs(stream).objectRefs);
  const records = new TarRecords();
  for (let at = 0; !(await cur.atEnd()); ) {
    const block = await cur.take(TAR_BLOCK);
    if (block.length < TAR_BLOCK) return;
    const rec = records.next(block, at);
    at += TAR_BLOCK;
    if (rec.kind === 'end') return;
    if (rec.kind === 'meta') {
      // A copy: PAX values (xattrs) are views of it, and would keep the whole decoded run alive.
      records.meta(rec, (await cur.take(rec.size)).slice());
      await cur.skip(paddingOf(rec.size));
      at += rec.size + paddingOf(rec.size);
      continue;
    }
    const e = rec.entry;
    const h = e.header;
    let content: Uint8Array | null = null;
    let object: string | null = null;
    if (e.size > 0) {
      object = await cur.nextObject();
      if (object === null) content = await cur.take(e.size);
    }
    await cur.skip(paddingOf(e.size));
    at += e.size + paddingOf(e.size);
    const type = typeOf(h.typeflag);
    if (!type) continue;
    yield entryOf(e, type, object, content);
  }
}

function entryOf(e: TarEntry, type: EntryType, object: string | null, content: Uint8Array | null): LayerEntry {
  const h = e.header;
  const xattrs = new Map<string, Buffer>();
  for (const [k, v] of e.pax) if (k.startsWith(XATTR_PREFIX)) xattrs.set(k.slice(XATTR_PREFIX.length), v);
  const [mtimeSec, mtimeNsec] = parseMtime(e.pax.get('mtime')?.toString('latin1'), h.mtime);
  const num = (key: string, fallback: number): number => {
    const v = e.pax.get(key)?.toString('latin1');
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : fallback;
  };
  return {
    rawPath: e.path,
    type,
    mode: h.mode & 0o7777,
    uid: num('uid', h.uid),
    gid: num('gid', h.gid),
    mtimeSec,
    mtimeNsec,
    size: type === 'file' ? e.size : 0,
    object,
    inline: type === 'file' ? (content ?? new Uint8Array(0)) : null,
    linkname: e.linkpath,
    devmajor: h.devmajor,
    devminor: h.devminor,
    xattrs,
  };
}
