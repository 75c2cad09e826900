/**
 * Resolving `oci:DIR[:REF]` or `oci-archive:FILE[:REF]` to one image: the layout's index.json, nested indexes (the host's
 * platform, or --platform), the manifest and the config, each verified against its descriptor.
 * @module
 */
import { stat } from 'node:fs/promises';
import { ERROR_CODES, VeritreeError, errnoCode, whenAbsent } from '../errors.ts';
import { scanOciArchive } from './archive.ts';
import { MAX_JSON_BLOB, assertDescriptor, digestHex, parseJson, readVerifiedBlob, type Descriptor } from './blob.ts';
import { openInLayout, regionSize, type LayoutLocation } from './layout-files.ts';
import { readAll } from '../store/sys.ts';
import { SEAL_ARTIFACT_TYPE } from './seal-keys.ts';
import { isConfigType, isIndexType, isManifestType, layerCompression, type Compression } from './media-types.ts';

export const REF_ANNOTATION = 'org.opencontainers.image.ref.name';
/** Nested indexes deeper than this are refused (a loop is caught earlier, by digest). */
const MAX_INDEX_DEPTH = 8;
/** More layers than any real image has (overlayfs stacks at most 500 lower layers). */
export const MAX_LAYERS = 500;

export interface OciSource {
  /** The layout's folder, or with `archive`, the tar file that holds it. */
  path: string;
  archive: boolean;
  ref: string | undefined;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string | undefined;
}

export interface ImageManifest {
  schemaVersion?: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

export interface ImageConfig {
  rootfs?: { type?: string; diff_ids?: string[] };
  architecture?: string;
  os?: string;
}

export interface ResolvedLayer {
  descriptor: Descriptor;
  compression: Compression;
  diffId: string;
  /** 0-based position in the manifest. */
  index: number;
}

export interface ResolvedImage {
  layout: LayoutLocation;
  /** The REF asked for, else the chosen image's ref.name annotation. */
  ref: string | undefined;
  manifestDescriptor: Descriptor;
  manifestBytes: Buffer;
  configDescriptor: Descriptor;
  configBytes: Buffer;
  layers: ResolvedLayer[];
  /** index.json's entries: where referrers of the image (seal artifacts) are found. */
  index: Descriptor[];
}

interface IndexJson {
  manifests?: unknown[];
}

/** `oci:DIR[:REF]` or `oci-archive:FILE[:REF]`. The path ends at the first ':' after the prefix, as in skopeo. */
export function parseSource(spec: string): OciSource {
  const archive = spec.startsWith('oci-archive:');
  const prefix = archive ? 'oci-archive:' : 'oci:';
  if (!spec.startsWith(prefix) || spec.length === prefix.length) {
    throw new VeritreeError(ERROR_CODES.USAGE, `source ${JSON.stringify(spec)}: expected oci:DIR[:REF] or oci-archive:FILE[:REF]`);
  }
  const rest = spec.slice(prefix.length);
  const colon = rest.indexOf(':');
  const path = colon < 0 ? rest : rest.slice(0, colon);
  return { path, archive, ref: colon < 0 ? undefined : rest.slice(colon + 1) || undefined };
}

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' };

export function hostPlatform(): Platform {
  return { os: process.platform === 'win32' ? 'windows' : process.platform, architecture: ARCH[process.arch] ?? process.arch };
}

/** `os/arch[/variant]` */
export function parsePlatform(s: string): Platform {
  const [os, architecture, variant] = s.split('/');
  if (!os || !architecture) throw new VeritreeError(ERROR_CODES.USAGE, `--platform ${JSON.stringify(s)}: expected os/arch[/variant]`);
  return { os, architecture, variant };
}

function platformString(p: Descriptor['platform']): string {
  return p ? [p.os, p.architecture, p.variant].filter(Boolean).join('/') : 'unspecified';
}

/**
 * A JSON file of the layout: a regular file (never a FIFO), its size checked before it is read.
 * With the path that names it in messages.
 */
async function readSmallLayoutFile(layout: LayoutLocation, name: string): Promise<{ bytes: Buffer; path: string }> {
  const region = await openInLayout(layout, name, name);
  const { fh, path, start } = region;
  try {
    const size = await regionSize(region);
    if (size > MAX_JSON_BLOB) throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${path}: ${size} bytes is over the ${MAX_JSON_BLOB}-byte limit for JSON`, { path });
    return { bytes: await readAll(fh, size, start), path };
  } catch (e) {
    if (e instanceof VeritreeError) throw e;
    throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${path} cannot be read: ${e instanceof Error ? e.message : String(e)}`, { path, cause: e });
  } finally {
    await fh.close();
  }
}

async function readIndexJson(layout: LayoutLocation): Promise<IndexJson> {
  let layoutFile: { bytes: Buffer; path: string };
  try {
    layoutFile = await readSmallLayoutFile(layout, 'oci-layout');
  } catch (e) {
    // An archive's scan has already said what is wrong with it; a folder is told here.
    if (typeof layout !== 'string') throw e;
    const dir = layout;
    // Only absence is "no such folder"; a stat that fails otherwise is thrown as itself.
    const folder = await stat(dir).catch(whenAbsent(null));
    if (!folder) throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${dir}: no such folder`, { path: dir, cause: e });
    if (!folder.isDirectory()) throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${dir} is not a folder (an OCI image layout is a folder)`, { path: dir, cause: e });
    const why = errnoCode(e instanceof VeritreeError ? e.cause : e) === 'ENOENT' ? 'has no oci-layout file' : `cannot be read (${e instanceof Error ? e.message : String(e)})`;
    throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${dir} is not an OCI image layout: it ${why}`, { path: dir, cause: e });
  }
  parseJson(layoutFile.bytes, layoutFile.path, layoutFile.path);
  const { bytes: raw, path: indexPath } = await readSmallLayoutFile(layout, 'index.json');
  const index = parseJson<IndexJson>(raw, indexPath, indexPath);
  if (!index || typeof index !== 'object' || !Array.isArray(index.manifests)) {
    throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${indexPath} has no "manifests" array`, { path: indexPath });
  }
  return index;
}

function pickByPlatform(cands: Descriptor[], want: Platform, what: string): Descriptor {
  const hits = cands.filter(
    (d) => !d.platform || (d.platform.os === want.os && d.platform.architecture === want.architecture && (!want.variant || d.platform.variant === want.variant))
  );
  const exact = hits.filter((d) => d.platform);
  const chosen = exact[0] ?? hits[0];
  if (!chosen) {
    throw new VeritreeError(
      ERROR_CODES.OCI_REF_NOT_FOUND,
      `${what}: no image for platform ${platformString(want)} (available: ${cands.map((d) => platformString(d.platform)).join(', ')}); use --platform`
    );
  }
  return chosen;
}

async function descend(dir: LayoutLocation, d: Descriptor, platform: Platform, seen: Set<string>, depth: number): Promise<Descriptor> {
  if (!isIndexType(d.mediaType)) return d;
  if (seen.has(d.digest)) throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `image index ${d.digest} refers back to itself`);
  if (depth >= MAX_INDEX_DEPTH) throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `image indexes nest deeper than ${MAX_INDEX_DEPTH}`);
  seen.add(d.digest);
  const what = `image index ${d.digest}`;
  const idx = parseJson<IndexJson>(await readVerifiedBlob(dir, d, what), what);
  const cands = (idx.manifests ?? []).map((m, i) => {
    assertDescriptor(m, `${what} entry ${i}`);
    return m;
  });
  return descend(dir, pickByPlatform(cands, platform, what), platform, seen, depth + 1);
}

/** Resolves the source to one verified manifest and config. @throws VeritreeError OCI_* */
export async function resolveImage(src: OciSource, opts: { platform?: Platform | undefined; signal?: AbortSignal | undefined } = {}): Promise<ResolvedImage> {
  const platform = opts.platform ?? hostPlatform();
  const layout: LayoutLocation = src.archive ? await scanOciArchive(src.path, opts.signal) : src.path;
  const index = await readIndexJson(layout);
  const all = (index.manifests ?? []).map((m, i) => {
    assertDescriptor(m, `index.json entry ${i}`);
    return m;
  });
  const refs = all.map((d) => d.annotations?.[REF_ANNOTATION]).filter((r): r is string => !!r);
  // A composefs seal artifact beside the image is its referrer, not an image to choose.
  let cands = src.ref === undefined ? all.filter((d) => d.artifactType !== SEAL_ARTIFACT_TYPE) : all;
  if (src.ref !== undefined) {
    cands = all.filter((d) => d.annotations?.[REF_ANNOTATION] === src.ref);
    if (cands.length === 0) {
      throw new VeritreeError(ERROR_CODES.OCI_REF_NOT_FOUND, `${src.path} has no image named ${JSON.stringify(src.ref)} (refs: ${refs.join(', ') || 'none'})`);
    }
  } else if (cands.length !== 1) {
    throw new VeritreeError(
      ERROR_CODES.OCI_REF_NOT_FOUND,
      cands.length === 0 ? `${src.path} holds no image` : `${src.path} holds ${cands.length} images: name one as ${src.archive ? 'oci-archive' : 'oci'}:${src.path}:REF (refs: ${refs.join(', ') || 'none'})`
    );
  }
  const top = cands.length === 1 ? (cands[0] as Descriptor) : pickByPlatform(cands, platform, `${src.path}:${src.ref ?? ''}`);
  const manifestDescriptor = await descend(layout, top, platform, new Set(), 0);
  if (manifestDescriptor.mediaType && !isManifestType(manifestDescriptor.mediaType)) {
    throw new VeritreeError(ERROR_CODES.OCI_MEDIA_TYPE_UNSUPPORTED, `manifest ${manifestDescriptor.digest}: unsupported media type ${manifestDescriptor.mediaType}`);
  }
  const mwhat = `manifest ${manifestDescriptor.digest}`;
  const manifestBytes = await readVerifiedBlob(layout, manifestDescriptor, mwhat);
  const manifest = parseJson<ImageManifest>(manifestBytes, mwhat);
  assertDescriptor(manifest.config, `${mwhat} config`);
  if (!Array.isArray(manifest.layers)) throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${mwhat} has no "layers" array`);
  if (manifest.layers.length > MAX_LAYERS) {
    throw new VeritreeError(ERROR_CODES.OCI_LAYOUT_INVALID, `${mwhat} has ${manifest.layers.length} layers (limit ${MAX_LAYERS})`);
  }
  if (!isConfigType(manifest.config.mediaType)) {
    throw new VeritreeError(ERROR_CODES.OCI_MEDIA_TYPE_UNSUPPORTED, `${mwhat}: unsupported config media type ${manifest.config.mediaType}`);
  }
  const cwhat = `config ${manifest.config.digest}`;
  const configBytes = await readVerifiedBlob(layout, manifest.config, cwhat);
  const config = parseJson<ImageConfig>(configBytes, cwhat);
  const diffIds = config.rootfs?.diff_ids;
  if (!Array.isArray(diffIds) || diffIds.length !== manifest.layers.length) {
    throw new VeritreeError(
      ERROR_CODES.OCI_LAYOUT_INVALID,
      `${cwhat}: rootfs.diff_ids has ${Array.isArray(diffIds) ? diffIds.length : 'no'} entries for ${manifest.layers.length} layers`
    );
  }
  const layers = manifest.layers.map((l, i): ResolvedLayer => {
    assertDescriptor(l, `${mwhat} layer ${i + 1}`);
    const compression = layerCompression(l.mediaType);
    if (!compression) {
      throw new VeritreeError(ERROR_CODES.OCI_MEDIA_TYPE_UNSUPPORTED, `layer ${i + 1} (${l.digest}): unsupported media type ${l.mediaType}`);
    }
    const diffId = diffIds[i] as string;
    digestHex(diffId, `${cwhat} diff_id ${i + 1}`);
    digestHex(l.digest, `layer ${i + 1}`);
    return { descriptor: l, compression, diffId, index: i };
  });
  const ref = src.ref ?? top.annotations?.[REF_ANNOTATION];
  return { layout, ref, manifestDescriptor, manifestBytes, configDescriptor: manifest.config, configBytes, layers, index: all };
}
