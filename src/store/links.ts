/**
 * The one resolver for the repository's symlinks, used by every command (gc, fsck, images,
 * checkout, dump, image, mount, untag), so that no command accepts a root that another ignores.
 *
 * It accepts exactly the forms composefs-rs writes (Repository::symlink_impl makes every link
 * relative, going up to the common folder and down again) and refuses everything else:
 * - an entry link `streams/<name>` or `images/<hex>`: exactly `../objects/XX/<rest>`, a
 *   well-formed object id of the repository's algorithm (an image's id is its name);
 * - a ref `<category>/refs/<path>`: exactly one `../` per folder between `<category>/` and the
 *   link, then the entry's name (`streams/refs/oci/T` → `../../<stream>`, `images/refs/N` →
 *   `../<hex>`); the entry must be such an entry link.
 * An absolute link, `./`, a second hop, a loop, a dangling entry: STORE_CORRUPT naming the link.
 * @module
 */
import { readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ERROR_CODES, VeritreeError, errnoCode, isVeritreeError, storeIoError, throwIfAborted } from '../errors.ts';
import { IMAGES_DIR, STREAMS_DIR, isObjectId, objectIdFromLink, type ObjectId } from './layout.ts';
import type { HashAlgorithm } from '../verity/constants.ts';

export type LinkCategory = typeof STREAMS_DIR | typeof IMAGES_DIR;

/** What the resolver needs of a repository (a structural type: no import cycle with repository.ts). */
export interface LinkRepo {
  readonly root: string;
  readonly alg: HashAlgorithm;
}

/** A ref followed to its object. `link` is relative to the repository root. */
export interface ResolvedRef {
  link: string;
  /** The entry it names: a stream name, or an image's hex id. */
  entry: string;
  id: ObjectId;
}

/** One link found under `<category>/refs/`: resolved, or why it cannot be. */
export type RefEntry = { link: string; ref: ResolvedRef; error?: undefined } | { link: string; ref?: undefined; error: VeritreeError };

function corrupt(repo: LinkRepo, rel: string, why: string): VeritreeError {
  return new VeritreeError(ERROR_CODES.STORE_CORRUPT, `link ${rel} ${why}; run veritree fsck`, { path: join(repo.root, rel) });
}

/** readlink(2); null only when there is no such entry (ENOENT). */
async function readLinkText(repo: LinkRepo, rel: string): Promise<string | null> {
  try {
    return await readlink(join(repo.root, rel));
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return null;
    if (errnoCode(e) === 'EINVAL') throw corrupt(repo, rel, 'is not a symlink');
    throw storeIoError(e, join(repo.root, rel), 'reading a link', 'read');
  }
}

/** A name that can be an entry of streams/ or images/ (one path component, not refs/). */
function isEntryName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && name !== 'refs' && !name.includes('/') && !name.includes('\0');
}

/** Why the entry link `<category>/<name>` is not of the form composefs-rs writes; its object when it is; null when absent. */
async function entryLink(repo: LinkRepo, category: LinkCategory, name: string): Promise<{ id: ObjectId } | { why: string } | null> {
  const target = await readLinkText(repo, join(category, name));
  if (target === null) return null;
  const id = objectIdFromLink(target, true);
  if (id === null || !isObjectId(id, repo.alg)) return { why: `points to ${JSON.stringify(target)}, not ../objects/XX/<digest>` };
  if (category === IMAGES_DIR && id !== name) return { why: `names object ${id}, not the image ${name}` };
  return { id };
}

/**
 * The object `streams/<name>` or `images/<hex>` links to; null when there is no such entry.
 * @throws VeritreeError STORE_CORRUPT when the entry is not a link of the form composefs-rs writes
 */
export async function entryObject(repo: LinkRepo, category: LinkCategory, name: string): Promise<ObjectId | null> {
  if (!isEntryName(name)) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `${JSON.stringify(name)} cannot be an entry of ${category}/`, { path: join(repo.root, category) });
  const r = await entryLink(repo, category, name);
  if (r !== null && 'why' in r) throw corrupt(repo, join(category, name), r.why);
  return r?.id ?? null;
}

/**
 * Follows the ref at `rel` (relative to the root, under `<category>/refs/`) to its entry and
 * object. @throws VeritreeError STORE_CORRUPT when it is absent, not a link of the form
 * composefs-rs writes, or names an entry that does not exist or is not sound
 */
export async function resolveRef(repo: LinkRepo, category: LinkCategory, rel: string): Promise<ResolvedRef> {
  const parts = rel.split('/');
  if (parts[0] !== category || parts[1] !== 'refs' || parts.length < 3) throw corrupt(repo, rel, `is not under ${category}/refs/`);
  const target = await readLinkText(repo, rel);
  if (target === null) throw corrupt(repo, rel, 'does not exist');
  const up = '../'.repeat(parts.length - 2);
  const entry = target.slice(up.length);
  if (!target.startsWith(up) || !isEntryName(entry)) throw corrupt(repo, rel, `points to ${JSON.stringify(target)}, not ${up}<${category === STREAMS_DIR ? 'stream' : 'image'}>`);
  const r = await entryLink(repo, category, entry);
  if (r === null) throw corrupt(repo, rel, `names ${category}/${entry}, which does not exist`);
  if ('why' in r) throw corrupt(repo, rel, `names ${category}/${entry}, which ${r.why}`);
  return { link: rel, entry, id: r.id };
}

/**
 * Every link under `<category>/refs/` (or `<category>/refs/<sub>/`), walked with an explicit
 * stack, each resolved or with why not. A folder that does not exist holds no refs; any other
 * error reading a folder is thrown (a read error is never "no roots"). An entry that is neither
 * a folder nor a link (a file, a FIFO) is an error entry.
 */
export async function listRefs(repo: LinkRepo, category: LinkCategory, sub?: string, signal?: AbortSignal): Promise<RefEntry[]> {
  const top = sub === undefined ? join(category, 'refs') : join(category, 'refs', sub);
  const out: RefEntry[] = [];
  const stack = [top];
  for (let d = stack.pop(); d !== undefined; d = stack.pop()) {
    throwIfAborted(signal);
    let entries;
    try {
      entries = await readdir(join(repo.root, d), { withFileTypes: true });
    } catch (e) {
      if (errnoCode(e) === 'ENOENT' && d === top) continue;
      throw storeIoError(e, join(repo.root, d), 'listing refs', 'read');
    }
    const links: string[] = [];
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const rel = `${d}/${e.name}`;
      if (e.isDirectory()) stack.push(rel);
      else if (e.isSymbolicLink()) links.push(rel);
      else out.push({ link: rel, error: corrupt(repo, rel, 'is not a symlink') });
    }
    // 64 at a time: a store with 100,000 tags is not 100,000 waits in a row.
    for (let i = 0; i < links.length; i += RESOLVE_BATCH) {
      throwIfAborted(signal);
      for (const entry of await Promise.all(links.slice(i, i + RESOLVE_BATCH).map((rel) => refEntry(repo, category, rel)))) out.push(entry);
    }
  }
  return out;
}

const RESOLVE_BATCH = 64;

/** resolveRef, with STORE_CORRUPT kept as the entry's error (anything else, an I/O error, is thrown). */
async function refEntry(repo: LinkRepo, category: LinkCategory, rel: string): Promise<RefEntry> {
  try {
    return { link: rel, ref: await resolveRef(repo, category, rel) };
  } catch (err) {
    if (!isVeritreeError(err) || err.code !== ERROR_CODES.STORE_CORRUPT) throw err;
    return { link: rel, error: err };
  }
}
