/**
 * What the tar splitter notes about an entry's path (see tar-split.ts): whether it points outside
 * the root, and whether it lies beneath a symlink an earlier entry made. Both are warnings only:
 * the bytes are kept as they are, and nothing here writes a path anywhere.
 * @module
 */
import { posix } from 'node:path';
import { TYPE } from './tar-header.ts';
import type { TarEntry } from './tar-records.ts';

function unsafePath(p: string): boolean {
  if (p.startsWith('/')) return true;
  return p.split('/').includes('..');
}

function clean(p: string): string {
  const n = posix.normalize(p.replace(/^\/+/, ''));
  return n === '.' ? '' : n.replace(/\/$/, '');
}

/** A path with a leading or trailing slash, an empty component, or a `.` or `..` component. */
const IRREGULAR = /^\/|\/$|\/\/|(^|\/)\.\.?(\/|$)/;

/**
 * The path's components once cleaned, and whether it points outside the root. Most paths are
 * already clean (no `..`, no `//`, no leading slash): one split, no normalising.
 */
export function pathFacts(p: string): { parts: string[]; unsafe: boolean } {
  if (!IRREGULAR.test(p)) return { parts: p.split('/'), unsafe: false };
  return { parts: clean(p).split('/'), unsafe: unsafePath(p) };
}

interface LinkNode {
  link: boolean;
  kids: Map<string, LinkNode> | null;
}

/**
 * Tracks symlinks seen so far, to warn about entries that would be created beneath one. A tree of
 * path components, so that checking an entry costs one lookup per component: a path 10,000
 * folders deep is not 10,000 prefixes hashed whole.
 */
export class SymlinkWatch {
  private readonly root: LinkNode = { link: false, kids: null };

  /** `parts`: the entry's cleaned path components (pathFacts). */
  note(entry: TarEntry, parts: string[]): string | null {
    let node: LinkNode | undefined = this.root;
    let hit: string | null = null;
    for (let i = 0; i < parts.length - 1 && node; i++) {
      node = node.kids?.get(parts[i] as string);
      if (node?.link) {
        hit = parts.slice(0, i + 1).join('/');
        break;
      }
    }
    if (entry.typeflag === TYPE.symlink) {
      let at = this.root;
      for (const part of parts) {
        at.kids ??= new Map();
        let next = at.kids.get(part);
        if (!next) at.kids.set(part, (next = { link: false, kids: null }));
        at = next;
      }
      at.link = true;
    } else if (this.root.kids) {
      let at: LinkNode | undefined = this.root;
      for (let i = 0; i < parts.length && at; i++) at = at.kids?.get(parts[i] as string);
      if (at) at.link = false;
    }
    return hit;
  }
}
