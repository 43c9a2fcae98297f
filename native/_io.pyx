# cython: language_level=3
"""Kernel I/O hints the ``os`` module lacks (native twin of ``ocistore._core_py.io``).

``start_writeback`` asks Linux to start writing a file range's dirty pages to
disk now (``sync_file_range(SYNC_FILE_RANGE_WRITE)``) and returns without
waiting. A writer that will ``fsync`` later calls it every few MiB while data
is still arriving: the disk then works while the bytes come in, and the final
``fsync`` finds little left to flush, instead of the whole upload waiting in
the page cache for it. It changes no durability guarantee: it is not a sync
(no metadata, no wait), the ``fsync`` still decides what is durable.

Same checks, errors and reasons as the pure core (pinned by tests/test_io_core.py).
"""

from libc.errno cimport EINTR, errno

import errno as _errno
import os as _os

cdef extern from *:
    """
    #include <errno.h>
    #include <fcntl.h>
    /* Python.h defines _GNU_SOURCE on Linux, which declares sync_file_range. */
    static int ocs_start_writeback(int fd, long long offset, long long length) {
    #if defined(__linux__) && defined(SYNC_FILE_RANGE_WRITE)
        return sync_file_range(fd, (off_t)offset, (off_t)length, SYNC_FILE_RANGE_WRITE);
    #else
        (void)fd; (void)offset; (void)length;
        errno = ENOSYS;
        return -1;
    #endif
    }
    """
    int ocs_start_writeback(int fd, long long offset, long long length) nogil

# errnos meaning "this platform or this kind of file cannot take the hint": not an error.
_UNSUPPORTED = frozenset({_errno.ENOSYS, _errno.ESPIPE, _errno.EINVAL, _errno.EOPNOTSUPP})


def start_writeback(int fd, long long offset, long long length):
    """Start writing back ``length`` bytes of ``fd``'s file from ``offset`` (0: to the end).

    Returns True when the kernel took the hint, False when this platform or
    this kind of file cannot (nothing happened: the later fsync does all the
    work, as without the hint). A bad fd or an I/O error raises OSError; a
    negative offset or length raises ValueError. The GIL is released: the
    call can wait while the device queue is full.
    """
    cdef int rc
    cdef int err = 0
    if offset < 0 or length < 0:
        raise ValueError(f"offset and length must be >= 0, not {offset} and {length}")
    with nogil:
        while True:
            rc = ocs_start_writeback(fd, offset, length)
            err = errno if rc != 0 else 0
            if err != EINTR:
                break
    if rc == 0:
        return True
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, _os.strerror(err))
