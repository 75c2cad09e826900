/**
 * Why a path of the store is denied: the first folder on its way that this process cannot enter
 * (a store made by root is 0700, as composefs-rs makes it), with its mode and owner. Used only to
 * word a permission error, after the system call failed; it changes nothing.
 * @module
 */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

export interface DeniedFolder {
  folder: string;
  mode: number;
  uid: number;
  gid: number;
}

/** The mode and owner of `path`, in the words ls users read (`mode 0700, owner uid 0 gid 0`); '' when it cannot be read. */
export function modeAndOwner(path: string): string {
  try {
    const st = statSync(path);
    return `mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}, owner uid ${st.uid} gid ${st.gid}`;
  } catch {
    // Only words for a message: a path we cannot stat is described without them.
    return '';
  }
}

/**
 * The first folder from `/` down to `path` (itself too, when it is a folder) that this process
 * may not search (enter); null when every one may be entered.
 */
export function deniedFolder(path: string): DeniedFolder | null {
  const abs = resolve(path);
  const chain: string[] = [];
  for (let p = abs, up = dirname(p); ; p = up, up = dirname(p)) {
    chain.push(p);
    if (up === p) break;
  }
  chain.reverse();
  for (const folder of chain) {
    let st;
    try {
      st = statSync(folder);
    } catch {
      // Not there or not statable: the folder above it is the one to name, if any.
      return null;
    }
    if (!st.isDirectory()) return null;
    try {
      accessSync(folder, constants.X_OK);
    } catch {
      return { folder, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    }
  }
  return null;
}
