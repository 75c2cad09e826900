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
import { ERROR_CODES, VeritreeError, throwIfAborted } from '../errors.ts';
import { INLINE_MAX } from '../verity/constants.ts';
import { ChunkReader } from './chunk-reader.ts';
import { quoted } from './names.ts';
import { TAR_BLOCK, TYPE, isRegularType, isZeroBlock } from './tar-header.ts';
import { MAX_META_BYTES, TarRecords, paddingOf, type TarEntry } from './tar-records.ts';
import { pathFacts, SymlinkWatch } from './tar-paths.ts';

export type { TarEntry } from './tar-records.ts';

/** Bytes after the end-of-archive blocks kept inline (GNU tar pads to 10 KiB records). */
export const MAX_TRAILING_BYTES = 16 << 20;

export type TarWarningCode = 'TAR_PATH_UNSAFE' | 'TAR_BENEATH_SYMLINK' | 'TAR_NO_END' | 'TAR_UNPADDED' | 'TAR_TRAILING_DATA' | 'TAR_UNKNOWN_TYPE';

export interface SplitSink {
  /**
   * Bytes kept inline; a returned promise is awaited before the next read (backpressure). `bytes`
   * is a view valid until that promise settles (or, with none, until this returns): its buffer
   * may be reused after (see ChunkReader), so copy what is kept.
   */
  inline(bytes: Uint8Array): void | Promise<void>;
  /**
   * A content to store as an object: consume `content` (exactly `entry.size` bytes) to its end.
   * Each piece is valid until the next is asked for; the last, until the returned promise settles.
   */
  external(entry: TarEntry, content: AsyncIterable<Uint8Array>): Promise<void>;
  /**
   * The same, for a content that lies whole in the chunk in hand: `bytes` is all of it, a view
   * valid until the returned promise settles (or, with none, until this returns): its buffer may
   * be reused after (see ChunkReader). Without it, every content goes to `external`.
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

const KNOWN_TYPES = new Set<string>([TYPE.file, TYPE.oldFile, TYPE.hardlink, TYPE.symlink, TYPE.char, TYPE.block, TYPE.dir, TYPE.fifo, TYPE.contiguous]);

function truncated(what: string): VeritreeError {
  return new VeritreeError(ERROR_CODES.TAR_CORRUPT, `layer tar is truncated: it ends inside ${what}`);
}

/**
 * Runs the whole tar through `sink`. With `release`, each chunk of `source` is released once the
 * splitter has moved past it (ChunkReader): a sink copies what it keeps before its promise
 * settles, and the splitter reads nothing while a sink's promise is pending.
 * @throws VeritreeError TAR_CORRUPT / TAR_LIMIT_EXCEEDED
 */
export async function splitTar(source: AsyncIterable<Uint8Array>, sink: SplitSink, release?: (chunk: Uint8Array) => void): Promise<SplitStats> {
  const r = new ChunkReader(source, release);
  try {
    return await split(r, sink);
  } finally {
    // An error part-way must not leave the source (and the blob it reads) open.
    await r.close();
  }
}

/**
 * The driver: the splitter runs synchronously for as long as the chunk in hand holds the bytes and
 * the sink does not push back; only then does this loop await (the sink's promise, or one step of
 * the slow path that reads across chunks). The loop that walks entries is a plain function, not an
 * async one: V8 compiled the async version (a generator, a resume point at every await) 4 to 6
 * times per import at 50-120 ms of a core each (docs/performance.md).
 */
async function split(r: ChunkReader, sink: SplitSink): Promise<SplitStats> {
  const s = new Splitter(r, sink);
  // Abort is heard as an event and checked as a flag at each entry: reading `signal.aborted`
  // per entry cost a getter call on an AbortSignal whose hidden class varies from layer to
  // layer (listeners come and go), and the loop's optimised code was thrown away for it.
  const signal = sink.signal;
  throwIfAborted(signal);
  const onAbort = (): void => s.stop();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    while (!s.finished) {
      const p = s.run();
      if (p) await p;
      else if (!s.finished) await s.slowStep();
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  s.stats.tarBytes = r.offset;
  return s.stats;
}

/**
 * Where the splitter is in a record; a promise the sink returned is awaited between two phases.
 * Plain numbers, not the names of an object's properties: a `switch` over small integer literals
 * is a jump table, and a case label that reads a property is one more place V8's optimised code
 * gives up on ("insufficient type feedback") the first time a rare record type comes by.
 *
 * | phase | what |
 * |---|---|
 * | 0 header | read a header block and hand it over |
 * | 1 classify | the end-of-archive block, or a record to classify |
 * | 2 meta, 3 metaApply | a metadata record's content, then its decoding |
 * | 4 external | an entry's content stored as an object |
 * | 5 small, 6 smallDone | an entry's content kept inline, then counted |
 * | 7 pad | padding to the next block |
 * | 8 end | what follows the end-of-archive block |
 * | 9 done | |
 */
type Phase = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9;

class Splitter {
  private phase: Phase = 0 /* header */;
  readonly stats: SplitStats = { entries: 0, externalFiles: 0, inlineFiles: 0, tarBytes: 0 };
  private readonly r: ChunkReader;
  private readonly sink: SplitSink;
  private readonly watch = new SymlinkWatch();
  private readonly records = new TarRecords();
  /** The current record: its header's offset, block, content size and what it is. */
  private at = 0;
  private block: Uint8Array | null = null;
  private size = 0;
  private metaRec: { typeflag: string; offset: number } | null = null;
  private metaBytes: Uint8Array | null = null;
  private entry: TarEntry | null = null;
  private stopped = false;

  constructor(r: ChunkReader, sink: SplitSink) {
    this.r = r;
    this.sink = sink;
  }

  /** The sink's signal fired: the next entry throws. */
  stop(): void {
    this.stopped = true;
  }

  get finished(): boolean {
    return this.phase === 9 /* done */;
  }

  /**
   * Runs phases while their bytes lie in the chunk in hand. Returns a promise from the sink, to
   * be awaited before going on, or nothing when the current phase needs `slowStep` (or is done).
   */
  run(): Promise<void> | void {
    const r = this.r;
    const sink = this.sink;
    for (;;) {
      switch (this.phase) {
        case 0 /* header */: {
          if (this.stopped) throwIfAborted(sink.signal);
          const at = r.offset;
          const block = r.view(TAR_BLOCK);
          if (block === null) return;
          this.at = at;
          this.block = block;
          this.phase = 1 /* classify */;
          const p = sink.inline(block);
          if (p) return p;
          break;
        }
        case 1 /* classify */:
          this.classify();
          break;
        case 2 /* meta */: {
          const meta = r.view(this.size);
          if (meta === null) return;
          this.metaBytes = meta;
          this.phase = 3 /* metaApply */;
          const p = sink.inline(meta);
          if (p) return p;
          break;
        }
        case 3 /* metaApply */:
          this.records.meta(this.metaRec as { typeflag: string; offset: number }, this.metaBytes as Uint8Array);
          this.metaBytes = null;
          this.phase = 7 /* pad */;
          break;
        case 4 /* external */: {
          const whole = sink.externalBytes ? r.view(this.size) : null;
          if (whole === null) return;
          this.stats.externalFiles++;
          this.phase = 7 /* pad */;
          const p = sink.externalBytes?.(this.entry as TarEntry, whole);
          if (p) return p;
          break;
        }
        case 5 /* small */: {
          const content = r.view(this.size);
          if (content === null) return;
          this.phase = 6 /* smallDone */;
          const p = sink.inline(content);
          if (p) return p;
          break;
        }
        case 6 /* smallDone */:
          this.smallDone();
          break;
        case 7 /* pad */: {
          const n = paddingOf(this.size);
          if (n === 0) {
            this.phase = 0 /* header */;
            break;
          }
          const pad = r.view(n);
          if (pad === null) return;
          this.phase = 0 /* header */;
          const p = sink.inline(pad);
          if (p) return p;
          break;
        }
        default:
          return;
      }
    }
  }

  /** The header block in hand: the end of the archive, a metadata record, or an entry. */
  private classify(): void {
    const block = this.block as Uint8Array;
    this.block = null;
    if (isZeroBlock(block)) {
      this.phase = 8 /* end */;
      return;
    }
    const at = this.at;
    const rec = this.records.next(block, at);
    if (rec.kind === 'end') throw new Error('unreachable: zero blocks are handled above');
    if (rec.kind === 'meta') {
      this.size = rec.size;
      this.metaRec = rec;
      this.phase = 2 /* meta */;
      return;
    }
    const sink = this.sink;
    const entry = rec.entry;
    const h = entry.header;
    this.entry = entry;
    this.size = entry.size;
    this.stats.entries++;
    sink.entry?.(entry);
    if (!KNOWN_TYPES.has(h.typeflag)) {
      sink.warn('TAR_UNKNOWN_TYPE', `entry ${quoted(entry.path)} at offset ${at} has the unknown type ${JSON.stringify(h.typeflag)}: kept in the layer's stream, left out of checkouts and dumps`);
    }
    const facts = pathFacts(entry.path);
    if (facts.unsafe) sink.warn('TAR_PATH_UNSAFE', `entry ${quoted(entry.path)} at offset ${at} points outside the image root`);
    const beneath = this.watch.note(entry, facts.parts);
    if (beneath !== null) sink.warn('TAR_BENEATH_SYMLINK', `entry ${quoted(entry.path)} at offset ${at} lies beneath the symlink ${quoted(beneath)}`);
    this.phase = entry.size > INLINE_MAX && (isRegularType(h.typeflag) || entry.size > MAX_META_BYTES) ? 4 /* external */ : 5 /* small */;
  }

  private smallDone(): void {
    const entry = this.entry as TarEntry;
    if (isRegularType(entry.header.typeflag)) {
      this.stats.inlineFiles++;
      this.sink.smallFile?.(entry);
    }
    this.phase = 7 /* pad */;
  }

  private async emit(b: Uint8Array): Promise<void> {
    const p = this.sink.inline(b);
    if (p) await p;
  }

  /**
   * The current phase when its bytes are not all in the chunk in hand (they straddle chunks, or a
   * file is streamed), and the end of the archive: reads across chunks, awaiting as it goes.
   */
  async slowStep(): Promise<void> {
    const r = this.r;
    const sink = this.sink;
    switch (this.phase) {
      case 0 /* header */: {
        const at = r.offset;
        const block = await r.exact(TAR_BLOCK);
        if (block.length === 0) {
          sink.warn('TAR_NO_END', 'layer tar ends without its end-of-archive blocks');
          this.phase = 9 /* done */;
          return;
        }
        if (block.length < TAR_BLOCK) {
          await this.emit(block);
          if (!isZeroBlock(block)) throw truncated(`a header at offset ${at}`);
          sink.warn('TAR_NO_END', 'layer tar ends inside its end-of-archive blocks');
          this.phase = 9 /* done */;
          return;
        }
        this.at = at;
        this.block = block;
        this.phase = 1 /* classify */;
        await this.emit(block);
        return;
      }
      case 2 /* meta */: {
        const meta = await r.exact(this.size);
        await this.emit(meta);
        if (meta.length < this.size) throw truncated(`a metadata record at offset ${this.at}`);
        this.metaBytes = meta;
        this.phase = 3 /* metaApply */;
        return;
      }
      case 4 /* external */:
        await storeExternal(r, sink, this.entry as TarEntry);
        this.stats.externalFiles++;
        this.phase = 7 /* pad */;
        return;
      case 5 /* small */: {
        const entry = this.entry as TarEntry;
        const content = await r.exact(this.size);
        await this.emit(content);
        if (content.length < this.size) throw truncated(`the content of ${quoted(entry.path)} (${content.length} of ${this.size} bytes)`);
        this.phase = 6 /* smallDone */;
        return;
      }
      case 7 /* pad */: {
        const n = paddingOf(this.size);
        const pad = await r.exact(n);
        await this.emit(pad);
        if (pad.length < n) {
          sink.warn('TAR_UNPADDED', `the last entry of the layer tar is not padded to a 512-byte block`);
          this.phase = 9 /* done */;
          return;
        }
        this.phase = 0 /* header */;
        return;
      }
      case 8 /* end */: {
        const rest = await r.rest(MAX_TRAILING_BYTES);
        if (rest === null) throw new VeritreeError(ERROR_CODES.TAR_LIMIT_EXCEEDED, `more than ${MAX_TRAILING_BYTES} bytes follow the end of the layer tar`);
        await this.emit(rest);
        if (rest.length < TAR_BLOCK) sink.warn('TAR_NO_END', 'layer tar has one end-of-archive block, not two');
        else if (!isZeroBlock(rest)) sink.warn('TAR_TRAILING_DATA', `${rest.length} bytes after the end of the layer tar are not zero`);
        this.phase = 9 /* done */;
        return;
      }
      default:
        throw new Error(`unreachable: phase ${this.phase} never waits on a read`);
    }
  }
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
