/**
 * Rebuilding the byte stream a split stream stands for (a layer tar, a config's JSON): inline
 * chunks as they are, object chunks read from objects/ (small ones whole, ahead of the reader;
 * big ones in pieces), the stream section decoded as it goes, so memory stays bounded.
 * @module
 */
import type { FileHandle } from 'node:fs/promises';
import { throwIfAborted, handledLater } from '../errors.ts';
import { stopFlag } from '../native-addon.ts';
import { digestSize } from '../verity/constants.ts';
import { createSha256Stream } from '../verity/sha-stream.ts';
import { HASH_BACKLOG_BYTES, REBUILD_BATCHES as BATCHES, REBUILD_BATCH_BYTES as BATCH_BYTES, REBUILD_INLINE_AHEAD as INLINE_AHEAD, REBUILD_READERS as READERS, REBUILD_READ_AHEAD as READ_AHEAD, REBUILD_READ_BATCH as READ_BATCH, REBUILD_SINK_PIECE as SINK_PIECE, REBUILD_WHOLE_MAX as WHOLE_MAX } from '../tuning.ts';
import { assembler, nativeOpenError, openRegular, readAll, readSmallRegular, TOO_BIG, type AssembledBatch } from './sys.ts';
import type { Repository } from './repository.ts';
import type { StreamChunk } from './splitstream.ts';
import { objectRefTable, readHeader, readRefs, SplitStreamReader, type SegmentRun } from './splitstream-reader.ts';

type Opened = { kind: 'whole'; bytes: Buffer } | { kind: 'stream'; fh: FileHandle };

/** How an object a stream names is called in messages. */
function objectWhat(id: string): string {
  return `object ${id} that the stream needs`;
}

/** Opens an object (never a symlink, never blocking); reads it whole when it is small. */
async function openObject(repo: Repository, id: string): Promise<Opened> {
  // No symlink followed, no FIFO waited on: anything but a regular file is STORE_CORRUPT.
  const { fh, size } = await openRegular(repo.objectPath(id), objectWhat(id));
  if (size > WHOLE_MAX) return { kind: 'stream', fh };
  try {
    return { kind: 'whole', bytes: await readAll(fh, size) };
  } finally {
    await fh.close();
  }
}


/**
 * The bytes a split stream stands for, in order, from its chunks as they are decoded
 * (SplitStreamReader: the stream section is never inflated whole). Most objects of a layer are
 * small, and one open-read-close after another leaves the disk (and the thread pool) idle between
 * them: up to READ_AHEAD objects are opened (and, up to 1 MiB each, read) ahead of the one
 * being yielded.
 */
export async function* rebuildFrom(repo: Repository, chunks: AsyncIterable<StreamChunk> | Iterable<StreamChunk>, objectRefs: readonly string[]): AsyncGenerator<Uint8Array> {
  type Slot = { kind: 'inline'; bytes: Uint8Array } | { kind: 'object'; opened: Promise<Opened> };
  const it = (Symbol.asyncIterator in chunks ? (chunks as AsyncIterable<StreamChunk>)[Symbol.asyncIterator]() : (chunks as Iterable<StreamChunk>)[Symbol.iterator]()) as AsyncIterator<StreamChunk> | Iterator<StreamChunk>;
  const queue: Slot[] = [];
  let head = 0;
  let objectsAhead = 0;
  let inlineAhead = 0;
  let ended = false;
  const fill = async (): Promise<void> => {
    try {
      await pull();
    } finally {
      // Every object slot gets its read before anyone awaits it, even when the stream failed.
      sendBatch();
    }
  };
  const pull = async (): Promise<void> => {
    while (!ended && objectsAhead < READ_AHEAD && inlineAhead < INLINE_AHEAD) {
      const r = await it.next();
      if (r.done) {
        ended = true;
        return;
      }
      const c = r.value;
      if (c.kind === 'inline') {
        queue.push({ kind: 'inline', bytes: c.bytes });
        inlineAhead += c.bytes.length;
      } else {
        const id = objectRefs[c.index] as string;
        const slot: Slot = { kind: 'object', opened: null as unknown as Promise<Opened> };
        batch.push({ id, slot });
        queue.push(slot);
        objectsAhead++;
        if (batch.length >= READ_BATCH) sendBatch();
      }
    }
  };
  /**
   * The objects met since the last send, read in one job of the addon (open, check, read, close
   * each on the thread pool); one that is too big, or all of them without the addon, opened here.
   */
  let batch: { id: string; slot: Extract<Slot, { kind: 'object' }> }[] = [];
  const sendBatch = (): void => {
    if (batch.length === 0) return;
    const b = batch;
    batch = [];
    const read = readSmallRegular(
      b.map((x) => repo.objectPath(x.id)),
      WHOLE_MAX,
      (i) => objectWhat((b[i] as { id: string }).id)
    );
    b.forEach((x, i) => {
      x.slot.opened = read
        ? read.then((rs): Opened | Promise<Opened> => {
            const r = rs[i];
            if (r === TOO_BIG) return openObject(repo, x.id);
            if (r instanceof Error) throw r;
            return { kind: 'whole', bytes: r as Buffer };
          })
        : openObject(repo, x.id);
      handledLater(x.slot.opened);
    });
  };
  try {
    for (;;) {
      await fill();
      if (head >= queue.length) break;
      const slot = queue[head] as Slot;
      queue[head++] = undefined as unknown as Slot;
      if (head > 1024 && head * 2 > queue.length) {
        queue.splice(0, head);
        head = 0;
      }
      if (slot.kind === 'inline') {
        inlineAhead -= slot.bytes.length;
        yield slot.bytes;
        continue;
      }
      objectsAhead--;
      const opened = await slot.opened;
      if (opened.kind === 'whole') {
        yield opened.bytes;
        continue;
      }
      try {
        for await (const chunk of opened.fh.createReadStream({ highWaterMark: 1 << 20, autoClose: false })) yield chunk as Buffer;
      } finally {
        await opened.fh.close();
      }
    }
  } finally {
    // Stopped early (an error, or the reader left): close what was opened ahead.
    for (let i = head; i < queue.length; i++) {
      const slot = queue[i];
      if (slot?.kind !== 'object') continue;
      // An open that failed holds nothing to close; its error is not this stop's to report.
      const [o] = await Promise.allSettled([slot.opened]);
      if (o.status === 'fulfilled' && o.value.kind === 'stream') await o.value.fh.close();
    }
    await it.return?.();
  }
}

/** A split stream's bytes straight from its object's bytes, decoding the stream section as it goes. */
export function rebuildBytes(repo: Repository, streamObject: Uint8Array): AsyncGenerator<Uint8Array> {
  return rebuildFrom(repo, new SplitStreamReader(streamObject).chunks(), readRefs(streamObject).objectRefs);
}

export interface RebuildOptions {
  /**
   * Where the bytes go, in order, in pieces of up to a few MiB; the promise settles when the
   * piece has been taken and its memory may be reused (written to a file or a pipe, say).
   */
  sink?: (bytes: Uint8Array) => Promise<void>;
  signal?: AbortSignal | undefined;
  /** Bytes rebuilt so far, after each piece. */
  onBytes?: (bytes: number) => void;
}


/**
 * A split stream's bytes rebuilt and hashed (SHA-256) on the way, for cat-layer and fsck --deep:
 * the digest and the length. Where the addon has `assemble`, each batch of objects and inline
 * bytes is laid out in one job on libuv's thread pool, hashed in place by another and handed to
 * the sink while the next batch is read: the main thread only decodes the stream, and on two
 * cores reading, hashing and writing overlap. Elsewhere: rebuildBytes, piece by piece.
 */
export async function rebuildHashed(repo: Repository, streamObject: Uint8Array, opts: RebuildOptions = {}): Promise<{ sha256: string; bytes: number }> {
  const assemble = assembler();
  if (assemble) return rebuildAssembled(repo, streamObject, assemble, opts);
  const sha = createSha256Stream();
  let bytes = 0;
  // Most pieces are small (512-byte headers, small files): the sink gets them a MiB at a time.
  const sink = opts.sink;
  const out = Buffer.allocUnsafe(SINK_PIECE);
  let used = 0;
  for await (const chunk of rebuildBytes(repo, streamObject)) {
    throwIfAborted(opts.signal);
    sha.update(chunk);
    const behind = sha.backlogAbove(HASH_BACKLOG_BYTES);
    if (behind) await behind;
    bytes += chunk.length;
    opts.onBytes?.(bytes);
    if (!sink) continue;
    if (used > 0 && (used + chunk.length > SINK_PIECE || chunk.length >= SINK_PIECE / 2)) {
      await sink(out.subarray(0, used));
      used = 0;
    }
    if (chunk.length >= SINK_PIECE / 2) await sink(chunk);
    else {
      out.set(chunk, used);
      used += chunk.length;
    }
  }
  if (sink && used > 0) await sink(out.subarray(0, used));
  return { sha256: await sha.digestHex(), bytes };
}


type Assemble = NonNullable<ReturnType<typeof assembler>>;


interface ReadJob {
  /** The job's segments (the rest of a run, for a job that takes over where one stopped). */
  run: SegmentRun;
  out: Uint8Array;
  result: Promise<AssembledBatch>;
}

/** The segments a job left: those after `done`, their inline bytes after those of the first `done`. */
function restOf(run: SegmentRun, done: number): SegmentRun {
  let skip = 0;
  for (let i = 0; i < done; i++) if (run.segs[2 * i] === 0) skip += run.segs[2 * i + 1] as number;
  return { segs: run.segs.subarray(2 * done), n: run.n - done, arena: run.arena.subarray(skip) };
}

async function rebuildAssembled(repo: Repository, streamObject: Uint8Array, assemble: Assemble, opts: RebuildOptions): Promise<{ sha256: string; bytes: number }> {
  const ds = digestSize(readHeader(streamObject).alg);
  // The digests as the stream holds them: the addon names each object from its bytes.
  const refTable = objectRefTable(streamObject);
  const source = new SplitStreamReader(streamObject);
  const sha = createSha256Stream();
  const stop = stopFlag(opts.signal);
  // Batch buffers: the ones being filled by read jobs, the others being hashed and written.
  const free: Uint8Array[] = Array.from({ length: BATCHES + READERS - 1 }, () => new Uint8Array(BATCH_BYTES));
  const waiting: ((b: Uint8Array) => void)[] = [];
  const take = (): Promise<Uint8Array> => (free.length > 0 ? Promise.resolve(free.pop() as Uint8Array) : new Promise((resolve) => waiting.push(resolve)));
  const give = (b: Uint8Array): void => {
    const w = waiting.shift();
    if (w) w(b);
    else free.push(b);
  };
  let hashed: Promise<void> = Promise.resolve();
  let sunk: Promise<void> = Promise.resolve();
  // The first failure of a hash or a write, thrown at the next batch.
  const failed: unknown[] = [];
  let bytes = 0;
  // Segments offered per job: about twice what the last job took (a job that stops early leaves
  // the rest to a job of its own). Inline bytes beyond a batch's worth wait for the next run.
  let offer = 256;
  // The next run, decoded while the jobs read.
  let ahead: Promise<SegmentRun | null> | null = null;
  let ended = false;
  const nextRun = (): Promise<SegmentRun | null> => {
    const p = ahead ?? source.next(offer, BATCH_BYTES);
    ahead = null;
    return p;
  };
  const start = (run: SegmentRun, first: number, out: Uint8Array): ReadJob => {
    const result = assemble(repo.objectsDir, refTable, ds, run.segs.subarray(0, 2 * run.n), run.arena, first, out, stop.flag);
    handledLater(result);
    return { run, out, result };
  };
  // Oldest first: outputs go to the hash and the sink in this order, which is the stream's.
  const jobs: ReadJob[] = [];
  try {
    for (;;) {
      throwIfAborted(opts.signal);
      if (failed.length > 0) throw failed[0];
      // Keep READERS jobs reading.
      while (jobs.length < READERS && !ended) {
        const run = await nextRun();
        if (run === null) ended = true;
        else jobs.push(start(run, 0, await take()));
      }
      const job = jobs.shift();
      if (!job) break;
      // While the jobs read, decode what the next one will need.
      if (!ended && ahead === null) {
        ahead = source.next(offer, BATCH_BYTES);
        handledLater(ahead);
      }
      let r: AssembledBatch;
      try {
        r = await job.result;
      } catch (e) {
        give(job.out);
        throw e;
      }
      throwIfAborted(opts.signal);
      if (r.failure) {
        give(job.out);
        const i = job.run.segs[2 * r.done + 1] as number;
        const id = Buffer.from(refTable.buffer, refTable.byteOffset + i * ds, ds).toString('hex');
        throw nativeOpenError(r.failure, repo.objectPath(id), objectWhat(id));
      }
      // A job that ran out of room leaves the rest of its segments to a job of their own, whose
      // output comes before that of the jobs started after it.
      if (r.done < job.run.n) jobs.unshift(start(restOf(job.run, r.done), r.partial, await take()));
      offer = Math.min(4096, Math.max(256, r.done * 2));
      bytes += r.used;
      const piece = job.out.subarray(0, r.used);
      const h = (hashed = sha.updateInPlace(piece));
      const sink = opts.sink;
      const w = sink ? (sunk = sunk.then(() => sink(piece))) : Promise.resolve();
      Promise.all([h, w]).then(
        () => give(job.out),
        (e: unknown) => {
          failed.push(e);
          give(job.out);
        }
      );
      opts.onBytes?.(bytes);
    }
    await Promise.all([hashed, sunk]);
    return { sha256: await sha.digestHex(), bytes };
  } finally {
    stop.done();
    await Promise.allSettled(jobs.map((j) => j.result));
    await Promise.allSettled([hashed, sunk, ahead ?? Promise.resolve()]);
    await source.close();
  }
}
