/**
 * meta.json: reading it, judging it by composefs-rs's rules, and the bytes of a new one.
 * @module
 */
import { statSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { ERROR_CODES, VeritreeError, errnoCode, isVeritreeError, storeIoError } from '../errors.ts';
import type { HashAlgorithm } from '../verity/constants.ts';
import { measureVerity, openRegular, readAll } from './sys.ts';

/** meta.json as composefs-rs writes it (RepoMetadata: version, algorithm, feature flags). */
export interface RepoMeta {
  version: 1;
  algorithm: string;
  features: { compatible: string[]; 'read-only-compatible': string[]; incompatible: string[] };
}

/** Feature flags this version understands (composefs-rs defines none yet either). */
const KNOWN_FEATURES = { compatible: [] as string[], readOnly: [] as string[], incompatible: [] as string[] };

const ALGORITHM_NAMES: Record<HashAlgorithm, string> = {
  sha256: 'fsverity-sha256-12',
  sha512: 'fsverity-sha512-12',
};

export interface ParsedMeta {
  alg: HashAlgorithm;
  /** Unknown read-only-compatible features: the repository may be read, not written. */
  readOnlyBecause: string[];
}

/**
 * composefs-rs's rules (RepoMetadata::check_compatible): a version past 1, or an incompatible
 * feature we do not know, refuses the repository; an unknown read-only-compatible feature opens
 * it read-only; unknown compatible features are ignored.
 */
export function parseMeta(text: string, path: string): ParsedMeta {
  let meta: Partial<RepoMeta> & { features?: Record<string, unknown> };
  try {
    meta = JSON.parse(text) as typeof meta;
  } catch (e) {
    throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `${path} is not JSON`, { path, cause: e });
  }
  if (typeof meta.version === 'number' && meta.version > 1) {
    throw new VeritreeError(ERROR_CODES.STORE_UNSUPPORTED, `${path}: repository format version ${meta.version} is newer than this veritree understands (1)`, { path });
  }
  const entry = Object.entries(ALGORITHM_NAMES).find(([, name]) => name === meta.algorithm);
  if (meta.version !== 1 || !entry) {
    throw new VeritreeError(
      ERROR_CODES.STORE_CORRUPT,
      `${path}: unsupported repository (version ${String(meta.version)}, algorithm ${String(meta.algorithm)})`,
      { path }
    );
  }
  const list = (k: string): string[] => {
    const v = meta.features?.[k];
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  };
  const incompatible = list('incompatible').filter((f) => !KNOWN_FEATURES.incompatible.includes(f));
  if (incompatible.length > 0) {
    throw new VeritreeError(ERROR_CODES.STORE_UNSUPPORTED, `${path}: the repository requires features this veritree does not know: ${incompatible.join(', ')}`, { path });
  }
  return { alg: entry[0] as HashAlgorithm, readOnlyBecause: list('read-only-compatible').filter((f) => !KNOWN_FEATURES.readOnly.includes(f)) };
}

/** meta.json's bytes for a new repository, as composefs-rs writes them (pretty JSON, newline). */
export function metaJson(hash: HashAlgorithm): string {
  const meta: RepoMeta = { version: 1, algorithm: ALGORITHM_NAMES[hash], features: { compatible: [], 'read-only-compatible': [], incompatible: [] } };
  return JSON.stringify(meta, null, 2) + '\n';
}

const META_MAX_BYTES = 1 << 20;

/** meta.json's text and whether the file itself has fs-verity (null when it does not exist). */
export async function readMeta(metaPath: string): Promise<{ text: string; verity: boolean } | null> {
  let opened;
  try {
    opened = await openRegular(metaPath, 'meta.json');
  } catch (e) {
    const code = isVeritreeError(e) ? errnoCode(e.cause) : errnoCode(e);
    if (code === 'ENOENT') return null;
    if (code === 'ENOTDIR') throw notAFolder(dirname(metaPath), e);
    throw e;
  }
  const { fh, size } = opened;
  try {
    if (size > META_MAX_BYTES) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `meta.json ${metaPath} is ${size} bytes, more than the ${META_MAX_BYTES} allowed`, { path: metaPath });
    const verity = measureVerity(fh.fd).state === 'enabled';
    return { text: (await readAll(fh, size)).toString('utf8'), verity };
  } catch (e) {
    throw storeIoError(e, metaPath, 'reading meta.json', 'read');
  } finally {
    await fh.close();
  }
}

/** `--repo` naming a file, or a path through one: say so, not ENOTDIR. */
function notAFolder(root: string, cause: unknown): VeritreeError {
  let p = root;
  for (let up = dirname(p); up !== p; p = up, up = dirname(p)) {
    const st = statSyncOrNull(p);
    if (st && !st.isDirectory()) return new VeritreeError(ERROR_CODES.STORE_NOT_FOUND, `${root}: ${p === root ? 'it' : p} is a file, not a repository folder`, { path: root, cause });
    if (st) break;
  }
  return new VeritreeError(ERROR_CODES.STORE_NOT_FOUND, `${root}: not a folder`, { path: root, cause });
}

export function statSyncOrNull(p: string): Stats | null {
  try {
    return statSync(p);
  } catch {
    return null;
  }
}
