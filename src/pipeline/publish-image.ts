/**
 * Publishing an image once its layers are in: its config and manifest streams (each one JSON
 * blob as a single object, with named refs to the layers' streams), durable before named.
 * @module
 */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { digestHex } from '../oci/blob.ts';
import type { ResolvedImage } from '../oci/layout.ts';
import { configStreamName, layerStreamName, manifestStreamName } from '../store/layout.ts';
import { writeObject } from '../store/objects.ts';
import type { Repository } from '../store/repository.ts';
import { SplitStreamBuilder } from '../store/splitstream.ts';
import type { HashImpl } from '../verity/backends.ts';
import { toHex, verityDigest } from '../verity/merkle.ts';
import type { LayerResult } from './layer-import.ts';

/** A stream holding one JSON blob as a single external object, with named refs. */
async function writeJsonStream(repo: Repository, impl: HashImpl, kind: 'config' | 'manifest', json: Buffer, named: [string, string][]): Promise<string> {
  const objId = toHex(verityDigest(json, repo.alg, impl));
  await writeObject(repo.target, objId, json);
  const b = new SplitStreamBuilder(repo.alg, kind);
  b.addObject(objId, json.length);
  for (const [name, target] of named) b.addNamedRef(name, target);
  const bytes = b.finish();
  const id = toHex(verityDigest(bytes, repo.alg, impl));
  await writeObject(repo.target, id, bytes);
  return id;
}

/** Whether the image and every stream its manifest names are stored. */
export async function imageComplete(repo: Repository, image: ResolvedImage, manifestStream: string): Promise<boolean> {
  if (!(await repo.hasStream(manifestStream))) return false;
  if (!(await repo.hasStream(configStreamName(digestHex(image.configDescriptor.digest, 'config'))))) return false;
  for (const l of image.layers) if (!(await repo.hasStream(layerStreamName(l.diffId.slice('sha256:'.length))))) return false;
  return true;
}

export async function publishImage(repo: Repository, impl: HashImpl, image: ResolvedImage, layers: LayerResult[]): Promise<void> {
  const layerIds: [string, string][] = [];
  for (const l of layers) {
    const id = await repo.streamObject(l.stream);
    if (!id) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `layer stream ${l.stream} vanished during the import (a concurrent gc?)`);
    layerIds.push([l.diffId, id]);
  }
  const configName = configStreamName(digestHex(image.configDescriptor.digest, 'config'));
  let configId = await repo.streamObject(configName);
  if (!configId) configId = await writeJsonStream(repo, impl, 'config', image.configBytes, layerIds);
  const manifestId = await writeJsonStream(repo, impl, 'manifest', image.manifestBytes, [[`config:${image.configDescriptor.digest}`, configId], ...layerIds]);
  // Durable first, then named; the tag (by the caller) last.
  await repo.sync();
  await repo.publishStream(configName, configId);
  await repo.publishStream(manifestStreamName(digestHex(image.manifestDescriptor.digest, 'manifest')), manifestId);
  await repo.sync();
}
