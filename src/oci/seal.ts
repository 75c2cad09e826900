/**
 * Sealing a stored image (`veritree seal TAG --out oci:DIR[:REF]`), as composefs-rs's OCI sealing
 * specification defines it (crates/composefs-oci/src/sealing_spec.rs), digest-only (no
 * signatures), with fs-verity digests of 4 KiB blocks in the repository's hash (SHA-256, or
 * SHA-512 in a SHA-512 repository, whose images name their files by SHA-512 digests); the keys
 * below are a SHA-256 repository's, `sha512` in place of `sha256` in a SHA-512 one:
 *
 * - inline (default): the image is exported (export.ts) with `composefs.merged.erofs.v1.
 *   fsverity-sha256-12` in the manifest's annotations, `composefs.config.fsverity-sha256-12` on
 *   the config descriptor and `composefs.layer.erofs.v1.fsverity-sha256-12` on each layer
 *   descriptor. The config is unchanged; the manifest is new.
 * - artifact: the image is exported unchanged, and beside it a referrer artifact
 *   (`artifactType` `application/vnd.composefs.metadata.v1`, `subject` the image's manifest)
 *   whose layers carry, in the specification's order, the manifest's, the config's and the merged
 *   image's digests. With no signature to carry, each layer is OCI's empty descriptor.
 *
 * The merged digest is that of the V1 image (mkcomposefs `--min-version=1`) of all layers, a
 * layer's that of the V1 image of its tree alone: what verify/seal-check.ts computes.
 * @module
 */
import { createHash } from 'node:crypto';
import { ERROR_CODES, VeritreeError, throwIfAborted } from '../errors.ts';
import { composefsImageOf } from '../erofs/store-image.ts';
import { taggedImage } from '../store/images.ts';
import { lockOptionsFrom } from '../store/lock.ts';
import type { Repository } from '../store/repository.ts';
import type { HashAlgorithm } from '../verity/constants.ts';
import { toHex, verityDigest } from '../verity/merkle.ts';
import type { Descriptor } from './blob.ts';
import { exportImageArchive } from './export-archive.ts';
import { exportImage, jsonBlob, type ExportOptions, type ExportReferrer, type ExportReport } from './export.ts';
import { parseSource } from './layout.ts';
import { MEDIA } from './media-types.ts';
import { EMPTY_BLOB, EMPTY_DESCRIPTOR, SEAL_ARTIFACT_TYPE, sealKey } from './seal-keys.ts';

export interface SealOptions extends Omit<ExportOptions, 'annotations' | 'referrers'> {
  /** Write a referrer artifact beside the unchanged image instead of inline annotations. */
  artifact?: boolean;
  onWarning?: (path: string, message: string) => void;
}

export interface SealWriteReport extends ExportReport {
  mode: 'inline' | 'artifact';
  /** Every digest written, by annotation key (layer keys as `KEY@N`, N the 1-based layer). */
  digests: Record<string, string>;
  /** The artifact manifest's digest (artifact mode). */
  artifact: string | null;
}

interface Computed {
  /** The config's sha256 digest (its name), and its fs-verity digest. */
  configDigest: string;
  config: string;
  merged: string;
  layers: string[];
  diffIds: string[];
}

async function compute(repo: Repository, tag: string, layers: boolean, opts: SealOptions): Promise<Computed> {
  const t = await taggedImage(repo, tag);
  const configHex = t.configStream.slice(t.configStream.lastIndexOf(':') + 1);
  const config = await jsonBlob(repo, t.configStream, configHex, 'config');
  // Warnings are the merged image's: a layer's tree alone lacks its parents' folders by nature.
  const idOf = async (diffIds: string[], warn: boolean): Promise<string> => {
    const imgOpts = { ...(opts.signal ? { signal: opts.signal } : {}), ...(warn && opts.onWarning ? { onWarning: opts.onWarning } : {}) };
    return toHex(verityDigest((await composefsImageOf(repo, diffIds, imgOpts, 1)).bytes, repo.alg));
  };
  const perLayer: string[] = [];
  if (layers) {
    for (const d of t.diffIds) {
      throwIfAborted(opts.signal);
      perLayer.push(await idOf([d], false));
    }
  }
  return { configDigest: `sha256:${configHex}`, config: toHex(verityDigest(config, repo.alg)), merged: await idOf(t.diffIds, true), layers: perLayer, diffIds: t.diffIds };
}

/** The artifact manifest for `subject`, its digests in the specification's layer order. */
function artifactOf(alg: HashAlgorithm, subject: Descriptor, manifestBytes: Buffer, c: Computed, keep: (a: ExportReferrer, digests: Record<string, string>) => void): ExportReferrer[] {
  const entries: [string, string][] = [
    [sealKey('manifest', alg), toHex(verityDigest(manifestBytes, alg))],
    [sealKey('config', alg), c.config],
    [sealKey('merged', alg), c.merged],
  ];
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      artifactType: SEAL_ARTIFACT_TYPE,
      config: EMPTY_DESCRIPTOR,
      layers: entries.map(([k, v]) => ({ ...EMPTY_DESCRIPTOR, annotations: { [k]: v } })),
      subject,
    })
  );
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  const a: ExportReferrer = { blobs: [Buffer.from(EMPTY_BLOB), bytes], descriptor: { mediaType: MEDIA.ociManifest, digest, size: bytes.length, artifactType: SEAL_ARTIFACT_TYPE } };
  keep(a, Object.fromEntries(entries));
  return [a];
}

/**
 * Writes the tagged image, sealed, to `target`: `oci:DIR[:REF]` (a layout; its other images are
 * kept) or `oci-archive:FILE[:REF]` (a tar of one), REF defaulting to the tag. Holds the
 * repository's shared lock throughout.
 * @throws VeritreeError USAGE for another target; STORE_CORRUPT when the tag moved while it ran
 */
export async function sealImage(repo: Repository, tag: string, target: string, opts: SealOptions = {}): Promise<SealWriteReport> {
  const { path, ref, archive } = parseSource(target);
  const lock = await repo.lockShared(lockOptionsFrom(opts));
  try {
    const artifact = opts.artifact === true;
    const alg = repo.alg;
    const c = await compute(repo, tag, !artifact, opts);
    let digests: Record<string, string> = {};
    let artifactDigest: string | null = null;
    const exportOpts: ExportOptions = { ...opts };
    if (artifact) {
      exportOpts.referrers = (subject, manifestBytes) =>
        artifactOf(alg, subject, manifestBytes, c, (a, d) => {
          artifactDigest = a.descriptor.digest;
          digests = d;
        });
    } else {
      const layerKey = sealKey('layer', alg);
      exportOpts.annotations = {
        manifest: { [sealKey('merged', alg)]: c.merged },
        config: { [sealKey('config', alg)]: c.config },
        layers: c.layers.map((v) => ({ [layerKey]: v })),
      };
      digests = { [sealKey('merged', alg)]: c.merged, [sealKey('config', alg)]: c.config, ...Object.fromEntries(c.layers.map((v, i) => [`${layerKey}@${i + 1}`, v])) };
    }
    const r = await (archive ? exportImageArchive : exportImage)(repo, tag, path, ref ?? tag, exportOpts);
    // The export follows the tag again: it must have found the image the digests are of.
    if (r.layers.map((l) => l.diffId).join() !== c.diffIds.join() || r.config !== c.configDigest) {
      throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `the tag ${tag} moved while it was sealed: seal it again`);
    }
    return { ...r, mode: artifact ? 'artifact' : 'inline', digests, artifact: artifactDigest };
  } finally {
    await lock.release();
  }
}
