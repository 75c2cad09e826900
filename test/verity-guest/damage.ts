/**
 * Damage done as an attacker does it, for the guest tier (scripts/test-verity-guest.sh): never
 * by writing into an object in place, which the kernel refuses (EPERM) on a file with fs-verity.
 * A file is replaced by another one renamed over it, or a block is changed on the disk under the
 * filesystem.
 * @module
 */
import { closeSync, fsyncSync, openSync, readFileSync, readSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { must } from '../helpers.ts';

/** The folder on the guest's scratch filesystem (ext4 with `-O verity`) the tier works in. */
export function verityDir(): string {
  const dir = process.env.VERITY_DIR;
  if (!dir) throw new Error('VERITY_DIR is not set: the guest tier runs inside the fs-verity guest, through scripts/test-verity-guest.sh');
  return dir;
}

/** `path` replaced by a new file of `bytes` (renamed over it), with fs-verity when `seal`. */
export function replaceWith(path: string, bytes: Buffer, seal = false): void {
  const tmp = `${path}.attacker`;
  writeFileSync(tmp, bytes, { mode: 0o644 });
  if (seal) must('fsverity', ['enable', tmp]);
  renameSync(tmp, path);
}

/** `path` replaced by a copy of its own bytes that has no fs-verity. */
export function copyWithoutVerity(path: string): void {
  replaceWith(path, readFileSync(path));
}

/** The device and filesystem type mounted at `dir`, from /proc/mounts. */
function mountOf(dir: string): { dev: string; type: string } {
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [dev, at, type] = line.split(' ');
    if (at === dir && dev && type) return { dev, type };
  }
  throw new Error(`nothing is mounted at ${dir}`);
}

/**
 * Flips the first byte of the file's first data block on the disk beneath the filesystem: the
 * filesystem is unmounted (so no cached page hides the change), the byte written through the
 * block device, and the filesystem mounted again. Nothing under `verityDir()` may be open.
 */
export function flipBlockOnDisk(path: string): void {
  const dir = verityDir();
  // filefrag -v: "(N blocks of B bytes)", then extents "0: 0.. n: phys.. ...".
  const frag = must('filefrag', ['-v', path]);
  const bs = Number(/blocks of (\d+) bytes/.exec(frag)?.[1]);
  const phys = Number(/^\s*0:\s+0\.\.\s*\d+:\s+(\d+)\.\./m.exec(frag)?.[1]);
  if (!(bs > 0) || !(phys > 0)) throw new Error(`no data block found for ${path}:\n${frag}`);
  const { dev, type } = mountOf(dir);
  must('sync', []);
  must('umount', [dir]);
  try {
    const fd = openSync(dev, 'r+');
    try {
      const b = Buffer.alloc(1);
      readSync(fd, b, 0, 1, phys * bs);
      b[0] = (b[0] as number) ^ 0xff;
      writeSync(fd, b, 0, 1, phys * bs);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } finally {
    must('mount', ['-t', type, dev, dir]);
  }
}
