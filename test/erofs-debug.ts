/**
 * A port of composefs-rs's EROFS debug dump, `debug_img` (crates/composefs/src/erofs/debug.rs
 * at f22ecda, reading with erofs/reader.rs), to compare veritree's images with the dumps
 * composefs-rs's insta snapshots hold (tests/snapshots/mkfs__*.snap). It walks the image from
 * the root inode with a stack of (nid, path), notes every segment it reaches (header,
 * superblock, inodes, shared xattrs, folder and data blocks) by offset, then prints them in
 * offset order with what lies between as padding, and the space statistics.
 *
 * Like the original it throws on an image it cannot walk (where the Rust unwraps).
 */
import { type FieldType, debugField, hexdump, hex8, isDefault, off8, percent2, utf8OrHex } from './erofs-debug-fmt.ts';

type Fields = [string, number, FieldType, number?][];

const HEADER_FIELDS: Fields = [['magic', 0, 'U32'], ['flags', 8, 'U32'], ['version', 4, 'U32'], ['composefs_version', 12, 'U32'], ['unused', 16, 'U32x4']];
const SUPER_FIELDS: Fields = [
  ['magic', 0, 'U32'], ['checksum', 4, 'U32'], ['feature_compat', 8, 'U32'], ['blkszbits', 12, 'u8'], ['extslots', 13, 'u8'],
  ['root_nid', 14, 'U16'], ['inos', 16, 'U64'], ['build_time', 24, 'U64'], ['build_time_nsec', 32, 'U32'], ['blocks', 36, 'U32'],
  ['meta_blkaddr', 40, 'U32'], ['xattr_blkaddr', 44, 'U32'], ['uuid', 48, 'bytes', 16], ['volume_name', 64, 'bytes', 16],
  ['feature_incompat', 80, 'U32'], ['available_compr_algs', 84, 'U16'], ['extra_devices', 86, 'U16'], ['devt_slotoff', 88, 'U16'],
  ['dirblkbits', 90, 'u8'], ['xattr_prefix_count', 91, 'u8'], ['xattr_prefix_start', 92, 'U32'], ['packed_nid', 96, 'U64'],
  ['xattr_filter_reserved', 104, 'u8'], ['reserved2', 105, 'bytes', 23],
];
const COMPACT_FIELDS: Fields = [
  ['format', 0, 'format'], ['xattr_icount', 2, 'U16'], ['mode', 4, 'mode'], ['reserved', 12, 'U32'], ['size', 8, 'U32'], ['u', 16, 'U32'],
  ['ino', 20, 'U32'], ['uid', 24, 'U16'], ['gid', 26, 'U16'], ['nlink', 6, 'U16'], ['reserved2', 28, 'bytes', 4],
];
const EXTENDED_FIELDS: Fields = [
  ['format', 0, 'format'], ['xattr_icount', 2, 'U16'], ['mode', 4, 'mode'], ['reserved', 6, 'U16'], ['size', 8, 'U64'], ['u', 16, 'U32'],
  ['ino', 20, 'U32'], ['uid', 24, 'U32'], ['gid', 28, 'U32'], ['mtime', 32, 'U64'], ['mtime_nsec', 40, 'U32'], ['nlink', 44, 'U32'],
  ['reserved2', 48, 'bytes', 16],
];
const XATTR_HEADER_FIELDS: Fields = [['name_filter', 0, 'U32'], ['shared_count', 4, 'u8'], ['reserved', 5, 'bytes', 7]];
const DIRENT_FIELDS: Fields = [['inode_offset', 0, 'U64'], ['name_offset', 8, 'U16'], ['file_type', 10, 'filetype'], ['reserved', 11, 'u8']];
const PREFIXES = ['', 'user.', 'system.posix_acl_access', 'system.posix_acl_default', 'trusted.', 'lustre.', 'security.'];

/** write_fields!: `{offset:+8x}     name: {value:?}` for each field not at its default; offsets from `base`. */
function fields(b: Buffer, at: number, base: number, list: Fields): string {
  let out = '';
  for (const [name, o, type, n] of list) if (!isDefault(b, at + o, type, n)) out += `${off8(at + o - base)}     ${name}: ${debugField(b, at + o, type, n)}\n`;
  return out;
}

type Kind = 'header' | 'superblock' | 'compact inode' | 'extended inode' | 'shared xattr' | 'data block' | 'directory block';
interface Segment {
  kind: Kind;
  size: number;
  paths: string[];
}

interface Inode {
  at: number;
  extended: boolean;
  headerSize: number;
  xattrSize: number;
  size: number;
  mode: number;
  layout: number;
  u: number;
  total: number;
}

class Img {
  readonly bs: number;
  readonly inodeStart: number;
  readonly xattrStart: number;
  readonly b: Buffer;
  constructor(b: Buffer) {
    this.b = b;
    this.bs = 1 << (b[1024 + 12] as number);
    this.inodeStart = b.readUInt32LE(1024 + 40) * this.bs;
    this.xattrStart = b.readUInt32LE(1024 + 44) * this.bs;
  }
  inode(nid: number): Inode {
    const at = this.inodeStart + nid * 32;
    if (at >= this.b.length) throw new Error(`invalid inode ${nid}`);
    const b = this.b;
    const extended = ((b[at] as number) & 1) === 1;
    const format = b.readUInt16LE(at);
    const layout = format & 0b1110;
    const icount = b.readUInt16LE(at + 2);
    const xattrSize = icount === 0 ? 0 : (icount - 1) * 4 + 12;
    const size = extended ? Number(b.readBigUInt64LE(at + 8)) : b.readUInt32LE(at + 8);
    if (layout !== 0 && layout !== 4 && layout !== 8) throw new Error(`invalid data layout in inode ${nid}`);
    const headerSize = extended ? 64 : 32;
    const total = headerSize + xattrSize + (layout === 4 ? size % this.bs : layout === 8 ? 4 : 0);
    if (at + total > b.length) throw new Error(`invalid inode ${nid}`);
    return { at, extended, headerSize, xattrSize, size, mode: b.readUInt16LE(at + 4), layout, u: b.readUInt32LE(at + 16), total };
  }
  inline(i: Inode): Buffer | null {
    const start = i.at + i.headerSize + i.xattrSize;
    const end = i.at + i.total;
    return end > start ? this.b.subarray(start, end) : null;
  }
  /** raw_blocks: the block range of an inode's data. */
  blocks(i: Inode): [number, number] {
    if (i.layout === 0) return [i.u, i.u + Math.ceil(i.size / this.bs)];
    if (i.layout === 4) return [i.u, i.u + Math.floor(i.size / this.bs)];
    return [i.u, i.u];
  }
  xattrSizeAt(at: number): number {
    return 4 + ((((this.b[at] as number) + this.b.readUInt16LE(at + 2)) + 3) & ~3);
  }
}

const isDir = (mode: number): boolean => (mode & 0o170000) === 0o040000;

/** A directory block's entries: [header offset, name] (names end at the next name, or the last at a NUL). */
function entries(b: Buffer, start: number, end: number): [number, Buffer][] {
  const first = b.readUInt16LE(start + 8);
  if (first === 0 || first % 12 !== 0) throw new Error('invalid directory entry name_offset');
  const n = first / 12;
  const out: [number, Buffer][] = [];
  for (let i = 0; i < n; i++) {
    const h = start + 12 * i;
    const nameStart = start + b.readUInt16LE(h + 8);
    let nameEnd: number;
    if (i + 1 < n) nameEnd = start + b.readUInt16LE(h + 12 + 8);
    else {
      nameEnd = nameStart;
      while (nameEnd < end && b[nameEnd] !== 0) nameEnd++;
    }
    if (nameEnd > end || nameEnd < nameStart) throw new Error('directory entry out of bounds');
    out.push([h, b.subarray(nameStart, nameEnd)]);
  }
  return out;
}

/** DirectoryBlock's Debug: each entry's fields and name, offsets from the block's start. */
function dirBlock(b: Buffer, start: number, end: number): string {
  let out = '';
  for (const [h, name] of entries(b, start, end)) {
    out += '\n' + fields(b, h, start, DIRENT_FIELDS);
    out += `${off8(b.readUInt16LE(h + 8))}     # name: ${utf8OrHex(name)}\n`;
  }
  return out;
}

function visit(img: Img): Map<number, Segment> {
  const seen = new Map<number, Segment>();
  const note = (at: number, kind: Kind, size: number, path: string | null): boolean => {
    const s = seen.get(at);
    if (s !== undefined) {
      if (s.kind !== kind || s.size !== size) throw new Error(`conflicting segments at offset ${at.toString(16)}`);
      if (path !== null) s.paths.push(path);
      return true;
    }
    seen.set(at, { kind, size, paths: path === null ? [] : [path] });
    return false;
  };
  const join = (dir: string, name: Buffer): string => (dir === '/' ? '/' : `${dir}/`) + name.toString('latin1');
  note(0, 'header', 32, null);
  note(1024, 'superblock', 128, null);
  const b = img.b;
  const stack: [number, string][] = [[b.readUInt16LE(1024 + 14), '/']];
  while (stack.length > 0) {
    const [nid, path] = stack.pop() as [number, string];
    const i = img.inode(nid);
    if (note(i.at, i.extended ? 'extended inode' : 'compact inode', i.total, path)) continue;
    if (i.xattrSize > 0) {
      const count = b[i.at + i.headerSize + 4] as number;
      for (let s = 0; s < count; s++) {
        const at = img.xattrStart + 4 * b.readUInt32LE(i.at + i.headerSize + 12 + 4 * s);
        note(at, 'shared xattr', img.xattrSizeAt(at), path);
      }
    }
    const [from, to] = img.blocks(i);
    if (isDir(i.mode)) {
      const inline = img.inline(i);
      const push = (start: number, end: number): void => {
        for (const [h, name] of entries(b, start, end)) {
          const s = name.toString('latin1');
          if (s !== '.' && s !== '..') stack.push([Number(b.readBigUInt64LE(h)), join(path, name)]);
        }
      };
      if (inline !== null) push(inline.byteOffset - b.byteOffset, inline.byteOffset - b.byteOffset + inline.length);
      for (let blk = from; blk < to; blk++) {
        if ((blk + 1) * img.bs > b.length) throw new Error('block out of bounds');
        push(blk * img.bs, (blk + 1) * img.bs);
        note(blk * img.bs, 'directory block', img.bs, path);
      }
    } else {
      for (let blk = from; blk < to; blk++) {
        if ((blk + 1) * img.bs > b.length) throw new Error('block out of bounds');
        note(blk * img.bs, 'data block', img.bs, path);
      }
    }
  }
  return seen;
}

/** Inode's Debug: header fields, xattrs, then the inline data as entries, a string or a hexdump. */
function inodeText(img: Img, i: Inode): string {
  const b = img.b;
  let out = `${i.extended ? 'ExtendedInodeHeader' : 'CompactInodeHeader'}\n` + fields(b, i.at, i.at, i.extended ? EXTENDED_FIELDS : COMPACT_FIELDS);
  if (i.xattrSize > 0) {
    const h = i.at + i.headerSize;
    out += fields(b, h, i.at, XATTR_HEADER_FIELDS);
    const count = b[h + 4] as number;
    if (count > 0) out += `${off8(h + 12 - i.at)}     shared xattrs: [${Array.from({ length: count }, (_, s) => `U32(${b.readUInt32LE(h + 12 + 4 * s)})`).join(', ')}]\n`;
    const end = h + i.xattrSize;
    for (let at = h + 12 + 4 * count; at < end; ) {
      const size = img.xattrSizeAt(at);
      if (at + size > end) throw new Error('xattr out of bounds');
      out += `${off8(at - i.at)}     xattr: ${xattrText(b, at)}\n`;
      at += size;
    }
  }
  const inline = img.inline(i);
  if (inline === null) return out;
  const start = inline.byteOffset - b.byteOffset;
  if (isDir(i.mode)) return out + `     +${(start - i.at).toString(16).padStart(2, '0')} --- inline directory entries ---` + dirBlock(b, start, start + inline.length);
  if (inline.length <= 128 && !inline.some((c) => c < 0x20 || c === 0x7f)) {
    const text = utf8OrHex(inline);
    if (text.startsWith('"')) return out + `${off8(start - i.at)}     inline: ${text}\n`;
  }
  return out + hexdump(inline, start - i.at);
}

/** XAttr's Debug: `(index name_len value_size) prefix"suffix" = "value"`, and any non-zero padding. */
function xattrText(b: Buffer, at: number): string {
  const nameLen = b[at] as number;
  const index = b[at + 1] as number;
  const valueSize = b.readUInt16LE(at + 2);
  const suffix = b.subarray(at + 4, at + 4 + nameLen);
  const value = b.subarray(at + 4 + nameLen, at + 4 + nameLen + valueSize);
  const padding = b.subarray(at + 4 + nameLen + valueSize, at + 4 + ((nameLen + valueSize + 3) & ~3));
  let out = `(${index} ${nameLen} ${valueSize}) ${PREFIXES[index] ?? '?'}${utf8OrHex(suffix)} = ${utf8OrHex(value)}`;
  if (padding.some((c) => c !== 0)) out += ` [${Array.from(padding).join(', ')}]`;
  return out;
}

function unassigned(at: number, data: Buffer): string {
  if (data.every((c) => c === 0)) return `${hex8(at)} Padding\n${off8(data.length)}     # ${data.length} nul bytes\n\n`;
  return `${hex8(at)} Unknown content\n${hexdump(data)}\n`;
}

const byKey = <T>(m: Map<string, T>): [string, T][] => Array.from(m.entries()).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

/** debug_img: the dump composefs-rs's mkfs tests snapshot. */
export function debugImage(bytes: Buffer): string {
  const img = new Img(bytes);
  const segments = Array.from(visit(img).entries()).sort(([a], [b]) => a - b);
  const space = new Map<string, number>();
  /** Keyed by from + NUL + to, so that key order is the tuple's order. */
  const padding = new Map<string, number>();
  const addTo = (m: Map<string, number>, k: string, n: number): void => void m.set(k, (m.get(k) ?? 0) + n);
  let out = '';
  let last = '';
  let offset = 0;
  for (const [start, s] of segments) {
    addTo(space, s.kind, s.size);
    if (offset < start) {
      out += unassigned(offset, bytes.subarray(offset, start));
      addTo(padding, `${last}\0${s.kind}`, start - offset);
      offset = start;
    } else if (offset > start) {
      out += '*** Overlapping segments!\n\n';
      offset = start;
    }
    last = s.kind;
    for (const p of s.paths) out += `# Filename ${utf8OrHex(Buffer.from(p, 'latin1'))}\n`;
    switch (s.kind) {
      case 'header':
        out += `${hex8(offset)} ComposefsHeader\n${fields(bytes, 0, 0, HEADER_FIELDS)}\n`;
        break;
      case 'superblock':
        out += `${hex8(offset)} Superblock\n${fields(bytes, 1024, 1024, SUPER_FIELDS)}\n`;
        break;
      case 'compact inode':
      case 'extended inode':
        out += `# nid #${Math.floor(Math.max(0, offset - img.inodeStart) / 32)}\n${hex8(offset)} ${inodeText(img, img.inode((offset - img.inodeStart) / 32))}\n`;
        break;
      case 'shared xattr':
        out += `# xattr #${Math.floor(Math.max(0, offset - img.xattrStart) / 4)}\n${hex8(offset)} ${xattrText(bytes, offset)}\n`;
        break;
      case 'directory block':
        out += `# block #${Math.floor(offset / img.bs)}\n${hex8(offset)} Directory block${dirBlock(bytes, offset, offset + img.bs)}\n`;
        break;
      case 'data block':
        out += `# block #${Math.floor(offset / img.bs)}\n${hex8(offset)} Data block\n${hexdump(bytes.subarray(offset, offset + img.bs))}\n`;
        break;
    }
    offset += s.size;
  }
  if (offset < bytes.length) {
    out += unassigned(offset, bytes.subarray(offset));
    addTo(padding, `${last}\0eof`, bytes.length - offset);
    offset = bytes.length;
    out += '\n';
  }
  if (offset > bytes.length) {
    out += '*** Segments past EOF!\n';
    offset = bytes.length;
  }
  out += `Space statistics (total size ${offset}B):\n`;
  for (const [k, v] of byKey(space)) out += `  ${k} = ${v}B, ${percent2(v, offset)}%\n`;
  for (const [k, v] of byKey(padding)) {
    const [from, to] = k.split('\0');
    out += `  padding ${from} -> ${to} = ${v}B, ${percent2(v, offset)}%\n`;
  }
  return out;
}
