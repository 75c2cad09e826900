/**
 * Rebuilding the byte stream a split stream stands for (a layer tar, a config's JSON): inline
 * chunks as they are, object chunks read from objects/ in pieces, so memory stays bounded.
 * @module
 */
import type { FileHandle } from 'node:fs/promises';
import { openRegular, readAll } from './sys.ts';
import type { Repository } from './repository.ts';
import { readSplitStream, type SplitStream, type StreamChunk } from './splitstream.ts';

export async function loadStream(repo: Repository, name: string): Promise<SplitStream> {
  return readSplitStream(await repo.readStreamBytes(name));
}

/** Objects opened ahead of the reader, and the most of one read whole into memory. */
const READ_AHEAD = 32;
const WHOLE_MAX = 1 << 20;

type Opened = { kind: 'whole'; bytes: Buffer } | { kind: 'stream'; fh: FileHandle };

/** Opens an object (never a symlink, never blocking); reads it whole when it is small. */
async function openObject(repo: Repository, id: string): Promise<Opened> {
  // No symlink followed, no FIFO waited on: anything but a regular file is STORE_CORRUPT.
  const { fh, size } = await openRegular(repo.objectPath(id), `object ${id} that the stream needs`);
  if (size > WHOLE_MAX) return { kind: 'stream', fh };
  try {
    return { kind: 'whole', bytes: await readAll(fh, size) };
  } finally {
    await fh.close();
  }
}

/**
 * The stream's bytes in order. Most objects of a layer are small, and one open-read-close after
 * another leaves the disk (and the thread pool) idle between them: up to READ_AHEAD objects are
 * opened (and, up to 1 MiB each, read) ahead of the one being yielded.
 */
export async function* rebuild(repo: Repository, stream: SplitStream): AsyncGenerator<Uint8Array> {
  const ahead = new Map<number, Promise<Opened>>();
  let scan = 0;
  const fill = (): void => {
    while (ahead.size < READ_AHEAD && scan < stream.chunks.length) {
      const c = stream.chunks[scan] as StreamChunk;
      if (c.kind === 'object') {
        const p = openObject(repo, stream.objectRefs[c.index] as string);
        p.catch(() => undefined);
        ahead.set(scan, p);
      }
      scan++;
    }
  };
  try {
    for (let i = 0; i < stream.chunks.length; i++) {
      fill();
      const c = stream.chunks[i] as StreamChunk;
      if (c.kind === 'inline') {
        yield c.bytes;
        continue;
      }
      const opened = await (ahead.get(i) as Promise<Opened>);
      ahead.delete(i);
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
    for (const p of ahead.values()) {
      const o = await p.catch(() => null);
      if (o?.kind === 'stream') await o.fh.close();
    }
  }
}
