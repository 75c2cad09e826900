/**
 * The V2 writer's output, in composefs-rs's two passes (writer.rs FirstPass, SecondPass): the
 * counting pass moves a position and notes where each inode, shared xattr and inode's blocks
 * start, and where the inodes and the image end, reading every offset as 0; the writing pass
 * writes into a zero-filled buffer of the counted size (so padding is a skip) and reads the
 * offsets the first noted.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { SLOT } from './format.ts';

interface Offsets {
  inode: Float64Array;
  xattr: Float64Array;
  block: Float64Array;
  inodesEnd: number;
  end: number;
}

function diverged(what: string): VeritreeError {
  return new VeritreeError(ERROR_CODES.INTERNAL, `V2 writer: the second pass diverged from the first at ${what}`);
}

export class V2Out {
  pos = 0;
  /** The image (empty while counting). */
  readonly b: Buffer;
  private readonly counting: boolean;
  private readonly at: Offsets;

  private constructor(b: Buffer, counting: boolean, at: Offsets) {
    this.b = b;
    this.counting = counting;
    this.at = at;
  }

  static counting(inodes: number, xattrs: number): V2Out {
    return new V2Out(Buffer.alloc(0), true, { inode: new Float64Array(inodes), xattr: new Float64Array(xattrs), block: new Float64Array(inodes), inodesEnd: 0, end: 0 });
  }

  /** The writing pass, with this (counting) pass's offsets. */
  writing(): V2Out {
    return new V2Out(Buffer.alloc(this.at.end), false, this.at);
  }

  u8(x: number): void {
    if (!this.counting) this.b[this.pos] = x & 0xff;
    this.pos += 1;
  }
  u16(x: number): void {
    if (!this.counting) this.b.writeUInt16LE(x & 0xffff, this.pos);
    this.pos += 2;
  }
  u32(x: number): void {
    if (!this.counting) this.b.writeUInt32LE(x >>> 0, this.pos);
    this.pos += 4;
  }
  /** A little-endian u64 from a number below 2^53. */
  u64(x: number): void {
    if (!this.counting) {
      this.b.writeUInt32LE(x % 2 ** 32, this.pos);
      this.b.writeUInt32LE(Math.floor(x / 2 ** 32), this.pos + 4);
    }
    this.pos += 8;
  }
  /** Bytes held as a latin1 string. */
  text(s: string): void {
    if (!this.counting) this.b.write(s, this.pos, 'latin1');
    this.pos += s.length;
  }
  zeros(n: number): void {
    this.pos += n;
  }
  /** On to the next multiple of `to` (a power of two). */
  pad(to: number): void {
    this.pos = Math.ceil(this.pos / to) * to;
  }

  noteInode(i: number): void {
    if (this.counting) this.at.inode[i] = this.pos;
    else if (this.at.inode[i] !== this.pos) throw diverged(`inode ${i}`);
  }
  noteInodesEnd(): void {
    if (this.counting) this.at.inodesEnd = this.pos;
    else if (this.at.inodesEnd !== this.pos) throw diverged('the end of the inodes');
  }
  noteXattr(s: number): void {
    if (this.counting) this.at.xattr[s] = this.pos;
    else if (this.at.xattr[s] !== this.pos) throw diverged(`shared xattr ${s}`);
  }
  noteBlock(i: number): void {
    if (this.counting) this.at.block[i] = this.pos;
    else if (this.at.block[i] !== this.pos) throw diverged(`the blocks of inode ${i}`);
  }
  noteEnd(): void {
    if (this.counting) this.at.end = this.pos;
    else if (this.at.end !== this.pos) throw diverged('the end of the image');
  }

  /** Inode i's nid (0 while counting). */
  nid(i: number): number {
    return this.counting ? 0 : (this.at.inode[i] as number) / SLOT;
  }
  /** Where shared xattr s starts (0 while counting). */
  xattrStart(s: number): number {
    return this.counting ? 0 : (this.at.xattr[s] as number);
  }
  /** Where inode i's blocks start (0 while counting). */
  blockStart(i: number): number {
    return this.counting ? 0 : (this.at.block[i] as number);
  }
  /** The image's size (0 while counting). */
  end(): number {
    return this.counting ? 0 : this.at.end;
  }
}
