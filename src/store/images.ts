/**
 * Image records as the store keeps them: a tag names a manifest stream, whose named refs name the
 * config stream and each layer stream (by diff_id). Reading them touches no blob; every stream
 * and JSON object is read verified (Repository.readObject).
 * @module
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ERROR_CODES, VeritreeError, errnoCode, storeIoError } from '../errors.ts';
import { imageRefKey } from '../erofs/image-formats.ts';
import { STREAM_PREFIX, STREAMS_DIR } from './layout.ts';
import type { Repository } from './repository.ts';
import type { SplitStream } from './splitstream.ts';
import { readSplitStream } from './splitstream-reader.ts';

export interface ImageRecord {
  tag: string;
  manifest: string;
  config: string;
  layers: { diffId: string; digest: string; size: number; mediaType: string }[];
  /**
   * The composefs image id in the repository's default EROFS format: present when the config
   * names one (veritree image, cfsctl) or when it was asked for (`images --image-id`).
   */
  imageId?: string;
}

interface ManifestJson {
  config?: { digest?: string };
  layers?: { digest?: string; size?: number; mediaType?: string }[];
}

/** The JSON a config or manifest stream holds as its one object; null when it is not that shape. */
async function jsonOf<T>(repo: Repository, s: SplitStream, name: string): Promise<T | null> {
  const first = s.chunks[0];
  if (s.chunks.length !== 1 || first?.kind !== 'object') return null;
  return JSON.parse((await repo.readObject(s.objectRefs[first.index] as string, `streams/${name}`)).toString('utf8')) as T;
}

/** A config or manifest stream and its JSON. @throws VeritreeError STORE_CORRUPT when it holds no single JSON object */
export async function readJsonStream<T>(repo: Repository, name: string): Promise<{ stream: SplitStream; json: T }> {
  const stream = readSplitStream(await repo.readStreamBytes(name));
  const json = await jsonOf<T>(repo, stream, name);
  if (json === null) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `${name} is not a JSON stream`);
  return { stream, json };
}

interface ManifestRead {
  stream: SplitStream;
  json: ManifestJson;
  configDigest: string;
  configStream: string;
  /** The config's rootfs.diff_ids; null when the config stream holds no JSON. */
  diffIds: string[] | null;
  config: SplitStream;
}

async function readManifest(repo: Repository, name: string): Promise<ManifestRead> {
  const { stream, json } = await readJsonStream<ManifestJson>(repo, name);
  const configRef = stream.namedRefs.find((r) => r.name.startsWith('config:'));
  const configDigest = configRef?.name.slice('config:'.length) ?? json.config?.digest ?? '';
  // Named refs are sorted by name, not by layer order: the order comes from the config JSON.
  const configStream = `${STREAM_PREFIX.config}${configDigest.replace(/^sha256:/, '')}`;
  const configSplit = readSplitStream(await repo.readStreamBytes(configStream));
  const config = await jsonOf<{ rootfs?: { diff_ids?: string[] } }>(repo, configSplit, configStream);
  return { stream, json, configDigest, configStream, diffIds: config === null ? null : (config.rootfs?.diff_ids ?? []), config: configSplit };
}

/** What a tag names: its manifest stream (name and parsed), its config stream's name, and the layers' diff_ids, bottom first. */
export interface TaggedImage {
  manifestStream: string;
  manifest: SplitStream;
  configStream: string;
  diffIds: string[];
}

/**
 * Follows a tag to its manifest and config streams.
 * @throws VeritreeError TAG_NOT_FOUND when no such tag, STORE_CORRUPT when it names no manifest stream or the config holds no JSON
 */
export async function taggedImage(repo: Repository, tag: string): Promise<TaggedImage> {
  // Only this tag's link need be sound; it is followed as gc follows it (store/links.ts).
  const found = (await repo.tagRefs()).find((x) => x.tag === tag);
  if (found?.error) throw found.error;
  const t = found?.ref ? { stream: found.ref.entry } : undefined;
  if (!t) throw new VeritreeError(ERROR_CODES.TAG_NOT_FOUND, `no image tagged ${JSON.stringify(tag)} in ${repo.root} (see veritree images)`);
  if (!t.stream.startsWith(STREAM_PREFIX.manifest)) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `tag ${tag} does not name a manifest stream`);
  const m = await readManifest(repo, t.stream);
  if (m.diffIds === null) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `${m.configStream} is not a JSON stream`);
  return { manifestStream: t.stream, manifest: m.stream, configStream: m.configStream, diffIds: m.diffIds };
}

/**
 * Every tagged image: its tag, manifest and config digests, and layers (blob digest, diff_id, size, media type). Reads streams only, no blob.
 * @throws VeritreeError STORE_CORRUPT when a tag does not resolve (as gc would refuse it) or a stream is damaged
 */
export async function listImages(repo: Repository): Promise<ImageRecord[]> {
  const out: ImageRecord[] = [];
  for (const { tag, stream } of await repo.listTags()) {
    if (!stream.startsWith(STREAM_PREFIX.manifest)) continue;
    const { json, configDigest, diffIds, config } = await readManifest(repo, stream);
    const key = imageRefKey(repo.erofsFormats.default);
    const ref = config.namedRefs.find((r) => r.name === key);
    const imageId = ref === undefined ? undefined : config.streamRefs[ref.index];
    out.push({
      tag,
      manifest: `sha256:${stream.slice(STREAM_PREFIX.manifest.length)}`,
      config: configDigest,
      layers: (json.layers ?? []).map((l, i) => ({ diffId: diffIds?.[i] ?? '', digest: l.digest ?? '', size: l.size ?? 0, mediaType: l.mediaType ?? '' })),
      ...(imageId !== undefined ? { imageId } : {}),
    });
  }
  return out;
}

/** The names of every manifest stream (`oci-manifest-*`), sorted; none when streams/ is absent. */
export async function manifestStreamNames(repo: Repository): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(join(repo.root, STREAMS_DIR));
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return [];
    throw storeIoError(e, join(repo.root, STREAMS_DIR), 'listing streams');
  }
  return names.filter((n) => n.startsWith(STREAM_PREFIX.manifest)).sort();
}
