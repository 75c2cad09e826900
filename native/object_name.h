/*
 * An object's name under objects/ from its digest bytes: "XX/rest", XX the first byte in hex and
 * rest the others (the composefs layout; src/store/layout.ts objectPathIn). Shared by both addons.
 */
#ifndef VERITREE_OBJECT_NAME_H
#define VERITREE_OBJECT_NAME_H
#include <stddef.h>
#include <stdint.h>

/* Room for the longest name: a SHA-512 digest's 128 hex digits, the slash and the NUL. */
#define OBJECT_NAME_MAX (2 * 64 + 2)

static inline void object_name(const uint8_t *digest, size_t ds, char *out) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (size_t k = 0; k < ds; k++) {
    out[o++] = hex[digest[k] >> 4];
    out[o++] = hex[digest[k] & 15];
    if (k == 0) out[o++] = '/';
  }
  out[o] = 0;
}

#endif
