/**
 * The composefs image of a tagged image, kept in the store as composefs-rs keeps it
 * (composefs-oci `ensure_oci_composefs_erofs`, composefs `Repository::write_image`):
 *
 * - the EROFS image is an object, named by its fs-verity digest;
 * - `images/<hex>` links to that object;
 * - the image is written in the repository's EROFS format (meta.json, image-formats.ts), and
 *   images of its `extra` formats beside it, as composefs-rs's commit_images does;
 * - the config stream gets the named ref of each format written (`composefs.image.v1` for V1,
 *   `composefs.image` for V2 and for veritree's V0; image-formats.ts imageRefs) → its image
 *   object (so gc keeps it while the config is reachable), and the manifest stream is rewritten
 *   to name the new config
 *   stream. Stream names do not change, so the tag keeps naming the same manifest stream.
 *   The two links are re-pointed in an order a crash cannot break (writeStoreImage).
 *
 * The image is written from the tree `veritree dump` prints (composefs-rs's merge rules), copied
 * from the merged columns with the rules of the dumpfile reader `mkfs` uses
 * (merge/composefs-tree.ts): the image is what `mkcomposefs --from-file` makes of `veritree dump`
 * (composefs-tree.test.ts compares the two byte for byte).
 * @module
 */
import { ERROR_CODES, VeritreeError, throwIfAborted } from '../errors.ts';
import { composefsTreeOf } from '../merge/composefs-tree.ts';
import { manifestStreamNames, taggedImage } from '../store/images.ts';
import { lockOptionsFrom, type LockWaitOptions } from '../store/lock.ts';
import { writeObject } from '../store/objects.ts';
import type { Repository } from '../store/repository.ts';
import { SplitStreamBuilder, type SplitStream } from '../store/splitstream.ts';
import { readSplitStream } from '../store/splitstream-reader.ts';
import { toHex, verityDigest } from '../verity/index.ts';
import type { ErofsVersion } from '../store/meta.ts';
import { IMAGE_REF, IMAGE_REF_V1, imagePlan, imageRefKey, imageRefs, writerOptionsFor } from './image-formats.ts';
import { writeComposefsImage, type ComposefsImage } from './writer.ts';

export { IMAGE_REF } from './image-formats.ts';

export interface StoreImageOptions extends LockWaitOptions {
  onWarning?: (path: string, message: string) => void;
  /** Test seam: called after each durable step (a throw here is a crash at that point). */
  afterStep?: (step: StoreImageStep) => void;
  /** One format instead of the repository's (cfsctl's `--erofs-version`): no `extra` formats. */
  erofsVersion?: ErofsVersion;
}

export interface StoreImageReport {
  tag: string;
  /** The image's fs-verity digest (hex): its object id and its name under images/. */
  image: string;
  /** False when the store already had this image, linked and named by the config: nothing was written. */
  written: boolean;
  bytes: number;
  inodes: number;
  /** The composefs_version in the image's header (0, or 1 when the tree holds whiteouts or for V1; 2 for V2). */
  version: number;
  /** The repository's EROFS format the image is written in (composefs-rs's FormatVersion). */
  format: ErofsVersion;
  /** Images of the repository's `extra` formats, written beside it (not under the tag's image ref). */
  extra: { format: ErofsVersion; image: string }[];
  /** `extra` formats left out: none, now that every format is written (kept for scripts that read it). */
  skipped: ErofsVersion[];
  seconds: number;
}

/**
 * The composefs image of these layers' merged tree (diff_ids, bottom first; not stored), in
 * `format` (V0 when not given).
 */
export async function composefsImageOf(repo: Repository, diffIds: string[], opts: StoreImageOptions = {}, format: ErofsVersion = 0): Promise<ComposefsImage> {
  const writerOpts = writerOptionsFor(format);
  // The merged tree is gone once this returns: the image is written from the reader's tree alone.
  const root = await composefsTreeOf(repo, diffIds, opts);
  // Files are named by the repository's digests (SHA-512 ones in a SHA-512 repository, as
  // composefs-rs writes with its Sha512HashValue), and so the image's id is too.
  return writeComposefsImage(root, { ...writerOpts, hash: repo.alg, ...(opts.signal ? { signal: opts.signal } : {}) });
}

/** `old`'s one JSON object with these named refs (sorted by name) and unnamed stream refs. */
function rebuilt(old: SplitStream, kind: 'config' | 'manifest', refs: [string, string][], extra: string[] = []): Uint8Array {
  const b = new SplitStreamBuilder(old.alg, kind);
  const first = old.chunks[0];
  if (old.chunks.length !== 1 || first?.kind !== 'object') throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `the ${kind} stream does not hold one JSON object`);
  b.addObject(old.objectRefs[first.index] as string, old.streamSize);
  for (const [name, id] of refs.sort(([a], [b2]) => (a < b2 ? -1 : a > b2 ? 1 : 0))) b.addNamedRef(name, id);
  for (const id of extra) b.addStreamRef(id);
  return b.finish();
}

function namedRefsOf(s: SplitStream): [string, string][] {
  return s.namedRefs.map((r) => [r.name, s.streamRefs[r.index] as string]);
}

/** The named refs of a manifest with its `config:` ref naming `configId`. */
function withConfig(manifest: SplitStream, configId: string): [string, string][] {
  return namedRefsOf(manifest).map(([n, v]): [string, string] => (n.startsWith('config:') ? [n, configId] : [n, v]));
}

/**
 * Every manifest stream but `except` whose config is `oldConfig` (the config link not yet moved),
 * or that holds `newConfig` as an unnamed ref beside another config (a run cut off after step 1
 * or 2): each with its step-1 form (null when the config link has moved) and its final form,
 * both written as objects.
 */
async function sharingManifests(repo: Repository, except: string, oldConfig: string, newConfig: string, signal: AbortSignal | undefined): Promise<{ name: string; holdsBoth: string | null; final: string }[]> {
  const out: { name: string; holdsBoth: string | null; final: string }[] = [];
  for (const name of await manifestStreamNames(repo)) {
    throwIfAborted(signal);
    if (name === except) continue;
    const m = readSplitStream(await repo.readStreamBytes(name));
    const config = namedRefsOf(m).find(([n]) => n.startsWith('config:'))?.[1];
    if (config === undefined || config === newConfig) continue;
    const named = new Set(m.namedRefs.map((r) => r.index));
    const holdsNew = m.streamRefs.some((id, i) => id === newConfig && !named.has(i));
    // Before the config link moves: every manifest of the old config. After: those left between.
    if (oldConfig !== newConfig ? config !== oldConfig : !holdsNew) continue;
    const holdsBoth = oldConfig !== newConfig ? await put(repo, rebuilt(m, 'manifest', withConfig(m, config), [newConfig])) : null;
    out.push({ name, holdsBoth, final: await put(repo, rebuilt(m, 'manifest', withConfig(m, newConfig))) });
  }
  return out;
}

/** Where writeStoreImage is: each step is done and durable when this is called (a test seam). */
export type StoreImageStep = 'objects' | 'image-link' | 'manifest-holds-both' | 'config' | 'manifest';

async function put(repo: Repository, bytes: Uint8Array): Promise<string> {
  const id = toHex(verityDigest(bytes, repo.alg));
  await writeObject(repo.target, id, bytes);
  return id;
}

/**
 * Writes the tagged image's composefs image into the store (see the module comment). Running it
 * again finds everything in place and writes nothing; run after a crash, it finishes the relinks.
 *
 * The config and manifest links cannot change together, so they change in three steps, each
 * made durable before the next, and each leaving a store fsck accepts and gc keeps whole:
 * 1. the manifest link → a manifest naming the current config stream object as `config:` and
 *    the new one as an unnamed stream ref (so gc keeps both);
 * 2. the config link → the new config stream object (fsck accepts a config link that is such
 *    an unnamed ref holding the same JSON);
 * 3. the manifest link → the final manifest, naming only the new config.
 * A run that finds itself past step 2 (the config link already the new one) does step 3 only.
 */
export async function writeStoreImage(repo: Repository, tag: string, opts: StoreImageOptions = {}): Promise<StoreImageReport> {
  repo.assertWritable();
  const lock = await repo.lockShared(lockOptionsFrom(opts));
  try {
    return await writeStoreImageLocked(repo, tag, opts);
  } finally {
    await lock.release();
  }
}

/** writeStoreImage for a caller that holds the repository lock already (fsck --repair). */
export async function writeStoreImageLocked(repo: Repository, tag: string, opts: StoreImageOptions = {}): Promise<StoreImageReport> {
  const started = performance.now();
  repo.assertWritable();
  // The tag is followed once: the image, the config and the manifest rewritten are all of it.
  const plan = imagePlan(repo.erofsFormats, opts.erofsVersion);
  const t = await taggedImage(repo, tag);
  const img = await composefsImageOf(repo, t.diffIds, opts, plan.default);
  const id = toHex(verityDigest(img.bytes, repo.alg));
  let written = (await writeObject(repo.target, id, img.bytes)).written;
  // Each extra format is a tree of its own: the writer consumes the tree it is given.
  const extra: { format: ErofsVersion; image: string }[] = [];
  for (const format of plan.extra) {
    const x = await composefsImageOf(repo, t.diffIds, opts, format);
    const xid = toHex(verityDigest(x.bytes, repo.alg));
    if ((await writeObject(repo.target, xid, x.bytes)).written) written = true;
    extra.push({ format, image: xid });
  }
  // As composefs-oci's write_config_raw: the image refs are those of the formats written now.
  const refs = imageRefs(plan.default, id, extra);
  const configName = t.configStream;
  const linkedConfig = await repo.streamObject(configName);
  if (linkedConfig === null) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `the tag ${tag} names config stream ${configName}, which is missing; run veritree fsck`, { path: repo.streamPath(configName) });
  const config = readSplitStream(await repo.readStreamBytes(configName));
  const configBytes = rebuilt(config, 'config', [...namedRefsOf(config).filter(([n]) => n !== IMAGE_REF && n !== IMAGE_REF_V1), ...refs]);
  const configId = await put(repo, configBytes);
  const manifestId = await put(repo, rebuilt(t.manifest, 'manifest', withConfig(t.manifest, configId)));
  const linkedManifest = await repo.streamObject(t.manifestStream);
  const relinkConfig = linkedConfig !== configId;
  const holdsBoth = relinkConfig ? await put(repo, rebuilt(t.manifest, 'manifest', withConfig(t.manifest, linkedConfig), [configId])) : null;
  // Other manifests of the same config (the image stored with other layer compressions) move
  // with the config link, through the same three steps, or fsck would find them naming a config
  // object the link no longer is.
  const others = await sharingManifests(repo, t.manifestStream, linkedConfig, configId, opts.signal);
  const step = async (s: StoreImageStep): Promise<void> => {
    await repo.sync();
    opts.afterStep?.(s);
  };
  if (written || holdsBoth !== null || linkedManifest !== manifestId) await step('objects');
  for (const i of [id, ...extra.map((x) => x.image)]) {
    if (await repo.linkImage(i)) {
      written = true;
      await step('image-link');
    }
  }
  if (holdsBoth !== null) {
    await repo.replaceStream(t.manifestStream, holdsBoth);
    for (const o of others) if (o.holdsBoth !== null) await repo.replaceStream(o.name, o.holdsBoth);
    await step('manifest-holds-both');
    await repo.replaceStream(configName, configId);
    await step('config');
  }
  if (linkedManifest !== manifestId || holdsBoth !== null || others.length > 0) {
    await repo.replaceStream(t.manifestStream, manifestId);
    for (const o of others) await repo.replaceStream(o.name, o.final);
    written = true;
    await step('manifest');
  }
  return {
    tag,
    image: id,
    written,
    bytes: img.bytes.length,
    inodes: img.inodes,
    version: img.version,
    format: plan.default,
    extra,
    skipped: [],
    seconds: (performance.now() - started) / 1000,
  };
}

export interface ImageIdReport {
  tag: string;
  /** The fs-verity digest the image would have (hex), in the repository's default format. */
  image: string;
  format: ErofsVersion;
}

/**
 * The id of the tag's composefs image in the repository's default format (or `opts.erofsVersion`),
 * writing nothing (cfsctl's `oci compute-id`). Holds the shared lock while it reads.
 */
export async function computeImageId(repo: Repository, tag: string, opts: StoreImageOptions = {}): Promise<ImageIdReport> {
  const plan = imagePlan(repo.erofsFormats, opts.erofsVersion);
  const lock = await repo.lockShared(lockOptionsFrom(opts));
  try {
    const t = await taggedImage(repo, tag);
    const img = await composefsImageOf(repo, t.diffIds, opts, plan.default);
    return { tag, image: toHex(verityDigest(img.bytes, repo.alg)), format: plan.default };
  } finally {
    await lock.release();
  }
}

/**
 * The image the tag's config names under the ref of the repository's format (`composefs.image.v1`
 * for V1, else `composefs.image`: V2, or V0), or null when none was written.
 */
export async function storedImageOf(repo: Repository, tag: string): Promise<string | null> {
  const config = readSplitStream(await repo.readStreamBytes((await taggedImage(repo, tag)).configStream));
  const key = imageRefKey(repo.erofsFormats.default);
  return namedRefsOf(config).find(([n]) => n === key)?.[1] ?? null;
}
