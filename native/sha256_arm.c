/*
 * SHA-256 block function on the ARMv8 cryptography extensions (SHA256H,
 * SHA256H2, SHA256SU0, SHA256SU1).
 *
 * Built only for aarch64. When the compiler already targets the extension
 * (__ARM_FEATURE_CRYPTO / __ARM_FEATURE_SHA2, e.g. Apple silicon or
 * -march=armv8-a+crypto) the code is used as is; otherwise the function gets
 * a target attribute and runs only after the kernel reported the feature
 * (getauxval(AT_HWCAP) & HWCAP_SHA2 on Linux). Elsewhere this file compiles to
 * nothing.
 */
#include "sha256.h"

#if defined(OCS_HAVE_ARMV8_SHA2)

#if defined(__ARM_FEATURE_CRYPTO) || defined(__ARM_FEATURE_SHA2)
#define OCS_TARGET_ARM
#elif defined(__clang__)
#define OCS_TARGET_ARM __attribute__((target("sha2")))
#else
#define OCS_TARGET_ARM __attribute__((target("+crypto")))
#endif

#include <arm_neon.h>

#if defined(__linux__) || defined(__ANDROID__)
#include <sys/auxv.h>
#ifndef HWCAP_SHA2
#define HWCAP_SHA2 (1 << 6)
#endif
#elif defined(__FreeBSD__)
#include <sys/auxv.h>
#ifndef HWCAP_SHA2
#define HWCAP_SHA2 (1 << 6)
#endif
#endif

int ocs_sha256_arm_supported(void)
{
#if defined(__APPLE__)
    return 1; /* every Apple arm64 CPU has the SHA-2 instructions */
#elif defined(__linux__) || defined(__ANDROID__)
    return (getauxval(AT_HWCAP) & HWCAP_SHA2) != 0;
#elif defined(__FreeBSD__)
    unsigned long hwcap = 0;
    if (elf_aux_info(AT_HWCAP, &hwcap, sizeof hwcap) != 0) {
        return 0;
    }
    return (hwcap & HWCAP_SHA2) != 0;
#elif defined(__ARM_FEATURE_CRYPTO) || defined(__ARM_FEATURE_SHA2)
    return 1; /* the compiler was told every target CPU has it */
#else
    return 0;
#endif
}

/* Four rounds with W+K from m; s0 = ABCD, s1 = EFGH. */
#define QROUND(m, kidx)                                           \
    do {                                                          \
        uint32x4_t wk_ = vaddq_u32((m), vld1q_u32(K + (kidx)));   \
        uint32x4_t abcd_ = s0;                                    \
        s0 = vsha256hq_u32(s0, s1, wk_);                          \
        s1 = vsha256h2q_u32(s1, abcd_, wk_);                      \
    } while (0)

/* m0..m3 hold W[j-16..j-1] four at a time; m0 becomes W[j..j+3]. */
#define SCHED(m0, m1, m2, m3) (m0) = vsha256su1q_u32(vsha256su0q_u32((m0), (m1)), (m2), (m3))

#define LOAD(off) vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(p + (off))))

OCS_TARGET_ARM
void ocs_sha256_blocks_arm(uint32_t state[8], const uint8_t *p, size_t nblocks)
{
    const uint32_t *K = ocs_sha256_k;
    uint32x4_t s0 = vld1q_u32(&state[0]);
    uint32x4_t s1 = vld1q_u32(&state[4]);
    uint32x4_t save0, save1, m0, m1, m2, m3;

    while (nblocks--) {
        OCS_PREFETCH(p + OCS_PREFETCH_AHEAD);
        save0 = s0;
        save1 = s1;

        m0 = LOAD(0);
        QROUND(m0, 0);
        m1 = LOAD(16);
        QROUND(m1, 4);
        m2 = LOAD(32);
        QROUND(m2, 8);
        m3 = LOAD(48);
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

        s0 = vaddq_u32(s0, save0);
        s1 = vaddq_u32(s1, save1);
        p += OCS_SHA256_BLOCK_SIZE;
    }

    vst1q_u32(&state[0], s0);
    vst1q_u32(&state[4], s1);
}

#else

/* ISO C wants at least one declaration per translation unit. */
typedef int ocs_sha256_arm_unavailable;

#endif
