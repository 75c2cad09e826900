/** An image's merged tree, from its tag: manifest stream → config (layer order) → layer streams. */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { layerStreamName, STREAM_PREFIX } from '../store/layout.ts';
import type { Repository } from '../store/repository.ts';
import { readSplitStream } from '../store/splitstream.ts';
import { readJsonStream } from '../store/images.ts';
import { layerEntries } from './layer-entries.ts';
import { mergeLayers, type MergedTree, type MergeRules } from './merge.ts';

/** The diff_ids of the image a tag names, bottom layer first. */
export async function imageDiffIds(repo: Repository, tag: string): Promise<string[]> {
  const tags = await repo.listTags();
  const t = tags.find((x) => x.tag === tag);
  if (!t) throw new VeritreeError(ERROR_CODES.USAGE, `no image tagged ${JSON.stringify(tag)} in ${repo.root} (see veritree images)`);
  if (!t.stream.startsWith(STREAM_PREFIX.manifest)) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `tag ${tag} does not name a manifest stream`);
  const { json: manifest } = await readJsonStream<{ config?: { digest?: string } }>(repo, t.stream);
  const configDigest = manifest.config?.digest ?? '';
  const { json: config } = await readJsonStream<{ rootfs?: { diff_ids?: string[] } }>(repo, `${STREAM_PREFIX.config}${configDigest.replace(/^sha256:/, '')}`);
  return config.rootfs?.diff_ids ?? [];
}

/** Merges the layers of the tagged image; no blob is read, only the layer streams. */
export async function imageTree(repo: Repository, tag: string, rules: MergeRules = 'oci'): Promise<MergedTree> {
  const diffIds = await imageDiffIds(repo, tag);
  const streams = [];
  for (const d of diffIds) streams.push(readSplitStream(await repo.readStreamBytes(layerStreamName(d.replace(/^sha256:/, '')))));
  return mergeLayers(streams.map((s) => layerEntries(s)), { rules });
}
