/**
 * The composefs dumpfile format (composefs-dump(5); docs in ../shared/docs/composefs-dumpfile.md):
 * one line per path, eleven fields, then KEY=VALUE xattrs. A pure codec: records in, text out,
 * and back. Escaping: `\\`, `\n`, `\r`, `\t`, else `\xHH` for space, `=` (in keys; in values
 * too, where composefs does), and anything not printable ASCII; a field whose value is `-` is
 * written `\x2d` since a bare `-` means "unset".
 * @module
 */
import { XATTR_BUDGET, XATTR_NAME_MAX } from '../erofs/node.ts';

export interface DumpRecord {
  path: Buffer;
  size: number;
  /** st_mode with the type bits; `hardlink` is the leading `@`. */
  mode: number;
  hardlink: boolean;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  mtimeSec: number;
  mtimeNsec: number;
  payload: Buffer | null;
  content: Buffer | null;
  digest: string | null;
  xattrs: [Buffer, Buffer][];
}

const SHORT: Record<number, string> = { 0x5c: '\\\\', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t' };

/** Whether byte c is written escaped: a space, a control, not ASCII, a backslash, `=` in a key. */
function escaped(c: number, escapeEq: boolean): boolean {
  return c <= 0x20 || c >= 0x7f || c === 0x5c || (escapeEq && c === 0x3d);
}

function escape(b: Buffer, escapeEq: boolean): string {
  if (b.length === 1 && b[0] === 0x2d) return '\\x2d';
  // Most names and values need no escape: they go out as they are, in one decode.
  let plain = 0;
  while (plain < b.length && !escaped(b[plain] as number, escapeEq)) plain++;
  if (plain === b.length) return b.toString('latin1');
  let out = b.toString('latin1', 0, plain);
  for (let i = plain; i < b.length; i++) {
    const c = b[i] as number;
    const short = SHORT[c];
    if (short) out += short;
    else if (escaped(c, escapeEq)) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += String.fromCharCode(c);
  }
  return out;
}

/** The characters escape(b, escapeEq) writes, without writing them. */
function escapedLength(b: Buffer, escapeEq: boolean): number {
  if (b.length === 1 && b[0] === 0x2d) return 4;
  let n = 0;
  for (const c of b) n += !escaped(c, escapeEq) ? 1 : SHORT[c] !== undefined ? 2 : 4;
  return n;
}

/**
 * Why these xattrs on one node cannot go through a dumpfile into a composefs image (the limits
 * dump-parse.ts and libcomposefs apply: the xattr text of a line, a name's and a value's length,
 * the xattr area of one inode), or null. The merge refuses such an entry by name, where the image
 * would otherwise be refused at a dumpfile line the user never saw.
 */
export function xattrsRefusal(xattrs: ReadonlyMap<string, Buffer>): string | null {
  let text = -1;
  let area = 12;
  for (const [key, value] of xattrs) {
    const k = Buffer.from(key, 'latin1');
    if (k.length === 0 || k.length > XATTR_NAME_MAX) return `an xattr name of ${k.length} bytes (1 to ${XATTR_NAME_MAX})`;
    if (value.length > 0xffff) return `an xattr value of ${value.length} bytes (at most 65535)`;
    text += 1 + escapedLength(k, true) + 1 + escapedLength(value, false);
    area += 7 + k.length + value.length;
  }
  if (text > 0xffff) return `${xattrs.size} xattrs that take ${text} characters in a dumpfile line (at most 65535)`;
  if (xattrs.size > 0 && area > XATTR_BUDGET) return `${xattrs.size} xattrs of ${area} bytes (composefs allows ${XATTR_BUDGET} on one inode)`;
  return null;
}

function optional(b: Buffer | null): string {
  return b === null ? '-' : escape(b, false);
}

export function formatDumpLine(r: DumpRecord): string {
  const fields = [
    escape(r.path, false),
    String(r.size),
    `${r.hardlink ? '@' : ''}${r.mode.toString(8)}`,
    String(r.nlink),
    String(r.uid),
    String(r.gid),
    String(r.rdev),
    `${r.mtimeSec}.${r.mtimeNsec}`,
    optional(r.payload),
    optional(r.content),
    r.digest ?? '-',
    ...r.xattrs.map(([k, v]) => `${escape(k, true)}=${escape(v, false)}`),
  ];
  return fields.join(' ');
}

function unescape(s: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 0x5c) {
      for (const byte of Buffer.from(s[i] as string, 'utf8')) out.push(byte);
      continue;
    }
    const n = s[i + 1];
    if (n === 'x') {
      out.push(parseInt(s.slice(i + 2, i + 4), 16));
      i += 3;
    } else {
      out.push(n === 'n' ? 0x0a : n === 'r' ? 0x0d : n === 't' ? 0x09 : n === '\\' ? 0x5c : (n ?? '').charCodeAt(0));
      i += 1;
    }
  }
  return Buffer.from(out);
}

function optionalIn(s: string): Buffer | null {
  return s === '-' ? null : unescape(s);
}

/** @throws SyntaxError on a line that is not a dumpfile record */
export function parseDumpLine(line: string): DumpRecord {
  const f = line.split(' ');
  if (f.length < 11) throw new SyntaxError(`dumpfile line has ${f.length} fields, needs 11: ${line}`);
  const [path, size, mode, nlink, uid, gid, rdev, mtime, payload, content, digest, ...xattrs] = f as [string, string, string, string, string, string, string, string, string, string, string, ...string[]];
  const [sec, nsec] = mtime.split('.');
  return {
    path: unescape(path),
    size: Number(size),
    hardlink: mode.startsWith('@'),
    mode: parseInt(mode.replace(/^@/, ''), 8),
    nlink: Number(nlink),
    uid: Number(uid),
    gid: Number(gid),
    rdev: Number(rdev),
    mtimeSec: Number(sec),
    mtimeNsec: Number(nsec ?? 0),
    payload: optionalIn(payload),
    content: optionalIn(content),
    digest: digest === '-' ? null : digest,
    xattrs: xattrs.map((x) => {
      // The key's '=' is always escaped, so the first raw '=' ends it.
      const eq = x.indexOf('=');
      return [unescape(x.slice(0, eq)), unescape(x.slice(eq + 1))] as [Buffer, Buffer];
    }),
  };
}
