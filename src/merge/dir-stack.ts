/**
 * Descriptors of the folders along the path checkout is writing, in bounded number at any depth.
 *
 * Siblings share their parent's descriptor and a walk down costs one open per folder. Only the
 * deepest WINDOW folders stay open as the walk goes down; a folder whose descriptor was let go is
 * reopened, when the walk comes back up to it, by an openat chain from the nearest open ancestor
 * (one component at a time, O_NOFOLLOW: a symlink anywhere fails the open). Such a chain keeps a
 * few of the folders it passes open as checkpoints, halving the distance to the top each time,
 * so that climbing back out of a tree N deep costs O(N log N) opens, not O(N^2): the checkpoints
 * are what the next reopen starts from. Checkpoints are taken only while fewer than MAX_OPEN
 * descriptors are held, so the bound holds whatever the shape of the tree (past it, reopens
 * start further down, and cost more, but never fail with EMFILE).
 *
 * Leaving a folder (the walk moves to a path outside it) hands it, still open, to `onLeave`:
 * checkout sets its metadata then, when everything in it has been made.
 * @module
 */
import { closeSync } from 'node:fs';
import { throwIfAborted } from '../errors.ts';
import { nameBytes } from '../oci/names.ts';
import { openDirAt } from './dir-handle.ts';

/** Folders kept open at the bottom of the path, and descriptors held at most (window and checkpoints). */
export const WINDOW = 16;
export const MAX_OPEN = 48;

interface Level {
  /** The folder's name in its parent (bytes); empty for the root. */
  name: Buffer;
  /** Its length in the current path string: the path of this level is `cur.slice(0, end)`. */
  end: number;
  /** Its descriptor, or -1 when let go. */
  fd: number;
  /** Kept open below the window, as a point the next reopen starts from. */
  checkpoint: boolean;
}

export class DirStack {
  private readonly levels: Level[];
  /** The path of the deepest level. */
  private cur = '';
  /** Descriptors this stack holds (the root's is the caller's). */
  private held = 0;

  private readonly onLeave: (path: string, fd: number) => void;
  private readonly signal: AbortSignal | undefined;

  constructor(rootFd: number, onLeave: (path: string, fd: number) => void = () => {}, signal?: AbortSignal) {
    this.onLeave = onLeave;
    this.signal = signal;
    this.levels = [{ name: Buffer.alloc(0), end: 0, fd: rootFd, checkpoint: false }];
  }

  /** How many descriptors the stack holds now (for tests). */
  get openCount(): number {
    return this.held;
  }

  /** The descriptor of folder `path` of the tree, opened on the way as needed; valid until the next call. */
  get(path: string): number {
    const keep = this.commonDepth(path);
    while (this.levels.length - 1 > keep) {
      throwIfAborted(this.signal);
      this.leave();
    }
    let top = this.levels.length - 1;
    const base = (this.levels[top] as Level).end;
    if (path.length > base) {
      this.ensureOpen(top);
      for (const comp of path.slice(base === 0 ? 0 : base + 1).split('/')) {
        throwIfAborted(this.signal);
        const fd = openDirAt((this.levels[top] as Level).fd, nameBytes(comp));
        this.held++;
        this.cur = this.cur === '' ? comp : `${this.cur}/${comp}`;
        this.levels.push({ name: nameBytes(comp), end: this.cur.length, fd, checkpoint: false });
        top++;
        this.letGo(top - WINDOW);
      }
    }
    this.ensureOpen(top);
    return (this.levels[top] as Level).fd;
  }

  /**
   * The descriptor of `path` if it is the current folder or one of its ancestors (opened again if
   * it was let go), else null. Opens nothing below the current folder and closes nothing.
   */
  ancestor(path: string): number | null {
    const d = this.commonDepth(path);
    if ((this.levels[d] as Level).end !== path.length) return null;
    this.ensureOpen(d);
    return (this.levels[d] as Level).fd;
  }

  /** Leaves every folder but the root (each handed to `onLeave`). */
  leaveAll(): void {
    while (this.levels.length > 1) {
      throwIfAborted(this.signal);
      this.leave();
    }
  }

  /** Closes what is held without calling `onLeave` (on an error). */
  close(): void {
    while (this.levels.length > 1) {
      const l = this.levels.pop() as Level;
      if (l.fd >= 0) closeSync(l.fd);
    }
    this.held = 0;
    this.cur = '';
  }

  /** The deepest level whose path is `path` or an ancestor of it. */
  private commonDepth(path: string): number {
    const top = this.levels.length - 1;
    const within = (i: number): boolean => {
      const end = (this.levels[i] as Level).end;
      if (end === 0) return true;
      return (path.length === end || (path.length > end && path.charCodeAt(end) === 47)) && path.startsWith(end === this.cur.length ? this.cur : this.cur.slice(0, end));
    };
    if (within(top)) return top;
    // Matching is monotone in depth (a level's ancestors match when it does): binary search.
    let lo = 0;
    let hi = top;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (within(mid)) lo = mid;
      else hi = mid;
    }
    return lo;
  }

  private leave(): void {
    const top = this.levels.length - 1;
    this.ensureOpen(top);
    const l = this.levels[top] as Level;
    try {
      this.onLeave(this.cur, l.fd);
    } finally {
      this.levels.pop();
      closeSync(l.fd);
      this.held--;
      this.cur = this.cur.slice(0, (this.levels[top - 1] as Level).end);
    }
  }

  private letGo(i: number): void {
    if (i < 1) return;
    const l = this.levels[i] as Level;
    if (l.fd < 0 || l.checkpoint) return;
    closeSync(l.fd);
    l.fd = -1;
    this.held--;
  }

  /** Reopens level `i` if it was let go, from the nearest open ancestor, leaving checkpoints. */
  private ensureOpen(i: number): void {
    if ((this.levels[i] as Level).fd >= 0) return;
    let a = i - 1;
    while ((this.levels[a] as Level).fd < 0) a--;
    // Checkpoints at a + g/2, then half the rest, and so on, up to the window below i.
    const keep = new Set<number>();
    for (let m = a + ((i - a) >> 1); m > a && m < i - WINDOW + 1; m = m + ((i - m) >> 1)) keep.add(m);
    for (let j = a + 1; j <= i; j++) {
      throwIfAborted(this.signal);
      const l = this.levels[j] as Level;
      l.fd = openDirAt((this.levels[j - 1] as Level).fd, l.name);
      this.held++;
      l.checkpoint = keep.has(j) && this.held <= MAX_OPEN - WINDOW;
      // The one it was opened from: let go unless it is the start, a checkpoint or in the window.
      if (j - 1 > a && j - 1 <= i - WINDOW) this.letGo(j - 1);
    }
  }
}
