/** Parsers for options shared by several commands (commander hands us strings). */
import { InvalidArgumentError } from 'commander';
import { HASH_IMPLS, type HashImpl } from '../verity/backends.ts';
import type { HashAlgorithm } from '../verity/constants.ts';
import type { ErofsVersion } from '../store/meta.ts';

export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number >= 1');
  return n;
}

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** `1073741824`, `1G`, `1GiB`, `512M`, `1.5g`: binary units, as the help and the defaults print them. */
export function parseSize(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?$/.exec(value.trim());
  const n = m ? Math.floor(Number(m[1]) * (UNITS[(m[2] ?? '').toLowerCase()] ?? NaN)) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a size: bytes, or a number with K, M, G or T (e.g. 64G, 512MiB)');
  return n;
}

export function parseHash(value: string): HashAlgorithm {
  if (value !== 'sha256' && value !== 'sha512') throw new InvalidArgumentError('expected sha256 or sha512');
  return value;
}

/** `--erofs-version`: composefs-rs's EROFS format 0, 1 or 2 (as cfsctl's). */
export function parseErofsVersion(value: string): ErofsVersion {
  if (value !== '0' && value !== '1' && value !== '2') throw new InvalidArgumentError('expected 0, 1 or 2');
  return Number(value) as ErofsVersion;
}

export function parseImpl(value: string): HashImpl {
  if (!(HASH_IMPLS as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`expected one of ${HASH_IMPLS.join(', ')}`);
  }
  return value as HashImpl;
}
