/*
 * SHA-256 of two 4096-byte blocks at once with the x86 SHA extensions, their rounds interleaved.
 * Why: every block fs-verity hashes (data blocks, tree blocks) is 4096 bytes and independent of
 * the others, and one SHA-256 stream leaves the SHA unit waiting on its own results between
 * rounds (sha256rnds2 has a latency of several cycles); a second, independent stream fills those
 * cycles. Linux's fs-verity does the same (sha256_ni_finup2x). Written from the SHA-256 standard
 * (FIPS 180-4) and Intel's description of the instructions; results are checked against OpenSSL
 * when the addon loads, and the caller falls back to OpenSSL wherever this is not available.
 */
#include "sha256_x2.h"
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>

static const uint32_t K[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74,
  0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d,
  0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e,
  0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
  0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/* The padding block of a 4096-byte message: 0x80, zeros, the length in bits (32768) big-endian. */
static const uint8_t PAD4096[64] = {0x80, [62] = 0x80, [63] = 0x00};

#define TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* One round group of four: the message words plus constants, two rnds2 (rounds i*4 .. i*4+3). */
#define ROUNDS4(S0, S1, W, i)                                                 \
  do {                                                                        \
    __m128i m_ = _mm_add_epi32((W), _mm_loadu_si128((const __m128i *)&K[(i)*4])); \
    (S1) = _mm_sha256rnds2_epu32((S1), (S0), m_);                             \
    m_ = _mm_shuffle_epi32(m_, 0x0E);                                         \
    (S0) = _mm_sha256rnds2_epu32((S0), (S1), m_);                             \
  } while (0)

/* The next four schedule words from the previous sixteen (w[t-16..t-1] in W[i-4..i-1]). */
#define SCHEDULE(W, i) \
  ((W)[(i)&3] = _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32((W)[(i)&3], (W)[((i)+1)&3]), _mm_alignr_epi8((W)[((i)+3)&3], (W)[((i)+2)&3], 4)), (W)[((i)+3)&3]))

/* Compresses one 64-byte block of each message into its state (ABEF, CDGH form). */
TARGET static inline void compress2(__m128i *a0, __m128i *a1, __m128i *b0, __m128i *b1, const uint8_t *pa, const uint8_t *pb) {
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i sa0 = *a0, sa1 = *a1, sb0 = *b0, sb1 = *b1;
  __m128i wa[4], wb[4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++) {
    wa[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 16 * i)), bswap);
    wb[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 16 * i)), bswap);
    ROUNDS4(sa0, sa1, wa[i], i);
    ROUNDS4(sb0, sb1, wb[i], i);
  }
#pragma GCC unroll 12
  for (int i = 4; i < 16; i++) {
    SCHEDULE(wa, i);
    SCHEDULE(wb, i);
    ROUNDS4(sa0, sa1, wa[i & 3], i);
    ROUNDS4(sb0, sb1, wb[i & 3], i);
  }
  *a0 = _mm_add_epi32(*a0, sa0);
  *a1 = _mm_add_epi32(*a1, sa1);
  *b0 = _mm_add_epi32(*b0, sb0);
  *b1 = _mm_add_epi32(*b1, sb1);
}

/* H0..H7 as the instructions want them: ABEF and CDGH. */
TARGET static inline void initial(__m128i *s0, __m128i *s1) {
  __m128i dcba = _mm_loadu_si128((const __m128i *)&H0[0]);
  __m128i hgfe = _mm_loadu_si128((const __m128i *)&H0[4]);
  __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
  __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
  *s0 = _mm_alignr_epi8(cdab, efgh, 8);    /* ABEF */
  *s1 = _mm_blend_epi16(efgh, cdab, 0xF0); /* CDGH */
}

/* The digest's 32 bytes (H0..H7 big-endian) from ABEF and CDGH. */
TARGET static inline void final(__m128i s0, __m128i s1, uint8_t *out) {
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i feba = _mm_shuffle_epi32(s0, 0x1B);
  __m128i dchg = _mm_shuffle_epi32(s1, 0xB1);
  __m128i dcba = _mm_blend_epi16(feba, dchg, 0xF0);
  __m128i hgfe = _mm_alignr_epi8(dchg, feba, 8);
  _mm_storeu_si128((__m128i *)out, _mm_shuffle_epi8(dcba, bswap));
  _mm_storeu_si128((__m128i *)(out + 16), _mm_shuffle_epi8(hgfe, bswap));
}

TARGET static void x2_ni(const uint8_t *a, const uint8_t *b, uint8_t *out_a, uint8_t *out_b) {
  __m128i a0, a1, b0, b1;
  initial(&a0, &a1);
  b0 = a0;
  b1 = a1;
  for (int off = 0; off < SHA256_X2_BLOCK; off += 64) compress2(&a0, &a1, &b0, &b1, a + off, b + off);
  compress2(&a0, &a1, &b0, &b1, PAD4096, PAD4096);
  final(a0, a1, out_a);
  final(b0, b1, out_b);
}

static int cpu_has_sha_ni(void) {
  unsigned int eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
  int sse41 = (ecx >> 19) & 1, ssse3 = (ecx >> 9) & 1;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
  return sse41 && ssse3 && ((ebx >> 29) & 1);
}

sha256_x2_fn sha256_x2_select(void) {
  return cpu_has_sha_ni() ? x2_ni : NULL;
}

#else

sha256_x2_fn sha256_x2_select(void) {
  return NULL;
}

#endif
