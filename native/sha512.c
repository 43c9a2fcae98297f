/*
 * SHA-512 (FIPS 180-4): buffering, padding, Go-compatible state and the block
 * function.
 *
 * The compression is written once as an always-inline body (fully unrolled,
 * working variables renamed per round, 16-word rolling schedule) and
 * instantiated twice: for the baseline target, and on x86-64 for BMI2, where
 * RORX does a rotate without clobbering its source and ANDN folds the choice
 * function. On x86-64 with AVX2, sha512_avx.c's two-block functions (message
 * schedule in vector registers) are faster still; the table below lists every
 * block function fastest first, and the first this CPU runs is used.
 */
#include "sha512.h"

const uint64_t ocs_sha512_k[80] = {
    0x428a2f98d728ae22ULL, 0x7137449123ef65cdULL, 0xb5c0fbcfec4d3b2fULL, 0xe9b5dba58189dbbcULL,
    0x3956c25bf348b538ULL, 0x59f111f1b605d019ULL, 0x923f82a4af194f9bULL, 0xab1c5ed5da6d8118ULL,
    0xd807aa98a3030242ULL, 0x12835b0145706fbeULL, 0x243185be4ee4b28cULL, 0x550c7dc3d5ffb4e2ULL,
    0x72be5d74f27b896fULL, 0x80deb1fe3b1696b1ULL, 0x9bdc06a725c71235ULL, 0xc19bf174cf692694ULL,
    0xe49b69c19ef14ad2ULL, 0xefbe4786384f25e3ULL, 0x0fc19dc68b8cd5b5ULL, 0x240ca1cc77ac9c65ULL,
    0x2de92c6f592b0275ULL, 0x4a7484aa6ea6e483ULL, 0x5cb0a9dcbd41fbd4ULL, 0x76f988da831153b5ULL,
    0x983e5152ee66dfabULL, 0xa831c66d2db43210ULL, 0xb00327c898fb213fULL, 0xbf597fc7beef0ee4ULL,
    0xc6e00bf33da88fc2ULL, 0xd5a79147930aa725ULL, 0x06ca6351e003826fULL, 0x142929670a0e6e70ULL,
    0x27b70a8546d22ffcULL, 0x2e1b21385c26c926ULL, 0x4d2c6dfc5ac42aedULL, 0x53380d139d95b3dfULL,
    0x650a73548baf63deULL, 0x766a0abb3c77b2a8ULL, 0x81c2c92e47edaee6ULL, 0x92722c851482353bULL,
    0xa2bfe8a14cf10364ULL, 0xa81a664bbc423001ULL, 0xc24b8b70d0f89791ULL, 0xc76c51a30654be30ULL,
    0xd192e819d6ef5218ULL, 0xd69906245565a910ULL, 0xf40e35855771202aULL, 0x106aa07032bbd1b8ULL,
    0x19a4c116b8d2d0c8ULL, 0x1e376c085141ab53ULL, 0x2748774cdf8eeb99ULL, 0x34b0bcb5e19b48a8ULL,
    0x391c0cb3c5c95a63ULL, 0x4ed8aa4ae3418acbULL, 0x5b9cca4f7763e373ULL, 0x682e6ff3d6b2b8a3ULL,
    0x748f82ee5defb2fcULL, 0x78a5636f43172f60ULL, 0x84c87814a1f0ab72ULL, 0x8cc702081a6439ecULL,
    0x90befffa23631e28ULL, 0xa4506cebde82bde9ULL, 0xbef9a3f7b2c67915ULL, 0xc67178f2e372532bULL,
    0xca273eceea26619cULL, 0xd186b8c721c0c207ULL, 0xeada7dd6cde0eb1eULL, 0xf57d4f7fee6ed178ULL,
    0x06f067aa72176fbaULL, 0x0a637dc5a2c898a6ULL, 0x113f9804bef90daeULL, 0x1b710b35131c471bULL,
    0x28db77f523047d84ULL, 0x32caab7b40c72493ULL, 0x3c9ebe0a15c9bebcULL, 0x431d67c49c100d4cULL,
    0x4cc5d4becb3e42b6ULL, 0x597f299cfc657e2aULL, 0x5fcb6fab3ad6faecULL, 0x6c44198c4a475817ULL,
};

#define K512 ocs_sha512_k

static const uint64_t sha512_iv[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

static const uint8_t sha512_magic[4] = {'s', 'h', 'a', 0x07};

#if defined(__GNUC__) || defined(__clang__)
#define OCS_ALWAYS_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define OCS_ALWAYS_INLINE static __forceinline
#else
#define OCS_ALWAYS_INLINE static inline
#endif

#define ROTR64(x, n) (((x) >> (n)) | ((x) << (64 - (n))))
#define CH(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))
#define BSIG0(x) (ROTR64(x, 28) ^ ROTR64(x, 34) ^ ROTR64(x, 39))
#define BSIG1(x) (ROTR64(x, 14) ^ ROTR64(x, 18) ^ ROTR64(x, 41))
#define SSIG0(x) (ROTR64(x, 1) ^ ROTR64(x, 8) ^ ((x) >> 7))
#define SSIG1(x) (ROTR64(x, 19) ^ ROTR64(x, 61) ^ ((x) >> 6))

/* Ch as two disjoint terms added separately (more parallel adds); Maj as
 * ((a ^ b) & (b ^ c)) ^ b, where b ^ c is the previous round's a ^ b. */
#define ROUND(a, b, c, d, e, f, g, h, k, w)                                   \
    do {                                                                      \
        uint64_t ab_ = (a) ^ (b);                                             \
        (h) += (k) + (w) + BSIG1(e) + ((e) & (f)) + (~(e) & (g));               \
        (d) += (h);                                                           \
        (h) += BSIG0(a) + ((ab_ & bc) ^ (b));                                 \
        bc = ab_;                                                             \
    } while (0)

#define SCHED(j) \
    (W[(j) & 15] += SSIG1(W[((j) - 2) & 15]) + W[((j) - 7) & 15] + SSIG0(W[((j) - 15) & 15]))

#define EIGHT_ROUNDS(base, WEXPR)                                    \
    do {                                                             \
        ROUND(a, b, c, d, e, f, g, h, K512[(base) + 0], WEXPR(0));   \
        ROUND(h, a, b, c, d, e, f, g, K512[(base) + 1], WEXPR(1));   \
        ROUND(g, h, a, b, c, d, e, f, K512[(base) + 2], WEXPR(2));   \
        ROUND(f, g, h, a, b, c, d, e, K512[(base) + 3], WEXPR(3));   \
        ROUND(e, f, g, h, a, b, c, d, K512[(base) + 4], WEXPR(4));   \
        ROUND(d, e, f, g, h, a, b, c, K512[(base) + 5], WEXPR(5));   \
        ROUND(c, d, e, f, g, h, a, b, K512[(base) + 6], WEXPR(6));   \
        ROUND(b, c, d, e, f, g, h, a, K512[(base) + 7], WEXPR(7));   \
    } while (0)

OCS_ALWAYS_INLINE void sha512_blocks_body(uint64_t state[8], const uint8_t *p, size_t nblocks)
{
    uint64_t W[16];
    uint64_t a, b, c, d, e, f, g, h, bc;
    int i;

    while (nblocks--) {
        OCS_PREFETCH(p + OCS_PREFETCH_AHEAD);
        a = state[0];
        b = state[1];
        c = state[2];
        d = state[3];
        e = state[4];
        f = state[5];
        g = state[6];
        h = state[7];
        bc = b ^ c;

#define WLOAD0(k) (W[k] = ocs_load_be64(p + 8 * (k)))
#define WLOAD8(k) (W[8 + (k)] = ocs_load_be64(p + 64 + 8 * (k)))
        EIGHT_ROUNDS(0, WLOAD0);
        EIGHT_ROUNDS(8, WLOAD8);
#undef WLOAD0
#undef WLOAD8
        for (i = 16; i < 80; i += 16) {
#define WEXT0(k) SCHED(16 + (k))
#define WEXT8(k) SCHED(24 + (k))
            EIGHT_ROUNDS(i, WEXT0);
            EIGHT_ROUNDS(i + 8, WEXT8);
#undef WEXT0
#undef WEXT8
        }

        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        state[5] += f;
        state[6] += g;
        state[7] += h;
        p += OCS_SHA512_BLOCK_SIZE;
    }
}

void ocs_sha512_blocks_portable(uint64_t state[8], const uint8_t *p, size_t nblocks)
{
    sha512_blocks_body(state, p, nblocks);
}

#if defined(OCS_HAVE_SHA512_BMI2)
#include <cpuid.h>

int ocs_sha512_bmi2_supported(void)
{
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, 0) < 7) {
        return 0;
    }
    __cpuid_count(7, 0, a, b, c, d);
    (void)a;
    (void)c;
    (void)d;
    return ((b >> 8) & 1) && ((b >> 3) & 1); /* BMI2 and BMI1 (ANDN) */
}

__attribute__((target("bmi,bmi2")))
void ocs_sha512_blocks_bmi2(uint64_t state[8], const uint8_t *p, size_t nblocks)
{
    sha512_blocks_body(state, p, nblocks);
}
#endif

/* --- run-time choice ----------------------------------------------------- */

static int sha512_always(void)
{
    return 1;
}

typedef struct {
    const char *name;
    ocs_sha512_blocks_fn fn;
    int (*supported)(void);
} sha512_impl;

/* Fastest first; the last entry runs everywhere. */
static const sha512_impl sha512_impls[] = {
#if defined(OCS_HAVE_SHA512_AVX)
    {"avx512vl", ocs_sha512_blocks_avx512vl, ocs_sha512_avx512vl_supported},
    {"avx2", ocs_sha512_blocks_avx2, ocs_sha512_avx2_supported},
#endif
#if defined(OCS_HAVE_SHA512_BMI2)
    {"portable-bmi2", ocs_sha512_blocks_bmi2, ocs_sha512_bmi2_supported},
#endif
    {"portable", ocs_sha512_blocks_portable, sha512_always},
};

#define SHA512_NIMPLS (sizeof sha512_impls / sizeof sha512_impls[0])

static ocs_sha512_blocks_fn sha512_blocks = ocs_sha512_blocks_portable;
static const char *sha512_impl_name = "portable";

const char *ocs_sha512_select(int force_portable)
{
    size_t i = SHA512_NIMPLS - 1;
    if (!force_portable) {
        for (i = 0; !sha512_impls[i].supported(); i++) {
        }
    }
    sha512_blocks = sha512_impls[i].fn;
    sha512_impl_name = sha512_impls[i].name;
    return sha512_impl_name;
}

const char *ocs_sha512_use(const char *name)
{
    size_t i;
    for (i = 0; i < SHA512_NIMPLS; i++) {
        if (strcmp(sha512_impls[i].name, name) == 0) {
            if (!sha512_impls[i].supported()) {
                return NULL;
            }
            sha512_blocks = sha512_impls[i].fn;
            sha512_impl_name = sha512_impls[i].name;
            return sha512_impl_name;
        }
    }
    return NULL;
}

size_t ocs_sha512_implementations(const char **names, size_t max)
{
    size_t i, n = 0;
    for (i = 0; i < SHA512_NIMPLS; i++) {
        if (sha512_impls[i].supported()) {
            if (n < max) {
                names[n] = sha512_impls[i].name;
            }
            n++;
        }
    }
    return n;
}

const char *ocs_sha512_implementation(void)
{
    return sha512_impl_name;
}

/* --- streaming ----------------------------------------------------------- */

void ocs_sha512_init(ocs_sha512_ctx *ctx)
{
    memcpy(ctx->h, sha512_iv, sizeof ctx->h);
    ctx->count = 0;
}

void ocs_sha512_update(ocs_sha512_ctx *ctx, const void *data, size_t len)
{
    const uint8_t *p = (const uint8_t *)data;
    ocs_sha512_blocks_fn blocks = sha512_blocks;
    size_t fill = (size_t)(ctx->count & (OCS_SHA512_BLOCK_SIZE - 1));

    ctx->count += (uint64_t)len;
    if (fill) {
        size_t need = OCS_SHA512_BLOCK_SIZE - fill;
        if (len < need) {
            memcpy(ctx->buf + fill, p, len);
            return;
        }
        memcpy(ctx->buf + fill, p, need);
        blocks(ctx->h, ctx->buf, 1);
        p += need;
        len -= need;
    }
    if (len >= OCS_SHA512_BLOCK_SIZE) {
        size_t n = len / OCS_SHA512_BLOCK_SIZE;
        blocks(ctx->h, p, n);
        p += n * OCS_SHA512_BLOCK_SIZE;
        len -= n * OCS_SHA512_BLOCK_SIZE;
    }
    if (len) {
        memcpy(ctx->buf, p, len);
    }
}

void ocs_sha512_final(const ocs_sha512_ctx *ctx, uint8_t out[OCS_SHA512_DIGEST_SIZE])
{
    uint64_t h[8];
    uint8_t block[2 * OCS_SHA512_BLOCK_SIZE];
    size_t fill = (size_t)(ctx->count & (OCS_SHA512_BLOCK_SIZE - 1));
    size_t total = fill < 112 ? OCS_SHA512_BLOCK_SIZE : 2 * OCS_SHA512_BLOCK_SIZE;
    int i;

    memcpy(h, ctx->h, sizeof h);
    memcpy(block, ctx->buf, fill);
    block[fill] = 0x80;
    /* the 128-bit length: count < 2**61, so its high 64 bits are zero */
    memset(block + fill + 1, 0, total - fill - 1 - 8);
    ocs_store_be64(block + total - 8, ctx->count << 3);
    sha512_blocks(h, block, total / OCS_SHA512_BLOCK_SIZE);
    for (i = 0; i < 8; i++) {
        ocs_store_be64(out + 8 * i, h[i]);
    }
}

/* --- Go's MarshalBinary format -------------------------------------------- */

void ocs_sha512_marshal(const ocs_sha512_ctx *ctx, uint8_t out[OCS_SHA512_STATE_SIZE])
{
    size_t fill = (size_t)(ctx->count & (OCS_SHA512_BLOCK_SIZE - 1));
    uint8_t *p = out;
    int i;

    memcpy(p, sha512_magic, 4);
    p += 4;
    for (i = 0; i < 8; i++, p += 8) {
        ocs_store_be64(p, ctx->h[i]);
    }
    memcpy(p, ctx->buf, fill);
    memset(p + fill, 0, OCS_SHA512_BLOCK_SIZE - fill);
    p += OCS_SHA512_BLOCK_SIZE;
    ocs_store_be64(p, ctx->count);
}

int ocs_sha512_unmarshal(ocs_sha512_ctx *ctx, const uint8_t *state, size_t len)
{
    const uint8_t *block = state + 4 + 64;
    uint64_t count;
    size_t fill;
    int i;

    if (len < 4 || memcmp(state, sha512_magic, 4) != 0) {
        return OCS_STATE_BAD_MAGIC;
    }
    if (len != OCS_SHA512_STATE_SIZE) {
        return OCS_STATE_BAD_LENGTH;
    }
    count = ocs_load_be64(state + OCS_SHA512_STATE_SIZE - 8);
    if (count >= OCS_MAX_COUNT) {
        return OCS_STATE_BAD_COUNT;
    }
    fill = (size_t)(count & (OCS_SHA512_BLOCK_SIZE - 1));
    if (ocs_any_nonzero(block + fill, OCS_SHA512_BLOCK_SIZE - fill)) {
        return OCS_STATE_BAD_PADDING;
    }
    for (i = 0; i < 8; i++) {
        ctx->h[i] = ocs_load_be64(state + 4 + 8 * i);
    }
    memcpy(ctx->buf, block, OCS_SHA512_BLOCK_SIZE);
    ctx->count = count;
    return OCS_STATE_OK;
}
