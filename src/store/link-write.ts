/**
 * Writing the store's symlinks (streams, tags, images) so that a reader never sees one half made
 * or absent: symlink(2) for a new link, a tmp link renamed over an old one that must move.
 * @module
 */
import { mkdir, readlink, rename, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode, storeIoError } from '../errors.ts';
import { STREAMS_DIR } from './layout.ts';

/** A tag's replacement link before it is renamed into place (streams/ holds it: same filesystem). */
export const STREAM_TMP_PREFIX = '.tmp-link-';

/** readlink(2), null only when there is no such entry (ENOENT). */
export async function readLinkOrNull(path: string): Promise<string | null> {
  try {
    return await readlink(path);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return null;
    throw storeIoError(e, path, 'reading a link', 'read');
  }
}

/**
 * symlink(2) is atomic: a new link appears whole, so a killed writer leaves nothing. Only a
 * link that must be replaced (a tag that moves) goes through a tmp link in streams/ (same
 * filesystem, never a gc root) renamed over it; gc removes such a tmp link left by a crash.
 */
export async function atomicSymlink(root: string, target: string, path: string, replace: boolean): Promise<void> {
  let tmp: string | null = null;
  try {
    await mkdir(join(path, '..'), { recursive: true });
    try {
      await symlink(target, path);
      return;
    } catch (e) {
      if (errnoCode(e) !== 'EEXIST') throw e;
    }
    if (!replace || (await readLinkOrNull(path)) === target) return;
    tmp = join(root, STREAMS_DIR, `${STREAM_TMP_PREFIX}${process.pid}-${Math.random().toString(36).slice(2)}`);
    await symlink(target, tmp);
    await rename(tmp, path);
  } catch (e) {
    // The link's own error is the one to report; a tmp link that cannot be removed either is
    // said, and left to gc.
    let left = '';
    if (tmp) {
      try {
        await rm(tmp, { force: true });
      } catch (r) {
        left = ` (its tmp link ${tmp} is left for gc: ${errnoCode(r) ?? String(r)})`;
      }
    }
    throw storeIoError(e, path, `publishing a link${left}`);
  }
}
