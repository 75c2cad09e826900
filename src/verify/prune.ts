/**
 * Pruning by age or count, as `ostree prune --keep-younger-than` does for commits: tags past the
 * policy are removed, then gc frees what only they kept alive.
 * @module
 */
import { ERROR_CODES, VeritreeError, throwIfAborted } from '../errors.ts';
import { lockOptionsFrom, type LockWaitOptions } from '../store/lock.ts';
import type { Repository } from '../store/repository.ts';
import { tagsByAge } from '../store/tag-times.ts';
import { gc, type GcOptions, type GcReport } from './gc.ts';

export interface PruneOptions extends LockWaitOptions, Pick<GcOptions, 'onProgress'> {
  /** Keep the N tags set most recently. */
  keepLast?: number;
  /** Keep the tags set less than this many milliseconds ago. */
  keepNewerThanMs?: number;
  dryRun?: boolean;
  /** The clock, for tests (default Date.now). */
  now?: number;
}

export interface PruneReport {
  /** Tags removed (or, dry, that would be), oldest last. */
  untagged: string[];
  kept: string[];
  gc: GcReport;
}

/**
 * Removes every tag that no given policy keeps (a tag is kept when any policy keeps it), then
 * runs gc. With `dryRun` nothing is removed: the tags are listed, and gc's report is that of a
 * dry gc, which still sees them.
 * @throws VeritreeError USAGE when no policy is given
 */
export async function prune(repo: Repository, opts: PruneOptions): Promise<PruneReport> {
  if (opts.keepLast === undefined && opts.keepNewerThanMs === undefined) {
    throw new VeritreeError(ERROR_CODES.USAGE, 'prune: give --keep-last N or --keep-newer-than DURATION (or both)');
  }
  if (!opts.dryRun) repo.assertWritable();
  const now = opts.now ?? Date.now();
  const lock = await repo.lockExclusive(lockOptionsFrom(opts));
  const untagged: string[] = [];
  const kept: string[] = [];
  try {
    for (const [i, t] of (await tagsByAge(repo)).entries()) {
      throwIfAborted(opts.signal);
      const byCount = opts.keepLast !== undefined && i < opts.keepLast;
      const byAge = opts.keepNewerThanMs !== undefined && now - t.setAt < opts.keepNewerThanMs;
      if (byCount || byAge) {
        kept.push(t.tag);
        continue;
      }
      untagged.push(t.tag);
      if (!opts.dryRun) await repo.removeTag(t.tag);
    }
    if (!opts.dryRun && untagged.length > 0) await repo.sync();
  } finally {
    await lock.release();
  }
  return { untagged, kept, gc: await gc(repo, { ...opts, dryRun: opts.dryRun === true }) };
}

const UNITS: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };

/** `90s`, `30m`, `12h`, `7d`, `2w` (or several: `1d12h`) in milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(?:\d+[smhdw])+$/.exec(text.trim());
  if (!m) throw new VeritreeError(ERROR_CODES.USAGE, `duration ${JSON.stringify(text)}: expected a number and a unit (s, m, h, d, w), e.g. 30d or 1d12h`);
  let ms = 0;
  for (const [, n, u] of text.trim().matchAll(/(\d+)([smhdw])/g)) ms += Number(n) * (UNITS[u as string] as number);
  return ms;
}
