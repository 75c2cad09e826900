/** An image's merged tree, from its tag: manifest stream → config (layer order) → layer streams. */
import { layerStreamName } from '../store/layout.ts';
import type { Repository } from '../store/repository.ts';
import { taggedImage } from '../store/images.ts';
import { layerEntries } from './layer-entries.ts';
import { Merger, type MergedTree, type MergeRules } from './merge.ts';

/** The diff_ids of the image a tag names, bottom layer first. */
export async function imageDiffIds(repo: Repository, tag: string): Promise<string[]> {
  return (await taggedImage(repo, tag)).diffIds;
}

/**
 * Merges these layers (diff_ids, bottom first); no blob is read, only the layer streams, one at a
 * time, each decoded as it is read (by the OCI rules, twice: whiteouts, then entries).
 */
export async function layersTree(repo: Repository, diffIds: string[], rules: MergeRules, signal?: AbortSignal): Promise<MergedTree> {
  const merger = new Merger(rules);
  for (const [i, d] of diffIds.entries()) {
    const stream = await repo.readStreamBytes(layerStreamName(d.replace(/^sha256:/, '')));
    for (const pass of merger.passes) {
      let seen = 0;
      for await (const e of layerEntries(stream)) {
        if ((++seen & 4095) === 0) signal?.throwIfAborted();
        merger.take(e, i + 1, pass);
      }
    }
  }
  return merger.finish();
}

/** Merges the layers of the tagged image. */
export async function imageTree(repo: Repository, tag: string, rules: MergeRules = 'oci'): Promise<MergedTree> {
  return layersTree(repo, await imageDiffIds(repo, tag), rules);
}
