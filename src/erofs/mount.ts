/**
 * Mounting a composefs image over the store's objects, as mount.composefs does it
 * (libcomposefs lcfs-mount.c): the EROFS image read-only on a loop device at a private temporary
 * folder (`noacl` when the image has no ACLs), then overlayfs read-only at DIR with the image as
 * its one lower layer and `objects/` as a data-only lower layer (`lowerdir=IMAGE::OBJECTS`),
 * `metacopy=on,redirect_dir=on`, and `verity=require` when the store's objects carry fs-verity.
 * The image's own mount is then detached: overlayfs holds it, and it goes when DIR is unmounted.
 *
 * Before anything is mounted the image's bytes are hashed and must equal its name, so a damaged
 * or swapped image is refused rather than served.
 * @module
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, realpathSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import type { Repository } from '../store/repository.ts';
import { entryObject } from '../store/links.ts';
import { IMAGES_DIR } from '../store/layout.ts';
import { toHex, verityDigest } from '../verity/index.ts';

export interface MountReport {
  image: string;
  dir: string;
  verity: boolean;
}

function fail(why: string, path?: string): VeritreeError {
  return new VeritreeError(ERROR_CODES.MOUNT_FAILED, why, path === undefined ? {} : { path });
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error) throw fail(`${cmd} could not run: ${r.error.message}`);
  if (r.status !== 0) throw fail(`${cmd} ${args.join(' ')}: ${(r.stderr || r.stdout).trim() || `exit ${r.status}`}`);
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
  if (/^[0-9a-f]{64}$/.test(name)) {
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

/**
 * Mounts the image (a tag or an image id) read-only at `dir`.
 * @throws VeritreeError MOUNT_FAILED when not root, the kernel lacks erofs or overlay, or mount fails; STORE_CORRUPT when the image's digest is not its name
 */
export async function mountImage(repo: Repository, name: string, dir: string): Promise<MountReport> {
  const why = mountUnavailable();
  if (why !== null) throw fail(why);
  const id = await imageIdOf(repo, name);
  const bytes = await repo.readObject(id);
  const found = toHex(verityDigest(bytes, repo.alg));
  if (found !== id) throw new VeritreeError(ERROR_CODES.STORE_CORRUPT, `composefs image ${id} is damaged: its fs-verity digest is ${found}; run veritree fsck`, { path: repo.objectPath(id) });
  const hasAcl = bytes.length >= 12 && (bytes.readUInt32LE(8) & 1) === 1;
  const verity = repo.verity === 'require';
  checkLayerPath(repo.objectsDir);
  checkLayerPath(dir);
  const at = mkdtempSync(join(tmpdir(), '.veritree-erofs-'));
  checkLayerPath(at);
  try {
    run('mount', ['-t', 'erofs', '-o', `ro,loop${hasAcl ? '' : ',noacl'}`, repo.objectPath(id), at]);
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
