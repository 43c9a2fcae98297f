/*
 * SHA-256 block function on the x86 SHA extensions (SHA-NI).
 *
 * The functions carry their own target attribute, so the rest of the build
 * needs no -msha and the module still loads on CPUs without SHA-NI:
 * sha256.c calls ocs_sha256_blocks_shani only after
 * ocs_sha256_shani_supported() said yes (CPUID leaf 7, EBX bit 29, plus
 * SSSE3 and SSE4.1 for the byte shuffles and blends). On other architectures
 * this file compiles to nothing.
 *
 * SHA256RNDS2 keeps the state as two registers, ABEF and CDGH, and does two
 * rounds per instruction; SHA256MSG1/MSG2 extend the message schedule four
 * words at a time.
 */
#include "sha256.h"

#if defined(OCS_HAVE_SHANI)

#include <immintrin.h>

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#define OCS_TARGET_SHANI
#else
#include <cpuid.h>
#define OCS_TARGET_SHANI __attribute__((target("sha,sse4.1,ssse3")))
#endif

static void ocs_cpuid(unsigned leaf, unsigned sub, unsigned r[4])
{
#if defined(_MSC_VER) && !defined(__clang__)
    int regs[4];
    __cpuidex(regs, (int)leaf, (int)sub);
    r[0] = (unsigned)regs[0];
    r[1] = (unsigned)regs[1];
    r[2] = (unsigned)regs[2];
    r[3] = (unsigned)regs[3];
#else
    r[0] = r[1] = r[2] = r[3] = 0;
    if (__get_cpuid_max(0, 0) < leaf) {
        return;
    }
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}

int ocs_sha256_shani_supported(void)
{
    unsigned r1[4], r7[4];
    ocs_cpuid(0, 0, r1);
    if (r1[0] < 7) {
        return 0;
    }
    ocs_cpuid(1, 0, r1);
    ocs_cpuid(7, 0, r7);
    {
        int ssse3 = (r1[2] >> 9) & 1;
        int sse41 = (r1[2] >> 19) & 1;
        int sha = (r7[1] >> 29) & 1;
        return ssse3 && sse41 && sha;
    }
}

/* Four rounds: W+K for them in m, state in s0 (ABEF) and s1 (CDGH). */
#define QROUND(m, kidx)                                                                  \
    do {                                                                                 \
        __m128i wk_ = _mm_add_epi32((m), _mm_loadu_si128((const __m128i *)(K + (kidx)))); \
        s1 = _mm_sha256rnds2_epu32(s1, s0, wk_);                                         \
        s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(wk_, 0x0E));                \
    } while (0)

/* m0 holds W[j-16..j-13], m1 W[j-12..j-9], m2 W[j-8..j-5], m3 W[j-4..j-1]; m0 becomes W[j..j+3]. */
#define SCHED(m0, m1, m2, m3)                                                                      \
    (m0) = _mm_sha256msg2_epu32(                                                                   \
        _mm_add_epi32(_mm_sha256msg1_epu32((m0), (m1)), _mm_alignr_epi8((m3), (m2), 4)), (m3))

OCS_TARGET_SHANI
void ocs_sha256_blocks_shani(uint32_t state[8], const uint8_t *p, size_t nblocks)
{
    const uint32_t *K = ocs_sha256_k;
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i s0, s1, t, save0, save1, m0, m1, m2, m3;

    /* h[0..3] = A B C D and h[4..7] = E F G H (lane 0 first) -> ABEF, CDGH */
    t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]), 0xB1); /* C D A B */
    s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]), 0x1B); /* E F G H */
    s0 = _mm_alignr_epi8(t, s1, 8);                                          /* A B E F */
    s1 = _mm_blend_epi16(s1, t, 0xF0);                                       /* C D G H */

    while (nblocks--) {
        OCS_PREFETCH(p + OCS_PREFETCH_AHEAD);
        save0 = s0;
        save1 = s1;

        m0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 0)), bswap);
        QROUND(m0, 0);
        m1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), bswap);
        QROUND(m1, 4);
        m2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 32)), bswap);
        QROUND(m2, 8);
        m3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 48)), bswap);
        QROUND(m3, 12);

        SCHED(m0, m1, m2, m3);
        QROUND(m0, 16);
        SCHED(m1, m2, m3, m0);
        QROUND(m1, 20);
        SCHED(m2, m3, m0, m1);
        QROUND(m2, 24);
        SCHED(m3, m0, m1, m2);
        QROUND(m3, 28);

        SCHED(m0, m1, m2, m3);
        QROUND(m0, 32);
        SCHED(m1, m2, m3, m0);
        QROUND(m1, 36);
        SCHED(m2, m3, m0, m1);
        QROUND(m2, 40);
        SCHED(m3, m0, m1, m2);
        QROUND(m3, 44);

        SCHED(m0, m1, m2, m3);
        QROUND(m0, 48);
        SCHED(m1, m2, m3, m0);
        QROUND(m1, 52);
        SCHED(m2, m3, m0, m1);
        QROUND(m2, 56);
        SCHED(m3, m0, m1, m2);
        QROUND(m3, 60);

        s0 = _mm_add_epi32(s0, save0);
        s1 = _mm_add_epi32(s1, save1);
        p += OCS_SHA256_BLOCK_SIZE;
    }

    /* ABEF, CDGH -> A B C D, E F G H */
    t = _mm_shuffle_epi32(s0, 0x1B);               /* F E B A */
    s1 = _mm_shuffle_epi32(s1, 0xB1);              /* D C H G */
    s0 = _mm_blend_epi16(t, s1, 0xF0);             /* D C B A */
    s1 = _mm_alignr_epi8(s1, t, 8);                /* H G F E */
    _mm_storeu_si128((__m128i *)&state[0], s0);
    _mm_storeu_si128((__m128i *)&state[4], s1);
}

#else

/* ISO C wants at least one declaration per translation unit. */
typedef int ocs_sha256_shani_unavailable;

#endif
