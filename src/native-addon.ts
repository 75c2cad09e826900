/**
 * Finds and loads one of the optional N-API modules that `npm install` builds in
 * native/build/Release, from the source tree or the compiled one (dist/). A module that is
 * missing or fails to load is reported once as a reason, never thrown: every caller has a
 * portable fallback.
 * @module
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

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
