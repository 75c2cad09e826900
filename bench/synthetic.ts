/**
 * The synthetic images `veritree bench` imports: deterministic files of several shapes, packed
 * into tars, compressed and written as OCI layouts, in memory (the stage bench reads the same
 * tars and blobs the import does).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tarStream from 'tar-stream';
import { zstdCompress } from '../src/codec/zstd.ts';

export type Compression = 'none' | 'gzip' | 'zstd';

const MEDIA: Record<Compression, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
};

/** A small seeded PRNG (mulberry32): the same inputs on every run, and in the tests. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Deterministic bytes that do not compress; `half`: four random bits a byte. */
export function bytesFor(size: number, seed: number, entropy: 'full' | 'half' = 'full'): Buffer {
  const r = prng(seed);
  const b = Buffer.allocUnsafe(Math.ceil(size / 4) * 4);
  for (let i = 0; i < b.length; i += 4) {
    const v = (r() * 4294967296) >>> 0;
    b.writeUInt32LE(entropy === 'full' ? v : ((v & 0x0f0f0f0f) | 0x40404040) >>> 0, i);
  }
  return b.subarray(0, size);
}

/** Bytes of a run: a quarter new, three quarters repeated from the file's 4 KiB vocabulary. */
const RUN = 32;
const VOCAB = 4096;
/** Where new runs and vocabularies are cut from: far more than gzip's 32 KiB window. */
const SOURCE_BYTES = 16 << 20;
let source: Buffer | null = null;

/**
 * Deterministic file contents that compress as real layers do (to about a quarter, with
 * repeats for LZ77 to find), so that inflate does the work it does on real data: literals and
 * matches, not literals alone.
 */
export function contentFor(size: number, seed: number): Buffer {
  source ??= bytesFor(SOURCE_BYTES, 0x5eed, 'half');
  const src = source;
  const r = prng(seed);
  const vocab = Math.floor(r() * (SOURCE_BYTES - VOCAB));
  const b = Buffer.allocUnsafe(size);
  for (let at = 0; at < size; at += RUN) {
    const n = Math.min(RUN, size - at);
    const from = r() < 0.25 ? Math.floor(r() * (SOURCE_BYTES - RUN)) : vocab + Math.floor(r() * (VOCAB - RUN));
    // A byte loop: a native copy call per 32 bytes costs more than the copy.
    for (let i = 0; i < n; i++) b[at + i] = src[from + i] as number;
  }
  return b;
}

export interface FileSpec {
  name: string;
  size: number;
  seed: number;
}

async function tarOf(files: FileSpec[]): Promise<Buffer> {
  const pack = tarStream.pack();
  for (const f of files) pack.entry({ name: f.name, mtime: new Date(0) }, contentFor(f.size, f.seed));
  pack.finalize();
  const parts: Buffer[] = [];
  for await (const c of pack) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

function blob(layout: string, bytes: Uint8Array): { digest: string; size: number } {
  const hex = createHash('sha256').update(bytes).digest('hex');
  writeFileSync(join(layout, 'blobs', 'sha256', hex), bytes);
  return { digest: `sha256:${hex}`, size: bytes.length };
}

/** A layout with one image `bench` whose layers are these tars, compressed as `blobs`. */
function writeLayout(layout: string, tars: Uint8Array[], blobs: Uint8Array[], c: Compression): void {
  rmSync(layout, { recursive: true, force: true });
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const layers = blobs.map((b) => ({ mediaType: MEDIA[c], ...blob(layout, b) }));
  const diffIds = tars.map((t) => `sha256:${createHash('sha256').update(t).digest('hex')}`);
  const config = blob(layout, Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } })));
  const manifest = blob(layout, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config }, layers })));
  writeFileSync(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'bench' } }] }));
}

export interface Shape {
  name: string;
  compression: Compression;
  /** The distinct layers. */
  layers: FileSpec[][];
  /** Each image's layers, as indexes into `layers`: one image, or several sharing a base. */
  images: number[][];
}

/** Files of `count` sizes spread over [min, min + span), under `dir`. */
function files(dir: string, count: number, min: number, span: number, seed: number): FileSpec[] {
  return Array.from({ length: count }, (_, i) => ({ name: `${dir}/d${i % 64}/f${i}`, size: min + ((i * 7919) % span), seed: seed + i }));
}

/** The workloads: about 500 MB of tar each in a full run (the model check needs that much), a few MB with `quick`. */
export function shapes(quick: boolean): Shape[] {
  const q = quick ? 1 : 100;
  const layerCount = quick ? 4 : 16;
  const one = [[0]];
  return [
    { name: 'import: many small files, one layer, gzip', compression: 'gzip', layers: [files('small', 1200 * q, 512, 7680, 0)], images: one },
    { name: 'import: few big files, one layer, plain', compression: 'none', layers: [files('big', quick ? 4 : 64, 8 << 20, 1, 1 << 20)], images: one },
    {
      name: `import: ${layerCount} layers, zstd`,
      compression: 'zstd',
      layers: Array.from({ length: layerCount }, (_, l) => files(`l${l}`, quick ? 150 : 1000, 4096, 61440, (2 + l) << 20)),
      images: [Array.from({ length: layerCount }, (_, l) => l)],
    },
    {
      name: 'import --all: 4 images sharing a base layer, gzip',
      compression: 'gzip',
      layers: Array.from({ length: 5 }, (_, l) => files(l === 0 ? 'base' : `app${l}`, quick ? 150 : 3300, 1024, 64512, (40 + l) << 20)),
      images: [1, 2, 3, 4].map((l) => [0, l]),
    },
  ];
}

export interface BuiltShape {
  tars: Buffer[];
  blobs: Uint8Array[];
  /** One layout per image: DIR/img0, DIR/img1... */
  layouts: string[];
}

/** Packs, compresses and writes the shape's images under `dir`. */
export async function buildShape(shape: Shape, dir: string): Promise<BuiltShape> {
  const tars: Buffer[] = [];
  for (const l of shape.layers) tars.push(await tarOf(l));
  const blobs = tars.map((t) => (shape.compression === 'gzip' ? gzipSync(t, { level: 1 }) : shape.compression === 'zstd' ? zstdCompress(t) : t));
  rmSync(dir, { recursive: true, force: true });
  const layouts = shape.images.map((layers, i) => {
    const layout = join(dir, `img${i}`);
    writeLayout(layout, layers.map((l) => tars[l] as Buffer), layers.map((l) => blobs[l] as Uint8Array), shape.compression);
    return layout;
  });
  return { tars, blobs, layouts };
}
