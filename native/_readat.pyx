# cython: language_level=3
"""Reading file data without waiting for the disk (native twin of ``ocistore._core_py.readat``).

``pread_nowait`` reads what the page cache already holds with Linux
``preadv2(..., RWF_NOWAIT)`` into a new ``bytes`` (one copy, as ``os.pread``)
and answers None when the data would have to come from the disk. The HTTP
layer sends blob bodies from the event loop this way: a page-cache hit costs
no thread hop, a miss goes to the thread pool and never stalls the loop.

Same checks, results and errors as the pure core (pinned by tests/test_readat_core.py).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.errno cimport EINTR, errno

import errno as _errno
import os as _os

cdef extern from *:
    """
    #include <errno.h>
    #include <sys/types.h>
    #include <sys/uio.h>
    /* Python.h defines _GNU_SOURCE on Linux, which declares preadv2 and RWF_NOWAIT. */
    static Py_ssize_t ocs_pread_nowait(int fd, char *buf, size_t len, long long offset) {
    #if defined(__linux__) && defined(RWF_NOWAIT)
        struct iovec iov;
        iov.iov_base = buf;
        iov.iov_len = len;
        return (Py_ssize_t)preadv2(fd, &iov, 1, (off_t)offset, RWF_NOWAIT);
    #else
        (void)fd; (void)buf; (void)len; (void)offset;
        errno = ENOSYS;
        return -1;
    #endif
    }
    """
    Py_ssize_t ocs_pread_nowait(int fd, char *buf, size_t len, long long offset) nogil

# errnos meaning "this platform or this file cannot read without waiting": ask the pool.
_CANNOT = frozenset({_errno.EAGAIN, _errno.ENOSYS, _errno.EINVAL, _errno.EOPNOTSUPP})


def pread_nowait(int fd, Py_ssize_t length, long long offset):
    """Up to ``length`` bytes at ``offset`` if the page cache holds them, else None.

    Returns the bytes read without waiting for the disk: all of them, fewer
    when only the first pages are cached, ``b""`` at the end of the file.
    None means the first byte is not cached (or this platform or file cannot
    tell): read it with a blocking ``pread`` off the event loop. A bad fd or
    an I/O error raises OSError; a negative length or offset raises ValueError.
    """
    cdef Py_ssize_t n
    cdef int err = 0
    cdef char *buf
    if length < 0 or offset < 0:
        raise ValueError(f"length and offset must be >= 0, not {length} and {offset}")
    out = PyBytes_FromStringAndSize(NULL, length)
    buf = PyBytes_AS_STRING(out)
    with nogil:
        while True:
            n = ocs_pread_nowait(fd, buf, <size_t>length, offset)
            err = errno if n < 0 else 0
            if err != EINTR:
                break
    if n < 0:
        if err in _CANNOT:
            return None
        raise OSError(err, _os.strerror(err))
    if n < length:
        # Only part was cached (or the file is shorter): a copy of what came, rare.
        return PyBytes_FromStringAndSize(buf, n)
    return out
