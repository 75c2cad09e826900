/**
 * The composefs image of a tagged image, kept in the store as composefs-rs keeps it
 * (composefs-oci `ensure_oci_composefs_erofs`, composefs `Repository::write_image`):
 *
 * - the EROFS image is an object, named by its fs-verity digest;
 * - `images/<hex>` links to that object;
 * - the config stream gets the named ref `composefs.image` → the image object (so gc keeps it
 *   while the config is reachable), and the manifest stream is rewritten to name the new config
 *   stream. Stream names do not change, so the tag keeps naming the same manifest stream.
 *
 * The image is written from the tree `veritree dump` prints (composefs-rs's merge rules), read
 * back through the same dumpfile reader `mkfs` uses: the image is by construction what
 * `mkcomposefs --from-file` makes of `veritree dump`.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { imageTree } from '../merge/image-tree.ts';
import { dumpLines } from '../merge/dump.ts';
import { readJsonStream } from '../store/images.ts';
import { STREAM_PREFIX, configStreamName } from '../store/layout.ts';
import { lockOptionsFrom, type LockWaitOptions } from '../store/lock.ts';
import { writeObject } from '../store/objects.ts';
import type { Repository } from '../store/repository.ts';
import { SplitStreamBuilder, readSplitStream, type SplitStream } from '../store/splitstream.ts';
import { toHex, verityDigest } from '../verity/index.ts';
import { parseDumpfile } from './dump-parse.ts';
import { writeComposefsImage, type ComposefsImage } from './writer.ts';

/** The config stream's named ref naming the image (composefs-oci IMAGE_REF_KEY). */
export const IMAGE_REF = 'composefs.image';

export interface StoreImageOptions extends LockWaitOptions {
  onWarning?: (path: string, message: string) => void;
}

export interface StoreImageReport {
  tag: string;
  /** The image's fs-verity digest (hex): its object id and its name under images/. */
  image: string;
  /** False when the store already had this image, linked and named by the config: nothing was written. */
  written: boolean;
  bytes: number;
  inodes: number;
  /** The composefs format version of the image (0, or 1 when the tree holds whiteouts). */
  version: number;
  seconds: number;
}

interface Manifest {
  config?: { digest?: string };
}

/** The composefs image of the tagged image's merged tree (not stored). */
export async function composefsImageOf(repo: Repository, tag: string, opts: StoreImageOptions = {}): Promise<ComposefsImage> {
  if (repo.alg !== 'sha256') {
    throw new VeritreeError(ERROR_CODES.STORE_UNSUPPORTED, `composefs images name their files by SHA-256 fs-verity digests; ${repo.root} uses ${repo.alg}`);
  }
  const tree = await imageTree(repo, tag, 'composefs');
  for (const w of tree.warnings) opts.onWarning?.(w.path, w.message);
  const lines = (function* (): Generator<Buffer> {
    for (const line of dumpLines(tree)) yield Buffer.from(`${line}\n`, 'latin1');
  })();
  const root = await parseDumpfile(lines, opts.signal ? { signal: opts.signal } : {});
  return writeComposefsImage(root, opts.signal ? { signal: opts.signal } : {});
}

function rebuilt(old: SplitStream, kind: 'config' | 'manifest', refs: [string, string][]): Uint8Array {
  const b = new SplitStreamBuilder(old.alg, kind);
  const first = old.chunks[0];
  if (old.chunks.length !== 1 || first?.kind !== 'object') throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `the ${kind} stream does not hold one JSON object`);
  b.addObject(old.objectRefs[first.index] as string, old.streamSize);
  for (const [name, id] of refs.sort(([a], [b2]) => (a < b2 ? -1 : a > b2 ? 1 : 0))) b.addNamedRef(name, id);
  return b.finish();
}

function namedRefsOf(s: SplitStream): [string, string][] {
  return s.namedRefs.map((r) => [r.name, s.streamRefs[r.index] as string]);
}

/**
 * Writes the tagged image's composefs image into the store (see the module comment). Running it
 * again finds everything in place and writes nothing.
 */
export async function writeStoreImage(repo: Repository, tag: string, opts: StoreImageOptions = {}): Promise<StoreImageReport> {
  const started = performance.now();
  repo.assertWritable();
  const lock = await repo.lockShared(lockOptionsFrom(opts));
  try {
    const t = (await repo.listTags()).find((x) => x.tag === tag);
    if (!t) throw new VeritreeError(ERROR_CODES.USAGE, `no image tagged ${JSON.stringify(tag)} in ${repo.root} (see veritree images)`);
    if (!t.stream.startsWith(STREAM_PREFIX.manifest)) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `tag ${tag} does not name a manifest stream`);
    const img = await composefsImageOf(repo, tag, opts);
    const id = toHex(verityDigest(img.bytes, repo.alg));
    let written = (await writeObject(repo.target, id, img.bytes)).written;
    const { stream: manifest, json } = await readJsonStream<Manifest>(repo, t.stream);
    const configName = configStreamName((json.config?.digest ?? '').replace(/^sha256:/, ''));
    const config = readSplitStream(await repo.readStreamBytes(configName));
    const configRefs = namedRefsOf(config);
    const current = configRefs.find(([n]) => n === IMAGE_REF)?.[1];
    if (written || current !== id) await repo.sync();
    if (await repo.linkImage(id)) written = true;
    if (current !== id) {
      // The new config stream first, then the manifest that names it: a crash between them leaves
      // the old manifest naming the old config stream object, which gc has not yet collected.
      const configBytes = rebuilt(config, 'config', [...configRefs.filter(([n]) => n !== IMAGE_REF), [IMAGE_REF, id]]);
      const configId = toHex(verityDigest(configBytes, repo.alg));
      await writeObject(repo.target, configId, configBytes);
      const manifestRefs = namedRefsOf(manifest).map(([n, v]): [string, string] => (n.startsWith('config:') ? [n, configId] : [n, v]));
      const manifestBytes = rebuilt(manifest, 'manifest', manifestRefs);
      const manifestId = toHex(verityDigest(manifestBytes, repo.alg));
      await writeObject(repo.target, manifestId, manifestBytes);
      await repo.sync();
      await repo.replaceStream(configName, configId);
      await repo.replaceStream(t.stream, manifestId);
      written = true;
    }
    if (written) await repo.sync();
    return { tag, image: id, written, bytes: img.bytes.length, inodes: img.inodes, version: img.version, seconds: (performance.now() - started) / 1000 };
  } finally {
    await lock.release();
  }
}

/** The image the tag's config names (`composefs.image`), or null when none was written. */
export async function storedImageOf(repo: Repository, tag: string): Promise<string | null> {
  const t = (await repo.listTags()).find((x) => x.tag === tag);
  if (!t) throw new VeritreeError(ERROR_CODES.USAGE, `no image tagged ${JSON.stringify(tag)} in ${repo.root} (see veritree images)`);
  const { json } = await readJsonStream<Manifest>(repo, t.stream);
  const config = readSplitStream(await repo.readStreamBytes(configStreamName((json.config?.digest ?? '').replace(/^sha256:/, ''))));
  return namedRefsOf(config).find(([n]) => n === IMAGE_REF)?.[1] ?? null;
}
