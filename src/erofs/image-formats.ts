/**
 * Which EROFS formats `veritree image` writes for a repository, and the config stream's named ref
 * each is kept under, as composefs-rs 0.9 decides them (crates/composefs/src/tree.rs
 * commit_images, crates/composefs-oci/src/lib.rs ensure_oci_composefs_erofs, write_config_raw).
 * @module
 */
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

/**
 * The writer's options for a format: V0 is mkcomposefs's default, V1 its `--min-version=1`, V2
 * composefs-rs's legacy writer (writer-v2.ts).
 */
export function writerOptionsFor(v: ErofsVersion): { minVersion: number } {
  return { minVersion: v };
}

export interface ImagePlan {
  /** The format that claims the tag's image (the repository's default, or the override). */
  default: ErofsVersion;
  /** Formats written beside it, as commit_images writes `extra`. */
  extra: ErofsVersion[];
}

/**
 * The formats to write: `override` alone when given (as cfsctl's `--erofs-version` narrows a
 * repository to one format), else the repository's default and its `extra` formats.
 */
export function imagePlan(formats: ErofsFormats, override?: ErofsVersion): ImagePlan {
  const f: ErofsFormats = override !== undefined ? { default: override, extra: [] } : formats;
  return { default: f.default, extra: f.extra.filter((v) => v !== f.default) };
}

/**
 * The config's named refs for the images written: the default's under its format's ref, then
 * each extra under its own ref where no image took that ref before it (composefs-oci's
 * write_config_raw names the V2 image `composefs.image` and the V1 one `composefs.image.v1`;
 * a V0 image, veritree's own, keeps `composefs.image` only as the default, and an extra V2 beside
 * a V0 default is written and linked under images/ but named by no ref).
 */
export function imageRefs(defaultFormat: ErofsVersion, defaultId: string, extra: readonly { format: ErofsVersion; image: string }[]): [string, string][] {
  const refs: [string, string][] = [[imageRefKey(defaultFormat), defaultId]];
  for (const x of extra) {
    if (x.format === 0) continue;
    const key = imageRefKey(x.format);
    if (!refs.some(([k]) => k === key)) refs.push([key, x.image]);
  }
  return refs;
}
