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
import { composefsTreeOf } from '../merge/composefs-tree.ts';
import { taggedImage } from '../store/images.ts';
import { lockOptionsFrom, type LockWaitOptions } from '../store/lock.ts';
import { writeObject } from '../store/objects.ts';
import type { Repository } from '../store/repository.ts';
import { SplitStreamBuilder, readSplitStream, type SplitStream } from '../store/splitstream.ts';
import { toHex, verityDigest } from '../verity/index.ts';
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

/** The composefs image of these layers' merged tree (diff_ids, bottom first; not stored). */
export async function composefsImageOf(repo: Repository, diffIds: string[], opts: StoreImageOptions = {}): Promise<ComposefsImage> {
  if (repo.alg !== 'sha256') {
    throw new VeritreeError(ERROR_CODES.STORE_UNSUPPORTED, `composefs images name their files by SHA-256 fs-verity digests; ${repo.root} uses ${repo.alg}`);
  }
  // The merged tree is gone once this returns: the image is written from the reader's tree alone.
  const root = await composefsTreeOf(repo, diffIds, opts);
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
    // The tag is followed once: the image, the config and the manifest rewritten are all of it.
    const t = await taggedImage(repo, tag);
    const img = await composefsImageOf(repo, t.diffIds, opts);
    const id = toHex(verityDigest(img.bytes, repo.alg));
    let written = (await writeObject(repo.target, id, img.bytes)).written;
    const configName = t.configStream;
    const config = readSplitStream(await repo.readStreamBytes(configName));
    const configRefs = namedRefsOf(config);
    const current = configRefs.find(([n]) => n === IMAGE_REF)?.[1];
    // Every object first (the image, the rewritten config and manifest streams), made durable by
    // one syncfs; then the names. The config link is re-pointed before the manifest's: a crash
    // between them leaves the old manifest naming the old config stream object, which gc has
    // not collected.
    let relink: { configId: string; manifestId: string } | null = null;
    if (current !== id) {
      const configBytes = rebuilt(config, 'config', [...configRefs.filter(([n]) => n !== IMAGE_REF), [IMAGE_REF, id]]);
      const configId = toHex(verityDigest(configBytes, repo.alg));
      await writeObject(repo.target, configId, configBytes);
      const manifestRefs = namedRefsOf(t.manifest).map(([n, v]): [string, string] => (n.startsWith('config:') ? [n, configId] : [n, v]));
      const manifestBytes = rebuilt(t.manifest, 'manifest', manifestRefs);
      const manifestId = toHex(verityDigest(manifestBytes, repo.alg));
      await writeObject(repo.target, manifestId, manifestBytes);
      relink = { configId, manifestId };
    }
    if (written || relink) await repo.sync();
    if (await repo.linkImage(id)) written = true;
    if (relink) {
      await repo.replaceStream(configName, relink.configId);
      await repo.replaceStream(t.manifestStream, relink.manifestId);
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
  const config = readSplitStream(await repo.readStreamBytes((await taggedImage(repo, tag)).configStream));
  return namedRefsOf(config).find(([n]) => n === IMAGE_REF)?.[1] ?? null;
}
