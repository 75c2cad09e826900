/**
 * Finds and loads one of the optional N-API modules that `npm install` builds in
 * native/build/Release, from the source tree or the compiled one (dist/). A module that is
 * missing or fails to load is reported once as a reason, never thrown: every caller has a
 * portable fallback.
 * @module
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';

export interface LoadedAddon<T> {
  addon: T | null;
  /** Why `addon` is null; empty when it loaded. */
  reason: string;
}

export function loadAddon<T>(name: string): LoadedAddon<T> {
  if (process.env.VERITREE_DISABLE_NATIVE?.split(',').includes(name)) {
    return { addon: null, reason: `${name} disabled by VERITREE_DISABLE_NATIVE` };
  }
  const require = createRequire(import.meta.url);
  const candidates = [
    new URL(`../native/build/Release/${name}.node`, import.meta.url),
    new URL(`../../native/build/Release/${name}.node`, import.meta.url),
  ];
  let reason = `native/build/Release/${name}.node was not built`;
  for (const url of candidates) {
    if (!existsSync(url)) continue;
    try {
      return { addon: require(url.pathname) as T, reason: '' };
    } catch (e) {
      reason = e instanceof Error ? e.message : String(e);
    }
  }
  return { addon: null, reason };
}

/**
 * A stop flag for an addon's jobs on libuv's thread pool: an Int32Array the jobs read between
 * files and reads, set to 1 when `signal` aborts, and by `done()`: the caller is leaving (it
 * finished, or failed with jobs still reading), so whatever still runs stops at its next check.
 */
export function stopFlag(signal: AbortSignal | undefined): { flag: Int32Array; done: () => void } {
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const stop = (): void => void Atomics.store(flag, 0, 1);
  if (signal?.aborted) stop();
  else signal?.addEventListener('abort', stop, { once: true });
  return {
    flag,
    done: () => {
      signal?.removeEventListener('abort', stop);
      stop();
    },
  };
}

/** What an addon's call on a path (digestPath, readSmall) found instead of a result. */
export type NativeFileFailure = { errno: string } | { notRegular: string };

const ERRNO_NAME = new Map(Object.entries(osConstants.errno).map(([k, v]) => [v, k]));
const KIND_OF_IFMT: Record<number, string> = { 1: 'a FIFO', 2: 'a device', 4: 'a directory', 6: 'a device', 10: 'a symbolic link', 12: 'a socket' };

/** The addons' convention for a failed open or read: -errno, or -1000 - (S_IFMT >> 12) for a file that is not regular. */
export function nativeFileFailure(r: number): NativeFileFailure {
  if (r <= -1000) return { notRegular: KIND_OF_IFMT[-r - 1000] ?? 'not a regular file' };
  return { errno: ERRNO_NAME.get(-r) ?? `errno ${-r}` };
}
