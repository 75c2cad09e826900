/**
 * Checking a sealed image: each digest its seal claims (seal-claims.ts) computed from the image
 * as veritree holds it, as composefs-rs's sealing specification defines them
 * (crates/composefs-oci/src/sealing_spec.rs):
 *
 * - `config` / `manifest`: the fs-verity digest of the JSON bytes, as stored;
 * - `merged` (`erofs.vN`): the fs-verity digest of the composefs image of all layers, written
 *   in format VN (V1: mkcomposefs `--min-version=1`), as `veritree image` writes it;
 * - `layer`: the same of that one layer's tree alone, merged by the same rules;
 * - the config label `containers.composefs.fsverity`: the image id, in a format the label does
 *   not name, so it holds when it is the V0, the V1 or the V2 id.
 *
 * An EROFS claim is computed in the repository's hash: a SHA-512 one in a SHA-512 repository (its
 * images name their files by SHA-512 digests), a SHA-256 one in a SHA-256 repository. A claim
 * veritree cannot compute (an EROFS claim of the other hash, 64 KiB blocks, a format past V2,
 * `merged.bootable`) is reported `unchecked`; the image is refused only for a digest computed and found different.
 * Signatures are reported, not checked.
 * @module
 */
import { ERROR_CODES, VeritreeError, isVeritreeError, throwIfAborted } from '../errors.ts';
import { composefsImageOf } from '../erofs/store-image.ts';
import type { SealClaim, SealClaims, SealSignature, SealSource } from '../oci/seal-claims.ts';
import type { Repository } from '../store/repository.ts';
import type { ErofsVersion } from '../store/meta.ts';
import { toHex, verityDigest } from '../verity/merkle.ts';

export interface SealCheck {
  key: string;
  source: SealSource;
  layer?: number;
  artifact?: string;
  expected: string;
  /** The digest computed (for the label: each format's, comma-separated); null when unchecked. */
  found: string | null;
  status: 'ok' | 'mismatch' | 'unchecked';
  /** Why a claim is unchecked. */
  why?: string;
}

export interface SealReport {
  /** Whether the image carries any seal digest. */
  sealed: boolean;
  /** No computed digest differs from its claim. */
  ok: boolean;
  checks: SealCheck[];
  signatures: SealSignature[];
}

export interface SealInput {
  /** The image's diff_ids, bottom first (their layer streams in `repo`). */
  diffIds: string[];
  manifestBytes: Uint8Array;
  configBytes: Uint8Array;
}

export interface SealCheckOptions {
  signal?: AbortSignal | undefined;
  onWarning?: (path: string, message: string) => void;
}

/** Computes images once each: a key per (layers, format). */
class ImageIds {
  readonly #ids = new Map<string, string>();
  readonly repo: Repository;
  readonly opts: SealCheckOptions;
  /** How many layers the whole image has. */
  readonly all: number;
  constructor(repo: Repository, opts: SealCheckOptions, all: number) {
    this.repo = repo;
    this.opts = opts;
    this.all = all;
  }

  async of(diffIds: string[], format: ErofsVersion): Promise<string> {
    const key = `${format}:${diffIds.join(',')}`;
    const known = this.#ids.get(key);
    if (known !== undefined) return known;
    // Warnings are the merged image's: a layer's tree alone lacks its parents' folders by nature.
    const warn = diffIds.length === this.all && this.opts.onWarning ? { onWarning: this.opts.onWarning } : {};
    const img = await composefsImageOf(this.repo, diffIds, { ...(this.opts.signal ? { signal: this.opts.signal } : {}), ...warn }, format);
    const id = toHex(verityDigest(img.bytes, this.repo.alg));
    this.#ids.set(key, id);
    return id;
  }
}

/** Why veritree cannot compute this EROFS claim, or null when it can. */
function erofsUncheckable(c: SealClaim, repo: Repository): string | null {
  if (c.role === 'merged.bootable') return 'the boot variant (no /boot, boot transformations) is not written by veritree';
  if (c.erofs !== 0 && c.erofs !== 1 && c.erofs !== 2) return `EROFS format v${c.erofs} is not written by veritree`;
  // An image's files are named by the repository's digests: a claim of another hash is of an image this repository cannot make.
  if (c.alg !== repo.alg) return `an image naming its files by ${c.alg} digests is not written by veritree in a ${repo.alg} repository`;
  return null;
}

async function checkOne(c: SealClaim, input: SealInput, repo: Repository, ids: ImageIds): Promise<Pick<SealCheck, 'found' | 'status' | 'why'>> {
  if (c.blockBits !== 12) return { found: null, status: 'unchecked', why: `fs-verity blocks of 2^${c.blockBits} bytes are not computed (composefs uses 4 KiB)` };
  if (c.role === 'config' || c.role === 'manifest') {
    const found = toHex(verityDigest(c.role === 'config' ? input.configBytes : input.manifestBytes, c.alg));
    return { found, status: found === c.expected ? 'ok' : 'mismatch' };
  }
  if (c.source === 'label') {
    if (repo.alg !== c.alg) return { found: null, status: 'unchecked', why: `the label's ${c.alg} image id is not computed in a ${repo.alg} repository` };
    const v0 = await ids.of(input.diffIds, 0);
    const v1 = await ids.of(input.diffIds, 1);
    if (c.expected === v0 || c.expected === v1) return { found: c.expected === v0 ? v0 : v1, status: 'ok' };
    const v2 = await ids.of(input.diffIds, 2);
    if (c.expected === v2) return { found: v2, status: 'ok' };
    return { found: `${v0},${v1},${v2}`, status: 'mismatch', why: 'the V0, the V1 and the V2 image ids' };
  }
  const why = erofsUncheckable(c, repo);
  if (why !== null) return { found: null, status: 'unchecked', why };
  const layers = c.role === 'layer' ? input.diffIds.slice(c.layer, (c.layer ?? 0) + 1) : input.diffIds;
  if (layers.length === 0) return { found: null, status: 'mismatch', why: `the image has no layer ${(c.layer ?? 0) + 1}` };
  const found = await ids.of(layers, c.erofs as ErofsVersion);
  return { found, status: found === c.expected ? 'ok' : 'mismatch' };
}

/**
 * Computes every claim of `claims` for the image. Reads the image's layer streams (the caller
 * holds the repository lock).
 */
export async function checkSeals(repo: Repository, input: SealInput, claims: SealClaims, opts: SealCheckOptions = {}): Promise<SealReport> {
  const ids = new ImageIds(repo, opts, input.diffIds.length);
  const checks: SealCheck[] = [];
  for (const c of claims.claims) {
    throwIfAborted(opts.signal);
    let r: Pick<SealCheck, 'found' | 'status' | 'why'>;
    try {
      r = await checkOne(c, input, repo, ids);
    } catch (e) {
      // An image veritree cannot write for this repository (its format or hash): not computed.
      if (!isVeritreeError(e) || e.code !== ERROR_CODES.STORE_UNSUPPORTED) throw e;
      r = { found: null, status: 'unchecked', why: e.message };
    }
    checks.push({
      key: c.key,
      source: c.source,
      ...(c.layer !== undefined ? { layer: c.layer } : {}),
      ...(c.artifact !== undefined ? { artifact: c.artifact } : {}),
      expected: c.expected,
      ...r,
    });
  }
  return { sealed: checks.length > 0, ok: checks.every((c) => c.status !== 'mismatch'), checks, signatures: claims.signatures };
}

/** Where a check's claim was found, in words. */
export function claimPlace(c: SealCheck): string {
  const where = c.source === 'label' ? 'config label' : c.source === 'artifact' ? `referrer ${c.artifact ?? ''}` : 'manifest';
  return `${c.key}${c.layer !== undefined ? ` (layer ${c.layer + 1})` : ''} in the ${where}`;
}

/**
 * Refuses an image whose seal a computed digest contradicts, naming each digest that differs.
 * @throws VeritreeError SEAL_MISMATCH
 */
export function assertSealHolds(report: SealReport, what: string): void {
  const bad = report.checks.filter((c) => c.status === 'mismatch');
  const first = bad[0];
  if (first === undefined) return;
  const list = bad.map((c) => `${claimPlace(c)}: expected ${c.expected}, computed ${c.found ?? '-'}${c.why ? ` (${c.why})` : ''}`).join('; ');
  throw new VeritreeError(ERROR_CODES.SEAL_MISMATCH, `${what}: the seal does not hold: ${list}`, { expected: first.expected, found: first.found ?? undefined });
}
