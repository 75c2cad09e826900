/**
 * veritree's library API. The CLI (src/cli/) is a thin layer over these functions; nothing here
 * prints or exits.
 * @module
 */
export { VeritreeError, ERROR_CODES, isVeritreeError, type ErrorCode } from './errors.ts';
export {
  VerityHasher,
  verityDigest,
  toHex,
  getBackend,
  resolveImpl,
  HASH_IMPLS,
  type HashImpl,
  type HashAlgorithm,
} from './verity/index.ts';
export { Repository, defaultRepoPath, type OpenOptions } from './store/repository.ts';
export { SplitStreamBuilder, readSplitStream, readRefs, type SplitStream } from './store/splitstream.ts';
export { digestFiles, type DigestOptions, type FileDigest } from './pipeline/digest-files.ts';
export { VerityPool, poolSize } from './pipeline/pool.ts';
export { detectDevice, defaultIoLimit, IO_LIMITS } from './pipeline/io-limit.ts';
export { importImage, importImages, type ImportOptions, type BulkImportOptions, type BulkImportReport, type ImportJob, type ImageResult, type ImportFailure, type ImportSummary, type ImportProgress, type ImportWarning } from './pipeline/import.ts';
export { discoverLayouts, applyTagTemplate, type FoundImage, type Discovery } from './oci/discover.ts';
export { parseSource, resolveImage, hostPlatform, type ResolvedImage } from './oci/layout.ts';
export { listImages, type ImageRecord } from './store/images.ts';

import { Repository as Repo, type OpenOptions as OpenOpts } from './store/repository.ts';
import { rebuildBytes } from './store/rebuild.ts';
import { layerStreamName } from './store/layout.ts';

/** Opens a repository (see Repository.open). */
export function openRepository(root: string, opts?: OpenOpts): Promise<Repo> {
  return Repo.open(root, opts);
}

/** The layer tar with this diff_id (hex), rebuilt from its split stream. */
export async function* catLayer(repo: Repo, diffIdHex: string): AsyncGenerator<Uint8Array> {
  yield* rebuildBytes(repo, await repo.readStreamBytes(layerStreamName(diffIdHex.replace(/^sha256:/, ''))));
}
export { fsck, type FsckOptions, type FsckReport } from './verify/fsck.ts';
export { gc, type GcOptions, type GcReport } from './verify/gc.ts';
export { repair, type RepairReport } from './verify/repair.ts';
export { ISSUE_TYPES, type IssueType, type StoreIssue } from './verify/issues.ts';
export { mergeLayers, normalisePath, type MergedTree, type TreeNode, type MergeRules, type MergeOptions } from './merge/merge.ts';
import type { MergeRules } from './merge/merge.ts';
export { layerEntries, type LayerEntry } from './merge/layer-entries.ts';
export { formatDumpLine, parseDumpLine, type DumpRecord } from './merge/dumpfile.ts';
export { type CheckoutReport, type CheckoutOptions } from './merge/checkout.ts';

import { imageTree } from './merge/image-tree.ts';
import { checkout as checkoutTree, type CheckoutOptions as CkOpts, type CheckoutReport as CkReport } from './merge/checkout.ts';
import { dumpLines } from './merge/dump.ts';

/** Merges the tagged image's layers and materialises the tree in `dir` (see docs/merge.md). */
export async function checkoutImage(repo: Repo, tag: string, dir: string, opts: CkOpts = {}): Promise<CkReport> {
  const tree = await imageTree(repo, tag);
  for (const w of tree.warnings) opts.onWarning?.(w.path, w.message);
  return checkoutTree(repo, tree, dir, opts);
}

/**
 * The tagged image's merged tree as composefs dumpfile lines (no trailing newlines), built by
 * composefs-rs's rules unless `rules` says `oci` (the tree checkout writes; docs/merge.md).
 */
export async function dumpImage(repo: Repo, tag: string, onWarning?: (path: string, message: string) => void, rules: MergeRules = 'composefs'): Promise<string[]> {
  const tree = await imageTree(repo, tag, rules);
  for (const w of tree.warnings) onWarning?.(w.path, w.message);
  return [...dumpLines(tree)];
}

export { parseDumpfile, type DumpParseOptions } from './erofs/dump-parse.ts';
export { writeComposefsImage, type ComposefsImage, type ImageOptions } from './erofs/writer.ts';
export { writeStoreImage, type StoreImageReport, type StoreImageOptions } from './erofs/store-image.ts';
export { mountImage, unmountImage, type MountReport } from './erofs/mount.ts';
import { parseDumpfile as parseDump, type DumpParseOptions as ParseOpts } from './erofs/dump-parse.ts';
import { writeComposefsImage as writeImage, type ImageOptions as ImgOpts } from './erofs/writer.ts';
import { toHex as hex, verityDigest as digestOf } from './verity/index.ts';

/** What mkcomposefs --from-file does: a dumpfile in, the image bytes and their fs-verity digest (hex) out. */
export async function mkfsFromDumpfile(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: ParseOpts & ImgOpts = {}): Promise<{ bytes: Buffer; digest: string; version: number; inodes: number }> {
  const img = writeImage(await parseDump(input, opts), opts);
  return { bytes: img.bytes, digest: hex(digestOf(img.bytes, 'sha256')), version: img.version, inodes: img.inodes };
}
