/**
 * Names from a layer are bytes, not text: a tar may hold `f\xff` and `f\xfe`, which UTF-8
 * decoding would both turn into `f\uFFFD` (one file lost). veritree carries every name as a
 * byte string (one JS char per byte, latin1), end to end: the splitter, the merge (where byte
 * strings sort in byte order, as composefs sorts), the dumpfile (escaped byte by byte) and
 * checkout (Buffers to every fs call). Only messages show them decoded as UTF-8.
 * @module
 */

/** A NUL-terminated (or not) record of a tar as a byte string. */
export function byteString(b: Uint8Array): string {
  let end = b.indexOf(0);
  if (end < 0) end = b.length;
  return Buffer.from(b.buffer, b.byteOffset, end).toString('latin1');
}

/** The bytes of a byte string. */
export function nameBytes(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

/** A byte string for a message: its bytes read as UTF-8 (invalid sequences shown as U+FFFD). */
export function shown(s: string): string {
  return Buffer.from(s, 'latin1').toString('utf8');
}

/** JSON-quoted for a message. */
export function quoted(s: string): string {
  return JSON.stringify(shown(s));
}
