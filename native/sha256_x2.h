/* Two SHA-256 digests of 4096-byte blocks at once (see sha256_x2.c). */
#ifndef VERITREE_SHA256_X2_H
#define VERITREE_SHA256_X2_H
#include <stdint.h>

#define SHA256_X2_BLOCK 4096

/* SHA-256 of a[0..4096) into out_a and of b[0..4096) into out_b (32 bytes each). */
typedef void (*sha256_x2_fn)(const uint8_t *a, const uint8_t *b, uint8_t *out_a, uint8_t *out_b);

/* The implementation this CPU can run, or NULL (hash one block at a time instead). */
sha256_x2_fn sha256_x2_select(void);

#endif
