/*
 * SHA-256 with a resumable, Go-compatible state.
 *
 * Python's hashlib cannot export its state, and OpenSSL's low-level SHA256_*
 * API is deprecated, so ocistore carries its own SHA-256: a portable C block
 * function, plus the CPU's SHA extensions (x86 SHA-NI, ARMv8 crypto) chosen at
 * run time. The context is plain data, so copying it copies the hasher, and
 * ocs_sha256_marshal / ocs_sha256_unmarshal speak Go's MarshalBinary format:
 *
 *     "sha\x03" | h[8] big-endian uint32 | block[64] | count big-endian uint64   (108 bytes)
 *
 * No function here allocates, takes a lock or touches Python: callers may run
 * them without the GIL.
 */
#ifndef OCISTORE_SHA256_H
#define OCISTORE_SHA256_H

#include "ocs_common.h"

#define OCS_SHA256_BLOCK_SIZE 64
#define OCS_SHA256_DIGEST_SIZE 32
#define OCS_SHA256_STATE_SIZE 108

typedef struct {
    uint32_t h[8];  /* chaining value */
    uint64_t count; /* bytes hashed so far */
    uint8_t buf[OCS_SHA256_BLOCK_SIZE]; /* the count % 64 bytes not yet compressed */
} ocs_sha256_ctx;

/* Compress nblocks consecutive 64-byte blocks of data into h. */
typedef void (*ocs_sha256_blocks_fn)(uint32_t h[8], const uint8_t *data, size_t nblocks);

void ocs_sha256_init(ocs_sha256_ctx *ctx);
void ocs_sha256_update(ocs_sha256_ctx *ctx, const void *data, size_t len);
/* The digest of everything hashed so far; ctx is left as it was (hashing may go on). */
void ocs_sha256_final(const ocs_sha256_ctx *ctx, uint8_t out[OCS_SHA256_DIGEST_SIZE]);
void ocs_sha256_marshal(const ocs_sha256_ctx *ctx, uint8_t out[OCS_SHA256_STATE_SIZE]);
/* Parse a state; returns OCS_STATE_OK or why it was refused (ctx untouched then). */
int ocs_sha256_unmarshal(ocs_sha256_ctx *ctx, const uint8_t *state, size_t len);

/* Run-time choice of block function. */
/* Pick the fastest block function the CPU supports, or the portable one when
 * force_portable is nonzero. Returns the name of the one chosen. */
const char *ocs_sha256_select(int force_portable);
/* Name of the block function in use: "sha-ni", "armv8-crypto" or "portable". */
const char *ocs_sha256_implementation(void);
/* Name of the accelerated block function this CPU supports, or NULL. */
const char *ocs_sha256_accelerated(void);

/* The block functions themselves (tests compare them). */
void ocs_sha256_blocks_portable(uint32_t h[8], const uint8_t *data, size_t nblocks);

extern const uint32_t ocs_sha256_k[64];

#if (defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)) && \
    (defined(__clang__) || (defined(__GNUC__) && (__GNUC__ >= 5)) || defined(_MSC_VER))
#define OCS_HAVE_SHANI 1
int ocs_sha256_shani_supported(void);
void ocs_sha256_blocks_shani(uint32_t h[8], const uint8_t *data, size_t nblocks);
#endif

#if defined(__aarch64__) || defined(_M_ARM64)
#if defined(__ARM_FEATURE_CRYPTO) || defined(__ARM_FEATURE_SHA2) || \
    (defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 6) || \
    (defined(__clang__) && __clang_major__ >= 16)
#define OCS_HAVE_ARMV8_SHA2 1
int ocs_sha256_arm_supported(void);
void ocs_sha256_blocks_arm(uint32_t h[8], const uint8_t *data, size_t nblocks);
#endif
#endif

#endif /* OCISTORE_SHA256_H */
