/** Every exit status of the CLI, in one place (documented in the README). */
import { ERROR_CODES, type ErrorCode } from '../errors.ts';

export const EXIT = {
  OK: 0,
  /** fsck found problems; digest could not read some file. */
  ISSUES: 1,
  USAGE: 2,
  BAD_INPUT: 3,
  STORE: 4,
  /** The system cannot do it: mount without root, a kernel without erofs or overlay, mount(8) failing. */
  SYSTEM: 5,
  INTERNAL: 70,
  INTERRUPTED: 130,
} as const;

export function exitStatusFor(code: ErrorCode): number {
  switch (code) {
    case ERROR_CODES.USAGE:
    case ERROR_CODES.TAG_INVALID:
    case ERROR_CODES.TAG_IN_USE:
      return EXIT.USAGE;
    case ERROR_CODES.ABORTED:
      return EXIT.INTERRUPTED;
    case ERROR_CODES.STORE_NOT_FOUND:
    case ERROR_CODES.TAG_NOT_FOUND:
    case ERROR_CODES.STORE_IO:
    case ERROR_CODES.STORE_NO_SPACE:
    case ERROR_CODES.STORE_CORRUPT:
    case ERROR_CODES.STORE_LOCKED:
    case ERROR_CODES.STORE_VERITY_REQUIRED:
    case ERROR_CODES.STORE_UNSUPPORTED:
      return EXIT.STORE;
    case ERROR_CODES.MOUNT_FAILED:
      return EXIT.SYSTEM;
    case ERROR_CODES.WORKER_FAILED:
    case ERROR_CODES.INTERNAL:
      return EXIT.INTERNAL;
    default:
      return EXIT.BAD_INPUT;
  }
}
