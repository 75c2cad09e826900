/**
 * Image records as the store keeps them: a tag names a manifest stream, whose named refs name the
 * config stream and each layer stream (by diff_id). Reading them touches no blob.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { STREAM_PREFIX } from './layout.ts';
import type { Repository } from './repository.ts';
import { readSplitStream } from './splitstream.ts';

export interface ImageRecord {
  tag: string;
  manifest: string;
  config: string;
  layers: { diffId: string; digest: string; size: number; mediaType: string }[];
}

interface ManifestJson {
  config?: { digest?: string };
  layers?: { digest?: string; size?: number; mediaType?: string }[];
}

async function readManifest(repo: Repository, stream: string): Promise<{ json: ManifestJson; configDigest: string; diffIds: string[] }> {
  const s = readSplitStream(await repo.readStreamBytes(stream));
  const first = s.chunks[0];
  if (s.chunks.length !== 1 || first?.kind !== 'object') throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `${stream} is not a manifest stream`);
  const json = JSON.parse((await repo.readObject(s.objectRefs[first.index] as string)).toString('utf8')) as ManifestJson;
  const configRef = s.namedRefs.find((r) => r.name.startsWith('config:'));
  const configDigest = configRef?.name.slice('config:'.length) ?? json.config?.digest ?? '';
  // Named refs are sorted by name, not by layer order: the order comes from the config JSON.
  const configStream = `${STREAM_PREFIX.config}${configDigest.replace(/^sha256:/, '')}`;
  const cs = readSplitStream(await repo.readStreamBytes(configStream));
  const cfirst = cs.chunks[0];
  const config = cfirst?.kind === 'object' ? (JSON.parse((await repo.readObject(cs.objectRefs[cfirst.index] as string)).toString('utf8')) as { rootfs?: { diff_ids?: string[] } }) : {};
  return { json, configDigest, diffIds: config.rootfs?.diff_ids ?? [] };
}

export async function listImages(repo: Repository): Promise<ImageRecord[]> {
  const out: ImageRecord[] = [];
  for (const { tag, stream } of await repo.listTags()) {
    if (!stream.startsWith(STREAM_PREFIX.manifest)) continue;
    const { json, configDigest, diffIds } = await readManifest(repo, stream);
    out.push({
      tag,
      manifest: `sha256:${stream.slice(STREAM_PREFIX.manifest.length)}`,
      config: configDigest,
      layers: (json.layers ?? []).map((l, i) => ({ diffId: diffIds[i] ?? '', digest: l.digest ?? '', size: l.size ?? 0, mediaType: l.mediaType ?? '' })),
    });
  }
  return out;
}
