/**
 * Listing objects/: every entry, by what its name makes it (an object, a tmp file, anything else),
 * in name order, one fan-out folder at a time.
 * @module
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { storeIoError } from '../errors.ts';
import { digestSize, type HashAlgorithm } from '../verity/constants.ts';
import { TMP_PREFIX, type ObjectId } from './layout.ts';

export type ObjectEntry = { kind: 'object'; path: string; id: ObjectId } | { kind: 'tmp' | 'invalid'; path: string };

/**
 * Every entry of objects/: objects (by well-formed name), tmp files and anything else. A tmp
 * file is never an object, whatever its content: only a link to a final name makes one.
 */
export async function* walkObjects(objectsDir: string, alg: HashAlgorithm): AsyncGenerator<ObjectEntry> {
  const top = await readdir(objectsDir, { withFileTypes: true }).catch((e: unknown) => {
    throw storeIoError(e, objectsDir, 'listing objects', 'read');
  });
  const restLen = digestSize(alg) * 2 - 2;
  for (const d of top.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const path = join(objectsDir, d.name);
    if (d.name.startsWith(TMP_PREFIX)) {
      yield { kind: 'tmp', path };
      continue;
    }
    if (!d.isDirectory() || !/^[0-9a-f]{2}$/.test(d.name)) {
      yield { kind: 'invalid', path };
      continue;
    }
    for (const f of (await readdir(path, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const fp = join(path, f.name);
      if (f.name.startsWith(TMP_PREFIX)) yield { kind: 'tmp', path: fp };
      else if (f.isFile() && f.name.length === restLen && /^[0-9a-f]+$/.test(f.name)) yield { kind: 'object', path: fp, id: d.name + f.name };
      else yield { kind: 'invalid', path: fp };
    }
  }
}
