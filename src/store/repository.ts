/**
 * A repository on disk: meta.json, objects/, streams/ and tags. Only src/store/ touches these
 * files. A folder with objects/ and no meta.json (what `mkcomposefs --digest-store` writes) opens
 * as an objects-only store (SHA-256).
 * @module
 */
import { stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Stats } from 'node:fs';
import { ERROR_CODES, VeritreeError, errnoCode, storeIoError } from '../errors.ts';
import { assertHashAlgorithm, type HashAlgorithm } from '../verity/constants.ts';
import {
  IMAGES_DIR,
  META_FILE,
  OBJECTS_DIR,
  STREAMS_DIR,
  TAGS_DIR,
  escapeTag,
  objectRelPath,
  unescapeTag,
  validateTag,
  type ObjectId,
} from './layout.ts';
import { entryObject, listRefs, type RefEntry } from './links.ts';
import { toHex, verityDigest } from '../verity/index.ts';
import { acquireLock, type LockOptions, type RepoLock } from './lock.ts';
import { TmpObjectFile, type ObjectTarget, type VerityPolicy } from './objects.ts';
import { readRegular, syncFs } from './sys.ts';
import { createRepositoryFiles } from './create.ts';
import { atomicSymlink, readLinkOrNull } from './link-write.ts';
import { walkObjects, type ObjectEntry } from './object-walk.ts';
import { LEGACY_EROFS_FORMATS, metaJson, parseMeta, readMeta, type ErofsFormats } from './meta.ts';

export { defaultRepoPath } from './layout.ts';
export { STREAM_TMP_PREFIX } from './link-write.ts';
export { metaJson, type ErofsFormats, type ErofsVersion, type RepoMeta } from './meta.ts';

export type { ObjectEntry } from './object-walk.ts';

export interface OpenOptions {
  /** Create the repository (with `hash`) when it does not exist. */
  create?: boolean;
  hash?: HashAlgorithm;
  /**
   * Refuse to write any object without fs-verity. Implied when meta.json itself has fs-verity
   * enabled (composefs-rs's "secure" repository).
   */
  requireVerity?: boolean;
}


export class Repository {
  readonly root: string;
  readonly alg: HashAlgorithm;
  /** false for a bare objects/ tree with no meta.json. */
  readonly hasMeta: boolean;
  /** `require` when every object must have fs-verity (see OpenOptions.requireVerity). */
  readonly verity: VerityPolicy;
  /**
   * Whether meta.json itself has fs-verity (measured when the repository is opened): composefs-rs's
   * "secure" repository. Every object is then published with fs-verity measured equal to its
   * name, fsck reads each one through the kernel, and mount passes `verity=require`.
   */
  readonly secure: boolean;
  /** Unknown read-only-compatible features of meta.json: nothing may be written (empty: writable). */
  readonly readOnlyBecause: readonly string[];
  /**
   * The EROFS formats images are written in, as composefs-rs decides them from meta.json
   * (RepoMetadata::format_config); a repository with no meta.json is composefs-rs's legacy V2.
   */
  readonly erofsFormats: ErofsFormats;

  private constructor(
    root: string,
    alg: HashAlgorithm,
    hasMeta: boolean,
    verity: VerityPolicy,
    readOnlyBecause: readonly string[] = [],
    erofsFormats: ErofsFormats = LEGACY_EROFS_FORMATS,
    secure = false
  ) {
    this.root = root;
    this.alg = alg;
    this.hasMeta = hasMeta;
    this.verity = secure ? 'require' : verity;
    this.secure = secure;
    this.readOnlyBecause = readOnlyBecause;
    this.erofsFormats = erofsFormats;
  }

  /** Where and how new objects are written (passed to the workers as plain data). */
  get target(): ObjectTarget {
    return { objectsDir: this.objectsDir, alg: this.alg, verity: this.verity };
  }

  /**
   * Creates the repository; an existing one with the same algorithm (and, when `formats` is
   * given, the same EROFS formats: composefs-rs fixes them at init) is fine and left as it is.
   * A new meta.json gets fs-verity where the filesystem has it, as `cfsctl init` does, which
   * makes the repository secure; `insecure` opts out. On a filesystem without fs-verity the
   * repository is made all the same, insecure (Repository.secure says which it is).
   */
  static async init(root: string, hash: HashAlgorithm = 'sha256', requireVerity = false, formats?: ErofsFormats, insecure = false): Promise<Repository> {
    assertHashAlgorithm(hash);
    const abs = resolve(root);
    const metaPath = join(abs, META_FILE);
    const existing = await readMeta(metaPath);
    if (existing !== null) {
      const { alg, readOnlyBecause, erofsFormats } = parseMeta(existing.text, metaPath);
      if (alg !== hash) {
        throw new VeritreeError(ERROR_CODES.USAGE, `${abs} already holds a ${alg} repository`, { path: abs });
      }
      if (formats && (formats.default !== erofsFormats.default || formats.extra.join() !== erofsFormats.extra.join())) {
        throw new VeritreeError(ERROR_CODES.USAGE, `${abs} already holds a repository whose EROFS format is V${erofsFormats.default}; the format is fixed when the repository is made`, { path: abs });
      }
      return new Repository(abs, alg, true, requireVerity ? 'require' : 'try', readOnlyBecause, erofsFormats, existing.verity);
    }
    const secure = await createRepositoryFiles(abs, hash, formats, insecure);
    return new Repository(abs, hash, true, requireVerity ? 'require' : 'try', [], parseMeta(metaJson(hash, formats), metaPath).erofsFormats, secure);
  }

  /** @throws VeritreeError STORE_NOT_FOUND when there is no repository and `create` is not set. */
  static async open(root: string, opts: OpenOptions = {}): Promise<Repository> {
    const abs = resolve(root);
    const metaPath = join(abs, META_FILE);
    const meta = await readMeta(metaPath);
    const requireVerity = opts.requireVerity === true;
    if (meta !== null) {
      const parsed = parseMeta(meta.text, metaPath);
      return new Repository(abs, parsed.alg, true, requireVerity ? 'require' : 'try', parsed.readOnlyBecause, parsed.erofsFormats, meta.verity);
    }
    if (opts.create) return Repository.init(abs, opts.hash ?? 'sha256', requireVerity);
    let objects: Stats | null = null;
    try {
      objects = await stat(join(abs, OBJECTS_DIR));
    } catch (e) {
      // Only "not there" means no repository; EACCES or EIO is said as itself.
      if (errnoCode(e) !== 'ENOENT' && errnoCode(e) !== 'ENOTDIR') throw storeIoError(e, abs, 'opening the repository', 'read');
    }
    if (objects?.isDirectory()) return new Repository(abs, opts.hash ?? 'sha256', false, requireVerity ? 'require' : 'try');
    throw new VeritreeError(
      ERROR_CODES.STORE_NOT_FOUND,
      `no repository at ${abs} (create one with: veritree init --repo ${abs})`,
      { path: abs }
    );
  }

  get objectsDir(): string {
    return join(this.root, OBJECTS_DIR);
  }
  objectPath(id: ObjectId): string {
    return join(this.root, objectRelPath(id));
  }
  streamPath(name: string): string {
    return join(this.root, STREAMS_DIR, name);
  }
  /** @throws VeritreeError TAG_INVALID */
  tagPath(tag: string): string {
    validateTag(tag);
    return join(this.root, TAGS_DIR, escapeTag(tag));
  }

  lockShared(opts?: LockOptions): Promise<RepoLock> {
    return acquireLock(this.root, 'shared', opts);
  }
  lockExclusive(opts?: LockOptions): Promise<RepoLock> {
    return acquireLock(this.root, 'exclusive', opts);
  }

  private syncRunning: Promise<void> | null = null;
  private syncQueued: Promise<void> | null = null;

  /**
   * Makes everything written so far durable: one syncfs(2). A caller that arrives while one runs
   * cannot rely on it (its writes may have come after it began), so it shares the next one with
   * every other caller that arrives meanwhile: one call for all the layers waiting at that moment.
   */
  sync(): Promise<void> {
    if (this.syncQueued) return this.syncQueued;
    const start = (): Promise<void> => {
      const p = syncFs(this.root).finally(() => {
        if (this.syncRunning === p) this.syncRunning = null;
      });
      this.syncRunning = p;
      return p;
    };
    if (!this.syncRunning) return start();
    // The running sync's failure is its own callers' to see; the queued ones run their own.
    const next = (): Promise<void> => {
      this.syncQueued = null;
      return start();
    };
    const queued = this.syncRunning.then(next, next);
    this.syncQueued = queued;
    return queued;
  }

  /** STORE_UNSUPPORTED when meta.json opened the repository read-only (Repository.readOnlyBecause). */
  assertNotReadOnly(): void {
    if (this.readOnlyBecause.length > 0) {
      throw new VeritreeError(
        ERROR_CODES.STORE_UNSUPPORTED,
        `${this.root} can only be read by this veritree: its meta.json lists read-only-compatible features it does not know (${this.readOnlyBecause.join(', ')})`,
        { path: this.root }
      );
    }
  }

  /**
   * Fails with "<repo> is not writable" (or no space) unless a new object could be written:
   * an unnamed file is made in objects/ and dropped (a named one in the fallback, removed).
   */
  assertWritable(): void {
    this.assertNotReadOnly();
    try {
      new TmpObjectFile(this.target).discard();
    } catch (e) {
      throw storeIoError(e, this.root, 'writing to the repository');
    }
  }

  /**
   * The object id a stream symlink points to (links.ts: only the form composefs-rs writes), or
   * null when the stream does not exist. @throws VeritreeError STORE_CORRUPT for any other link
   */
  async streamObject(name: string): Promise<ObjectId | null> {
    return entryObject(this, STREAMS_DIR, name);
  }

  /**
   * Whether the stream exists and its object is there. A link that is not sound, or an error
   * other than ENOENT, is thrown: an import must not take damage for "absent" and write around it.
   */
  async hasStream(name: string): Promise<boolean> {
    const id = await this.streamObject(name);
    if (!id) return false;
    try {
      await stat(this.objectPath(id));
      return true;
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return false;
      throw storeIoError(e, this.objectPath(id), 'looking up an object');
    }
  }

  /**
   * A stream, image, config or manifest object's bytes, used only once they hash (fs-verity
   * digest, the repository's algorithm) to the id they were asked for: the one verified read
   * every command goes through. `namedBy` says who named the object, for the error.
   * @throws VeritreeError STORE_CORRUPT when the object is not a regular file or its digest is not its name
   */
  async readObject(id: ObjectId, namedBy?: string): Promise<Buffer> {
    const bytes = await readRegular(this.objectPath(id), `object ${id}`);
    const found = toHex(verityDigest(bytes, this.alg));
    if (found !== id) {
      throw new VeritreeError(
        ERROR_CODES.STORE_CORRUPT,
        `object ${id}${namedBy ? ` (named by ${namedBy})` : ''} is damaged: its fs-verity digest is ${found}; run veritree fsck`,
        { path: this.objectPath(id) }
      );
    }
    return bytes;
  }

  /** Reads (verified) the split-stream object behind a stream name. */
  async readStreamBytes(name: string): Promise<Buffer> {
    const id = await this.streamObject(name);
    if (!id) throw new VeritreeError(ERROR_CODES.STORE_NOT_FOUND, `no stream ${name} in ${this.root}`, { path: this.streamPath(name) });
    return this.readObject(id, `streams/${name}`);
  }

  /**
   * Links streams/<name> to its object. An existing stream is kept (streams are content-named;
   * a second writer of the same stream produced the same content).
   */
  async publishStream(name: string, id: ObjectId): Promise<void> {
    const path = this.streamPath(name);
    await atomicSymlink(this.root, join('..', objectRelPath(id)), path, false);
  }

  /**
   * Re-points streams/<name> at another object (a config or manifest stream rewritten with a new
   * named ref, as composefs-rs rewrites them): the link is replaced by rename, never absent.
   */
  async replaceStream(name: string, id: ObjectId): Promise<void> {
    await atomicSymlink(this.root, join('..', objectRelPath(id)), this.streamPath(name), true);
  }

  /** images/<hex> → the image's object, as composefs-rs's write_image links it. @returns whether the link is new */
  async linkImage(id: ObjectId): Promise<boolean> {
    const path = join(this.root, IMAGES_DIR, id);
    const existed = (await readLinkOrNull(path)) !== null;
    await atomicSymlink(this.root, join('..', objectRelPath(id)), path, true);
    return !existed;
  }

  /** The path of images/<hex>. */
  imagePath(id: ObjectId): string {
    return join(this.root, IMAGES_DIR, id);
  }

  /**
   * Points a tag at a stream (replacing the tag's previous target: tags move). With `move`
   * false the tag is only created, never moved: symlink(2) is atomic, so of two runs giving out
   * the same tag at once only one can (the other gets TAG_IN_USE).
   * @returns the stream the tag named before, when it named another one; else null
   */
  async setTag(tag: string, streamName: string, move = true): Promise<string | null> {
    const path = this.tagPath(tag);
    const target = join('..', '..', streamName);
    const before = await readLinkOrNull(path);
    if (move || before === null) await atomicSymlink(this.root, target, path, move);
    const now = move ? target : await readLinkOrNull(path);
    if (now !== target) {
      throw new VeritreeError(ERROR_CODES.TAG_IN_USE, `tag ${JSON.stringify(tag)} names another image (${now?.split('/').pop() ?? 'none'}), set by another run meanwhile: give this image a NAME of its own, or --force to move the tag`, { path });
    }
    const was = before?.split('/').pop() ?? null;
    return was !== null && was !== streamName ? was : null;
  }

  /** @throws VeritreeError STORE_UNSUPPORTED in a repository opened read-only */
  async removeTag(tag: string): Promise<boolean> {
    this.assertNotReadOnly();
    // The link `images` lists under this name: a tag in a sub-folder of refs/oci/ (a ref name
    // with '/', as composefs-rs may write) is removed too, not only the escaped one.
    const listed = (await this.tagRefs()).find((t) => t.tag === tag)?.link;
    const path = listed !== undefined ? join(this.root, listed) : this.tagPath(tag);
    try {
      await unlink(path);
      return true;
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return false;
      throw storeIoError(e, path, 'removing a tag');
    }
  }

  /**
   * Tags and the stream each one names, each followed by the one resolver (links.ts) as gc
   * follows it. @throws VeritreeError STORE_CORRUPT naming the first tag that does not resolve
   */
  async listTags(): Promise<{ tag: string; stream: string }[]> {
    return (await this.tagRefs()).map((t) => {
      if (t.error) throw t.error;
      return { tag: t.tag, stream: t.ref.entry };
    });
  }

  /** Every tag link, resolved or with why not (a caller that wants one tag is not stopped by another). */
  async tagRefs(): Promise<(RefEntry & { tag: string })[]> {
    const prefix = `${TAGS_DIR}/`;
    return (await listRefs(this, STREAMS_DIR, 'oci')).map((r) => ({ ...r, tag: unescapeTag(r.link.slice(prefix.length)) }));
  }

  /**
   * Every entry of objects/: objects (by well-formed name), tmp files and anything else. A tmp
   * file is never an object, whatever its content: only a link to a final name makes one.
   */
  walkObjects(): AsyncGenerator<ObjectEntry> {
    return walkObjects(this.objectsDir, this.alg);
  }
}
