/**
 * The seal claims of an image being imported: those inline in its manifest and config, and those
 * of each composefs referrer artifact in the same layout (an index.json entry with `artifactType`
 * `application/vnd.composefs.metadata.v1` whose manifest's `subject` is the image's manifest).
 * @module
 */
import { throwIfAborted } from '../errors.ts';
import { readVerifiedBlob } from './blob.ts';
import type { ResolvedImage } from './layout.ts';
import { artifactClaims, artifactSubject, imageClaims, type SealClaims } from './seal-claims.ts';
import { SEAL_ARTIFACT_TYPE } from './seal-keys.ts';

/** Every seal claim the source carries for `image`; artifacts of other subjects are passed over. */
export async function sourceSealClaims(image: ResolvedImage, signal?: AbortSignal): Promise<SealClaims> {
  const out = imageClaims(image.manifestBytes, image.configBytes);
  for (const d of image.index) {
    throwIfAborted(signal);
    if (d.artifactType !== SEAL_ARTIFACT_TYPE || d.digest === image.manifestDescriptor.digest) continue;
    const what = `artifact ${d.digest}`;
    const bytes = await readVerifiedBlob(image.layout, d, what);
    const a = artifactSubject(bytes, what);
    if (a.artifactType !== SEAL_ARTIFACT_TYPE || a.subject !== image.manifestDescriptor.digest) continue;
    const c = artifactClaims(bytes, d.digest);
    // Loops, not spreads: the counts come from the artifact, which is input.
    for (const x of c.claims) out.claims.push(x);
    for (const x of c.signatures) out.signatures.push(x);
  }
  return out;
}
