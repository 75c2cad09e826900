/** An image's merged tree, from its tag: manifest stream → config (layer order) → layer streams. */
import { layerStreamName } from '../store/layout.ts';
import type { Repository } from '../store/repository.ts';
import { readSplitStream } from '../store/splitstream.ts';
import { taggedImage } from '../store/images.ts';
import { layerEntries } from './layer-entries.ts';
import { mergeLayers, type MergedTree, type MergeRules } from './merge.ts';

/** The diff_ids of the image a tag names, bottom layer first. */
export async function imageDiffIds(repo: Repository, tag: string): Promise<string[]> {
  return (await taggedImage(repo, tag)).diffIds;
}

/** Merges these layers (diff_ids, bottom first); no blob is read, only the layer streams. */
export async function layersTree(repo: Repository, diffIds: string[], rules: MergeRules): Promise<MergedTree> {
  const streams = [];
  for (const d of diffIds) streams.push(readSplitStream(await repo.readStreamBytes(layerStreamName(d.replace(/^sha256:/, '')))));
  return mergeLayers(streams.map((s) => layerEntries(s)), { rules });
}

/** Merges the layers of the tagged image. */
export async function imageTree(repo: Repository, tag: string, rules: MergeRules = 'oci'): Promise<MergedTree> {
  return layersTree(repo, await imageDiffIds(repo, tag), rules);
}
