/**
 * `veritree verify TAG`: the seal a stored image carries (inline in its stored manifest, or the
 * config label) checked against the image as the store holds it, as an import checks it.
 * A referrer artifact is not kept in the store, so only the import of its layout checks it.
 * @module
 */
import { jsonBlob } from '../oci/export.ts';
import { imageClaims } from '../oci/seal-claims.ts';
import { taggedImage } from '../store/images.ts';
import { lockOptionsFrom, type LockWaitOptions } from '../store/lock.ts';
import type { Repository } from '../store/repository.ts';
import { checkSeals, type SealReport } from './seal-check.ts';

export interface VerifySealOptions extends LockWaitOptions {
  onWarning?: (path: string, message: string) => void;
}

export interface VerifySealReport extends SealReport {
  tag: string;
  manifest: string;
  config: string;
}

/** The tagged image's seal, checked (`sealed` false when it carries none). Holds the shared lock. */
export async function verifyImageSeal(repo: Repository, tag: string, opts: VerifySealOptions = {}): Promise<VerifySealReport> {
  const lock = await repo.lockShared(lockOptionsFrom(opts));
  try {
    const t = await taggedImage(repo, tag);
    const manifestHex = t.manifestStream.slice(t.manifestStream.lastIndexOf(':') + 1);
    const configHex = t.configStream.slice(t.configStream.lastIndexOf(':') + 1);
    const manifestBytes = await jsonBlob(repo, t.manifestStream, manifestHex, 'manifest');
    const configBytes = await jsonBlob(repo, t.configStream, configHex, 'config');
    const claims = imageClaims(manifestBytes, configBytes);
    const report = await checkSeals(repo, { diffIds: t.diffIds, manifestBytes, configBytes }, claims, { signal: opts.signal, ...(opts.onWarning ? { onWarning: opts.onWarning } : {}) });
    return { tag, manifest: `sha256:${manifestHex}`, config: `sha256:${configHex}`, ...report };
  } finally {
    await lock.release();
  }
}
