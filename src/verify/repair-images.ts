/**
 * fsck --repair for composefs images. A tag whose layers are whole but whose config names an
 * image object that is gone (quarantined as damaged, or deleted) gets its image written again,
 * as `veritree image TAG` writes it: the image is a function of the layers. Then every
 * images/<hex> link whose image is gone, misnamed, unreadable, or names an object that is gone
 * (judged after the quarantine), is removed, unless images/refs/ names it (a root veritree
 * cannot rebuild). So after one repair neither fsck nor gc trips over an image again.
 * @module
 */
import { readdir, readlink, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ERROR_CODES, errnoCode, isVeritreeError, storeIoError, throwIfAborted } from '../errors.ts';
import { composefsImageObjects } from '../erofs/reader.ts';
import { imageRefKey } from '../erofs/image-formats.ts';
import { taggedImage } from '../store/images.ts';
import { IMAGES_DIR, TAGS_DIR, objectIdFromLink, unescapeTag } from '../store/layout.ts';
import type { Repository } from '../store/repository.ts';
import { readRefs } from '../store/splitstream-reader.ts';
import type { StoreIssue } from './issues.ts';

export interface ImageRepair {
  /** Tags whose composefs image was gone and was written again. */
  imagesRewritten: { tag: string; image: string }[];
  /** Tags whose composefs image was gone and could not be written again, and why. */
  imagesNotRewritten: { tag: string; why: string }[];
  /** images/<hex> links removed: their image is gone or not whole. */
  imageLinksRemoved: string[];
}

const IMAGE_ISSUES = new Set(['broken-symlink', 'missing-object', 'image-corrupt', 'image-misnamed']);

async function present(repo: Repository, id: string): Promise<boolean> {
  try {
    return (await stat(repo.objectPath(id))).isFile();
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return false;
    throw storeIoError(e, repo.objectPath(id), 'looking for a composefs image');
  }
}

/** Folder entries; a folder that does not exist has none. */
async function entries(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return [];
    throw storeIoError(e, dir, 'listing a folder', 'read');
  }
}

/** The image a tag's config names (under its format's ref, image-formats.ts), or null when it names none or the tag is not whole. */
async function namedImage(repo: Repository, tag: string): Promise<string | null> {
  let configStream: string;
  try {
    configStream = (await taggedImage(repo, tag)).configStream;
    const refs = readRefs(await repo.readStreamBytes(configStream));
    const key = imageRefKey(repo.erofsFormats.default);
    const ref = refs.namedRefs.find((r) => r.name === key);
    return ref === undefined ? null : (refs.streamRefs[ref.index] ?? null);
  } catch (e) {
    // A tag that cannot be followed is dropBrokenTags' to judge, not this pass's.
    if (isVeritreeError(e) && e.code !== ERROR_CODES.ABORTED) return null;
    throw e;
  }
}

/**
 * Whether image `id` is there and every object it names is (judged now, after the quarantine:
 * an object fsck found damaged was present when fsck looked, and is gone now).
 */
async function imageWhole(repo: Repository, id: string, signal?: AbortSignal): Promise<boolean> {
  if (!(await present(repo, id))) return false;
  let objects: Set<string>;
  try {
    objects = composefsImageObjects(await repo.readObject(id), signal).objects;
  } catch (e) {
    if (!isVeritreeError(e) || e.code === ERROR_CODES.ABORTED) throw e;
    return false;
  }
  for (const o of objects) {
    throwIfAborted(signal);
    if (!(await present(repo, o))) return false;
  }
  return true;
}

/** Runs after the streams and tags that cannot be rebuilt are gone; the caller holds the exclusive lock. */
export async function repairImages(repo: Repository, issues: StoreIssue[], signal?: AbortSignal): Promise<ImageRepair> {
  const out: ImageRepair = { imagesRewritten: [], imagesNotRewritten: [], imageLinksRemoved: [] };
  for (const n of (await entries(join(repo.root, TAGS_DIR))).sort()) {
    throwIfAborted(signal);
    const tag = unescapeTag(n);
    const id = await namedImage(repo, tag);
    if (id === null || (await present(repo, id))) continue;
    // The writer is loaded only here: a repair with no image to write needs none of it.
    const { writeStoreImageLocked } = await import('../erofs/store-image.ts');
    try {
      const r = await writeStoreImageLocked(repo, tag, signal ? { signal } : {});
      out.imagesRewritten.push({ tag, image: r.image });
    } catch (e) {
      if (!isVeritreeError(e) || e.code === ERROR_CODES.ABORTED) throw e;
      out.imagesNotRewritten.push({ tag, why: e.message });
    }
  }
  const dir = join(repo.root, IMAGES_DIR);
  const named = new Set<string>();
  for (const r of await entries(join(dir, 'refs'))) {
    throwIfAborted(signal);
    const target = await readlink(join(dir, 'refs', r)).catch((e: unknown) => {
      // Something under images/refs/ that is not a link names nothing.
      if (errnoCode(e) === 'EINVAL') return '';
      throw storeIoError(e, join(dir, 'refs', r), 'reading an image ref', 'read');
    });
    named.add(target.split('/').pop() ?? '');
  }
  const reported = new Set(issues.filter((i) => IMAGE_ISSUES.has(i.type)).map((i) => i.path));
  const rewritten = new Set(out.imagesRewritten.map((r) => r.image));
  for (const name of (await entries(dir)).sort()) {
    throwIfAborted(signal);
    if (name === 'refs' || named.has(name) || rewritten.has(name)) continue;
    const path = join(dir, name);
    const target = await readlink(path).catch((e: unknown) => {
      if (errnoCode(e) === 'EINVAL') return '';
      throw storeIoError(e, path, 'reading an image link', 'read');
    });
    const id = objectIdFromLink(target);
    if (id === name && !reported.has(path) && (await imageWhole(repo, id, signal))) continue;
    try {
      await unlink(path);
    } catch (e) {
      throw storeIoError(e, path, 'removing an image link');
    }
    out.imageLinksRemoved.push(name);
  }
  return out;
}
