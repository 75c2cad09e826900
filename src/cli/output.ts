/** Output helpers of the CLI: byte and rate formatting, warnings. */
import { ERROR_CODES, VeritreeError } from '../errors.ts';
import { nativeUnavailableReason, type HashImpl } from '../verity/backends.ts';

let warned = false;

/**
 * One line on stderr when `auto` could not use the native kernel (it still works, slower); a
 * usage error, up front, when `native` was asked for and is not there.
 */
export function warnNativeFallback(impl: HashImpl): void {
  if (impl === 'native') {
    const why = nativeUnavailableReason();
    if (why) throw new VeritreeError(ERROR_CODES.USAGE, `--hash-impl native: the native hashing kernel is unavailable (${why}); use auto or node`);
    return;
  }
  if (impl !== 'auto' || warned) return;
  const why = nativeUnavailableReason();
  if (why && process.env.VERITREE_QUIET_FALLBACK !== '1') {
    warned = true;
    process.stderr.write(`veritree: native hashing kernel unavailable (${why}); using node:crypto\n`);
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

export function formatRate(bytes: number, seconds: number): string {
  return seconds > 0 ? `${(bytes / 1e6 / seconds).toFixed(1)} MB/s` : '-';
}
