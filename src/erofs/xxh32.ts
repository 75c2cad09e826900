/**
 * xxHash32 (Yann Collet's algorithm, as the Linux kernel's lib/xxhash.c computes it). EROFS uses
 * it for the per-inode xattr name filter (EROFS_FEATURE_COMPAT_XATTR_FILTER): bit
 * `xxh32(name, SEED + prefix index) % 32` set means "may be present". A pure function over bytes.
 * @module
 */

const P1 = 2654435761;
const P2 = 2246822519;
const P3 = 3266489917;
const P4 = 668265263;
const P5 = 374761393;

const rotl = (x: number, r: number): number => ((x << r) | (x >>> (32 - r))) >>> 0;
const mul = (a: number, b: number): number => Math.imul(a, b) >>> 0;
const round = (acc: number, lane: number): number => mul(rotl((acc + mul(lane, P2)) >>> 0, 13), P1);

export function xxh32(input: Uint8Array, seed: number): number {
  const len = input.length;
  const le32 = (i: number): number => ((input[i] as number) | ((input[i + 1] as number) << 8) | ((input[i + 2] as number) << 16) | ((input[i + 3] as number) << 24)) >>> 0;
  let p = 0;
  let h: number;
  if (len >= 16) {
    let v1 = (seed + P1 + P2) >>> 0;
    let v2 = (seed + P2) >>> 0;
    let v3 = seed >>> 0;
    let v4 = (seed - P1) >>> 0;
    for (const limit = len - 16; p <= limit; p += 16) {
      v1 = round(v1, le32(p));
      v2 = round(v2, le32(p + 4));
      v3 = round(v3, le32(p + 8));
      v4 = round(v4, le32(p + 12));
    }
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) >>> 0;
  } else {
    h = (seed + P5) >>> 0;
  }
  h = (h + len) >>> 0;
  for (; p + 4 <= len; p += 4) h = mul(rotl((h + mul(le32(p), P3)) >>> 0, 17), P4);
  for (; p < len; p++) h = mul(rotl((h + mul(input[p] as number, P5)) >>> 0, 11), P1);
  h = mul((h ^ (h >>> 15)) >>> 0, P2);
  h = mul((h ^ (h >>> 13)) >>> 0, P3);
  return (h ^ (h >>> 16)) >>> 0;
}
