/*
 * Body of the two-block SHA-512 block function, included by sha512_avx.c once
 * per instruction set (it is not a header of its own: no include guard).
 *
 * Before including, sha512_avx.c defines:
 *   OCS_AVX_FN      the function's name
 *   OCS_AVX_TARGET  its __attribute__((target(...)))
 *   OCS_VROR(x, n)  64-bit rotate right of every lane of a __m256i
 *   OCS_VXOR3(a, b, c)  a ^ b ^ c
 *   OCS_WK_STORE(ptr, v)  store __m256i v at the 32-byte aligned ptr
 *
 * How it works (see sha512_avx.c for why):
 *
 * Blocks go in pairs, A and B. X[0..7] hold the message schedule of both:
 * X[i] is W[2i], W[2i+1] of block A in its low 128-bit lane and the same two
 * words of block B in its high lane, so every instruction extends both
 * schedules at once, and the rolling window of 16 words per block is eight
 * registers. W+K for round t of both blocks goes to wk[] on the stack.
 *
 * Block A's rounds run with the schedule of words 16..79 interleaved in the
 * source: while rounds 2i-16 and 2i-15 run, the vector units compute pair i
 * (words 2i, 2i+1), which round 2i reads 16 rounds later. Block B's rounds
 * then only read wk[]: no schedule work at all.
 *
 * The scalar round is arranged for latency (it, not the number of
 * instructions, bounds SHA-512 here):
 *   e' = d + h + (W+K) + Ch(e,f,g) + S1(e)        S1(e) added last
 *   a' = (b&c) - d + (a & (b^c)) + e' + S0(a)     S0(a) added last
 * Maj(a,b,c) = (a & (b^c)) + (b & c) (the two terms have no bit in common),
 * where b^c and b&c are the previous round's a^b and a&b; and
 * a' = T1 + S0 + Maj with T1 = e' - d. From e to e' is then rorx, xor, xor,
 * add (4 cycles), and from a to a' the same, where the textbook order takes
 * 5 for each: 0.97x -> 1.11x OpenSSL on a Xeon (Sapphire Rapids class),
 * for one more instruction per round.
 */

#define OCS_VSIG0(x) OCS_VXOR3(OCS_VROR((x), 1), OCS_VROR((x), 8), _mm256_srli_epi64((x), 7))
#define OCS_VSIG1(x) OCS_VXOR3(OCS_VROR((x), 19), OCS_VROR((x), 61), _mm256_srli_epi64((x), 6))

/* K[2i], K[2i+1] in both 128-bit lanes (one vbroadcasti128 from memory). */
#define OCS_KPAIR(i) _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(ocs_sha512_k + 2 * (i))))

/* Pair i (words 2i, 2i+1 of both blocks) from pairs i-8..i-1; stores its W+K. */
#define OCS_SCHED2(i)                                                                        \
    do {                                                                                     \
        __m256i s0_ = OCS_VSIG0(_mm256_alignr_epi8(X[((i) - 7) & 7], X[(i) & 7], 8));        \
        __m256i w7_ = _mm256_alignr_epi8(X[((i) - 3) & 7], X[((i) - 4) & 7], 8);             \
        __m256i s1_ = OCS_VSIG1(X[((i) - 1) & 7]);                                           \
        X[(i) & 7] = _mm256_add_epi64(_mm256_add_epi64(X[(i) & 7], s0_),                     \
                                      _mm256_add_epi64(w7_, s1_));                           \
        OCS_WK_STORE(wk + 4 * (i), _mm256_add_epi64(X[(i) & 7], OCS_KPAIR(i)));              \
    } while (0)

#define OCS_NOSCHED(i) ((void)0)

/* Words 2i, 2i+1 of both blocks, byte-swapped, into X[i]; their W+K into wk. */
#define OCS_LOAD2(i)                                                                         \
    do {                                                                                     \
        __m256i v_ = _mm256_inserti128_si256(                                                \
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(pa + 16 * (i)))),        \
            _mm_loadu_si128((const __m128i *)(pb + 16 * (i))), 1);                           \
        X[i] = _mm256_shuffle_epi8(v_, bswap);                                               \
        OCS_WK_STORE(wk + 4 * (i), _mm256_add_epi64(X[i], OCS_KPAIR(i)));                    \
    } while (0)

#define OCS_RND(a, b, c, d, e, f, g, h, wkv)                                                 \
    do {                                                                                     \
        uint64_t m_ = bnc - (d);                                                             \
        uint64_t s_ = (h) + (wkv) + (d);                                                     \
        s_ += (e) & (f);                                                                     \
        s_ += ~(e) & (g);                                                                    \
        s_ += OCS_BSIG1(e);                                                                  \
        (d) = s_;                                                                            \
        m_ += (a) & bc;                                                                      \
        m_ += s_;                                                                            \
        bnc = (a) & (b);                                                                     \
        bc = (a) ^ (b);                                                                      \
        (h) = m_ + OCS_BSIG0(a);                                                             \
    } while (0)

/* Rounds t..t+7 of the block in lane L (0: A, 2: B), and SCHED for pairs
 * t/2+8 .. t/2+11 between them. */
#define OCS_R8(t, L, SCHED)                                                                  \
    do {                                                                                     \
        OCS_RND(a, b, c, d, e, f, g, h, wk[4 * ((t) / 2 + 0) + (L) + 0]);                    \
        OCS_RND(h, a, b, c, d, e, f, g, wk[4 * ((t) / 2 + 0) + (L) + 1]);                    \
        SCHED((t) / 2 + 8);                                                                  \
        OCS_RND(g, h, a, b, c, d, e, f, wk[4 * ((t) / 2 + 1) + (L) + 0]);                    \
        OCS_RND(f, g, h, a, b, c, d, e, wk[4 * ((t) / 2 + 1) + (L) + 1]);                    \
        SCHED((t) / 2 + 9);                                                                  \
        OCS_RND(e, f, g, h, a, b, c, d, wk[4 * ((t) / 2 + 2) + (L) + 0]);                    \
        OCS_RND(d, e, f, g, h, a, b, c, wk[4 * ((t) / 2 + 2) + (L) + 1]);                    \
        SCHED((t) / 2 + 10);                                                                 \
        OCS_RND(c, d, e, f, g, h, a, b, wk[4 * ((t) / 2 + 3) + (L) + 0]);                    \
        OCS_RND(b, c, d, e, f, g, h, a, wk[4 * ((t) / 2 + 3) + (L) + 1]);                    \
        SCHED((t) / 2 + 11);                                                                 \
    } while (0)

#define OCS_STATE_IN()                                                                       \
    do {                                                                                     \
        a = state[0];                                                                        \
        b = state[1];                                                                        \
        c = state[2];                                                                        \
        d = state[3];                                                                        \
        e = state[4];                                                                        \
        f = state[5];                                                                        \
        g = state[6];                                                                        \
        h = state[7];                                                                        \
        bc = b ^ c;                                                                          \
        bnc = b & c;                                                                         \
    } while (0)

#define OCS_STATE_OUT()                                                                      \
    do {                                                                                     \
        state[0] += a;                                                                       \
        state[1] += b;                                                                       \
        state[2] += c;                                                                       \
        state[3] += d;                                                                       \
        state[4] += e;                                                                       \
        state[5] += f;                                                                       \
        state[6] += g;                                                                       \
        state[7] += h;                                                                       \
    } while (0)

OCS_AVX_TARGET
void OCS_AVX_FN(uint64_t state[8], const uint8_t *p, size_t nblocks)
{
    /* W+K of rounds 0..79 of both blocks: pair i at wk[4i..4i+3] = A[2i], A[2i+1], B[2i], B[2i+1]. */
    uint64_t wk[4 * 40] __attribute__((aligned(32)));
    const __m256i bswap = _mm256_set_epi8(8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7,
                                          8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);

    while (nblocks) {
        const uint8_t *pa = p;
        /* An odd last block is scheduled twice and hashed once. */
        const uint8_t *pb = nblocks >= 2 ? p + OCS_SHA512_BLOCK_SIZE : p;
        __m256i X[8];
        uint64_t a, b, c, d, e, f, g, h, bc, bnc;

        OCS_PREFETCH(p + OCS_PREFETCH_AHEAD);
        OCS_PREFETCH(p + OCS_PREFETCH_AHEAD + 64);
        OCS_PREFETCH(p + OCS_PREFETCH_AHEAD + 128);
        OCS_PREFETCH(p + OCS_PREFETCH_AHEAD + 192);
        OCS_LOAD2(0);
        OCS_LOAD2(1);
        OCS_LOAD2(2);
        OCS_LOAD2(3);
        OCS_LOAD2(4);
        OCS_LOAD2(5);
        OCS_LOAD2(6);
        OCS_LOAD2(7);

        OCS_STATE_IN();
        OCS_R8(0, 0, OCS_SCHED2);
        OCS_R8(8, 0, OCS_SCHED2);
        OCS_R8(16, 0, OCS_SCHED2);
        OCS_R8(24, 0, OCS_SCHED2);
        OCS_R8(32, 0, OCS_SCHED2);
        OCS_R8(40, 0, OCS_SCHED2);
        OCS_R8(48, 0, OCS_SCHED2);
        OCS_R8(56, 0, OCS_SCHED2);
        OCS_R8(64, 0, OCS_NOSCHED);
        OCS_R8(72, 0, OCS_NOSCHED);
        OCS_STATE_OUT();
        if (nblocks == 1) {
            break;
        }

        OCS_STATE_IN();
        OCS_R8(0, 2, OCS_NOSCHED);
        OCS_R8(8, 2, OCS_NOSCHED);
        OCS_R8(16, 2, OCS_NOSCHED);
        OCS_R8(24, 2, OCS_NOSCHED);
        OCS_R8(32, 2, OCS_NOSCHED);
        OCS_R8(40, 2, OCS_NOSCHED);
        OCS_R8(48, 2, OCS_NOSCHED);
        OCS_R8(56, 2, OCS_NOSCHED);
        OCS_R8(64, 2, OCS_NOSCHED);
        OCS_R8(72, 2, OCS_NOSCHED);
        OCS_STATE_OUT();
        p += 2 * OCS_SHA512_BLOCK_SIZE;
        nblocks -= 2;
    }
}

#undef OCS_VSIG0
#undef OCS_VSIG1
#undef OCS_KPAIR
#undef OCS_SCHED2
#undef OCS_NOSCHED
#undef OCS_LOAD2
#undef OCS_RND
#undef OCS_R8
#undef OCS_STATE_IN
#undef OCS_STATE_OUT
