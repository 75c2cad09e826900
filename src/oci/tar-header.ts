/**
 * A pure codec for tar headers (ustar, GNU, PAX records): the fields the splitter and the merge
 * need, read from a 512-byte block. It does not use tar-stream's extract(), which discards raw
 * header bytes and padding: a split stream must keep every byte to rebuild the layer exactly.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';

export const TAR_BLOCK = 512;

export const TYPE = {
  file: '0',
  oldFile: '\0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
  contiguous: '7',
  paxNext: 'x',
  paxGlobal: 'g',
  gnuLongName: 'L',
  gnuLongLink: 'K',
  gnuSparse: 'S',
} as const;

export interface TarHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  /** The old-GNU sparse header says extension blocks follow it. */
  gnuSparseExtended: boolean;
}

/**
 * A field as a byte string: one char per byte (latin1), so that names that are not UTF-8 keep
 * every byte (`f\xff` and `f\xfe` stay two names) and compare in byte order. See names.ts.
 */
function str(b: Uint8Array, off: number, len: number): string {
  let end = off;
  while (end < off + len && b[end] !== 0) end++;
  return latin1(b, off, end);
}

type Latin1Slice = (this: Uint8Array, start: number, end: number) => string;
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice?: Latin1Slice }).latin1Slice;

/**
 * Bytes as a latin1 string. Buffer's own slice method takes any Uint8Array and skips making a
 * Buffer per field (a header has a dozen); where a Node lacks it, the documented way.
 */
function latin1(b: Uint8Array, start: number, end: number): string {
  if (latin1Slice) return latin1Slice.call(b, start, end);
  return Buffer.from(b.buffer, b.byteOffset + start, end - start).toString('latin1');
}

/**
 * The common octal field read from the bytes: optional spaces, octal digits, optional spaces,
 * then a NUL or the field's end. Null for anything else, which `num` reads the general way.
 */
function plainOctal(b: Uint8Array, off: number, len: number): number | null {
  const end = off + len;
  let i = off;
  while (i < end && b[i] === 0x20) i++;
  let v = 0;
  for (; i < end; i++) {
    const c = b[i] as number;
    if (c < 0x30 || c > 0x37) break;
    v = v * 8 + (c - 0x30);
  }
  while (i < end && b[i] === 0x20) i++;
  return i === end || b[i] === 0 ? v : null;
}

/** Octal with spaces/NULs, or GNU base-256 (high bit set) for values past 8 GiB. */
function num(b: Uint8Array, off: number, len: number, field: string, at: number): number {
  const first = b[off] ?? 0;
  if (first & 0x80) {
    if (first === 0xff) throw corrupt(`negative ${field}`, at);
    let v = BigInt(first & 0x7f);
    for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(b[off + i] ?? 0);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new VeritreeError(ERROR_CODES.TAR_LIMIT_EXCEEDED, `tar header at offset ${at}: ${field} ${v} is too large`);
    }
    return Number(v);
  }
  // Twelve octal digits at most: always a safe integer.
  const fast = plainOctal(b, off, len);
  if (fast !== null) return fast;
  const s = str(b, off, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw corrupt(`bad ${field} field ${JSON.stringify(s)}`, at);
  const v = parseInt(s, 8);
  if (!Number.isSafeInteger(v)) throw new VeritreeError(ERROR_CODES.TAR_LIMIT_EXCEEDED, `tar header at offset ${at}: ${field} overflows`);
  return v;
}

function corrupt(msg: string, at: number): VeritreeError {
  return new VeritreeError(ERROR_CODES.TAR_CORRUPT, `tar header at offset ${at}: ${msg}`);
}

export function isZeroBlock(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** The header's sum with its checksum field as spaces, unsigned or (old tars) signed bytes. */
function checksumOk(b: Uint8Array, stored: number): boolean {
  // Two plain loops around the field (one test per byte less), and the signed sum only for the
  // rare header the unsigned one does not match: this runs once per tar entry on the main thread.
  const end = Math.min(b.length, TAR_BLOCK);
  let unsigned = 8 * 0x20;
  for (let i = 0; i < 148 && i < end; i++) unsigned += b[i] as number;
  for (let i = 156; i < end; i++) unsigned += b[i] as number;
  if (stored === unsigned) return true;
  // A byte over 127 counts 256 less when signed.
  let high = 0;
  for (let i = 0; i < 148 && i < end; i++) high += (b[i] as number) >> 7;
  for (let i = 156; i < end; i++) high += (b[i] as number) >> 7;
  return stored === unsigned - 256 * high;
}

/** Decodes one header block. @throws VeritreeError TAR_CORRUPT (bad checksum, bad numbers) */
export function decodeHeader(b: Uint8Array, at: number): TarHeader {
  // A zero from the fast reader may be an empty field, which the general test refuses.
  let sum = plainOctal(b, 148, 8);
  if (!sum) {
    const sumText = str(b, 148, 8).trim();
    sum = /^[0-7]+$/.test(sumText) ? parseInt(sumText, 8) : -1;
  }
  if (sum < 0 || !checksumOk(b, sum)) {
    throw corrupt(at === 0 ? 'not a tar archive (bad header checksum)' : 'bad header checksum', at);
  }
  const magic = str(b, 257, 6);
  const typeflag = String.fromCharCode(b[156] ?? 0);
  let name = str(b, 0, 100);
  // POSIX ustar has a 155-byte prefix; old GNU uses those bytes for other fields.
  const isPosixUstar = magic === 'ustar' && str(b, 263, 2) === '00';
  if (isPosixUstar) {
    const prefix = str(b, 345, 155);
    if (prefix) name = `${prefix}/${name}`;
  }
  return {
    name,
    mode: num(b, 100, 8, 'mode', at),
    uid: num(b, 108, 8, 'uid', at),
    gid: num(b, 116, 8, 'gid', at),
    size: num(b, 124, 12, 'size', at),
    mtime: num(b, 136, 12, 'mtime', at),
    typeflag,
    linkname: str(b, 157, 100),
    uname: str(b, 265, 32),
    gname: str(b, 297, 32),
    devmajor: num(b, 329, 8, 'devmajor', at),
    devminor: num(b, 337, 8, 'devminor', at),
    gnuSparseExtended: typeflag === TYPE.gnuSparse && !isPosixUstar && (b[482] ?? 0) !== 0,
  };
}

/** PAX records: "<len> <key>=<value>\n" each, the length counting the whole record. */
export function decodePax(buf: Uint8Array, at: number): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of decodePaxRaw(buf, at)) out.set(k, v.toString('latin1'));
  return out;
}

/** PAX records with their values as bytes (xattr values need not be UTF-8). */
export function decodePaxRaw(buf: Uint8Array, at: number): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  let off = 0;
  while (off < b.length && b[off] !== 0) {
    const space = b.indexOf(0x20, off);
    const len = space > off ? Number(b.subarray(off, space).toString('ascii')) : NaN;
    if (!Number.isInteger(len) || len <= space - off || off + len > b.length) {
      throw new VeritreeError(ERROR_CODES.TAR_CORRUPT, `PAX header at offset ${at}: bad record at byte ${off}`);
    }
    const rec = b.subarray(space + 1, off + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq > 0) out.set(rec.subarray(0, eq).toString('latin1'), Buffer.from(rec.subarray(eq + 1)));
    off += len;
  }
  return out;
}

export function isRegularType(t: string): boolean {
  return t === TYPE.file || t === TYPE.oldFile || t === TYPE.contiguous;
}

export function isMetaType(t: string): boolean {
  return t === TYPE.paxNext || t === TYPE.paxGlobal || t === TYPE.gnuLongName || t === TYPE.gnuLongLink;
}
