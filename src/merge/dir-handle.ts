/**
 * Creating entries beneath a folder without ever following a symlink on the way, even when the
 * folder's owner swaps a subfolder for a symlink while we write. Every entry is created by name
 * relative to an open descriptor of its parent folder, through `/proc/self/fd/<fd>/<name>`:
 * the kernel resolves the magic link to that very folder, so the only component looked up by
 * name is the last one, and every call used here refuses a symlink there (O_NOFOLLOW, O_EXCL,
 * mkdir, symlink, link and mknod never follow it). That is openat(2) with Node's own calls.
 * Metadata is set through descriptors of what was created (fchown, fchmod, futimes), or of an
 * O_PATH descriptor checked to be the created kind, never through a path that could have moved.
 *
 * Names are bytes (Buffers): a layer's names need not be UTF-8.
 * @module
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  constants as fsc,
  fchmodSync,
  fchownSync,
  fstatSync,
  futimesSync,
  lchownSync,
  linkSync,
  lutimesSync,
  mkdirSync,
  openSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  type Stats,
} from 'node:fs';
import { errnoCode } from '../errors.ts';
import { storeSys } from '../store/sys.ts';

/** O_PATH (Linux, the same value on every architecture Node runs on): a handle, not an open. */
const O_PATH = 0o10000000;

export function procFd(fd: number): string {
  return `/proc/self/fd/${fd}`;
}

/** The path of `name` inside the folder open at `dirFd`, resolved by the kernel, not by name. */
export function at(dirFd: number, name: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`/proc/self/fd/${dirFd}/`), name]);
}

/** Opens the folder `name` in `dirFd`; a symlink (or anything else) there is an error. */
export function openDirAt(dirFd: number, name: Buffer): number {
  return openSync(at(dirFd, name), fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
}

/** mkdir then open what was made; a symlink swapped in between fails the open. */
export function mkdirAt(dirFd: number, name: Buffer): number {
  mkdirSync(at(dirFd, name), 0o700);
  return openDirAt(dirFd, name);
}

/** A new regular file, open for writing; never follows or replaces anything already there. */
export function createFileAt(dirFd: number, name: Buffer): number {
  return openSync(at(dirFd, name), fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
}

export function symlinkAt(dirFd: number, name: Buffer, target: Buffer): void {
  symlinkSync(target, at(dirFd, name));
}

/** A hard link to a file of the store (by its path, which only we write) named in `dirFd`. */
export function linkPathAt(oldPath: string, dirFd: number, name: Buffer): void {
  linkSync(oldPath, at(dirFd, name));
}

/** A hard link: link(2) follows neither name's last component. */
export function linkAt(fromDirFd: number, fromName: Buffer, dirFd: number, name: Buffer): void {
  linkSync(at(fromDirFd, fromName), at(dirFd, name));
}

/**
 * A FIFO or device node named `name` in the folder `dirFd`, mode 0600, never replacing: the
 * addon's mknodat(2) where it built; else mknod(1) in a child handed our descriptor of the folder
 * as its fd 3, under an ASCII name of our own (the child's argv is text, a layer's names are
 * bytes), then hard-linked to its real name (link never replaces) and the first name removed.
 */
export function mknodAt(dirFd: number, name: Buffer, type: 'char' | 'block' | 'fifo', major: number, minor: number): void {
  const sys = storeSys();
  if (sys?.mknodAt) {
    sys.mknodAt(dirFd, name, type === 'fifo' ? 1 : type === 'char' ? 2 : 3, major, minor);
    return;
  }
  const tmp = Buffer.from(`.veritree-mknod-${process.pid}-${randomBytes(6).toString('hex')}`);
  const path = `/proc/self/fd/3/${tmp.toString()}`;
  const args = type === 'fifo' ? ['-m', '600', path, 'p'] : ['-m', '600', path, type === 'char' ? 'c' : 'b', String(major), String(minor)];
  const r = spawnSync('mknod', args, { stdio: ['ignore', 'ignore', 'pipe', dirFd], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mknod: ${(r.stderr ?? '').trim() || `exit ${r.status}`}`);
  try {
    linkSync(at(dirFd, tmp), at(dirFd, name));
  } finally {
    unlinkSync(at(dirFd, tmp));
  }
}

/**
 * An O_PATH handle of `name` in `dirFd` (a symlink is the link itself), checked to be of the
 * kind `is` expects: what we created, not something swapped in since.
 */
export function handleAt(dirFd: number, name: Buffer, is: (st: Stats) => boolean): number {
  const fd = openSync(at(dirFd, name), O_PATH | fsc.O_NOFOLLOW);
  const st = fstatSync(fd);
  if (!is(st)) {
    closeSync(fd);
    throw Object.assign(new Error('the entry was replaced while it was being written'), { code: 'ESTALE' });
  }
  return fd;
}

export interface EntryMeta {
  uid: number;
  gid: number;
  mode: number;
  /** Whole seconds since 1970 (negative before), and the nanoseconds past them (0..999,999,999). */
  mtimeSec: number;
  mtimeNsec: number;
}

/** Whether times are set exactly here (the addon's utimensat), or only to what Node's calls keep. */
export function exactTimes(): boolean {
  return storeSys()?.setTimes !== undefined;
}

/** What Node's futimes/utimes keep of a time: microseconds, and milliseconds before 1970 (a Date). */
function nodeTime(sec: number, nsec: number): number | Date {
  // A negative number becomes the current time in Node (fs toUnixTimestamp); a Date does not.
  return sec < 0 ? new Date(sec * 1000 + Math.floor(nsec / 1e6)) : sec + nsec / 1e9;
}

/**
 * atime and mtime of the entry open at `fd` (a file, a folder, or an O_PATH handle), to the
 * nanosecond and before 1970 through the addon; where it did not build, Node's calls, which
 * keep microseconds (milliseconds before 1970): `exactTimes()` says which.
 */
export function setTimesFd(fd: number, sec: number, nsec: number, viaProc = false): void {
  const sys = storeSys();
  if (sys?.setTimes) {
    sys.setTimes(fd, null, sec, nsec);
    return;
  }
  const t = nodeTime(sec, nsec);
  if (viaProc) utimesSync(procFd(fd), t, t);
  else futimesSync(fd, t, t);
}

/**
 * Owner, or mode and times, on an open descriptor (a file or folder we opened) or an O_PATH
 * handle (`viaProc`: through its /proc link, which names the inode itself). Two calls, so that
 * xattrs can go between: chown clears security.capability.
 */
export function chownVia(fd: number, meta: EntryMeta, viaProc: boolean): void {
  if (viaProc) chownSync(procFd(fd), meta.uid, meta.gid);
  else fchownSync(fd, meta.uid, meta.gid);
}

export function modeAndTimesVia(fd: number, meta: EntryMeta, viaProc: boolean): void {
  if (viaProc) {
    chmodSync(procFd(fd), meta.mode);
  } else {
    fchmodSync(fd, meta.mode);
  }
  setTimesFd(fd, meta.mtimeSec, meta.mtimeNsec, viaProc);
}

/** A symlink's owner and times, by name in its folder (neither call follows the link). */
export function applySymlinkMeta(dirFd: number, name: Buffer, meta: EntryMeta, owner: boolean): void {
  if (owner) lchownSync(at(dirFd, name), meta.uid, meta.gid);
  const sys = storeSys();
  if (sys?.setTimes) sys.setTimes(dirFd, name, meta.mtimeSec, meta.mtimeNsec);
  else {
    const t = nodeTime(meta.mtimeSec, meta.mtimeNsec);
    lutimesSync(at(dirFd, name), t, t);
  }
}

/** What could not be set of an entry's attributes: how many, and the first few reasons. */
export interface XattrFailures {
  failed: number;
  examples: string[];
}

/** Reasons kept per entry: an entry with thousands of attributes costs one warning, not thousands. */
const XATTR_EXAMPLES = 3;

/** Counts one failure; its reason is kept while there are few (an empty one is counted only). */
function noteFailure(f: XattrFailures, message: string): void {
  f.failed++;
  if (message !== '' && f.examples.length < XATTR_EXAMPLES) f.examples.push(message);
}

/**
 * Sets extended attributes on the entry itself (a file, folder or device handle), or, for a
 * symlink, on the entry `symlinkName` of the folder `fd`, not following it. Through the addon's
 * setxattr(2) where it built (names and values as bytes, exactly), else setfattr(1), handed our
 * descriptor as its fd 3, one process per attribute. Returns how many could not be set, with
 * the first few reasons.
 */
export function setXattrsVia(fd: number, symlinkName: Buffer | null, xattrs: Map<string, Buffer>): XattrFailures {
  const sys = storeSys();
  const f: XattrFailures = { failed: 0, examples: [] };
  if (sys?.setXattr) {
    // A namespace this filesystem refuses (EOPNOTSUPP) refuses every name in it: asked once per entry.
    const refused = new Set<string>();
    for (const [k, v] of xattrs) {
      const ns = k.slice(0, k.indexOf('.') + 1);
      if (refused.has(ns)) {
        noteFailure(f, '');
        continue;
      }
      try {
        sys.setXattr(fd, symlinkName, Buffer.from(k, 'latin1'), v);
      } catch (e) {
        if (errnoCode(e) === 'EOPNOTSUPP' && ns !== '') refused.add(ns);
        noteFailure(f, `xattr ${JSON.stringify(Buffer.from(k, 'latin1').toString('utf8'))} not applied: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    return f;
  }
  setXattrsWithSetfattr(fd, symlinkName, xattrs, f);
  return f;
}

/** Whether `setXattrsVia` can set attributes here: the addon, or setfattr on the PATH. */
export function canSetXattrs(commandExists: (name: string) => boolean): boolean {
  return storeSys()?.setXattr !== undefined || commandExists('setfattr');
}

function setXattrsWithSetfattr(fd: number, symlinkName: Buffer | null, xattrs: Map<string, Buffer>, f: XattrFailures): void {
  const path = symlinkName ? Buffer.concat([Buffer.from('/proc/self/fd/3/'), symlinkName]).toString('latin1') : '/proc/self/fd/3';
  for (const [k, v] of xattrs) {
    // The name travels in argv, which is text: a name that is not ASCII cannot be passed exactly.
    if (/[^\x20-\x7e]/.test(k)) {
      noteFailure(f, `xattr ${JSON.stringify(Buffer.from(k, 'latin1').toString('utf8'))} not applied: its name is not printable ASCII`);
      continue;
    }
    const args = [...(symlinkName ? ['-h'] : []), '-n', k, '-v', `0x${v.toString('hex')}`, path];
    const r = spawnSync('setfattr', args, { stdio: ['ignore', 'ignore', 'pipe', fd], encoding: 'utf8' });
    if (r.status !== 0) noteFailure(f, `xattr ${k} not applied: ${(r.stderr ?? '').trim()}`);
  }
}
