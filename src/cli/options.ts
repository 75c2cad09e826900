/** Parsers for options shared by several commands (commander hands us strings). */
import { InvalidArgumentError } from 'commander';
import { HASH_IMPLS, type HashImpl } from '../verity/backends.ts';
import type { HashAlgorithm } from '../verity/constants.ts';

export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number >= 1');
  return n;
}

export function parseHash(value: string): HashAlgorithm {
  if (value !== 'sha256' && value !== 'sha512') throw new InvalidArgumentError('expected sha256 or sha512');
  return value;
}

export function parseImpl(value: string): HashImpl {
  if (!(HASH_IMPLS as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`expected one of ${HASH_IMPLS.join(', ')}`);
  }
  return value as HashImpl;
}
