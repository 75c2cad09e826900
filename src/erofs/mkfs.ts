/**
 * What `mkcomposefs --from-file` does: a composefs dumpfile in, the EROFS image out. A module of
 * its own so that `veritree mkfs` loads the reader and the writer and nothing else (the library's
 * mkfsFromDumpfile adds the image's fs-verity digest).
 * @module
 */
import { parseDumpfile, type DumpParseOptions } from './dump-parse.ts';
import { writeComposefsImage, type ComposefsImage, type ImageOptions } from './writer.ts';

/**
 * The image of a dumpfile (chunks, as read), byte for byte as mkcomposefs 1.0.8 writes it.
 * @throws VeritreeError DUMPFILE_INVALID naming the line at fault
 */
export async function imageOfDumpfile(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: DumpParseOptions & ImageOptions = {}): Promise<ComposefsImage> {
  return writeComposefsImage(await parseDumpfile(input, opts), opts);
}
