/*
 * SHA-512 with a resumable, Go-compatible state.
 *
 * ocistore checks sha512 digests at commit with one pass over the blob, so the
 * block function matters; no widespread CPU has SHA-512 instructions, so it is
 * portable C, compiled a second time for x86-64 CPUs with BMI2 (RORX, ANDN),
 * plus on x86-64 a two-block function with the message schedule in AVX2 or
 * AVX-512VL registers (sha512_avx.c); the fastest the CPU runs is chosen at
 * run time. The state is Go's MarshalBinary format:
 *
 *     "sha\x07" | h[8] big-endian uint64 | block[128] | count big-endian uint64   (204 bytes)
 *
 * No function here allocates, takes a lock or touches Python.
 */
#ifndef OCISTORE_SHA512_H
#define OCISTORE_SHA512_H

#include "ocs_common.h"

#define OCS_SHA512_BLOCK_SIZE 128
#define OCS_SHA512_DIGEST_SIZE 64
#define OCS_SHA512_STATE_SIZE 204

typedef struct {
    uint64_t h[8];  /* chaining value */
    uint64_t count; /* bytes hashed so far (Go's state has no room for more) */
    uint8_t buf[OCS_SHA512_BLOCK_SIZE]; /* the count % 128 bytes not yet compressed */
} ocs_sha512_ctx;

typedef void (*ocs_sha512_blocks_fn)(uint64_t h[8], const uint8_t *data, size_t nblocks);

void ocs_sha512_init(ocs_sha512_ctx *ctx);
void ocs_sha512_update(ocs_sha512_ctx *ctx, const void *data, size_t len);
/* The digest of everything hashed so far; ctx is left as it was. */
void ocs_sha512_final(const ocs_sha512_ctx *ctx, uint8_t out[OCS_SHA512_DIGEST_SIZE]);
void ocs_sha512_marshal(const ocs_sha512_ctx *ctx, uint8_t out[OCS_SHA512_STATE_SIZE]);
/* Parse a state; returns OCS_STATE_OK or why it was refused (ctx untouched then). */
int ocs_sha512_unmarshal(ocs_sha512_ctx *ctx, const uint8_t *state, size_t len);

/* Pick the fastest block function this CPU runs, or "portable" when
 * force_portable is nonzero; returns its name. */
const char *ocs_sha512_select(int force_portable);
/* Name of the block function in use: "avx512vl", "avx2", "portable-bmi2" or "portable". */
const char *ocs_sha512_implementation(void);
/* Switch to the named block function (tests, benchmarks); returns its name,
 * or NULL (nothing changed) when the name is unknown or this CPU cannot run it. */
const char *ocs_sha512_use(const char *name);
/* Names of the block functions this CPU runs, fastest first, into names[0..max);
 * returns how many there are (may exceed max). */
size_t ocs_sha512_implementations(const char **names, size_t max);

void ocs_sha512_blocks_portable(uint64_t h[8], const uint8_t *data, size_t nblocks);

extern const uint64_t ocs_sha512_k[80];

#if (defined(__x86_64__) || defined(__i386__)) && \
    (defined(__clang__) || (defined(__GNUC__) && (__GNUC__ >= 5)))
#define OCS_HAVE_SHA512_BMI2 1
int ocs_sha512_bmi2_supported(void);
void ocs_sha512_blocks_bmi2(uint64_t h[8], const uint8_t *data, size_t nblocks);
#endif

/* GNU C inline asm, target attributes and AVX-512VL intrinsics. */
#if defined(__x86_64__) && \
    ((defined(__clang__) && __clang_major__ >= 4) || \
     (defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 6))
#define OCS_HAVE_SHA512_AVX 1
int ocs_sha512_avx2_supported(void);
int ocs_sha512_avx512vl_supported(void);
void ocs_sha512_blocks_avx2(uint64_t h[8], const uint8_t *data, size_t nblocks);
void ocs_sha512_blocks_avx512vl(uint64_t h[8], const uint8_t *data, size_t nblocks);
#endif

#endif /* OCISTORE_SHA512_H */
