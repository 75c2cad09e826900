/**
 * Rebuilding the byte stream a split stream stands for (a layer tar, a config's JSON): inline
 * chunks as they are, object chunks read from objects/ in pieces, so memory stays bounded.
 * @module
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import type { Repository } from './repository.ts';
import { readSplitStream, type SplitStream } from './splitstream.ts';

export async function loadStream(repo: Repository, name: string): Promise<SplitStream> {
  return readSplitStream(await repo.readStreamBytes(name));
}

export async function* rebuild(repo: Repository, stream: SplitStream): AsyncGenerator<Uint8Array> {
  for (const c of stream.chunks) {
    if (c.kind === 'inline') {
      yield c.bytes;
      continue;
    }
    const id = stream.objectRefs[c.index] as string;
    const path = repo.objectPath(id);
    if (!(await stat(path).catch(() => null))) {
      throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `object ${id} that the stream needs is missing`, { path });
    }
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) yield chunk as Buffer;
  }
}
