/**
 * The dumpfile reader's fixed fields (see dump-parse.ts): where they lie in a line, and their
 * numbers and digests read in place, with strtoull's rules where they are not plain digits.
 * @module
 */
import { MTIME_SPLIT } from './node.ts';
import type { CfsTree } from './tree.ts';

const digestScratch = Buffer.alloc(32);

/** 64 hex digits as their 32 bytes (a latin1 string), through one reused buffer. */
export function digestBytes(hex: string): string {
  digestScratch.write(hex, 0, 'hex');
  return digestScratch.toString('latin1', 0, 32);
}


const U64 = (1n << 64n) - 1n;
const DEC = /^[ \t\n\v\f\r]*([+-]?)([0-9]+)$/;
const OCT = /^[ \t\n\v\f\r]*([+-]?)([0-7]+)$/;

/** strtoull's reading of a whole field: sign wraps, overflow saturates. */
function parseU64(field: string, what: string, octal = false): bigint {
  const m = (octal ? OCT : DEC).exec(field);
  if (!m) throw new SyntaxError(`${what} is not an integer: ${JSON.stringify(field)}`);
  let v = BigInt(octal ? `0o${m[2]}` : (m[2] as string));
  if (v > U64) v = U64;
  else if (m[1] === '-') v = (U64 + 1n - v) & U64;
  return v;
}

/*
 * Number fields are read where they lie in the line: plain digits (nearly every field) without a
 * string or a BigInt; anything else (signs, spaces, past 2^53) through parseU64.
 */

/** A field of plain digits (base 10 or 8) read in place, or -1 for anything else. */
function digitsAt(text: string, s: number, e: number, base: 8 | 10): number {
  if (e <= s || e - s > (base === 8 ? 17 : 15)) return -1;
  let v = 0;
  for (let i = s; i < e; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d >= base) return -1;
    v = v * base + d;
  }
  return v;
}

/** text[s, e) as an unsigned 32-bit field (mode, nlink, owner, rdev, nanoseconds), as libcomposefs truncates them. */
export function u32At(text: string, s: number, e: number, what: string, base: 8 | 10 = 10): number {
  const v = digitsAt(text, s, e, base);
  return v >= 0 ? v % 0x100000000 : Number(parseU64(text.slice(s, e), what, base === 8) & 0xffffffffn);
}

/** A size: exact to 2^53, Infinity beyond (see CfsNode.size). */
export function sizeAt(text: string, s: number, e: number): number {
  const v = digitsAt(text, s, e, 10);
  if (v >= 0) return v;
  const big = parseU64(text.slice(s, e), 'size');
  return big > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(big);
}

/** Seconds since the epoch as time_t (signed 64 bits), split into parts small enough to stay unboxed (see CfsNode.mtimeHi). */
export function secondsAt(text: string, s: number, e: number, t: CfsTree, node: number): void {
  const n = digitsAt(text, s, e, 10);
  if (n >= 0) {
    t.mtimeHi[node] = Math.floor(n / MTIME_SPLIT);
    t.mtimeLo[node] = n % MTIME_SPLIT;
    return;
  }
  const v = BigInt.asIntN(64, parseU64(text.slice(s, e), 'mtime'));
  t.mtimeHi[node] = Number(v >> 24n);
  t.mtimeLo[node] = Number(v & 0xffffffn);
}

/**
 * The eleven fixed fields of the line text[a, b), split as mkcomposefs's split_at does (a missing
 * field is empty), as [start, end) pairs in `bounds`; @returns where the xattrs begin. Offsets,
 * not strings: most fields are numbers, read in place.
 */
export function scanFields(text: string, a: number, b: number, bounds: Int32Array): number {
  let at = a;
  for (let i = 0; i < 11; i++) {
    let sp = at < b ? text.indexOf(' ', at) : -1;
    if (sp < 0 || sp > b) sp = b;
    bounds[2 * i] = at;
    bounds[2 * i + 1] = sp;
    at = sp < b ? sp + 1 : b;
  }
  return at;
}

/** Whether text[s, e) is `-`, a field's "none". */
export function isDash(text: string, s: number, e: number): boolean {
  return e - s === 1 && text.charCodeAt(s) === 45;
}
