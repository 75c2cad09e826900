/**
 * Making a new repository on disk: its folders and its meta.json, as `cfsctl init` makes them.
 * Repository.init decides whether one is needed; this writes it.
 * @module
 */
import { mkdir, open, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { errnoCode, storeIoError } from '../errors.ts';
import type { HashAlgorithm } from '../verity/constants.ts';
import { META_FILE, OBJECTS_DIR, STREAMS_DIR, TAGS_DIR } from './layout.ts';
import { metaJson, statSyncOrNull, type ErofsFormats } from './meta.ts';
import { enableVerity, measureVerity } from './sys.ts';

/**
 * mkdir -p, with the real reason when it fails: Node's recursive mkdir reports ENOENT for the
 * first missing folder on a read-only filesystem; making that folder alone tells EROFS or EACCES.
 */
async function makeFolders(path: string, mode = 0o755): Promise<void> {
  try {
    await mkdir(path, { recursive: true, mode });
  } catch (e) {
    if (errnoCode(e) !== 'ENOENT') throw e;
    let first = path;
    while (dirname(first) !== first && !statSyncOrNull(dirname(first))) first = dirname(first);
    await mkdir(first);
    throw e;
  }
}

/** Enables fs-verity on a complete file: false where its filesystem has none. */
async function sealFile(path: string, hash: HashAlgorithm): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    return enableVerity(fh.fd, hash) === 'enabled' && measureVerity(fh.fd).state === 'enabled';
  } finally {
    await fh.close();
  }
}

/**
 * Writes the folders and meta.json of a new repository at `abs` (an absolute path). meta.json
 * gets fs-verity where the filesystem has it, unless `insecure`.
 * @returns whether meta.json has fs-verity (the repository is secure)
 * @throws VeritreeError a store I/O error naming `abs`
 */
export async function createRepositoryFiles(abs: string, hash: HashAlgorithm, formats: ErofsFormats | undefined, insecure: boolean): Promise<boolean> {
  const metaPath = join(abs, META_FILE);
  try {
    // As composefs-rs makes them: the repository folder 0700 (Repository::init), what is in it
    // 0755 (ensure_dir). An existing folder keeps its mode.
    await makeFolders(abs, 0o700);
    for (const d of [OBJECTS_DIR, STREAMS_DIR, TAGS_DIR]) await makeFolders(join(abs, d));
    const tmp = `${metaPath}.tmp-${process.pid}`;
    await writeFile(tmp, metaJson(hash, formats));
    // Enabled before the rename: a meta.json that has a name has its final fs-verity state.
    const secure = insecure ? false : await sealFile(tmp, hash);
    await rename(tmp, metaPath);
    return secure;
  } catch (e) {
    throw storeIoError(e, abs, 'creating the repository');
  }
}
