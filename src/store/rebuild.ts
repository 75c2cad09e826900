/**
 * Rebuilding the byte stream a split stream stands for (a layer tar, a config's JSON): inline
 * chunks as they are, object chunks read from objects/ (small ones whole, ahead of the reader;
 * big ones in pieces), the stream section decoded as it goes, so memory stays bounded.
 * @module
 */
import type { FileHandle } from 'node:fs/promises';
import { openRegular, readAll, readSmallRegular, TOO_BIG } from './sys.ts';
import type { Repository } from './repository.ts';
import { readRefs, streamChunks, type StreamChunk } from './splitstream.ts';

/** Objects opened ahead of the reader, and the most of one read whole into memory. */
const READ_AHEAD = 32;
/** Objects read in one job of the thread pool: READ_AHEAD / READ_BATCH jobs at once (libuv has 4 threads). */
const READ_BATCH = 8;
const WHOLE_MAX = 1 << 20;

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

/** Chunks pulled ahead of the one being yielded: up to READ_AHEAD objects, 4 MiB of inline bytes. */
const INLINE_AHEAD = 4 << 20;

/**
 * The bytes a split stream stands for, in order, from its chunks as they are decoded
 * (streamChunks: the stream section is never inflated whole). Most objects of a layer are
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
      x.slot.opened.catch(() => undefined);
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
      const o = await slot.opened.catch(() => null);
      if (o?.kind === 'stream') await o.fh.close();
    }
    await it.return?.();
  }
}

/** A split stream's bytes straight from its object's bytes, decoding the stream section as it goes. */
export function rebuildBytes(repo: Repository, streamObject: Uint8Array): AsyncGenerator<Uint8Array> {
  return rebuildFrom(repo, streamChunks(streamObject), readRefs(streamObject).objectRefs);
}
