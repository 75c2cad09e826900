/**
 * Writing a stored image back out as an OCI image layout (`veritree export IMAGE oci:DIR[:REF]`),
 * as `skopeo copy` and `umoci` read it. The config blob is the stored config, byte for byte (same
 * digest); each layer is rebuilt from its split stream, checked against its diff_id as it is
 * written, and stored uncompressed or gzip-compressed, so the layer blobs and the manifest are new.
 * The manifest keeps the original's annotations and its layers' annotations, with OCI media types
 * (a Docker manifest becomes an OCI one, as `skopeo copy --format oci` makes it).
 *
 * Every blob goes to a temporary name in blobs/sha256/ and is renamed to its digest once whole;
 * index.json is replaced by rename, last, so a failed export leaves the layout as it was (plus
 * blobs no manifest names).
 * @module
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { lstat, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants as zc, createGzip } from 'node:zlib';
import { ERROR_CODES, VeritreeError, errnoCode, storeIoError, throwIfAborted } from '../errors.ts';
import { taggedImage } from '../store/images.ts';
import { lockOptionsFrom, type LockWaitOptions } from '../store/lock.ts';
import { rebuildHashed } from '../store/rebuild.ts';
import type { Repository } from '../store/repository.ts';
import { readHeader, readSplitStream } from '../store/splitstream-reader.ts';
import { layerStreamName } from '../store/layout.ts';
import type { Descriptor } from './blob.ts';
import { MEDIA } from './media-types.ts';
import { REF_ANNOTATION } from './layout.ts';

export type ExportCompression = 'gzip' | 'none';

export interface ExportOptions extends LockWaitOptions {
  /** How layers are stored (default gzip). */
  compression?: ExportCompression;
  /** Layer bytes rebuilt so far, of all layers' total. */
  onBytes?: (done: number, total: number) => void;
  /** Annotations added to the written manifest (a seal's inline digests). */
  annotations?: ExportAnnotations;
  /** Manifests to write beside the image that refer to it (a seal artifact), given its descriptor and bytes. */
  referrers?: (subject: Descriptor, manifestBytes: Buffer) => ExportReferrer[];
}

export interface ExportAnnotations {
  /** The manifest's own `annotations`. */
  manifest?: Record<string, string>;
  /** The config descriptor's. */
  config?: Record<string, string>;
  /** Each layer descriptor's, by position. */
  layers?: (Record<string, string> | undefined)[];
}

export interface ExportReferrer {
  /** Every blob it needs (its manifest's bytes among them), each written under its sha256. */
  blobs: Buffer[];
  /** Its index.json entry. */
  descriptor: Descriptor;
}

export interface ExportReport {
  tag: string;
  layout: string;
  ref: string;
  manifest: string;
  config: string;
  layers: { diffId: string; digest: string; size: number }[];
  seconds: number;
}

const LAYER_TYPE: Record<ExportCompression, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
};

interface StoredManifest {
  annotations?: Record<string, string>;
  config?: Descriptor;
  layers?: (Descriptor & { annotations?: Record<string, string> })[];
}

/** The one object of a config or manifest stream, checked against the sha256 digest it is named by. */
export async function jsonBlob(repo: Repository, streamName: string, hex: string, what: string): Promise<Buffer> {
  const s = readSplitStream(await repo.readStreamBytes(streamName));
  const first = s.chunks[0];
  if (s.chunks.length !== 1 || first?.kind !== 'object') throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `${streamName} does not hold one JSON object`);
  const bytes = await repo.readObject(s.objectRefs[first.index] as string);
  const found = createHash('sha256').update(bytes).digest('hex');
  if (found !== hex) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `the stored ${what} is sha256:${found}, not sha256:${hex}: the store is damaged (run veritree fsck)`);
  return bytes;
}

/** Passes bytes on, hashing and counting them. */
class Tap extends Transform {
  readonly hash = createHash('sha256');
  size = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    cb(null, chunk);
  }
}

/** Rebuilds one layer into `tmp`, compressed as asked; its blob digest and size. */
async function writeLayerBlob(repo: Repository, diffIdHex: string, tmp: string, compression: ExportCompression, onBytes: (n: number) => void, signal: AbortSignal | undefined): Promise<{ hex: string; size: number }> {
  const stream = await repo.readStreamBytes(layerStreamName(diffIdHex));
  const gz = compression === 'gzip' ? createGzip({ level: zc.Z_DEFAULT_COMPRESSION }) : null;
  const tap = new Tap();
  const head = gz ?? tap;
  const written = gz ? pipeline(gz, tap, createWriteStream(tmp, { flags: 'wx', mode: 0o644 })) : pipeline(tap, createWriteStream(tmp, { flags: 'wx', mode: 0o644 }));
  // A failure of the write side ends the rebuild at its next piece.
  let failed: unknown = null;
  written.catch((e: unknown) => {
    failed = e;
  });
  const r = await rebuildHashed(repo, stream, {
    signal,
    onBytes,
    sink: async (piece) => {
      if (failed) throw failed;
      // The piece's memory is reused once this settles: the stream gets a copy.
      if (!head.write(Buffer.from(piece))) await new Promise<void>((resolve) => head.once('drain', resolve));
    },
  });
  head.end();
  await written;
  if (r.sha256 !== diffIdHex) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `layer sha256:${diffIdHex} rebuilds to sha256:${r.sha256}: the store is damaged (run veritree fsck)`);
  return { hex: tap.hash.digest('hex'), size: tap.size };
}

/** index.json's manifests, less any with this ref; a missing index is an empty one. */
async function indexWithout(layout: string, ref: string): Promise<{ schemaVersion: number; mediaType?: string; manifests: unknown[] } & Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(join(layout, 'index.json'), 'utf8');
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return { schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests: [] };
    throw storeIoError(e, join(layout, 'index.json'), 'reading the layout index');
  }
  let index: { manifests?: unknown } & Record<string, unknown>;
  try {
    index = JSON.parse(text) as typeof index;
  } catch (e) {
    throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${join(layout, 'index.json')} is not JSON: refusing to replace it`, { cause: e });
  }
  const manifests = Array.isArray(index.manifests) ? index.manifests : [];
  const keep = manifests.filter((m) => (m as { annotations?: Record<string, unknown> } | null)?.annotations?.[REF_ANNOTATION] !== ref);
  return { ...index, schemaVersion: 2, manifests: keep };
}

/**
 * Writes `bytes` to `dest` by a fresh tmp file (`wx`: never through a symlink or over a file
 * already there) renamed over it, so a symlink at `dest` is replaced, never followed.
 */
async function replaceFile(dest: string, bytes: Uint8Array | string): Promise<void> {
  const tmp = `${dest}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    await writeFile(tmp, bytes, { mode: 0o644, flag: 'wx' });
    await rename(tmp, dest);
  } finally {
    await rm(tmp, { force: true });
  }
}

/** Writes `bytes` as blobs/sha256/<hex> (kept when already there: blobs are content-named). */
async function putBlob(blobs: string, hex: string, bytes: Uint8Array): Promise<void> {
  await replaceFile(join(blobs, hex), bytes);
}

/**
 * Refuses a layout whose `blobs` or `blobs/sha256` is not a real folder: through a symlink, the
 * export would write outside DIR.
 */
async function checkBlobFolders(layout: string): Promise<void> {
  for (const f of [join(layout, 'blobs'), join(layout, 'blobs', 'sha256')]) {
    const st = await lstat(f);
    if (!st.isDirectory()) throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${f} is not a folder (a symlink or a file): refusing to write through it`);
  }
}

/**
 * Writes the tagged image as an OCI image layout at `layout` (made if missing; an existing layout
 * keeps its other images), under `ref` in index.json (an entry with the same ref is replaced).
 * Holds the repository's shared lock while it reads.
 * @throws VeritreeError STORE_CORRUPT when a stored blob or layer does not hash to its name
 */
export async function exportImage(repo: Repository, tag: string, layout: string, ref: string, opts: ExportOptions = {}): Promise<ExportReport> {
  const started = performance.now();
  const compression = opts.compression ?? 'gzip';
  if (!(compression in LAYER_TYPE)) throw new VeritreeError(ERROR_CODES.USAGE, `--compression ${String(compression)}: expected gzip or none`);
  if (ref === '' || /[\u0000-\u001f]/.test(ref)) throw new VeritreeError(ERROR_CODES.USAGE, `ref ${JSON.stringify(ref)}: not a usable ref name`);
  const lock = await repo.lockShared(lockOptionsFrom(opts));
  const blobs = join(layout, 'blobs', 'sha256');
  const tmps: string[] = [];
  try {
    const t = await taggedImage(repo, tag);
    const manifestHex = t.manifestStream.slice(t.manifestStream.lastIndexOf(':') + 1);
    const configHex = t.configStream.slice(t.configStream.lastIndexOf(':') + 1);
    const manifest = JSON.parse((await jsonBlob(repo, t.manifestStream, manifestHex, 'manifest')).toString('utf8')) as StoredManifest;
    const config = await jsonBlob(repo, t.configStream, configHex, 'config');
    const stored = manifest.layers ?? [];
    if (stored.length !== t.diffIds.length) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `the manifest of ${tag} names ${stored.length} layers, its config ${t.diffIds.length}`);
    try {
      await mkdir(blobs, { recursive: true });
    } catch (e) {
      throw storeIoError(e, blobs, 'making the layout folder');
    }
    await checkBlobFolders(layout);
    // Each stream's header gives its layer's size: progress is a fraction of the whole image.
    const sizes: number[] = [];
    for (const d of t.diffIds) sizes.push(Number(readHeader(await repo.readStreamBytes(layerStreamName(d.replace(/^sha256:/, '')))).streamSize));
    const total = sizes.reduce((a, b) => a + b, 0);
    let before = 0;
    const layers: ExportReport['layers'] = [];
    const descriptors: Descriptor[] = [];
    for (const [i, diffId] of t.diffIds.entries()) {
      throwIfAborted(opts.signal);
      const hex = diffId.replace(/^sha256:/, '');
      const tmp = join(blobs, `.tmp-${process.pid}-${i}-${Math.random().toString(36).slice(2)}`);
      tmps.push(tmp);
      const base = before;
      const blob = await writeLayerBlob(repo, hex, tmp, compression, (n) => opts.onBytes?.(base + n, total), opts.signal);
      await rename(tmp, join(blobs, blob.hex));
      before += sizes[i] ?? 0;
      const added = opts.annotations?.layers?.[i];
      const annotations = added ? { ...stored[i]?.annotations, ...added } : stored[i]?.annotations;
      descriptors.push({ mediaType: LAYER_TYPE[compression], digest: `sha256:${blob.hex}`, size: blob.size, ...(annotations ? { annotations } : {}) });
      layers.push({ diffId, digest: `sha256:${blob.hex}`, size: blob.size });
    }
    await putBlob(blobs, configHex, config);
    const out = {
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config: { mediaType: MEDIA.ociConfig, digest: `sha256:${configHex}`, size: config.length, ...(opts.annotations?.config ? { annotations: opts.annotations.config } : {}) },
      layers: descriptors,
      ...(manifest.annotations || opts.annotations?.manifest ? { annotations: { ...manifest.annotations, ...opts.annotations?.manifest } } : {}),
    };
    const manifestBytes = Buffer.from(JSON.stringify(out));
    const outHex = createHash('sha256').update(manifestBytes).digest('hex');
    await putBlob(blobs, outHex, manifestBytes);
    const index = await indexWithout(layout, ref);
    const subject: Descriptor = { mediaType: MEDIA.ociManifest, digest: `sha256:${outHex}`, size: manifestBytes.length };
    index.manifests.push({ ...subject, annotations: { [REF_ANNOTATION]: ref } });
    for (const r of opts.referrers?.(subject, manifestBytes) ?? []) {
      for (const b of r.blobs) await putBlob(blobs, createHash('sha256').update(b).digest('hex'), b);
      // The same referrer written again (the same export sealed again) is listed once.
      if (!index.manifests.some((m) => (m as { digest?: unknown } | null)?.digest === r.descriptor.digest)) index.manifests.push(r.descriptor);
    }
    await replaceFile(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    await replaceFile(join(layout, 'index.json'), JSON.stringify(index));
    // Durable before the command says it is done.
    for (const f of [join(layout, 'index.json'), ...layers.map((l) => join(blobs, l.digest.slice(7)))]) {
      const fh = await open(f, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    return { tag, layout, ref, manifest: `sha256:${outHex}`, config: `sha256:${configHex}`, layers, seconds: (performance.now() - started) / 1000 };
  } finally {
    // A temporary blob left by a failure: removing a file that was renamed into place is a no-op.
    for (const tmp of tmps) await rm(tmp, { force: true });
    await lock.release();
  }
}
