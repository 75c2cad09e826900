/**
 * The names composefs-rs's OCI sealing specification gives to the digests that seal an image
 * (crates/composefs-oci/src/sealing_spec.rs), and the older config label its fsck still honours
 * (crates/composefs-oci/src/oci_image.rs). Names only: reading and computing them is elsewhere.
 *
 * A digest key is `composefs.{role}.erofs.v{N}.fsverity-{alg}-{bits}` for an EROFS (roles
 * `layer`, `merged`, `merged.bootable`) or `composefs.{role}.fsverity-{alg}-{bits}` for JSON
 * (roles `config`, `manifest`); the key with `.sig` appended carries a signature of that digest.
 * Values are lowercase hex.
 * @module
 */
import type { HashAlgorithm } from '../verity/constants.ts';

/** The referrer artifact's `artifactType`. */
export const SEAL_ARTIFACT_TYPE = 'application/vnd.composefs.metadata.v1';
/** The media type of a signature layer of the artifact (a raw PKCS#7 DER blob). */
export const SEAL_SIGNATURE_TYPE = 'application/vnd.composefs.signature.v1+pkcs7';
/** The config label `cfsctl oci seal` wrote before sealing_spec.rs: the image id, hex. */
export const LEGACY_SEAL_LABEL = 'containers.composefs.fsverity';
/** OCI's empty descriptor (artifacts guidance): the artifact's config, and an unsigned entry's layer. */
export const EMPTY_DESCRIPTOR = {
  mediaType: 'application/vnd.oci.empty.v1+json',
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
} as const;
export const EMPTY_BLOB = '{}';

export type SealRole = 'layer' | 'merged' | 'merged.bootable' | 'config' | 'manifest';

export interface SealKey {
  role: SealRole;
  /** The EROFS format version (`erofs.vN`); null for config and manifest. */
  erofs: number | null;
  /** The digest's hash, as the key spells it (sha256 or sha512). */
  alg: HashAlgorithm;
  /** log2 of the fs-verity block size: 12 (4 KiB) or 16 (64 KiB). */
  blockBits: number;
  /** True for the `.sig` key: its value is a base64 PKCS#7 signature, not a digest. */
  signature: boolean;
}

const EROFS_KEY = /^composefs\.(layer|merged|merged\.bootable)\.erofs\.v(\d{1,3})\.fsverity-(sha256|sha512)-(\d{1,2})(\.sig)?$/;
const JSON_KEY = /^composefs\.(config|manifest)\.fsverity-(sha256|sha512)-(\d{1,2})(\.sig)?$/;

/** The parts of a seal key, or null when `key` is not one. */
export function parseSealKey(key: string): SealKey | null {
  const e = EROFS_KEY.exec(key);
  if (e) return { role: e[1] as SealRole, erofs: Number(e[2]), alg: e[3] as HashAlgorithm, blockBits: Number(e[4]), signature: e[5] !== undefined };
  const j = JSON_KEY.exec(key);
  if (j) return { role: j[1] as SealRole, erofs: null, alg: j[2] as HashAlgorithm, blockBits: Number(j[3]), signature: j[4] !== undefined };
  return null;
}

/** The digest key of a role: an EROFS role with its format version, config and manifest without. */
export function sealKey(role: SealRole, alg: HashAlgorithm, erofs: number | null = role === 'config' || role === 'manifest' ? null : 1, blockBits = 12): string {
  return erofs === null ? `composefs.${role}.fsverity-${alg}-${blockBits}` : `composefs.${role}.erofs.v${erofs}.fsverity-${alg}-${blockBits}`;
}
