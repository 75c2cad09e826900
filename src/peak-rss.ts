/**
 * This process's peak resident set, in bytes. On Linux it is VmHWM of /proc/self/status: the
 * high-water mark of this process's own memory. getrusage's ru_maxrss is not that: Linux keeps it
 * across execve, so a process spawned by a large one (a test runner, a benchmark) reports its
 * parent's peak at the fork when that was larger. Elsewhere ru_maxrss is all there is.
 * @module
 */
import { readFileSync } from 'node:fs';

export function peakRssBytes(): number {
  let status: string | null = null;
  try {
    status = readFileSync('/proc/self/status', 'latin1');
  } catch (e) {
    // No procfs (not Linux, or not mounted): ru_maxrss, which has no such inheritance there.
    if (!(e instanceof Error && 'code' in e && (e.code === 'ENOENT' || e.code === 'EACCES'))) throw e;
  }
  const kib = status === null ? null : /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1];
  return (kib ? Number(kib) : process.resourceUsage().maxRSS) * 1024;
}
