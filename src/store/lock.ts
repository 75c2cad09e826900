/**
 * The repository lock: shared for writers (import), exclusive for gc. Node has no flock(2), so
 * the lock is a folder of files, one per holder, named with the holder's pid:
 *   shared-<pid>-<rand>   one per writer      exclusive   at most one (created with O_EXCL)
 * A writer creates its shared file, then looks for `exclusive`; gc creates `exclusive`, then
 * waits until no shared file is left. Whichever order the two run in, one of them sees the
 * other (each writes before it reads). A file whose pid is no longer alive is stale and removed,
 * so a killed process never locks the repository forever. Holders on other hosts (a shared
 * network filesystem) are not detected: that is documented as unsupported.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ERROR_CODES, VeritreeError, errnoCode, storeIoError } from '../errors.ts';

const EXCLUSIVE = 'exclusive';
const POLL_MS = 50;

export interface LockInfo {
  pid: number;
  started: number;
}

export interface RepoLock {
  readonly kind: 'shared' | 'exclusive';
  release(): Promise<void>;
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errnoCode(e) === 'EPERM';
  }
}

async function readInfo(path: string): Promise<LockInfo | null> {
  try {
    const info = JSON.parse(await readFile(path, 'utf8')) as LockInfo;
    return typeof info.pid === 'number' ? info : null;
  } catch {
    return null;
  }
}

/** Removes the lock file at `path` if its holder is dead; true if it is (now) gone. */
async function reapIfStale(path: string): Promise<boolean> {
  const info = await readInfo(path);
  if (info && alive(info.pid)) return false;
  // A file that cannot be parsed may be one being written right now: give it a moment.
  if (!info) {
    await sleep(POLL_MS);
    const again = await readInfo(path);
    if (again && alive(again.pid)) return false;
  }
  await unlink(path).catch(() => undefined);
  return true;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function infoJson(): string {
  return JSON.stringify({ pid: process.pid, started: Date.now() } satisfies LockInfo);
}

export interface LockOptions {
  /** How long to wait for the other kind of holder; 0 fails at once. Default: wait forever. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

function checkWait(deadline: number, dir: string, what: string, signal?: AbortSignal): void {
  if (signal?.aborted) throw new VeritreeError(ERROR_CODES.ABORTED, 'interrupted', { cause: signal.reason });
  if (Date.now() > deadline) {
    throw new VeritreeError(ERROR_CODES.STORE_LOCKED, `repository is locked by ${what}`, { path: dir });
  }
}

export async function acquireShared(locksDir: string, opts: LockOptions = {}): Promise<RepoLock> {
  const deadline = Date.now() + (opts.timeoutMs ?? Infinity);
  await mkdir(locksDir, { recursive: true }).catch((e: unknown) => {
    throw storeIoError(e, dirname(locksDir), 'creating the lock folder');
  });
  const mine = join(locksDir, `shared-${process.pid}-${randomBytes(6).toString('hex')}`);
  for (;;) {
    await writeFile(mine, infoJson(), { flag: 'wx' }).catch((e: unknown) => {
      throw storeIoError(e, dirname(locksDir), 'taking the repository lock');
    });
    const ex = join(locksDir, EXCLUSIVE);
    const info = await readInfo(ex);
    const exists = info !== null || (await fileExists(ex));
    if (!exists || (await reapIfStale(ex))) {
      return { kind: 'shared', release: () => unlink(mine).catch(() => undefined) };
    }
    await unlink(mine).catch(() => undefined);
    checkWait(deadline, locksDir, 'a garbage collection (exclusive)', opts.signal);
    await sleep(POLL_MS);
  }
}

async function fileExists(p: string): Promise<boolean> {
  try {
    await readFile(p);
    return true;
  } catch {
    return false;
  }
}

export async function acquireExclusive(locksDir: string, opts: LockOptions = {}): Promise<RepoLock> {
  const deadline = Date.now() + (opts.timeoutMs ?? Infinity);
  await mkdir(locksDir, { recursive: true }).catch((e: unknown) => {
    throw storeIoError(e, dirname(locksDir), 'creating the lock folder');
  });
  const ex = join(locksDir, EXCLUSIVE);
  for (;;) {
    try {
      await writeFile(ex, infoJson(), { flag: 'wx' });
      break;
    } catch (e) {
      if (errnoCode(e) !== 'EEXIST') throw storeIoError(e, dirname(locksDir), 'taking the repository lock');
      if (await reapIfStale(ex)) continue;
      checkWait(deadline, locksDir, 'another garbage collection', opts.signal);
      await sleep(POLL_MS);
    }
  }
  const release = (): Promise<void> => unlink(ex).catch(() => undefined);
  try {
    for (;;) {
      const holders = (await readdir(locksDir)).filter((n) => n.startsWith('shared-'));
      let live = 0;
      for (const h of holders) if (!(await reapIfStale(join(locksDir, h)))) live++;
      if (live === 0) return { kind: 'exclusive', release };
      checkWait(deadline, locksDir, `${live} running writer(s)`, opts.signal);
      await sleep(POLL_MS);
    }
  } catch (e) {
    await release();
    throw e;
  }
}

/** The start time of the oldest live writer, so gc can tell its tmp files from stray ones. */
export async function oldestWriterStart(locksDir: string): Promise<number | null> {
  let oldest: number | null = null;
  const names = await readdir(locksDir).catch(() => [] as string[]);
  for (const n of names.filter((x) => x.startsWith('shared-'))) {
    const info = await readInfo(join(locksDir, n));
    if (info && alive(info.pid) && (oldest === null || info.started < oldest)) oldest = info.started;
  }
  return oldest;
}
