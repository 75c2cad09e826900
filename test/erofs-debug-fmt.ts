/**
 * The value formatting of composefs-rs's EROFS debug dump (crates/composefs/src/erofs/debug.rs
 * at f22ecda): Rust's `{:?}` of the format.rs field types, `{:+8x}` offsets, `{:.2}` of an f64,
 * the str escaping of `utf8_or_hex`, and `hexdump`. erofs-debug.ts lays the dump out with them.
 */

/** A field's Rust type, as its `{:?}` prints it. */
export type FieldType = 'U16' | 'U32' | 'U64' | 'u8' | 'bytes' | 'U32x4' | 'format' | 'mode' | 'filetype';

const FILE_TYPES = ['Unknown', 'RegularFile', 'Directory', 'CharacterDevice', 'BlockDevice', 'Fifo', 'Socket', 'Symlink'];
const MODE_NAMES: Record<number, string> = {
  0o100000: 'regular file',
  0o020000: 'chardev',
  0o040000: 'directory',
  0o060000: 'blockdev',
  0o010000: 'fifo',
  0o120000: 'symlink',
  0o140000: 'socket',
};
const DATA_LAYOUTS: Record<number, string> = { 0: 'Ok(FlatPlain)', 4: 'Ok(FlatInline)', 8: 'Ok(ChunkBased)' };

/** `{n:+8x}`: a signed hex offset, right-aligned in 8 columns. */
export const off8 = (n: number): string => `+${n.toString(16)}`.padStart(8);
/** `{n:08x}`. */
export const hex8 = (n: number): string => n.toString(16).padStart(8, '0');

function u64(b: Buffer, at: number): bigint {
  return b.readBigUInt64LE(at);
}

/** The width in bytes of a field type. */
export function widthOf(type: FieldType, n = 0): number {
  switch (type) {
    case 'u8':
    case 'filetype':
      return 1;
    case 'U16':
    case 'format':
    case 'mode':
      return 2;
    case 'U32':
      return 4;
    case 'U64':
      return 8;
    case 'U32x4':
      return 16;
    case 'bytes':
      return n;
  }
}

/** Whether the field holds its type's Default (write_fields! prints only fields that do not). */
export function isDefault(b: Buffer, at: number, type: FieldType, n = 0): boolean {
  if (type === 'format') return b.readUInt16LE(at) === 0xffff;
  if (type === 'filetype') return b[at] === 0xff;
  const w = widthOf(type, n);
  for (let i = 0; i < w; i++) if (b[at + i] !== 0) return false;
  return true;
}

/** Rust's `{:?}` of the field at `at`. */
export function debugField(b: Buffer, at: number, type: FieldType, n = 0): string {
  switch (type) {
    case 'u8':
      return String(b[at]);
    case 'U16':
      return `U16(${b.readUInt16LE(at)})`;
    case 'U32':
      return `U32(${b.readUInt32LE(at)})`;
    case 'U64':
      return `U64(${u64(b, at)})`;
    case 'U32x4':
      return `[${[0, 4, 8, 12].map((i) => `U32(${b.readUInt32LE(at + i)})`).join(', ')}]`;
    case 'bytes':
      return `[${Array.from(b.subarray(at, at + n)).join(', ')}]`;
    case 'format': {
      const v = b.readUInt16LE(at);
      return `${v} = ${(v & 1) === 1 ? 'Extended' : 'Compact'} | ${DATA_LAYOUTS[v & 0b1110] ?? 'Err(InvalidDataLayout)'}`;
    }
    case 'mode': {
      const v = b.readUInt16LE(at);
      return `0${v.toString(8).padStart(6, '0')} (${MODE_NAMES[v & 0o170000] ?? 'INVALID'})`;
    }
    case 'filetype':
      return FILE_TYPES[b[at] as number] ?? 'Unknown';
  }
}

/**
 * Rust's `{:?}` of a str. ASCII follows char::escape_debug exactly; past ASCII, C1 controls and
 * U+00AD are escaped and everything else printed, where Rust consults its Unicode tables (no
 * name or value in the snapshots leaves ASCII).
 */
export function debugStr(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0) as number;
    if (ch === '\0') out += '\\0';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '"') out += '\\"';
    else if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0xad) out += `\\u{${c.toString(16)}}`;
    else out += ch;
  }
  return `${out}"`;
}

/** utf8_or_hex: a quoted str when the bytes are UTF-8, else lowercase hex. */
export function utf8OrHex(bytes: Buffer): string {
  let s: string;
  try {
    s = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return bytes.toString('hex');
  }
  return debugStr(s);
}

/** hexdump: rows of 16 from `start` (the data's offset from what `rel` names, 0 for itself). */
export function hexdump(data: Buffer, start = 0): string {
  const end = start + data.length;
  let out = '';
  for (let row = Math.floor(start / 16); row < Math.ceil(end / 16); row++) {
    const rowStart = row * 16;
    out += `${off8(rowStart)}  `;
    let chars = '';
    for (let idx = rowStart; idx < rowStart + 16; idx++) {
      const inside = start <= idx && idx < end;
      const c = inside ? (data[idx - start] as number) : -1;
      out += inside ? `${c.toString(16).padStart(2, '0')} ` : '   ';
      if (idx % 8 === 7) out += ' ';
      chars += !inside ? ' ' : c < 0x80 && c >= 0x20 && c !== 0x7f ? String.fromCharCode(c) : '.';
    }
    out += `|${chars}|\n`;
  }
  return out;
}

/**
 * Rust's `{:.2}` of `(100. * value as f64) / (total as f64)`: the f64 quotient, then its exact
 * binary value rounded to two places, a tie to even (as Rust's exact float formatting rounds).
 */
export function percent2(value: number, total: number): string {
  const x = (100 * value) / total;
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const exp = Number((bits >> 52n) & 0x7ffn);
  let mant = bits & ((1n << 52n) - 1n);
  if (exp !== 0) mant |= 1n << 52n;
  const e = (exp === 0 ? 1 : exp) - 1075;
  let q: bigint;
  if (e >= 0) q = (mant << BigInt(e)) * 100n;
  else {
    const num = mant * 100n;
    const den = 1n << BigInt(-e);
    q = num / den;
    const twice = (num % den) * 2n;
    if (twice > den || (twice === den && (q & 1n) === 1n)) q += 1n;
  }
  const digits = q.toString().padStart(3, '0');
  return `${digits.slice(0, -2)}.${digits.slice(-2)}`;
}
