/*
 * Feeding a range of a file to a hash function without a copy, and without
 * dying when the file is cut short underneath.
 *
 * Large ranges are mapped (mmap, in windows) and handed to the hash function
 * in place: reading from the page cache then costs no copy into a buffer. A
 * mapped page whose file was truncated (or whose disk read fails) raises
 * SIGBUS when touched; ocs_hash_fd catches that fault in the thread that
 * made it, for the range it mapped, and returns an error instead. Faults
 * elsewhere go to the previous SIGBUS disposition, as if the handler were
 * not there. Small ranges, and any call that cannot set the guard up, are
 * read with pread into a buffer.
 *
 * No function here touches Python: callers run them without the GIL.
 */
#ifndef OCISTORE_FILEHASH_H
#define OCISTORE_FILEHASH_H

#include <stddef.h>
#include <stdint.h>

/* The hash's update function: feed(ctx, p, n). */
typedef void (*ocs_feed_fn)(void *ctx, const void *p, size_t n);

/* ocs_hash_fd's result when the file ends before offset + length. */
#define OCS_FILE_SHORT (-1)
/* ocs_hash_fd's result where this platform has neither pread nor mmap: nothing was fed. */
#define OCS_FILE_UNSUPPORTED (-2)

/* Feed bytes [offset, offset + length) of fd's file to feed(ctx, ...), in order.
 * Returns 0, OCS_FILE_SHORT when the file ended first (a read met the end of
 * the file, or a mapped page was gone), or an errno (an I/O error: a failed
 * read, or a mapped page that could not be read). After an error, ctx has
 * been fed an unspecified part of the range. */
int ocs_hash_fd(int fd, uint64_t offset, uint64_t length, ocs_feed_fn feed, void *ctx);

/* Ranges at least this long are mapped; shorter ones are read. */
#define OCS_MAP_MIN ((uint64_t)256 << 10)
/* Bytes mapped at a time (a multiple of 2 MiB, so that huge folios map whole). */
#define OCS_MAP_WINDOW ((uint64_t)16 << 20)
/* The read buffer for short ranges and the fallback. */
#define OCS_READ_BUFFER ((size_t)64 << 10)

/* SIGBUS faults caught so far in mapped ranges (tests check the guard worked). */
unsigned long ocs_hash_fd_faults(void);
/* Whether the mapped path is usable now (the guard's handler is the SIGBUS disposition). */
int ocs_hash_fd_can_map(void);
/* Tests only: the next mapped window, once mapped and before it is hashed,
 * truncates the file open as write_fd to size bytes (write_fd < 0 disarms). */
void ocs_hash_fd_test_truncate(int write_fd, int64_t size);

#endif /* OCISTORE_FILEHASH_H */
