/**
 * Sealed images (composefs-rs's sealing_spec.rs): `veritree seal` writes the composefs digests
 * inline or as a referrer artifact; `veritree import` of the sealed layout into a fresh store
 * computes them and accepts it, and refuses, before tagging, a layout in which one byte of one
 * file was changed and every other digest (blob, diff_id, config, manifest, artifact) fixed up,
 * naming the merged digest. The older config label is checked the same way (a V0, V1 or V2 id);
 * `erofs.v2` keys are computed too; digests veritree cannot compute are reported unchecked,
 * signatures reported.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, cleanup, tempDir, veritree } from './helpers.ts';
import { toHex, verityDigest } from '../src/verity/index.ts';

const dir = tempDir('veritree-seal-');
after(() => cleanup(dir));
const repo = join(dir, 'repo');
const MERGED = 'composefs.merged.erofs.v1.fsverity-sha256-12';
const CONFIG = 'composefs.config.fsverity-sha256-12';
const MANIFEST = 'composefs.manifest.fsverity-sha256-12';
const LAYER = 'composefs.layer.erofs.v1.fsverity-sha256-12';

interface Desc {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  artifactType?: string;
}
interface Manifest {
  config: Desc;
  layers: Desc[];
  annotations?: Record<string, string>;
  artifactType?: string;
  subject?: Desc;
}
interface SealCheck {
  key: string;
  status: string;
  layer?: number;
}
interface Imported {
  ok: boolean;
  seals: { sealed: boolean; ok: boolean; checks: SealCheck[]; signatures: { key: string; bytes: number }[] } | null;
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const verity = (b: Uint8Array): string => toHex(verityDigest(b, 'sha256'));

/** A layout's blobs and index, read and rewritten in place. */
class Layout {
  readonly path: string;
  constructor(path: string) {
    this.path = path;
  }
  blob(digest: string): Buffer {
    return readFileSync(join(this.path, 'blobs', 'sha256', digest.slice(7)));
  }
  put(bytes: Buffer): string {
    const d = `sha256:${sha(bytes)}`;
    writeFileSync(join(this.path, 'blobs', 'sha256', d.slice(7)), bytes);
    return d;
  }
  json<T>(digest: string): T {
    return JSON.parse(this.blob(digest).toString('utf8')) as T;
  }
  index(): { manifests: Desc[] } & Record<string, unknown> {
    return JSON.parse(readFileSync(join(this.path, 'index.json'), 'utf8')) as { manifests: Desc[] };
  }
  /** Replaces the index entry `old` by a descriptor of `bytes` (written as a blob). */
  replace(old: string, bytes: Buffer): Desc {
    const digest = this.put(bytes);
    const index = this.index();
    const e = index.manifests.find((m) => m.digest === old) as Desc;
    e.digest = digest;
    e.size = bytes.length;
    writeFileSync(join(this.path, 'index.json'), JSON.stringify(index));
    return { mediaType: e.mediaType, digest, size: bytes.length };
  }
  image(): { entry: Desc; manifest: Manifest } {
    const entry = this.index().manifests.find((m) => m.artifactType === undefined) as Desc;
    return { entry, manifest: this.json<Manifest>(entry.digest) };
  }
}

/** Flips one byte of the first non-empty regular file of the uncompressed tar; false when it has none. */
function flipOneByte(tar: Buffer): boolean {
  for (let off = 0; off + 512 <= tar.length; ) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) return false;
    const size = parseInt(h.subarray(124, 136).toString('latin1').replace(/\0.*$/s, '').trim() || '0', 8);
    const type = String.fromCharCode(h[156] ?? 0);
    if ((type === '0' || type === '\0') && size > 0) {
      tar[off + 512] = (tar[off + 512] ?? 0) ^ 1;
      return true;
    }
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return false;
}

/**
 * Changes one byte of one file of the top-most layer that has one, and fixes up every digest
 * but the composefs ones of the tree: layer blob, diff_id, config (and its seal digest, when
 * inline), manifest, index entry. Returns the new manifest's descriptor.
 */
function tamper(l: Layout): { subject: Desc; configBytes: Buffer } {
  const { entry, manifest } = l.image();
  const config = l.json<{ rootfs: { diff_ids: string[] } }>(manifest.config.digest);
  let changed = -1;
  for (let i = manifest.layers.length - 1; i >= 0 && changed < 0; i--) {
    const layer = manifest.layers[i] as Desc;
    assert.equal(layer.mediaType, 'application/vnd.oci.image.layer.v1.tar', 'layers are uncompressed (seal --compression none)');
    const tar = Buffer.from(l.blob(layer.digest));
    if (!flipOneByte(tar)) continue;
    layer.digest = l.put(tar);
    config.rootfs.diff_ids[i] = layer.digest;
    changed = i;
  }
  assert.ok(changed >= 0, 'a layer holds a regular file');
  const configBytes = Buffer.from(JSON.stringify(config));
  manifest.config = { ...manifest.config, digest: l.put(configBytes), size: configBytes.length };
  if (manifest.config.annotations?.[CONFIG] !== undefined) manifest.config.annotations[CONFIG] = verity(configBytes);
  return { subject: l.replace(entry.digest, Buffer.from(JSON.stringify(manifest))), configBytes };
}

function importJson(source: string, store: string): { status: number | null; report: Imported | null; stderr: string } {
  const r = veritree(['import', source, 'x', '--json', '--repo', store]);
  return { status: r.status, report: r.status === 0 ? (JSON.parse(r.stdout) as Imported) : null, stderr: r.stderr };
}

function tags(store: string): string[] {
  const r = veritree(['images', '--json', '--repo', store]);
  return r.status === 0 ? (JSON.parse(r.stdout) as { tag: string }[]).map((i) => i.tag) : [];
}

before(() => {
  const r = veritree(['import', `oci:${join(ROOT, 'example', 'oci')}:latest`, 'ex', '--repo', repo]);
  assert.equal(r.status, 0, r.stderr);
});

test('seal (inline): a fresh store accepts the sealed layout; one changed byte is refused, naming the merged digest', () => {
  const out = join(dir, 'inline');
  const s = veritree(['seal', 'ex', '--out', `oci:${out}:sealed`, '--compression', 'none', '--json', '--repo', repo]);
  assert.equal(s.status, 0, s.stderr);
  const sealed = JSON.parse(s.stdout) as { digests: Record<string, string> };
  const l = new Layout(out);
  const { manifest } = l.image();
  // Each digest where the specification puts it.
  assert.equal(manifest.annotations?.[MERGED], sealed.digests[MERGED]);
  assert.equal(manifest.config.annotations?.[CONFIG], verity(l.blob(manifest.config.digest)));
  assert.equal(manifest.layers.length, 2);
  for (const layer of manifest.layers) assert.match(layer.annotations?.[LAYER] ?? '', /^[0-9a-f]{64}$/);
  // The merged digest is the V1 image id.
  assert.equal(veritree(['compute-id', 'ex', '--erofs-version', '1', '--repo', repo]).stdout.trim(), sealed.digests[MERGED]);

  const good = importJson(`oci:${out}:sealed`, join(dir, 'fresh-inline'));
  assert.equal(good.status, 0, good.stderr);
  assert.equal(good.report?.seals?.ok, true);
  assert.deepEqual(good.report?.seals?.checks.map((c) => `${c.key}${c.layer ?? ''}:${c.status}`).sort(), [`${CONFIG}:ok`, `${LAYER}0:ok`, `${LAYER}1:ok`, `${MERGED}:ok`]);
  const v = veritree(['verify', 'x', '--repo', join(dir, 'fresh-inline')]);
  assert.equal(v.status, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /the seal of x holds: 4 digests match/);

  tamper(l);
  const fresh = join(dir, 'fresh-inline-bad');
  const bad = importJson(`oci:${out}:sealed`, fresh);
  assert.equal(bad.status, 3, 'SEAL_MISMATCH is bad input');
  assert.match(bad.stderr, new RegExp(`${MERGED.replace(/\./g, '\\.')} in the manifest: expected ${sealed.digests[MERGED]}, computed [0-9a-f]{64}`));
  assert.deepEqual(tags(fresh), [], 'the refused image is not tagged');
});

test('seal --artifact: the image is unchanged, the referrer is accepted, and one changed byte is refused naming the merged digest', () => {
  const out = join(dir, 'artifact');
  const s = veritree(['seal', 'ex', '--artifact', '--out', `oci:${out}`, '--compression', 'none', '--json', '--repo', repo]);
  assert.equal(s.status, 0, s.stderr);
  const sealed = JSON.parse(s.stdout) as { manifest: string; artifact: string; digests: Record<string, string> };
  const l = new Layout(out);
  // Sealed again: the same image and the same referrer, each listed once.
  assert.equal(veritree(['seal', 'ex', '--artifact', '--out', `oci:${out}`, '--compression', 'none', '--repo', repo]).status, 0);
  assert.deepEqual(l.index().manifests.map((m) => m.digest).sort(), [sealed.manifest, sealed.artifact].sort());
  const { entry, manifest } = l.image();
  assert.equal(entry.digest, sealed.manifest);
  assert.equal(manifest.annotations, undefined, 'the image carries no seal of its own');
  const art = l.index().manifests.find((m) => m.artifactType !== undefined) as Desc;
  assert.equal(art.artifactType, 'application/vnd.composefs.metadata.v1');
  const a = l.json<Manifest>(art.digest);
  assert.equal(a.artifactType, 'application/vnd.composefs.metadata.v1');
  assert.equal(a.subject?.digest, sealed.manifest);
  assert.equal(a.config.mediaType, 'application/vnd.oci.empty.v1+json');
  assert.deepEqual(a.layers.map((x) => Object.keys(x.annotations ?? {})), [[MANIFEST], [CONFIG], [MERGED]], "the specification's order");
  assert.equal(a.layers[0]?.annotations?.[MANIFEST], verity(l.blob(sealed.manifest)));

  // No REF: the artifact is a referrer, not a second image to choose from.
  const good = importJson(`oci:${out}`, join(dir, 'fresh-artifact'));
  assert.equal(good.status, 0, good.stderr);
  assert.deepEqual(good.report?.seals?.checks.map((c) => `${c.key}:${c.status}`), [`${MANIFEST}:ok`, `${CONFIG}:ok`, `${MERGED}:ok`]);

  // Everything but the tree fixed up, the artifact's manifest and config digests and subject too.
  const { subject, configBytes } = tamper(l);
  a.subject = subject;
  (a.layers[0] as Desc).annotations = { [MANIFEST]: verity(l.blob(subject.digest)) };
  (a.layers[1] as Desc).annotations = { [CONFIG]: verity(configBytes) };
  l.replace(art.digest, Buffer.from(JSON.stringify(a)));
  const fresh = join(dir, 'fresh-artifact-bad');
  const bad = importJson(`oci:${out}`, fresh);
  assert.equal(bad.status, 3, bad.stderr);
  assert.match(bad.stderr, new RegExp(`${MERGED.replace(/\./g, '\\.')} in the referrer sha256:[0-9a-f]{64}: expected ${sealed.digests[MERGED]}`));
  assert.doesNotMatch(bad.stderr, /composefs\.(manifest|config)\./, 'only the merged digest differs');
  assert.deepEqual(tags(fresh), []);
});

test('the config label containers.composefs.fsverity is checked; uncomputable digests are unchecked; signatures are reported', () => {
  const out = join(dir, 'label');
  assert.equal(veritree(['export', 'ex', `oci:${out}:l`, '--compression', 'none', '--repo', repo]).status, 0);
  const l = new Layout(out);
  const v1 = veritree(['compute-id', 'ex', '--erofs-version', '1', '--repo', repo]).stdout.trim();
  const withLabel = (value: string, extra: Record<string, string>): void => {
    const { entry, manifest } = l.image();
    const config = l.json<{ config?: { Labels?: Record<string, string> } }>(manifest.config.digest);
    config.config = { ...config.config, Labels: { ...config.config?.Labels, 'containers.composefs.fsverity': value } };
    const bytes = Buffer.from(JSON.stringify(config));
    manifest.config = { ...manifest.config, digest: l.put(bytes), size: bytes.length };
    manifest.annotations = extra;
    l.replace(entry.digest, Buffer.from(JSON.stringify(manifest)));
  };
  withLabel(v1, { 'composefs.merged.erofs.v1.fsverity-sha512-12': 'ab'.repeat(64), [`${MERGED}.sig`]: Buffer.from('not a real signature').toString('base64') });
  const good = importJson(`oci:${out}:l`, join(dir, 'fresh-label'));
  assert.equal(good.status, 0, good.stderr);
  assert.deepEqual(good.report?.seals?.checks.map((c) => `${c.key}:${c.status}`).sort(), ['composefs.merged.erofs.v1.fsverity-sha512-12:unchecked', 'containers.composefs.fsverity:ok']);
  assert.deepEqual(good.report?.seals?.signatures.map((x) => [x.key, x.bytes]), [[`${MERGED}.sig`, 20]]);

  // A V2 id (composefs-rs's legacy format) holds for the label, and an erofs.v2 key is computed.
  const v2 = veritree(['compute-id', 'ex', '--erofs-version', '2', '--repo', repo]).stdout.trim();
  assert.match(v2, /^[0-9a-f]{64}$/);
  withLabel(v2, { 'composefs.merged.erofs.v2.fsverity-sha256-12': v2 });
  const legacy = importJson(`oci:${out}:l`, join(dir, 'fresh-label-v2'));
  assert.equal(legacy.status, 0, legacy.stderr);
  assert.deepEqual(legacy.report?.seals?.checks.map((c) => `${c.key}:${c.status}`).sort(), ['composefs.merged.erofs.v2.fsverity-sha256-12:ok', 'containers.composefs.fsverity:ok']);

  withLabel('cd'.repeat(32), {});
  const fresh = join(dir, 'fresh-label-bad');
  const bad = importJson(`oci:${out}:l`, fresh);
  assert.equal(bad.status, 3, bad.stderr);
  assert.match(bad.stderr, /containers\.composefs\.fsverity in the config label: expected (cd){32}/);
  assert.deepEqual(tags(fresh), []);
});

test('seal to an oci-archive: the archive imports with its seal checked', () => {
  const file = join(dir, 'sealed.tar');
  const s = veritree(['seal', 'ex', '--out', `oci-archive:${file}`, '--repo', repo]);
  assert.equal(s.status, 0, s.stderr);
  const good = importJson(`oci-archive:${file}:ex`, join(dir, 'fresh-archive'));
  assert.equal(good.status, 0, good.stderr);
  assert.equal(good.report?.seals?.ok, true);
  assert.equal(good.report?.seals?.checks.filter((c) => c.status === 'ok').length, 4);
});

test('verify: an image without a seal exits 1 and says so', () => {
  const r = veritree(['verify', 'ex', '--repo', repo]);
  assert.equal(r.status, 1);
  assert.match(r.stdout, /ex carries no seal/);
});
