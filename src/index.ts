/// <reference types="node" preserve="true" />
/**
 * veritree's library: every name here is documented, with an example, in the README ("Library");
 * test/library.test.ts holds this list to that table and uses nothing else. The CLI (src/cli/) is
 * a thin layer over these functions; nothing here prints or exits. Every failure is a
 * VeritreeError with a stable `code`.
 *
 * Option names are one spelling throughout: `hash` (sha256 | sha512), `hashImpl` (auto | native |
 * node | noble), `jobs`, `ioLimit`, `signal`, `lockTimeoutMs`, `onProgress`, `onWarning`.
 *
 * Each asynchronous entry loads its modules on its first call: a command that digests files
 * does not load the import pipeline, the merge or the EROFS writer (every CLI run starts here,
 * and loading all of it costs about 50 ms).
 * @module
 */
import type { ErofsFormats, Repository, OpenOptions } from './store/repository.ts';
import type { LockWaitOptions } from './store/lock.ts';
import type { CheckoutOptions, CheckoutReport } from './merge/checkout.ts';
import type { MergeRules } from './merge/merge.ts';
import type { DumpParseOptions } from './erofs/dump-parse.ts';
import type { ImageOptions } from './erofs/writer.ts';
import type { HashAlgorithm } from './verity/constants.ts';
import { toHex, verityDigest } from './verity/index.ts';
import { layerStreamName } from './store/layout.ts';
import { ERROR_CODES, VeritreeError } from './errors.ts';

export { VeritreeError, ERROR_CODES, isVeritreeError, type ErrorCode } from './errors.ts';
export { VerityHasher, verityDigest, toHex, type HashImpl, type HashAlgorithm } from './verity/index.ts';
export type { DigestOptions, FileDigest } from './pipeline/digest-files.ts';
export type { ImportOptions, BulkImportOptions, BulkImportReport, ImportJob, ImageResult, ImportFailure, ImportSummary, ImportProgress, ImportWarning } from './pipeline/import.ts';
export type { ImageRecord } from './store/images.ts';
export type { ErofsFormats, ErofsVersion } from './store/meta.ts';
export type { FsckOptions, FsckReport } from './verify/fsck.ts';
export type { FsckProgress } from './verify/verify-objects.ts';
export type { RepairReport } from './verify/repair.ts';
export type { GcOptions, GcReport } from './verify/gc.ts';
export type { IssueType, StoreIssue } from './verify/issues.ts';
export type { StoreImageReport, StoreImageOptions } from './erofs/store-image.ts';
export type { MountReport } from './erofs/mount.ts';
export type { SealOptions, SealWriteReport } from './oci/seal.ts';
export type { SealCheck, SealReport } from './verify/seal-check.ts';
export type { VerifySealOptions, VerifySealReport } from './verify/seal-verify.ts';
export { unmountImage } from './erofs/mount.ts';
export type { Repository, OpenOptions, CheckoutOptions, CheckoutReport, MergeRules };

/** The fs-verity digest of each file, in the worker pool (one huge file split across workers). */
export const digestFiles: typeof import('./pipeline/digest-files.ts').digestFiles = async (...a) => (await import('./pipeline/digest-files.ts')).digestFiles(...a);
/** Imports one image (`oci:DIR[:REF]`): every blob verified, every file an object, each layer a split stream. */
export const importImage: typeof import('./pipeline/import.ts').importImage = async (...a) => (await import('./pipeline/import.ts')).importImage(...a);
/** Imports many images in one run, sharing the pool and the layers they have in common. */
export const importImages: typeof import('./pipeline/import.ts').importImages = async (...a) => (await import('./pipeline/import.ts')).importImages(...a);
/** Every tag with its manifest, config and layers. */
export const listImages: typeof import('./store/images.ts').listImages = async (...a) => (await import('./store/images.ts')).listImages(...a);
/** Re-hashes every object and checks every reference; problems are reported, not thrown. */
export const fsck: typeof import('./verify/fsck.ts').fsck = async (...a) => (await import('./verify/fsck.ts')).fsck(...a);
/** Moves damaged objects aside and removes what names them, per an fsck report. */
export const repair: typeof import('./verify/repair.ts').repair = async (...a) => (await import('./verify/repair.ts')).repair(...a);
/** Removes what no tag reaches. */
export const gc: typeof import('./verify/gc.ts').gc = async (...a) => (await import('./verify/gc.ts')).gc(...a);
/** Writes the tag's composefs image into the store as composefs-rs keeps it. */
export const writeStoreImage: typeof import('./erofs/store-image.ts').writeStoreImage = async (...a) => (await import('./erofs/store-image.ts')).writeStoreImage(...a);
/** Writes the tag as an OCI layout sealed with its composefs digests (composefs-rs sealing_spec.rs). */
export const sealImage: typeof import('./oci/seal.ts').sealImage = async (...a) => (await import('./oci/seal.ts')).sealImage(...a);
/** Checks a stored image against the seal it carries (inline digests, config label). */
export const verifyImageSeal: typeof import('./verify/seal-verify.ts').verifyImageSeal = async (...a) => (await import('./verify/seal-verify.ts')).verifyImageSeal(...a);
/** Mounts a composefs image of the store read-only at `dir` (root; erofs and overlayfs). */
export const mountImage: typeof import('./erofs/mount.ts').mountImage = async (...a) => (await import('./erofs/mount.ts')).mountImage(...a);

/**
 * Opens the repository at `root`; `{ create: true }` makes it when absent (sha256, or `hash`).
 * @throws VeritreeError STORE_NOT_FOUND when absent and not created, STORE_UNSUPPORTED for a format it does not know
 */
export async function openRepository(root: string, opts?: OpenOptions): Promise<Repository> {
  const { Repository } = await import('./store/repository.ts');
  return Repository.open(root, opts);
}

/** Creates a repository at `root` (or opens the one there when its hash agrees). */
export async function initRepository(
  root: string,
  opts: { hash?: HashAlgorithm; requireVerity?: boolean; erofsFormats?: ErofsFormats; insecure?: boolean } = {}
): Promise<Repository> {
  const { Repository } = await import('./store/repository.ts');
  return Repository.init(root, opts.hash ?? 'sha256', opts.requireVerity ?? false, opts.erofsFormats, opts.insecure ?? false);
}

/**
 * Removes a tag; what only it kept alive goes at the next gc. Holds the shared repository lock
 * (as import does when it moves a tag), so it waits for a gc or repair, never racing its mark.
 * @returns false when there was no such tag
 * @throws VeritreeError STORE_UNSUPPORTED in a repository opened read-only, STORE_LOCKED past the lock timeout
 */
export async function untagImage(repo: Repository, tag: string, opts: LockWaitOptions = {}): Promise<boolean> {
  repo.tagPath(tag);
  repo.assertWritable();
  const { lockOptionsFrom } = await import('./store/lock.ts');
  const lock = await repo.lockShared(lockOptionsFrom(opts));
  try {
    return await repo.removeTag(tag);
  } finally {
    await lock.release();
  }
}

/** The layer tar with this diff_id (`sha256:<hex>` or hex), rebuilt byte for byte from its split stream, as it is read. */
export async function* catLayer(repo: Repository, diffId: string): AsyncGenerator<Uint8Array> {
  const { rebuildBytes } = await import('./store/rebuild.ts');
  yield* rebuildBytes(repo, await repo.readStreamBytes(layerStreamName(diffId.replace(/^sha256:/, ''))));
}

/**
 * The layer tar with this diff_id (`sha256:<hex>` or hex), rebuilt from its split stream and
 * handed to `sink` in order, a piece of up to a few MiB at a time (the promise settles when the
 * piece's memory may be reused), hashed on the way. The fast path of cat-layer: objects are read,
 * hashed and written on libuv's thread pool, overlapped.
 * @returns the bytes written
 * @throws VeritreeError STORE_CORRUPT when the bytes do not hash to the diff_id (the sink has had them all: discard them)
 */
export async function writeLayer(
  repo: Repository,
  diffId: string,
  sink: (bytes: Uint8Array) => Promise<void>,
  opts: { signal?: AbortSignal; onBytes?: (done: number, total: number) => void } = {}
): Promise<{ bytes: number }> {
  const [{ rebuildHashed }, { readHeader }] = await Promise.all([import('./store/rebuild.ts'), import('./store/splitstream-reader.ts')]);
  const want = diffId.replace(/^sha256:/, '');
  const stream = await repo.readStreamBytes(layerStreamName(want));
  // The stream's header says how long the layer is: progress can be a fraction.
  const total = Number(readHeader(stream).streamSize);
  const onBytes = opts.onBytes;
  const r = await rebuildHashed(repo, stream, { sink, signal: opts.signal, ...(onBytes ? { onBytes: (done: number) => onBytes(done, total) } : {}) });
  if (r.sha256 !== want) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `rebuilt layer is sha256:${r.sha256}, not sha256:${want}: the store is damaged (run veritree fsck)`);
  return { bytes: r.bytes };
}

/**
 * Merges the tagged image's layers (OCI rules) and writes the tree to `dir`, new or empty
 * (docs/merge.md), under the repository's shared lock from the first stream read to the last
 * object copied: gc and repair (veritree's or cfsctl's) cannot delete what it reads meanwhile.
 */
export async function checkoutImage(repo: Repository, tag: string, dir: string, opts: CheckoutOptions = {}): Promise<CheckoutReport> {
  const [{ imageTree }, { checkout }, { lockOptionsFrom }] = await Promise.all([import('./merge/image-tree.ts'), import('./merge/checkout.ts'), import('./store/lock.ts')]);
  const lock = await repo.lockShared(lockOptionsFrom(opts));
  try {
    const tree = await imageTree(repo, tag);
    for (const w of tree.warnings) opts.onWarning?.(w.path, w.message);
    return await checkout(repo, tree, dir, opts);
  } finally {
    await lock.release();
  }
}

/**
 * The tagged image's merged tree as composefs dumpfile lines (no trailing newlines), built by
 * composefs-rs's rules unless `rules` says `oci` (the tree checkout writes; docs/merge.md).
 */
export async function dumpImage(repo: Repository, tag: string, onWarning?: (path: string, message: string) => void, rules: MergeRules = 'composefs', opts: LockWaitOptions = {}): Promise<string[]> {
  const lines: string[] = [];
  for await (const line of dumpImageLines(repo, tag, onWarning, rules, opts)) lines.push(line);
  return lines;
}

/**
 * dumpImage's lines one at a time, each made when asked for: a million-entry dump is never held
 * whole. The repository's shared lock is held until the last line is taken (or the caller stops).
 */
export async function* dumpImageLines(repo: Repository, tag: string, onWarning?: (path: string, message: string) => void, rules: MergeRules = 'composefs', opts: LockWaitOptions = {}): AsyncGenerator<string> {
  const [{ imageTree }, { dumpLines }, { lockOptionsFrom }] = await Promise.all([import('./merge/image-tree.ts'), import('./merge/dump.ts'), import('./store/lock.ts')]);
  // Shared: no gc or repair removes the streams and objects being read.
  const lock = await repo.lockShared(lockOptionsFrom(opts));
  try {
    const tree = await imageTree(repo, tag, rules);
    for (const w of tree.warnings) onWarning?.(w.path, w.message);
    yield* dumpLines(tree, opts.signal);
  } finally {
    await lock.release();
  }
}

/**
 * What `mkcomposefs --from-file` does: a composefs dumpfile in (chunks, as read), the EROFS image
 * out, byte for byte as mkcomposefs 1.0.8 writes it, with its fs-verity digest (hex).
 * @throws VeritreeError DUMPFILE_INVALID naming the line at fault
 */
export async function mkfsFromDumpfile(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: DumpParseOptions & ImageOptions = {}): Promise<{ bytes: Buffer; readonly digest: string; version: number; inodes: number }> {
  const { imageOfDumpfile } = await import('./erofs/mkfs.ts');
  const img = await imageOfDumpfile(input, opts);
  let digest: string | undefined;
  // Worked out when first read: `mkfs` without --print-digest never needs it.
  return {
    bytes: img.bytes,
    get digest(): string {
      return (digest ??= toHex(verityDigest(img.bytes, 'sha256')));
    },
    version: img.version,
    inodes: img.inodes,
  };
}
