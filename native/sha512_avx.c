/*
 * SHA-512 block functions for x86-64 with AVX2 (and AVX-512VL): two blocks
 * per pass, the message schedule in vector registers.
 *
 * No x86 CPU in wide use has SHA-512 instructions, so the rounds stay scalar
 * (RORX, ANDN); what the vector units can take over is the message schedule,
 * which is a third of the scalar work. With one block per 128-bit lane a
 * 256-bit register extends the schedules of two blocks at once; the first
 * block's rounds run with that work interleaved, the second block's rounds
 * find all of W+K ready (the layout of OpenSSL's sha512_block_data_order_avx2,
 * written here in C). The body is sha512_avx_body.h, compiled twice:
 *
 *   "avx2"      AVX2 + BMI1/BMI2; a 64-bit lane rotate is two shifts and an OR.
 *   "avx512vl"  the same, plus AVX-512F/VL: VPRORQ rotates, VPTERNLOGQ does a
 *               three-way XOR, 32 vector registers. Only 256-bit vectors: a
 *               four-block variant in 512-bit registers measured no faster.
 *
 * Measured on a 2-vCPU Xeon (Sapphire Rapids class, gcc 12 -O3, 1 MiB
 * updates, medians of interleaved runs): OpenSSL 3.0's AVX2 assembly 1.00,
 * "avx512vl" 1.11, "avx2" 1.06, the scalar BMI2 function 0.87.
 *
 * W+K reaches the stack through an asm store. With a plain store GCC
 * forwards the stored vector to the scalar reads (VMOVQ/VPEXTRQ per round,
 * three instructions where one ADD from memory does); hiding the array's
 * address instead (asm "+r" on the pointer) cost a register and spilled it.
 *
 * The callers (sha512.c) run these only after ocs_sha512_avx2_supported() /
 * ocs_sha512_avx512vl_supported() said yes, which includes the OS saving the
 * wider registers. Elsewhere (other architectures, MSVC) the file is empty.
 */
#include "sha512.h"

#if defined(OCS_HAVE_SHA512_AVX)

#include <cpuid.h>
#include <immintrin.h>

/* The scalar round's big sigmas (RORX under the BMI2 target). */
#define OCS_ROTR64(x, n) (((x) >> (n)) | ((x) << (64 - (n))))
#define OCS_BSIG0(x) (OCS_ROTR64(x, 28) ^ OCS_ROTR64(x, 34) ^ OCS_ROTR64(x, 39))
#define OCS_BSIG1(x) (OCS_ROTR64(x, 14) ^ OCS_ROTR64(x, 18) ^ OCS_ROTR64(x, 41))

/* --- CPU and OS support --------------------------------------------------- */

/* XCR0: which register states the OS saves on a context switch. */
static uint64_t ocs_xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* 1 for AVX2 + BMI1 + BMI2 with YMM state enabled; 2 when AVX-512F/VL and
 * its state (opmask, ZMM upper halves, ZMM16-31) are there too; else 0. */
static int ocs_sha512_avx_level(void)
{
    unsigned a, b, c, d;
    uint64_t xcr0;
    int level;

    if (__get_cpuid_max(0, 0) < 7) {
        return 0;
    }
    __cpuid(1, a, b, c, d);
    if (!((c >> 27) & 1) || !((c >> 28) & 1)) { /* OSXSAVE, AVX */
        return 0;
    }
    xcr0 = ocs_xcr0();
    if ((xcr0 & 0x6) != 0x6) { /* XMM and YMM state */
        return 0;
    }
    __cpuid_count(7, 0, a, b, c, d);
    (void)a;
    (void)c;
    (void)d;
    if (!((b >> 5) & 1) || !((b >> 3) & 1) || !((b >> 8) & 1)) { /* AVX2, BMI1, BMI2 */
        return 0;
    }
    level = 1;
    if (((b >> 16) & 1) && ((b >> 31) & 1) && (xcr0 & 0xE0) == 0xE0) { /* AVX512F, AVX512VL */
        level = 2;
    }
    return level;
}

int ocs_sha512_avx2_supported(void)
{
    return ocs_sha512_avx_level() >= 1;
}

int ocs_sha512_avx512vl_supported(void)
{
    return ocs_sha512_avx_level() >= 2;
}

/* --- AVX2 ----------------------------------------------------------------- */

#define OCS_AVX_FN ocs_sha512_blocks_avx2
#define OCS_AVX_TARGET __attribute__((target("avx2,bmi,bmi2")))
#define OCS_VROR(x, n) _mm256_or_si256(_mm256_srli_epi64((x), (n)), _mm256_slli_epi64((x), 64 - (n)))
#define OCS_VXOR3(x, y, z) _mm256_xor_si256(_mm256_xor_si256((x), (y)), (z))
#define OCS_WK_STORE(ptr, v) __asm__("vmovdqa %1, %0" : "=m"(*(__m256i *)(ptr)) : "x"(v))
#include "sha512_avx_body.h"
#undef OCS_AVX_FN
#undef OCS_AVX_TARGET
#undef OCS_VROR
#undef OCS_VXOR3
#undef OCS_WK_STORE

/* --- AVX-512VL ------------------------------------------------------------ */

#define OCS_AVX_FN ocs_sha512_blocks_avx512vl
#define OCS_AVX_TARGET __attribute__((target("avx2,avx512f,avx512vl,bmi,bmi2")))
#define OCS_VROR(x, n) _mm256_ror_epi64((x), (n))
#define OCS_VXOR3(x, y, z) _mm256_ternarylogic_epi64((x), (y), (z), 0x96)
/* "v": any of ymm0-31, which need the EVEX form of the move */
#define OCS_WK_STORE(ptr, v) __asm__("vmovdqa64 %1, %0" : "=m"(*(__m256i *)(ptr)) : "v"(v))
#include "sha512_avx_body.h"
#undef OCS_AVX_FN
#undef OCS_AVX_TARGET
#undef OCS_VROR
#undef OCS_VXOR3
#undef OCS_WK_STORE

#endif /* OCS_HAVE_SHA512_AVX */
