# cython: language_level=3
"""Kernel I/O hints the ``os`` module lacks (native twin of ``ocistore._core_py.io``).

``start_writeback`` asks Linux to start writing a file range's dirty pages to
disk now (``sync_file_range(SYNC_FILE_RANGE_WRITE)``) and returns without
waiting. A writer that will ``fsync`` later calls it every few MiB while data
is still arriving: the disk then works while the bytes come in, and the final
``fsync`` finds little left to flush, instead of the whole upload waiting in
the page cache for it. It changes no durability guarantee: it is not a sync
(no metadata, no wait), the ``fsync`` still decides what is durable.

``WriteBehind`` appends an upload's received bytes, in order, on a C thread
of its own that never takes the GIL (writing, and starting writeback of
every MiB written), while the receiving thread hashes the next piece.

Same checks, errors and reasons as the pure core (pinned by
tests/test_io_core.py and tests/test_writebehind_core.py).
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


# --- write-behind ------------------------------------------------------------

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdlib cimport calloc, free

cdef extern from *:
    """
    #include <errno.h>
    #include <fcntl.h>
    #include <pthread.h>
    #include <unistd.h>
    #define OCS_LANE_SLOTS 4
    /* Writeback is started once at least this much was written since the last start. */
    #define OCS_LANE_WRITEBACK_MIN (1LL << 20)
    typedef struct {
        const char *p[OCS_LANE_SLOTS];
        size_t n[OCS_LANE_SLOTS];
        long long off[OCS_LANE_SLOTS];
        unsigned long long submitted, done;
        int fd, writeback, stop, err;
        pthread_mutex_t mu;
        pthread_cond_t work, finished;
        pthread_t thread;
    } ocs_lane;

    static int ocs_lane_write(int fd, const char *p, size_t n) {
        while (n) {
            ssize_t w = write(fd, p, n);
            if (w < 0) {
                if (errno == EINTR) continue;
                return errno;
            }
            if (w == 0) return EIO;
            p += w;
            n -= (size_t)w;
        }
        return 0;
    }

    /* Returns 0 once the hint is no use (unsupported, or an error: the fsync reports those). */
    static int ocs_lane_hint(int fd, long long off, size_t n) {
    #if defined(__linux__) && defined(SYNC_FILE_RANGE_WRITE)
        int rc;
        do {
            rc = sync_file_range(fd, (off_t)off, (off_t)n, SYNC_FILE_RANGE_WRITE);
        } while (rc != 0 && errno == EINTR);
        return rc == 0;
    #else
        (void)fd; (void)off; (void)n;
        return 0;
    #endif
    }

    static void *ocs_lane_main(void *arg) {
        ocs_lane *l = (ocs_lane *)arg;
        long long unhinted = -1;  /* where the bytes not yet handed to writeback begin */
        pthread_mutex_lock(&l->mu);
        for (;;) {
            while (l->done == l->submitted && !l->stop)
                pthread_cond_wait(&l->work, &l->mu);
            if (l->done == l->submitted)
                break;  /* stopping, and nothing left to write */
            size_t i = (size_t)(l->done % OCS_LANE_SLOTS);
            const char *p = l->p[i];
            size_t n = l->n[i];
            long long off = l->off[i];
            int skip = l->err != 0;  /* an earlier piece failed: the file ends there */
            int hint = l->writeback;
            pthread_mutex_unlock(&l->mu);
            int err = 0;
            if (!skip) {
                err = ocs_lane_write(l->fd, p, n);
                if (unhinted < 0)
                    unhinted = off;
                if (!err && hint && off + (long long)n - unhinted >= OCS_LANE_WRITEBACK_MIN) {
                    hint = ocs_lane_hint(l->fd, unhinted, (size_t)(off + (long long)n - unhinted));
                    unhinted = off + (long long)n;
                }
            }
            pthread_mutex_lock(&l->mu);
            if (err && !l->err)
                l->err = err;
            if (!skip && !err && !hint)
                l->writeback = 0;
            l->done++;
            pthread_cond_broadcast(&l->finished);
        }
        pthread_mutex_unlock(&l->mu);
        return NULL;
    }

    /* Start the lane's thread; 0 or an errno. */
    static int ocs_lane_start(ocs_lane *l, int fd, int writeback) {
        int rc;
        l->fd = fd;
        l->writeback = writeback;
        if ((rc = pthread_mutex_init(&l->mu, NULL)) != 0) return rc;
        if ((rc = pthread_cond_init(&l->work, NULL)) != 0) return rc;
        if ((rc = pthread_cond_init(&l->finished, NULL)) != 0) return rc;
        return pthread_create(&l->thread, NULL, ocs_lane_main, l);
    }

    /* Queue a piece, waiting while every slot is taken. */
    static void ocs_lane_push(ocs_lane *l, const char *p, size_t n, long long off) {
        pthread_mutex_lock(&l->mu);
        while (l->submitted - l->done >= OCS_LANE_SLOTS)
            pthread_cond_wait(&l->finished, &l->mu);
        size_t i = (size_t)(l->submitted % OCS_LANE_SLOTS);
        l->p[i] = p;
        l->n[i] = n;
        l->off[i] = off;
        l->submitted++;
        pthread_cond_signal(&l->work);
        pthread_mutex_unlock(&l->mu);
    }

    /* Wait until a slot is free (whatever failed: settle reports that); *done = pieces done. */
    static void ocs_lane_wait_slot(ocs_lane *l, unsigned long long *done) {
        pthread_mutex_lock(&l->mu);
        while (l->submitted - l->done >= OCS_LANE_SLOTS)
            pthread_cond_wait(&l->finished, &l->mu);
        *done = l->done;
        pthread_mutex_unlock(&l->mu);
    }

    /* Wait until at most in_flight pieces are queued, or (after a failure) none;
       return the failure's errno (cleared: reported once) or 0. */
    static int ocs_lane_settle(ocs_lane *l, unsigned long long in_flight, unsigned long long *done) {
        int err;
        pthread_mutex_lock(&l->mu);
        while (l->submitted - l->done > in_flight && !l->err)
            pthread_cond_wait(&l->finished, &l->mu);
        if (l->err) {
            while (l->done != l->submitted)
                pthread_cond_wait(&l->finished, &l->mu);
        }
        err = l->err;
        l->err = 0;
        if (err) l->writeback = 0;
        *done = l->done;
        pthread_mutex_unlock(&l->mu);
        return err;
    }

    static void ocs_lane_stop(ocs_lane *l) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_signal(&l->work);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
        pthread_cond_destroy(&l->finished);
        pthread_cond_destroy(&l->work);
        pthread_mutex_destroy(&l->mu);
    }
    """
    enum: OCS_LANE_SLOTS
    ctypedef struct ocs_lane:
        pass
    int ocs_lane_start(ocs_lane *l, int fd, int writeback) nogil
    void ocs_lane_push(ocs_lane *l, const char *p, size_t n, long long off) nogil
    void ocs_lane_wait_slot(ocs_lane *l, unsigned long long *done) nogil
    int ocs_lane_settle(ocs_lane *l, unsigned long long in_flight, unsigned long long *done) nogil
    void ocs_lane_stop(ocs_lane *l) nogil


cdef class WriteBehind:
    """Appends pieces of buffers to ``fd``, in order, on a thread of its own.

    The thread is a C thread: it writes (and, with ``writeback``, starts
    writeback, as ``start_writeback``, each time at least a MiB more was
    written) without ever taking the GIL. Each queued buffer is held (a
    buffer export) until :meth:`settle` sees its piece written. Same
    methods, order and errors as the pure core's (pinned by
    tests/test_writebehind_core.py): a failed write stops the lane (later
    pieces are not written) and is raised once by the next :meth:`settle`
    (or :meth:`close`), after every queued piece is done. Not thread-safe:
    one caller thread.
    """

    cdef ocs_lane *_lane
    cdef Py_buffer _views[OCS_LANE_SLOTS]
    cdef unsigned long long _submitted
    cdef unsigned long long _released
    cdef bint _running

    def __cinit__(self, int fd, bint writeback):
        cdef int rc
        self._lane = <ocs_lane *>calloc(1, sizeof(ocs_lane))
        if self._lane == NULL:
            raise MemoryError()
        rc = ocs_lane_start(self._lane, fd, writeback)
        if rc != 0:
            free(self._lane)
            self._lane = NULL
            raise OSError(rc, _os.strerror(rc))
        self._running = True

    cdef void _release_until(self, unsigned long long done):
        while self._released < done:
            PyBuffer_Release(&self._views[self._released % OCS_LANE_SLOTS])
            self._released += 1

    def submit(self, data, long long offset):
        """Queue ``data`` to be appended (nobody may change it until :meth:`settle` saw it written).

        ``offset`` is where it will land, for the writeback hint. Waits while
        the lane already holds its maximum of queued pieces.
        """
        cdef unsigned long long done
        cdef Py_buffer *view
        if not self._running:
            raise ValueError("write-behind lane is closed")
        if self._submitted - self._released >= OCS_LANE_SLOTS:
            with nogil:
                ocs_lane_wait_slot(self._lane, &done)
            self._release_until(done)
        view = &self._views[self._submitted % OCS_LANE_SLOTS]
        PyObject_GetBuffer(data, view, PyBUF_SIMPLE)
        self._submitted += 1
        with nogil:
            ocs_lane_push(self._lane, <const char *>view.buf, <size_t>view.len, offset)

    def settle(self, Py_ssize_t in_flight=0):
        """Wait until at most ``in_flight`` pieces are still being written.

        After a failed write, waits for every queued piece and raises that
        write's error (once).
        """
        cdef unsigned long long done
        cdef int err
        if not self._running:
            return
        if in_flight < 0:
            raise ValueError(f"in_flight must be >= 0, not {in_flight}")
        with nogil:
            err = ocs_lane_settle(self._lane, <unsigned long long>in_flight, &done)
        self._release_until(done)
        if err:
            raise OSError(err, _os.strerror(err))

    cdef void _stop(self):
        cdef unsigned long long done
        if not self._running:
            return
        self._running = False
        with nogil:
            ocs_lane_stop(self._lane)
        self._release_until(self._submitted)

    def abandon(self):
        """Wait for every queued piece, ignore any failure, and stop the thread."""
        self._stop()

    def close(self):
        """Wait for every queued piece (raising a failed write's error) and stop the thread."""
        try:
            self.settle()
        finally:
            self._stop()

    def __dealloc__(self):
        if self._lane != NULL:
            self._stop()
            free(self._lane)
            self._lane = NULL
