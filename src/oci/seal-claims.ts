/**
 * The seal digests an image carries, read from where composefs-rs's sealing specification puts
 * them (crates/composefs-oci/src/sealing_spec.rs): inline on the manifest (its `annotations`,
 * the config descriptor's, each layer descriptor's), in referrer artifacts (each layer's
 * annotations; a PKCS#7 layer is that entry's signature), and the older config label
 * `containers.composefs.fsverity` (Labels of the config's `config`). Reading only: seal-check.ts
 * computes what each claims.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import type { HashAlgorithm } from '../verity/constants.ts';
import { LEGACY_SEAL_LABEL, SEAL_SIGNATURE_TYPE, parseSealKey, type SealRole } from './seal-keys.ts';

export type SealSource = 'inline' | 'artifact' | 'label';

export interface SealClaim {
  /** The annotation key (or the label's name). */
  key: string;
  role: SealRole;
  /** EROFS format version of an EROFS role (null for config, manifest and the label). */
  erofs: number | null;
  alg: HashAlgorithm;
  blockBits: number;
  /** The digest claimed, as written. */
  expected: string;
  source: SealSource;
  /** For a `layer` claim: the layer's 0-based position in the manifest. */
  layer?: number;
  /** For an artifact's claim: the artifact manifest's digest. */
  artifact?: string;
}

export interface SealSignature {
  key: string;
  source: 'inline' | 'artifact';
  /** Inline: the decoded PKCS#7 size in bytes. Artifact: the signature blob's size. */
  bytes: number;
  /** Artifact: the signature blob's digest. */
  blob?: string;
  layer?: number;
  artifact?: string;
}

export interface SealClaims {
  claims: SealClaim[];
  signatures: SealSignature[];
}

interface JsonDescriptor {
  mediaType?: unknown;
  digest?: unknown;
  size?: unknown;
  annotations?: unknown;
}

function stringMap(v: unknown): [string, string][] {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return [];
  return Object.entries(v as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string');
}

function parse(bytes: Uint8Array, what: string): Record<string, unknown> {
  let o: unknown;
  try {
    o = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${what} is not JSON`, { cause: e });
  }
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${what} is not a JSON object`);
  return o as Record<string, unknown>;
}

/** Adds the seal keys among `annotations` (others are ignored). */
function collect(out: SealClaims, annotations: unknown, where: Omit<SealClaim, 'key' | 'role' | 'erofs' | 'alg' | 'blockBits' | 'expected'>): void {
  for (const [key, value] of stringMap(annotations)) {
    const k = parseSealKey(key);
    if (!k) continue;
    if (k.signature) {
      if (where.source === 'label') continue;
      out.signatures.push({ key, source: where.source, bytes: Buffer.from(value, 'base64').length, ...(where.layer !== undefined ? { layer: where.layer } : {}) });
      continue;
    }
    out.claims.push({ key, role: k.role, erofs: k.erofs, alg: k.alg, blockBits: k.blockBits, expected: value, ...where });
  }
}

/** The inline claims of a manifest and the label of its config. */
export function imageClaims(manifestBytes: Uint8Array, configBytes: Uint8Array): SealClaims {
  const out: SealClaims = { claims: [], signatures: [] };
  const m = parse(manifestBytes, 'the manifest');
  collect(out, m.annotations, { source: 'inline' });
  collect(out, (m.config as JsonDescriptor | undefined)?.annotations, { source: 'inline' });
  const layers = Array.isArray(m.layers) ? (m.layers as JsonDescriptor[]) : [];
  for (const [i, l] of layers.entries()) collect(out, l?.annotations, { source: 'inline', layer: i });
  // A key in the wrong place claims something else: a layer key only on a layer, and so on.
  out.claims = out.claims.filter((c) => (c.role === 'layer') === (c.layer !== undefined) && c.role !== 'manifest');
  const c = parse(configBytes, 'the config');
  const labels = stringMap((c.config as { Labels?: unknown } | undefined)?.Labels);
  const label = labels.find(([k]) => k === LEGACY_SEAL_LABEL);
  if (label) out.claims.push({ key: LEGACY_SEAL_LABEL, role: 'merged', erofs: null, alg: 'sha256', blockBits: 12, expected: label[1], source: 'label' });
  return out;
}

/**
 * The claims and signatures of one composefs referrer artifact (its manifest's bytes), whose
 * subject is the image. Layer claims are not the artifact's: the specification lists only
 * manifest, config, merged and merged.bootable entries.
 */
export function artifactClaims(artifactBytes: Uint8Array, artifactDigest: string): SealClaims {
  const out: SealClaims = { claims: [], signatures: [] };
  const a = parse(artifactBytes, `artifact ${artifactDigest}`);
  const layers = Array.isArray(a.layers) ? (a.layers as JsonDescriptor[]) : [];
  for (const [i, l] of layers.entries()) {
    const one: SealClaims = { claims: [], signatures: [] };
    collect(one, l?.annotations, { source: 'artifact', artifact: artifactDigest });
    const added = one.claims.filter((c) => c.role !== 'layer');
    // One push per claim: an artifact's annotations are input, and a spread of them could overflow the stack.
    for (const c of added) out.claims.push(c);
    if (l?.mediaType === SEAL_SIGNATURE_TYPE && typeof l.digest === 'string' && typeof l.size === 'number') {
      for (const c of added) out.signatures.push({ key: `${c.key}.sig`, source: 'artifact', bytes: l.size, blob: l.digest, layer: i, artifact: artifactDigest });
    }
  }
  return out;
}

/** The subject digest of an artifact manifest, or null when it has none. */
export function artifactSubject(artifactBytes: Uint8Array, what: string): { artifactType: unknown; subject: string | null } {
  const a = parse(artifactBytes, what);
  const s = (a.subject as JsonDescriptor | undefined)?.digest;
  return { artifactType: a.artifactType, subject: typeof s === 'string' ? s : null };
}
