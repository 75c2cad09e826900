/**
 * Mounting a composefs image over the store's objects, as mount.composefs does it
 * (libcomposefs lcfs-mount.c): the EROFS image read-only on a loop device at a private temporary
 * folder (`noacl` when the image has no ACLs), then overlayfs read-only at DIR with the image as
 * its one lower layer and `objects/` as a data-only lower layer (`lowerdir=IMAGE::OBJECTS`),
 * `metacopy=on,redirect_dir=on`, and `verity=require` when the store's objects carry fs-verity.
 * The image's own mount is then detached: overlayfs holds it, and it goes when DIR is unmounted.
 *
 * The image is opened once (O_NOFOLLOW, a regular file), its bytes are hashed from that
 * descriptor and must equal its name, and the loop device is set up from the same open file
 * (`losetup` reads it as /proc/self/fd/3: a minimal system may have no /dev/fd link): a file
 * renamed over objects/XX/<id> after the open is never what gets mounted. The loop device is detached once erofs is mounted (the kernel then frees it
 * when erofs lets go: autoclear) and at once on every failure. The repository's shared lock is
 * held throughout, so gc and repair cannot delete the image or its objects meanwhile.
 * @module
 */
import { spawnSync } from 'node:child_process';
import { closeSync, constants as fsc, fstatSync, mkdtempSync, openSync, readFileSync, realpathSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ERROR_CODES, VeritreeError, storeIoError } from '../errors.ts';
import { lockOptionsFrom, type LockWaitOptions } from '../store/lock.ts';
import type { Repository } from '../store/repository.ts';
import { entryObject } from '../store/links.ts';
import { IMAGES_DIR, isObjectId } from '../store/layout.ts';
import { toHex, verityDigest } from '../verity/index.ts';

export interface MountReport {
  image: string;
  dir: string;
  verity: boolean;
}

function fail(why: string, path?: string): VeritreeError {
  return new VeritreeError(ERROR_CODES.MOUNT_FAILED, why, path === undefined ? {} : { path });
}

/** Runs a command; `fd3` is passed to it as its descriptor 3. Returns its stdout. */
function run(cmd: string, args: string[], fd3?: number): string {
  const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'pipe', 'pipe'];
  if (fd3 !== undefined) stdio.push(fd3);
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio });
  if (r.error) throw fail(`${cmd} could not run: ${r.error.message}`);
  if (r.status !== 0) throw fail(`${cmd} ${args.join(' ')}: ${(r.stderr || r.stdout).trim() || `exit ${r.status}`}`);
  return r.stdout;
}

/** Why this process cannot mount, or null. */
export function mountUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'mounting a composefs image needs root (CAP_SYS_ADMIN)';
  let fs = '';
  try {
    fs = readFileSync('/proc/filesystems', 'utf8');
  } catch {
    return 'cannot read /proc/filesystems to see whether the kernel has erofs and overlay';
  }
  const has = (name: string): boolean => fs.split('\n').some((l) => l.split('\t').pop() === name);
  const missing = ['erofs', 'overlay'].filter((n) => !has(n));
  if (missing.length > 0) return `the kernel has no ${missing.join(' and no ')} filesystem (try: modprobe ${missing.join(' ')})`;
  return null;
}

/** overlayfs takes `:`, `,` and `\` as syntax in layer paths. */
function checkLayerPath(p: string): void {
  if (/[:,\\]/.test(p)) throw fail(`${p}: overlayfs cannot take a layer path holding ':', ',' or '\\'`, p);
}

/** The image id for a tag (its config's composefs.image) or for an id under images/. */
export async function imageIdOf(repo: Repository, name: string): Promise<string> {
  if (isObjectId(name, repo.alg)) {
    // images/<hex> is followed by the one resolver: only the link composefs-rs writes is an image.
    if ((await entryObject(repo, IMAGES_DIR, name)) === null) throw new VeritreeError(ERROR_CODES.TAG_NOT_FOUND, `no image ${name} under ${join(repo.root, 'images')}`);
    return name;
  }
  // The writer's module is loaded only here: `umount` needs none of it.
  const { storedImageOf } = await import('./store-image.ts');
  const id = await storedImageOf(repo, name);
  if (id === null) throw new VeritreeError(ERROR_CODES.USAGE, `the image tagged ${JSON.stringify(name)} has no composefs image yet: run veritree image ${name}`);
  return id;
}

export interface MountOptions extends LockWaitOptions {
  /** Test seam: called once the image is hashed, before its loop device is set up. */
  afterHash?: (path: string) => void;
}

/** Opens an image object for reading: no symlink, no FIFO wait, a regular file. */
function openImage(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (e) {
    throw storeIoError(e, path, 'opening the composefs image', 'read');
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `composefs image ${path} is not a regular file; run veritree fsck`, { path });
  }
  return fd;
}

/**
 * Mounts the image (a tag or an image id) read-only at `dir`, under the repository's shared lock.
 * @throws VeritreeError MOUNT_FAILED when not root, the kernel lacks erofs or overlay, or mount fails; STORE_CORRUPT when the image's digest is not its name
 */
export async function mountImage(repo: Repository, name: string, dir: string, options: MountOptions = {}): Promise<MountReport> {
  const why = mountUnavailable();
  if (why !== null) throw fail(why);
  const lock = await repo.lockShared(lockOptionsFrom(options));
  try {
    const id = await imageIdOf(repo, name);
    const path = repo.objectPath(id);
    const fd = openImage(path);
    try {
      return mountFrom(repo, id, fd, dir, options);
    } finally {
      closeSync(fd);
    }
  } finally {
    await lock.release();
  }
}

/** Hashes the open image `fd`, then mounts that same open file. */
function mountFrom(repo: Repository, id: string, fd: number, dir: string, options: MountOptions): MountReport {
  const path = repo.objectPath(id);
  let bytes: Buffer;
  try {
    bytes = readFileSync(fd);
  } catch (e) {
    throw storeIoError(e, path, 'reading the composefs image', 'read');
  }
  const found = toHex(verityDigest(bytes, repo.alg));
  if (found !== id) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `composefs image ${id} is damaged: its fs-verity digest is ${found}; run veritree fsck`, { path });
  options.afterHash?.(path);
  const hasAcl = bytes.length >= 12 && (bytes.readUInt32LE(8) & 1) === 1;
  const verity = repo.verity === 'require';
  checkLayerPath(repo.objectsDir);
  checkLayerPath(dir);
  const at = mkdtempSync(join(tmpdir(), '.veritree-erofs-'));
  checkLayerPath(at);
  try {
    const loop = run('losetup', ['--find', '--show', '--read-only', '/proc/self/fd/3'], fd).trim();
    if (!/^\/dev\/loop\d+$/.test(loop)) throw fail(`losetup named no loop device: ${JSON.stringify(loop)}`);
    try {
      run('mount', ['-t', 'erofs', '-o', `ro${hasAcl ? '' : ',noacl'}`, loop, at]);
    } catch (e) {
      spawnSync('losetup', ['--detach', loop], { stdio: 'ignore' });
      throw e;
    }
    try {
      // While erofs holds it, the kernel only marks the device to go with that mount (autoclear).
      run('losetup', ['--detach', loop]);
    } catch (e) {
      run('umount', ['-l', at]);
      throw e;
    }
    try {
      run('mount', ['-t', 'overlay', 'composefs', '-o', `ro,metacopy=on,redirect_dir=on,lowerdir=${at}::${repo.objectsDir}${verity ? ',verity=require' : ''}`, dir]);
    } finally {
      run('umount', ['-l', at]);
    }
  } finally {
    rmdirSync(at);
  }
  return { image: id, dir, verity };
}

/** Whether `dir` is a mount point (its path is a mount point in /proc/self/mountinfo). */
function isMountPoint(dir: string): boolean {
  let real: string;
  try {
    real = realpathSync(dir);
  } catch {
    return false;
  }
  // Field 5 is the mount point, with space, tab, newline and backslash escaped as \ooo.
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => unescape(l.split(' ')[4] ?? '') === real);
}

/**
 * Unmounts what mountImage mounted at `dir`.
 * @throws VeritreeError USAGE when nothing is mounted there (a second umount), MOUNT_FAILED when umount fails
 */
export function unmountImage(dir: string): void {
  if (!isMountPoint(dir)) throw new VeritreeError(ERROR_CODES.USAGE, `${dir}: nothing is mounted there`);
  run('umount', [dir]);
}
