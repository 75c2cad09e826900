/**
 * meta.json: reading it, judging it by composefs-rs's rules, and the bytes of a new one.
 * @module
 */
import { statSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { ERROR_CODES, VeritreeError, errnoCode, isVeritreeError, storeIoError } from '../errors.ts';
import type { HashAlgorithm } from '../verity/constants.ts';
import { measureVerity, openRegular, readAll } from './sys.ts';

/**
 * composefs-rs's EROFS formats (crates/composefs/src/erofs/format.rs FormatVersion): 0 is
 * `mkcomposefs`'s default output, 1 is `mkcomposefs --min-version=1`, 2 is composefs-rs's legacy
 * writer (extended inodes, DFS order, composefs_version 2).
 */
export type ErofsVersion = 0 | 1 | 2;

/** FormatConfig: the format that claims the image's ref, and others written beside it (sorted, unique). */
export interface ErofsFormats {
  default: ErofsVersion;
  extra: ErofsVersion[];
}

/** meta.json as composefs-rs 0.9 writes it (crates/composefs/src/repository.rs RepoMetadata). */
export interface RepoMeta {
  version: 1;
  algorithm: string;
  features: { compatible: string[]; 'read-only-compatible': string[]; incompatible: string[] };
  erofs_formats: { default: ErofsVersion; extra?: ErofsVersion[] };
}

/** The read-only-compatible flag composefs-rs sets when the default format is V1 (known_features::V1_EROFS). */
export const V1_EROFS = 'v1_erofs';

/** Feature flags this version understands (those of composefs-rs 0.9's known_features). */
const KNOWN_FEATURES = { compatible: [] as string[], readOnly: [V1_EROFS], incompatible: [] as string[] };

/** cfsctl init's default format (composefs-ctl: `--erofs-version` omitted means V1). */
export const DEFAULT_EROFS_VERSION: ErofsVersion = 1;

/** The format of a repository meta.json does not name: composefs-rs's legacy default, V2. */
export const LEGACY_EROFS_FORMATS: ErofsFormats = { default: 2, extra: [] };

const ALGORITHM_NAMES: Record<HashAlgorithm, string> = {
  sha256: 'fsverity-sha256-12',
  sha512: 'fsverity-sha512-12',
};

export interface ParsedMeta {
  alg: HashAlgorithm;
  /** Unknown read-only-compatible features: the repository may be read, not written. */
  readOnlyBecause: string[];
  /** The formats images are written in, as composefs-rs decides them (RepoMetadata::format_config). */
  erofsFormats: ErofsFormats;
}

function isErofsVersion(v: unknown): v is ErofsVersion {
  return v === 0 || v === 1 || v === 2;
}

/**
 * RepoMetadata::format_config: `erofs_formats` when it says anything but the legacy `{default: 2}`;
 * otherwise the `v1_erofs` flag means V1 and its absence V2 (repositories older than the field).
 */
function erofsFormatsOf(field: unknown, readOnly: string[], path: string): ErofsFormats {
  let explicit: ErofsFormats | null = null;
  if (field !== undefined) {
    const f = field as { default?: unknown; extra?: unknown } | null;
    const extra: unknown[] = f !== null && typeof f === 'object' && f.extra !== undefined ? (Array.isArray(f.extra) ? (f.extra as unknown[]) : [null]) : [];
    if (f === null || typeof f !== 'object' || !isErofsVersion(f.default) || !extra.every(isErofsVersion)) {
      throw new VeritreeError(ERROR_CODES.STORE_UNSUPPORTED, `${path}: erofs_formats ${JSON.stringify(field)} names an EROFS format this veritree does not know (it knows 0, 1 and 2)`, { path });
    }
    const def = f.default;
    explicit = { default: def, extra: [...new Set(extra as ErofsVersion[])].filter((v) => v !== def).sort() };
  }
  if (explicit !== null && (explicit.default !== 2 || explicit.extra.length > 0)) return explicit;
  return readOnly.includes(V1_EROFS) ? { default: 1, extra: [] } : { ...LEGACY_EROFS_FORMATS, extra: [] };
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
  const readOnly = list('read-only-compatible');
  return {
    alg: entry[0] as HashAlgorithm,
    readOnlyBecause: readOnly.filter((f) => !KNOWN_FEATURES.readOnly.includes(f)),
    erofsFormats: erofsFormatsOf((meta as { erofs_formats?: unknown }).erofs_formats, readOnly, path),
  };
}

/**
 * meta.json's bytes for a new repository, as `cfsctl init [--erofs-version N]` writes them
 * (RepoMetadata::new_with_formats, serde_json pretty, newline): `v1_erofs` only for a V1 default,
 * `extra` only when not empty.
 */
export function metaJson(hash: HashAlgorithm, formats: ErofsFormats = { default: DEFAULT_EROFS_VERSION, extra: [] }): string {
  const extra = [...new Set(formats.extra)].filter((v) => v !== formats.default).sort();
  const meta: RepoMeta = {
    version: 1,
    algorithm: ALGORITHM_NAMES[hash],
    features: { compatible: [], 'read-only-compatible': formats.default === 1 ? [V1_EROFS] : [], incompatible: [] },
    erofs_formats: extra.length > 0 ? { default: formats.default, extra } : { default: formats.default },
  };
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
