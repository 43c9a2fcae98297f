/*
 * SHA-256 (FIPS 180-4): buffering, padding, Go-compatible state, the portable
 * block function, and the run-time choice of the block function.
 *
 * The portable compression is fully unrolled with the eight working variables
 * renamed per round instead of shifted, and a 16-word rolling message schedule,
 * which is what lets a compiler keep everything in registers.
 */
#include "sha256.h"

const uint32_t ocs_sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t sha256_iv[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static const uint8_t sha256_magic[4] = {'s', 'h', 'a', 0x03};

/* --- portable compression ------------------------------------------------ */

#define ROTR32(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define CH(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))
#define BSIG0(x) (ROTR32(x, 2) ^ ROTR32(x, 13) ^ ROTR32(x, 22))
#define BSIG1(x) (ROTR32(x, 6) ^ ROTR32(x, 11) ^ ROTR32(x, 25))
#define SSIG0(x) (ROTR32(x, 7) ^ ROTR32(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ROTR32(x, 17) ^ ROTR32(x, 19) ^ ((x) >> 10))

/* One round; the caller rotates the names of a..h instead of moving values. */
#define ROUND(a, b, c, d, e, f, g, h, k, w)                      \
    do {                                                         \
        uint32_t t1_ = (h) + BSIG1(e) + CH(e, f, g) + (k) + (w); \
        (d) += t1_;                                              \
        (h) = t1_ + BSIG0(a) + MAJ(a, b, c);                     \
    } while (0)

/* Rounds 16..63 extend the schedule in place: W[j & 15] becomes W[j]. */
#define SCHED(j) \
    (W[(j) & 15] += SSIG1(W[((j) - 2) & 15]) + W[((j) - 7) & 15] + SSIG0(W[((j) - 15) & 15]))

#define EIGHT_ROUNDS(base, WEXPR)                                  \
    do {                                                           \
        ROUND(a, b, c, d, e, f, g, h, K[(base) + 0], WEXPR(0));    \
        ROUND(h, a, b, c, d, e, f, g, K[(base) + 1], WEXPR(1));    \
        ROUND(g, h, a, b, c, d, e, f, K[(base) + 2], WEXPR(2));    \
        ROUND(f, g, h, a, b, c, d, e, K[(base) + 3], WEXPR(3));    \
        ROUND(e, f, g, h, a, b, c, d, K[(base) + 4], WEXPR(4));    \
        ROUND(d, e, f, g, h, a, b, c, K[(base) + 5], WEXPR(5));    \
        ROUND(c, d, e, f, g, h, a, b, K[(base) + 6], WEXPR(6));    \
        ROUND(b, c, d, e, f, g, h, a, K[(base) + 7], WEXPR(7));    \
    } while (0)

void ocs_sha256_blocks_portable(uint32_t state[8], const uint8_t *p, size_t nblocks)
{
    const uint32_t *K = ocs_sha256_k;
    uint32_t W[16];
    uint32_t a, b, c, d, e, f, g, h;
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

#define WLOAD0(k) (W[k] = ocs_load_be32(p + 4 * (k)))
#define WLOAD8(k) (W[8 + (k)] = ocs_load_be32(p + 32 + 4 * (k)))
        EIGHT_ROUNDS(0, WLOAD0);
        EIGHT_ROUNDS(8, WLOAD8);
#undef WLOAD0
#undef WLOAD8
        for (i = 16; i < 64; i += 16) {
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
        p += OCS_SHA256_BLOCK_SIZE;
    }
}

/* --- run-time choice ----------------------------------------------------- */

static ocs_sha256_blocks_fn sha256_blocks = ocs_sha256_blocks_portable;
static const char *sha256_impl_name = "portable";

const char *ocs_sha256_accelerated(void)
{
#if defined(OCS_HAVE_SHANI)
    if (ocs_sha256_shani_supported()) {
        return "sha-ni";
    }
#endif
#if defined(OCS_HAVE_ARMV8_SHA2)
    if (ocs_sha256_arm_supported()) {
        return "armv8-crypto";
    }
#endif
    return NULL;
}

const char *ocs_sha256_select(int force_portable)
{
    ocs_sha256_blocks_fn fn = ocs_sha256_blocks_portable;
    const char *name = "portable";

    if (!force_portable) {
#if defined(OCS_HAVE_SHANI)
        if (ocs_sha256_shani_supported()) {
            fn = ocs_sha256_blocks_shani;
            name = "sha-ni";
        }
#endif
#if defined(OCS_HAVE_ARMV8_SHA2)
        if (ocs_sha256_arm_supported()) {
            fn = ocs_sha256_blocks_arm;
            name = "armv8-crypto";
        }
#endif
    }
    /* Every block function computes the same thing, so a thread that still
     * holds the previous pointer produces the same bytes. */
    sha256_blocks = fn;
    sha256_impl_name = name;
    return name;
}

const char *ocs_sha256_implementation(void)
{
    return sha256_impl_name;
}

/* --- streaming ----------------------------------------------------------- */

void ocs_sha256_init(ocs_sha256_ctx *ctx)
{
    memcpy(ctx->h, sha256_iv, sizeof ctx->h);
    ctx->count = 0;
}

void ocs_sha256_update(ocs_sha256_ctx *ctx, const void *data, size_t len)
{
    const uint8_t *p = (const uint8_t *)data;
    ocs_sha256_blocks_fn blocks = sha256_blocks;
    size_t fill = (size_t)(ctx->count & (OCS_SHA256_BLOCK_SIZE - 1));

    ctx->count += (uint64_t)len;
    if (fill) {
        size_t need = OCS_SHA256_BLOCK_SIZE - fill;
        if (len < need) {
            memcpy(ctx->buf + fill, p, len);
            return;
        }
        memcpy(ctx->buf + fill, p, need);
        blocks(ctx->h, ctx->buf, 1);
        p += need;
        len -= need;
    }
    if (len >= OCS_SHA256_BLOCK_SIZE) {
        size_t n = len / OCS_SHA256_BLOCK_SIZE;
        blocks(ctx->h, p, n);
        p += n * OCS_SHA256_BLOCK_SIZE;
        len -= n * OCS_SHA256_BLOCK_SIZE;
    }
    if (len) {
        memcpy(ctx->buf, p, len);
    }
}

void ocs_sha256_final(const ocs_sha256_ctx *ctx, uint8_t out[OCS_SHA256_DIGEST_SIZE])
{
    uint32_t h[8];
    uint8_t block[2 * OCS_SHA256_BLOCK_SIZE];
    size_t fill = (size_t)(ctx->count & (OCS_SHA256_BLOCK_SIZE - 1));
    size_t total = fill < 56 ? OCS_SHA256_BLOCK_SIZE : 2 * OCS_SHA256_BLOCK_SIZE;
    int i;

    memcpy(h, ctx->h, sizeof h);
    memcpy(block, ctx->buf, fill);
    block[fill] = 0x80;
    memset(block + fill + 1, 0, total - fill - 1 - 8);
    ocs_store_be64(block + total - 8, ctx->count << 3);
    sha256_blocks(h, block, total / OCS_SHA256_BLOCK_SIZE);
    for (i = 0; i < 8; i++) {
        ocs_store_be32(out + 4 * i, h[i]);
    }
}

/* --- Go's MarshalBinary format -------------------------------------------- */

void ocs_sha256_marshal(const ocs_sha256_ctx *ctx, uint8_t out[OCS_SHA256_STATE_SIZE])
{
    size_t fill = (size_t)(ctx->count & (OCS_SHA256_BLOCK_SIZE - 1));
    uint8_t *p = out;
    int i;

    memcpy(p, sha256_magic, 4);
    p += 4;
    for (i = 0; i < 8; i++, p += 4) {
        ocs_store_be32(p, ctx->h[i]);
    }
    memcpy(p, ctx->buf, fill);
    memset(p + fill, 0, OCS_SHA256_BLOCK_SIZE - fill);
    p += OCS_SHA256_BLOCK_SIZE;
    ocs_store_be64(p, ctx->count);
}

int ocs_sha256_unmarshal(ocs_sha256_ctx *ctx, const uint8_t *state, size_t len)
{
    const uint8_t *block = state + 4 + 32;
    uint64_t count;
    size_t fill;
    int i;

    if (len < 4 || memcmp(state, sha256_magic, 4) != 0) {
        return OCS_STATE_BAD_MAGIC;
    }
    if (len != OCS_SHA256_STATE_SIZE) {
        return OCS_STATE_BAD_LENGTH;
    }
    count = ocs_load_be64(state + OCS_SHA256_STATE_SIZE - 8);
    if (count >= OCS_MAX_COUNT) {
        return OCS_STATE_BAD_COUNT;
    }
    fill = (size_t)(count & (OCS_SHA256_BLOCK_SIZE - 1));
    if (ocs_any_nonzero(block + fill, OCS_SHA256_BLOCK_SIZE - fill)) {
        return OCS_STATE_BAD_PADDING;
    }
    for (i = 0; i < 8; i++) {
        ctx->h[i] = ocs_load_be32(state + 4 + 4 * i);
    }
    memcpy(ctx->buf, block, OCS_SHA256_BLOCK_SIZE);
    ctx->count = count;
    return OCS_STATE_OK;
}
