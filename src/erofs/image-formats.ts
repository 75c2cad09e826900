/**
 * Which EROFS formats `veritree image` writes for a repository, and the config stream's named ref
 * each is kept under, as composefs-rs 0.9 decides them (crates/composefs/src/tree.rs
 * commit_images, crates/composefs-oci/src/lib.rs ensure_oci_composefs_erofs).
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import type { ErofsFormats, ErofsVersion } from '../store/meta.ts';

/** The config's named ref for a V2 image (composefs-oci IMAGE_REF_KEY); veritree's V0 images use it too. */
export const IMAGE_REF = 'composefs.image';
/** The config's named ref for a V1 image (composefs-oci IMAGE_REF_KEY_V1). */
export const IMAGE_REF_V1 = 'composefs.image.v1';

/**
 * The named ref an image of this format is kept under. composefs-oci keeps V1 under
 * `composefs.image.v1` and V2 under `composefs.image`, and has no ref for V0 (a V0 repository's
 * OCI images fail there); veritree keeps V0 under `composefs.image`, as it always has.
 */
export function imageRefKey(v: ErofsVersion): string {
  return v === 1 ? IMAGE_REF_V1 : IMAGE_REF;
}

/** The writer's options for a format: V0 is mkcomposefs's default, V1 its `--min-version=1`. */
export function writerOptionsFor(v: ErofsVersion): { minVersion: number } {
  if (v === 2) throw v2Unsupported('the format asked for is ');
  return { minVersion: v };
}

export interface ImagePlan {
  /** The format that claims the tag's image (the repository's default, or the override). */
  default: ErofsVersion;
  /** Formats written beside it, as commit_images writes `extra`. */
  extra: ErofsVersion[];
  /** `extra` formats veritree cannot write (V2): left out, and said so. */
  skipped: ErofsVersion[];
}

function v2Unsupported(where: string): VeritreeError {
  return new VeritreeError(
    ERROR_CODES.STORE_UNSUPPORTED,
    `${where}EROFS format V2 (composefs-rs's legacy writer: extended inodes, DFS order, composefs_version 2), which veritree cannot write yet; ` +
      '`veritree image --erofs-version 0|1` writes an image in another format'
  );
}

/**
 * The formats to write: `override` alone when given (as cfsctl's `--erofs-version` narrows a
 * repository to one format), else the repository's. A V2 default is refused rather than written
 * in a format the repository does not name.
 * @throws VeritreeError STORE_UNSUPPORTED when the default is V2
 */
export function imagePlan(formats: ErofsFormats, root: string, override?: ErofsVersion): ImagePlan {
  const f: ErofsFormats = override !== undefined ? { default: override, extra: [] } : formats;
  if (f.default === 2) throw v2Unsupported(override !== undefined ? 'the format asked for is ' : `${root}: the repository's image format is `);
  const extra = f.extra.filter((v) => v !== f.default);
  return { default: f.default, extra: extra.filter((v) => v !== 2), skipped: extra.filter((v) => v === 2) };
}
