/**
 * veritree's library: every name here is documented, with an example, in the README ("Library");
 * test/library.test.ts holds this list to that table and uses nothing else. The CLI (src/cli/) is
 * a thin layer over these functions; nothing here prints or exits. Every failure is a
 * VeritreeError with a stable `code`.
 *
 * Option names are one spelling throughout: `hash` (sha256 | sha512), `hashImpl` (auto | native |
 * node | noble), `jobs`, `ioLimit`, `signal`, `lockTimeoutMs`, `onProgress`, `onWarning`.
 * @module
 */
import { Repository, type OpenOptions } from './store/repository.ts';
import { rebuildBytes } from './store/rebuild.ts';
import { layerStreamName } from './store/layout.ts';
import { imageTree } from './merge/image-tree.ts';
import { checkout, type CheckoutOptions, type CheckoutReport } from './merge/checkout.ts';
import { dumpLines } from './merge/dump.ts';
import type { MergeRules } from './merge/merge.ts';
import { parseDumpfile, type DumpParseOptions } from './erofs/dump-parse.ts';
import { writeComposefsImage, type ImageOptions } from './erofs/writer.ts';
import { toHex, verityDigest } from './verity/index.ts';
import type { HashAlgorithm } from './verity/constants.ts';

export { VeritreeError, ERROR_CODES, isVeritreeError, type ErrorCode } from './errors.ts';
export { VerityHasher, verityDigest, toHex, type HashImpl, type HashAlgorithm } from './verity/index.ts';
export { digestFiles, type DigestOptions, type FileDigest } from './pipeline/digest-files.ts';
export { importImage, importImages, type ImportOptions, type BulkImportOptions, type BulkImportReport, type ImportJob, type ImageResult, type ImportFailure, type ImportSummary, type ImportProgress, type ImportWarning } from './pipeline/import.ts';
export { listImages, type ImageRecord } from './store/images.ts';
export { fsck, type FsckOptions, type FsckReport } from './verify/fsck.ts';
export type { FsckProgress } from './verify/verify-objects.ts';
export { repair, type RepairReport } from './verify/repair.ts';
export { gc, type GcOptions, type GcReport } from './verify/gc.ts';
export { type IssueType, type StoreIssue } from './verify/issues.ts';
export { writeStoreImage, type StoreImageReport, type StoreImageOptions } from './erofs/store-image.ts';
export { mountImage, unmountImage, type MountReport } from './erofs/mount.ts';
export type { Repository, OpenOptions, CheckoutOptions, CheckoutReport, MergeRules };

/**
 * Opens the repository at `root`; `{ create: true }` makes it when absent (sha256, or `hash`).
 * @throws VeritreeError STORE_NOT_FOUND when absent and not created, STORE_UNSUPPORTED for a format it does not know
 */
export function openRepository(root: string, opts?: OpenOptions): Promise<Repository> {
  return Repository.open(root, opts);
}

/** Creates a repository at `root` (or opens the one there when its hash agrees). */
export function initRepository(root: string, opts: { hash?: HashAlgorithm; requireVerity?: boolean } = {}): Promise<Repository> {
  return Repository.init(root, opts.hash ?? 'sha256', opts.requireVerity ?? false);
}

/** Removes a tag; what only it kept alive goes at the next gc. @returns false when there was no such tag */
export function untagImage(repo: Repository, tag: string): Promise<boolean> {
  return repo.removeTag(tag);
}

/** The layer tar with this diff_id (`sha256:<hex>` or hex), rebuilt byte for byte from its split stream, as it is read. */
export async function* catLayer(repo: Repository, diffId: string): AsyncGenerator<Uint8Array> {
  yield* rebuildBytes(repo, await repo.readStreamBytes(layerStreamName(diffId.replace(/^sha256:/, ''))));
}

/** Merges the tagged image's layers (OCI rules) and writes the tree to `dir`, new or empty (docs/merge.md). */
export async function checkoutImage(repo: Repository, tag: string, dir: string, opts: CheckoutOptions = {}): Promise<CheckoutReport> {
  const tree = await imageTree(repo, tag);
  for (const w of tree.warnings) opts.onWarning?.(w.path, w.message);
  return checkout(repo, tree, dir, opts);
}

/**
 * The tagged image's merged tree as composefs dumpfile lines (no trailing newlines), built by
 * composefs-rs's rules unless `rules` says `oci` (the tree checkout writes; docs/merge.md).
 */
export async function dumpImage(repo: Repository, tag: string, onWarning?: (path: string, message: string) => void, rules: MergeRules = 'composefs'): Promise<string[]> {
  const tree = await imageTree(repo, tag, rules);
  for (const w of tree.warnings) onWarning?.(w.path, w.message);
  return [...dumpLines(tree)];
}

/**
 * What `mkcomposefs --from-file` does: a composefs dumpfile in (chunks, as read), the EROFS image
 * out, byte for byte as mkcomposefs 1.0.8 writes it, with its fs-verity digest (hex).
 * @throws VeritreeError DUMPFILE_INVALID naming the line at fault
 */
export async function mkfsFromDumpfile(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: DumpParseOptions & ImageOptions = {}): Promise<{ bytes: Buffer; digest: string; version: number; inodes: number }> {
  const img = writeComposefsImage(await parseDumpfile(input, opts), opts);
  return { bytes: img.bytes, digest: toHex(verityDigest(img.bytes, 'sha256')), version: img.version, inodes: img.inodes };
}
