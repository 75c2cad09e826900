/**
 * The import's seal gate: an image whose source carries seal digests (inline, a referrer
 * artifact in its layout, or the older config label) is checked once its streams are stored and
 * before it is tagged, so that an image whose seal does not hold is never tagged (gc removes it).
 * @module
 */
import type { ResolvedImage } from '../oci/layout.ts';
import { sourceSealClaims } from '../oci/seal-source.ts';
import type { Repository } from '../store/repository.ts';
import { assertSealHolds, checkSeals, type SealReport } from '../verify/seal-check.ts';

/**
 * The seal's report, or null when the source carries none.
 * @throws VeritreeError SEAL_MISMATCH naming each digest that differs
 */
export async function checkSourceSeal(repo: Repository, image: ResolvedImage, source: string, signal: AbortSignal): Promise<SealReport | null> {
  const claims = await sourceSealClaims(image, signal);
  if (claims.claims.length === 0 && claims.signatures.length === 0) return null;
  const input = { diffIds: image.layers.map((l) => l.diffId), manifestBytes: image.manifestBytes, configBytes: image.configBytes };
  const report = await checkSeals(repo, input, claims, { signal });
  assertSealHolds(report, source);
  return report;
}
