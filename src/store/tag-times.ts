/**
 * When each tag was last set: the mtime of its link under streams/refs/oci/ (a tag is re-pointed
 * by renaming a new link over it, so the time is that of its last import or move).
 * @module
 */
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode, storeIoError } from '../errors.ts';
import type { Repository } from './repository.ts';

export interface TagTime {
  tag: string;
  /** The manifest stream (or other stream) it names. */
  stream: string;
  /** Milliseconds since the epoch. */
  setAt: number;
}

/** Every tag with the time it was last set, newest first (ties by name). */
export async function tagsByAge(repo: Repository): Promise<TagTime[]> {
  const out: TagTime[] = [];
  for (const t of await repo.tagRefs()) {
    if (t.error) throw t.error;
    const { tag } = t;
    const stream = t.ref.entry;
    // The link itself: a tag in a sub-folder of refs/oci/ is not at its escaped name.
    const path = join(repo.root, t.link);
    try {
      out.push({ tag, stream, setAt: (await lstat(path)).mtimeMs });
    } catch (e) {
      // Removed since it was listed (an untag running beside us): it is no longer a tag.
      if (errnoCode(e) === 'ENOENT') continue;
      throw storeIoError(e, path, 'reading a tag', 'read');
    }
  }
  return out.sort((a, b) => b.setAt - a.setAt || (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0));
}
