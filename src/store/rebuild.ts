/**
 * Rebuilding the byte stream a split stream stands for (a layer tar, a config's JSON): inline
 * chunks as they are, object chunks read from objects/ in pieces, so memory stays bounded.
 * @module
 */
import { openRegular } from './sys.ts';
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
    // No symlink followed, no FIFO waited on: anything but a regular file is STORE_CORRUPT.
    const { fh } = await openRegular(repo.objectPath(id), `object ${id} that the stream needs`);
    for await (const chunk of fh.createReadStream({ highWaterMark: 1 << 20 })) yield chunk as Buffer;
  }
}
