/**
 * The repository lock, as composefs-rs takes it: flock(2) on the repository folder itself,
 * shared by everything that opens the repository to read or write (import, fsck, checkout),
 * exclusive for gc and repair. So veritree and cfsctl exclude each other, and the kernel drops a
 * lock when its holder dies, in any pid namespace: there is nothing stale to judge or reap.
 *
 * The lock is polled without blocking (LOCK_NB) so that a waiting command can say what it waits
 * for, honour its timeout and its AbortSignal. Where the native module did not build, util-linux
 * `flock(1)` takes the same kernel lock in a child that holds it until our end of its stdin
 * closes (which the kernel also does when we die).
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants as fsc, openSync } from 'node:fs';
import { ERROR_CODES, VeritreeError, interrupted, storeIoError, throwIfAborted } from '../errors.ts';
import { storeSys } from './sys.ts';

export type LockKind = 'shared' | 'exclusive';

/** How the library's commands take lock settings (import, fsck, gc): one spelling, one mapping. */
export interface LockWaitOptions {
  signal?: AbortSignal | undefined;
  /** Give up (STORE_LOCKED) when the lock is not free within this many ms; default: wait. */
  lockTimeoutMs?: number | undefined;
  /** Called once if the lock is not free at once, saying what is awaited. */
  onLockWait?: ((message: string) => void) | undefined;
}

export function lockOptionsFrom(o: LockWaitOptions): LockOptions {
  return {
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.lockTimeoutMs !== undefined ? { timeoutMs: o.lockTimeoutMs } : {}),
    ...(o.onLockWait ? { onWait: o.onLockWait } : {}),
  };
}

export interface RepoLock {
  readonly kind: LockKind;
  release(): Promise<void>;
}

export interface LockOptions {
  /** How long to wait for the other kind of holder; 0 fails at once. Default: wait forever. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Called once, when the lock is not free at once: the message says what is awaited. */
  onWait?: (message: string) => void;
}

const POLL_MIN_MS = 10;
const POLL_MAX_MS = 200;

function waitingFor(kind: LockKind): string {
  return kind === 'shared'
    ? 'a garbage collection or repair holds the repository lock exclusively'
    : 'running imports or readers (veritree or cfsctl) hold the repository lock';
}

function lockedError(root: string, kind: LockKind): VeritreeError {
  return new VeritreeError(ERROR_CODES.STORE_LOCKED, `repository ${root} is locked: ${waitingFor(kind)}`, { path: root });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

async function lockNative(root: string, kind: LockKind, opts: LockOptions, flock: (fd: number, op: 1 | 2 | 3) => boolean): Promise<RepoLock> {
  let fd: number;
  try {
    fd = openSync(root, fsc.O_RDONLY | fsc.O_DIRECTORY);
  } catch (e) {
    throw storeIoError(e, root, 'opening the repository to lock it', 'read');
  }
  const deadline = Date.now() + (opts.timeoutMs ?? Infinity);
  try {
    for (let wait = POLL_MIN_MS, told = false; ; wait = Math.min(wait * 2, POLL_MAX_MS)) {
      throwIfAborted(opts.signal);
      if (flock(fd, kind === 'shared' ? 1 : 2)) break;
      if (Date.now() >= deadline) throw lockedError(root, kind);
      if (!told) {
        told = true;
        opts.onWait?.(`waiting: ${waitingFor(kind)}`);
      }
      await sleep(Math.min(wait, Math.max(1, deadline - Date.now())), opts.signal);
    }
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  let released = false;
  return {
    kind,
    release: async () => {
      if (released) return;
      released = true;
      closeSync(fd); // closing the last descriptor of the open file drops the lock
    },
  };
}

async function lockWithFlockCommand(root: string, kind: LockKind, opts: LockOptions): Promise<RepoLock> {
  const deadline = Date.now() + (opts.timeoutMs ?? Infinity);
  const args = [kind === 'shared' ? '--shared' : '--exclusive'];
  if (opts.timeoutMs === 0) args.push('--nonblock');
  else if (opts.timeoutMs !== undefined) args.push('--timeout', String(Math.max(0, opts.timeoutMs) / 1000));
  // The child prints a line once it holds the lock, then holds it until its stdin closes.
  const child: ChildProcess = spawn('flock', [...args, '--conflict-exit-code', '75', root, 'sh', '-c', 'echo locked; exec cat >/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const told = setTimeout(() => opts.onWait?.(`waiting: ${waitingFor(kind)}`), 100);
  const onAbort = (): void => void child.kill('SIGTERM');
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await new Promise<void>((resolve, reject) => {
      child.on('error', (e) => reject(new VeritreeError(ERROR_CODES.STORE_IO, `cannot lock ${root}: the native module did not build and flock(1) failed (${e.message})`, { path: root, cause: e })));
      child.stdout?.once('data', () => resolve());
      child.on('close', (code) => {
        if (opts.signal?.aborted) reject(interrupted(opts.signal));
        else if (code === 75 || Date.now() >= deadline) reject(lockedError(root, kind));
        else reject(storeIoError(new Error(stderr.trim() || `flock exit ${code}`), root, 'taking the repository lock'));
      });
    });
  } finally {
    clearTimeout(told);
    opts.signal?.removeEventListener('abort', onAbort);
  }
  child.removeAllListeners('close');
  let released: Promise<void> | null = null;
  return {
    kind,
    release: () =>
      (released ??= new Promise<void>((resolve) => {
        child.once('close', () => resolve());
        child.stdin?.end();
      })),
  };
}

export function acquireLock(root: string, kind: LockKind, opts: LockOptions = {}): Promise<RepoLock> {
  const sys = storeSys();
  return sys ? lockNative(root, kind, opts, sys.flock) : lockWithFlockCommand(root, kind, opts);
}
