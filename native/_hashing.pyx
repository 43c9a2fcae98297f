# cython: language_level=3
"""Native twin of ocistore._core_py.hashing: resumable SHA-256/SHA-512.

The hashers wrap the C in sha256.c / sha512.c (SHA-NI or ARMv8 crypto chosen
at run time, portable C otherwise; for SHA-512 the AVX-512VL, AVX2 or BMI2
block function when the CPU has them). Unlike hashlib they export and import
their state in Go's MarshalBinary format, which is what lets an upload resume
from a stored state without reading the data again (where states are stored
is the storage layer's business).

Threads: ``update`` releases the GIL for buffers of at least
``GIL_RELEASE_MIN_SIZE`` bytes. A hasher then holds its own lock (created on first need, as hashlib
does), so concurrent calls on one hasher serialize instead of corrupting it.

Errors mirror the pure core: the same checks in the same order, the same
exception types and the same reasons (pinned by tests/test_hashing.py).
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_CheckBuffer, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.pythread cimport (
    NOWAIT_LOCK,
    WAIT_LOCK,
    PyThread_acquire_lock,
    PyThread_allocate_lock,
    PyThread_free_lock,
    PyThread_release_lock,
    PyThread_type_lock,
)
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

import os as _os

from ocistore._core_py.errors import HashStateInvalid


cdef extern from "ocs_common.h" nogil:
    enum:
        OCS_STATE_OK
        OCS_STATE_BAD_MAGIC
        OCS_STATE_BAD_LENGTH
        OCS_STATE_BAD_COUNT
        OCS_STATE_BAD_PADDING


cdef extern from "sha256.h" nogil:
    enum:
        OCS_SHA256_BLOCK_SIZE
        OCS_SHA256_DIGEST_SIZE
        OCS_SHA256_STATE_SIZE

    ctypedef struct ocs_sha256_ctx:
        uint64_t count

    void ocs_sha256_init(ocs_sha256_ctx *ctx)
    void ocs_sha256_update(ocs_sha256_ctx *ctx, const void *data, size_t length)
    void ocs_sha256_final(const ocs_sha256_ctx *ctx, uint8_t *out)
    void ocs_sha256_marshal(const ocs_sha256_ctx *ctx, uint8_t *out)
    int ocs_sha256_unmarshal(ocs_sha256_ctx *ctx, const uint8_t *state, size_t length)
    const char *ocs_sha256_select(int force_portable)
    const char *ocs_sha256_implementation()
    const char *ocs_sha256_accelerated()


cdef extern from "sha512.h" nogil:
    enum:
        OCS_SHA512_BLOCK_SIZE
        OCS_SHA512_DIGEST_SIZE
        OCS_SHA512_STATE_SIZE

    ctypedef struct ocs_sha512_ctx:
        uint64_t count

    void ocs_sha512_init(ocs_sha512_ctx *ctx)
    void ocs_sha512_update(ocs_sha512_ctx *ctx, const void *data, size_t length)
    void ocs_sha512_final(const ocs_sha512_ctx *ctx, uint8_t *out)
    void ocs_sha512_marshal(const ocs_sha512_ctx *ctx, uint8_t *out)
    int ocs_sha512_unmarshal(ocs_sha512_ctx *ctx, const uint8_t *state, size_t length)
    const char *ocs_sha512_select(int force_portable)
    const char *ocs_sha512_implementation()
    const char *ocs_sha512_use(const char *name)
    size_t ocs_sha512_implementations(const char **names, size_t max)


HASH_STATES = True

# Below this many bytes update() keeps the GIL: from here on, dropping and
# retaking an uncontended GIL is small against the hashing, but with another
# thread running Python retaking it waits up to a switch interval, a price
# small updates must not pay for no parallelism. (hashlib releases from 2 KiB.)
GIL_RELEASE_MIN_SIZE = 16 * 1024
cdef size_t _GIL_MIN = GIL_RELEASE_MIN_SIZE

cdef const char *_SHA256_MAGIC = b"sha\x03"
cdef const char *_SHA512_MAGIC = b"sha\x07"


# --- implementation choice ------------------------------------------------------


def implementation(algorithm="sha256"):
    """Name of the block function in use.

    SHA-256: ``"sha-ni"``, ``"armv8-crypto"`` or ``"portable"``; SHA-512:
    ``"avx512vl"``, ``"avx2"``, ``"portable-bmi2"`` or ``"portable"``.
    """
    if algorithm == "sha256":
        return ocs_sha256_implementation().decode("ascii")
    if algorithm == "sha512":
        return ocs_sha512_implementation().decode("ascii")
    raise ValueError(f"unknown algorithm {algorithm!r}")


def implementations(algorithm="sha256"):
    """The block functions this CPU runs for ``algorithm``, fastest first.

    The first is the default, unless OCISTORE_SHA512 names another SHA-512 one.

    Every one computes the same digests; tests run each of them, and
    benchmarks compare them, through ``_use_implementation``.
    """
    cdef const char *names[8]
    cdef size_t i, n
    cdef const char *fast
    if algorithm == "sha256":
        fast = ocs_sha256_accelerated()
        return ("portable",) if fast == NULL else (fast.decode("ascii"), "portable")
    if algorithm == "sha512":
        n = ocs_sha512_implementations(names, 8)
        found = []
        for i in range(n if n < 8 else 8):
            found.append(names[i].decode("ascii"))
        return tuple(found)
    raise ValueError(f"unknown algorithm {algorithm!r}")


def _use_implementation(algorithm, name):
    """Hash ``algorithm`` with the named block function from now on; returns the name.

    For tests and benchmarks, like ``_force_portable`` (whose False goes back to
    the default). A name this CPU cannot run raises ValueError, nothing changed.
    """
    cdef bytes raw
    available = implementations(algorithm)
    if name not in available:
        raise ValueError(f"{algorithm} block function {name!r} is not available here: {available}")
    if algorithm == "sha256":
        return ocs_sha256_select(name == "portable").decode("ascii")
    raw = name.encode("ascii")
    return ocs_sha512_use(raw).decode("ascii")


def accelerated():
    """The SHA-256 instructions this CPU offers (``"sha-ni"``, ``"armv8-crypto"``) or None."""
    cdef const char *name = ocs_sha256_accelerated()
    return None if name == NULL else name.decode("ascii")


# The SHA-512 block function _force_portable(False) goes back to: the fastest
# (None), or the one OCISTORE_SHA512 names (benchmarks of each one).
cdef bytes _sha512_default = None


def _force_portable(bint flag):
    """Use the portable block functions (True) or the default ones (False).

    The default is the fastest the CPU has, except for SHA-512 when
    OCISTORE_SHA512 names another. For tests and benchmarks: every block
    function computes the same bytes, so switching while other threads hash
    is harmless. Returns the SHA-256 choice.
    """
    ocs_sha512_select(flag)
    if not flag and _sha512_default is not None:
        ocs_sha512_use(_sha512_default)
    return ocs_sha256_select(flag).decode("ascii")


def _default_from_environment():
    """``OCISTORE_SHA512=<name>``: SHA-512's default block function.

    A name this CPU cannot run warns and leaves the fastest: the native core
    still loads, and implementation("sha512") says what is in use.
    """
    global _sha512_default
    name = _os.environ.get("OCISTORE_SHA512")
    if not name:
        return
    available = implementations("sha512")
    if name in available:
        _sha512_default = name.encode("ascii")
    else:
        import warnings

        warnings.warn(
            f"OCISTORE_SHA512 ignored: sha512 block function {name!r} is not available here: {available}",
            RuntimeWarning,
            stacklevel=2,
        )


_default_from_environment()
_force_portable(_os.environ.get("OCISTORE_PORTABLE_SHA") == "1")


# --- hashers --------------------------------------------------------------------


@cython.auto_pickle(False)
cdef class _NativeHasher:
    """What Sha256 and Sha512 share: buffer intake, GIL release and the per-hasher lock."""

    cdef PyThread_type_lock _lock

    def __dealloc__(self):
        if self._lock != NULL:
            PyThread_free_lock(self._lock)
            self._lock = NULL

    cdef int _make_lock(self) except -1:
        if self._lock == NULL:
            self._lock = PyThread_allocate_lock()
            if self._lock == NULL:
                raise MemoryError("cannot allocate a hasher lock")
        return 0

    # Called with the GIL held. The lock exists only once a GIL-free call has
    # needed it; until then the GIL alone serializes every call on this hasher.
    cdef inline void _enter(self) noexcept:
        if self._lock != NULL:
            if not PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
                with nogil:
                    PyThread_acquire_lock(self._lock, WAIT_LOCK)

    cdef inline void _leave(self) noexcept:
        if self._lock != NULL:
            PyThread_release_lock(self._lock)

    cdef void _feed(self, const uint8_t *p, size_t n) noexcept nogil:
        pass

    cdef int _absorb(self, const uint8_t *p, size_t n) except -1:
        if n >= _GIL_MIN:
            self._make_lock()
            with nogil:
                PyThread_acquire_lock(self._lock, WAIT_LOCK)
                self._feed(p, n)
                PyThread_release_lock(self._lock)
        else:
            self._enter()
            self._feed(p, n)
            self._leave()
        return 0

    def update(self, data, /):
        """Hash ``data``: any contiguous buffer, read in place (no copy)."""
        cdef Py_buffer view
        if isinstance(data, str):
            raise TypeError("Strings must be encoded before hashing")
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            self._absorb(<const uint8_t *>view.buf, <size_t>view.len)
        finally:
            PyBuffer_Release(&view)

    def hexdigest(self):
        return self.digest().hex()


@cython.final
@cython.auto_pickle(False)
cdef class Sha256(_NativeHasher):
    """SHA-256 whose state is Go's crypto/sha256 MarshalBinary (108 bytes, magic ``sha\\x03``)."""

    cdef ocs_sha256_ctx ctx

    name = "sha256"
    digest_size = 32
    block_size = 64

    def __cinit__(self):
        ocs_sha256_init(&self.ctx)

    def __init__(self, data=b""):
        """Start a hash, fed ``data`` first."""
        if data:
            self.update(data)

    cdef void _feed(self, const uint8_t *p, size_t n) noexcept nogil:
        ocs_sha256_update(&self.ctx, p, n)

    def copy(self):
        """An independent hasher in the same state."""
        cdef Sha256 other = Sha256.__new__(Sha256)
        self._enter()
        other.ctx = self.ctx
        self._leave()
        return other

    def digest(self):
        """The digest of everything hashed so far (hashing may go on)."""
        cdef uint8_t out[OCS_SHA256_DIGEST_SIZE]
        self._enter()
        ocs_sha256_final(&self.ctx, out)
        self._leave()
        return PyBytes_FromStringAndSize(<char *>out, OCS_SHA256_DIGEST_SIZE)

    def marshal(self):
        """The state in Go's MarshalBinary format (what distribution stores per upload)."""
        cdef bytes out = PyBytes_FromStringAndSize(NULL, OCS_SHA256_STATE_SIZE)
        self._enter()
        ocs_sha256_marshal(&self.ctx, <uint8_t *>PyBytes_AS_STRING(out))
        self._leave()
        return out

    @classmethod
    def unmarshal(cls, state):
        """A hasher resumed from a sha256 state; a malformed one raises HashStateInvalid."""
        return _restore(state, 256)


@cython.final
@cython.auto_pickle(False)
cdef class Sha512(_NativeHasher):
    """SHA-512 whose state is Go's crypto/sha512 MarshalBinary (204 bytes, magic ``sha\\x07``)."""

    cdef ocs_sha512_ctx ctx

    name = "sha512"
    digest_size = 64
    block_size = 128

    def __cinit__(self):
        ocs_sha512_init(&self.ctx)

    def __init__(self, data=b""):
        """Start a hash, fed ``data`` first."""
        if data:
            self.update(data)

    cdef void _feed(self, const uint8_t *p, size_t n) noexcept nogil:
        ocs_sha512_update(&self.ctx, p, n)

    def copy(self):
        """An independent hasher in the same state."""
        cdef Sha512 other = Sha512.__new__(Sha512)
        self._enter()
        other.ctx = self.ctx
        self._leave()
        return other

    def digest(self):
        """The digest of everything hashed so far (hashing may go on)."""
        cdef uint8_t out[OCS_SHA512_DIGEST_SIZE]
        self._enter()
        ocs_sha512_final(&self.ctx, out)
        self._leave()
        return PyBytes_FromStringAndSize(<char *>out, OCS_SHA512_DIGEST_SIZE)

    def marshal(self):
        """The state in Go's MarshalBinary format."""
        cdef bytes out = PyBytes_FromStringAndSize(NULL, OCS_SHA512_STATE_SIZE)
        self._enter()
        ocs_sha512_marshal(&self.ctx, <uint8_t *>PyBytes_AS_STRING(out))
        self._leave()
        return out

    @classmethod
    def unmarshal(cls, state):
        """A hasher resumed from a sha512 state; a malformed one raises HashStateInvalid."""
        return _restore(state, 512)


# --- states ---------------------------------------------------------------------


cdef object _refusal(int rc, const uint8_t *p, Py_ssize_t n, int bits):
    """The HashStateInvalid for parser result ``rc``, worded as the pure core words it."""
    cdef str algorithm = "sha256" if bits == 256 else "sha512"
    cdef Py_ssize_t size = OCS_SHA256_STATE_SIZE if bits == 256 else OCS_SHA512_STATE_SIZE
    cdef Py_ssize_t block = OCS_SHA256_BLOCK_SIZE if bits == 256 else OCS_SHA512_BLOCK_SIZE
    cdef bytes raw = (<const char *>p)[:n]
    if rc == OCS_STATE_BAD_LENGTH:
        return HashStateInvalid(f"{algorithm} state must be {size} bytes, got {n}")
    count = int.from_bytes(raw[size - 8:], "big")
    if rc == OCS_STATE_BAD_COUNT:
        return HashStateInvalid(f"{algorithm} state byte count {count} is out of range (>= 2**61)")
    return HashStateInvalid(
        f"{algorithm} state has data past its {count % block} buffered bytes (count {count})"
    )


cdef object _restore_view(const uint8_t *p, Py_ssize_t n, int want):
    cdef int rc
    cdef int bits
    cdef Sha256 h256
    cdef Sha512 h512
    if n >= 4 and memcmp(p, _SHA256_MAGIC, 4) == 0:
        bits = 256
    elif n >= 4 and memcmp(p, _SHA512_MAGIC, 4) == 0:
        bits = 512
    else:
        magic = (<const char *>p)[:n if n < 4 else 4]
        raise HashStateInvalid(f"unknown magic {magic!r} (expected sha256 or sha512 state)")
    if bits == 256:
        h256 = Sha256.__new__(Sha256)
        rc = ocs_sha256_unmarshal(&h256.ctx, p, <size_t>n)
        result = h256
    else:
        h512 = Sha512.__new__(Sha512)
        rc = ocs_sha512_unmarshal(&h512.ctx, p, <size_t>n)
        result = h512
    if rc != OCS_STATE_OK:
        raise _refusal(rc, p, n, bits)
    if want and want != bits:
        raise HashStateInvalid(f"expected a sha{want} state, got a sha{bits} state")
    return result


cdef object _restore(object state, int want):
    cdef Py_buffer view
    if isinstance(state, str) or not PyObject_CheckBuffer(state):
        raise HashStateInvalid(f"expected bytes, got {type(state).__name__}")
    try:
        PyObject_GetBuffer(state, &view, PyBUF_SIMPLE)
    except BufferError:
        # Not contiguous: the pure core accepts it (bytes(memoryview(...))), so do we.
        state = bytes(memoryview(state))
        PyObject_GetBuffer(state, &view, PyBUF_SIMPLE)
    try:
        return _restore_view(<const uint8_t *>view.buf, view.len, want)
    finally:
        PyBuffer_Release(&view)


def restore_hasher(state):
    """Rebuild a hasher from a Go MarshalBinary state; the magic names the algorithm.

    States come from storage and are untrusted: a wrong magic, length or count,
    or nonzero bytes past the buffered ones, raise HashStateInvalid.
    """
    return _restore(state, 0)



# --- files ----------------------------------------------------------------------


cdef extern from "filehash.h" nogil:
    ctypedef void (*ocs_feed_fn)(void *ctx, const void *p, size_t n) noexcept nogil
    enum:
        OCS_FILE_SHORT
        OCS_FILE_UNSUPPORTED
    int ocs_hash_fd(int fd, uint64_t offset, uint64_t length, ocs_feed_fn feed, void *ctx)
    unsigned long ocs_hash_fd_faults()
    int ocs_hash_fd_can_map()
    void ocs_hash_fd_test_truncate(int write_fd, int64_t size)


from ocistore._core_py.errors import FileTruncated
from ocistore._core_py.filehash import hash_file as _hash_file_pure


cdef void _feed_sha256(void *ctx, const void *p, size_t n) noexcept nogil:
    ocs_sha256_update(<ocs_sha256_ctx *>ctx, p, n)


cdef void _feed_sha512(void *ctx, const void *p, size_t n) noexcept nogil:
    ocs_sha512_update(<ocs_sha512_ctx *>ctx, p, n)


cdef union _AnyCtx:
    ocs_sha256_ctx s256
    ocs_sha512_ctx s512


cdef _NativeHasher _fed_natively(object hasher, ocs_feed_fn *feed, void **ctx, size_t *size):
    """This core's Sha256 or Sha512 (its lock made), with its C feed and state; else None.

    What ``hash_file`` and ``copy_hashed`` need to feed a hasher without the
    GIL: under its lock, copy ``size`` bytes of ``ctx``, feed the copy, and
    store it back.
    """
    cdef Sha256 h256
    cdef Sha512 h512
    if type(hasher) is Sha256:
        h256 = <Sha256>hasher
        feed[0], ctx[0], size[0] = _feed_sha256, &h256.ctx, sizeof(ocs_sha256_ctx)
    elif type(hasher) is Sha512:
        h512 = <Sha512>hasher
        feed[0], ctx[0], size[0] = _feed_sha512, &h512.ctx, sizeof(ocs_sha512_ctx)
    else:
        return None
    (<_NativeHasher>hasher)._make_lock()
    return <_NativeHasher>hasher


def hash_file(hasher, int fd, long long offset, long long length):
    """Feed ``length`` bytes of ``fd``'s file from ``offset`` to ``hasher``, in order.

    For this core's Sha256 and Sha512 the whole range is hashed without the
    GIL, and a large range through a mapping of the file, with no copy; a
    SIGBUS from a page cut away underneath is caught in this thread and
    becomes an error (native/filehash.h). Any other hasher gets the pure
    core's read loop. Raises :class:`FileTruncated` when the file ends first,
    OSError for a read error, ValueError for a negative offset or length.
    After an error the hasher has taken an unspecified part of the range.
    The file position of ``fd`` is not used or moved.
    """
    cdef _NativeHasher h
    cdef ocs_feed_fn feed
    cdef void *ctx
    cdef size_t size
    cdef _AnyCtx copy
    cdef int rc
    if offset < 0 or length < 0:
        raise ValueError(f"offset and length must be >= 0, not {offset} and {length}")
    h = _fed_natively(hasher, &feed, &ctx, &size)
    if h is None:
        return _hash_file_pure(hasher, fd, offset, length)
    with nogil:
        PyThread_acquire_lock(h._lock, WAIT_LOCK)
        memcpy(&copy, ctx, size)
        rc = ocs_hash_fd(fd, <uint64_t>offset, <uint64_t>length, feed, &copy)
        if rc == 0:
            memcpy(ctx, &copy, size)
        PyThread_release_lock(h._lock)
    if rc == OCS_FILE_UNSUPPORTED:  # no pread nor mmap here: nothing was fed
        return _hash_file_pure(hasher, fd, offset, length)
    if rc == OCS_FILE_SHORT:
        raise FileTruncated(offset + length, _os.fstat(fd).st_size)
    if rc != 0:
        raise OSError(rc, _os.strerror(rc))


def _mapped_faults():
    """SIGBUS faults ``hash_file`` caught so far in this process (tests)."""
    return ocs_hash_fd_faults()


def _can_map():
    """Whether ``hash_file`` maps large ranges now (its SIGBUS handler is in place)."""
    return bool(ocs_hash_fd_can_map())


def _truncate_when_mapped(int write_fd, long long size):
    """Tests: the next mapped window, once mapped, truncates ``write_fd``'s file to ``size``."""
    ocs_hash_fd_test_truncate(write_fd, <int64_t>size)


# --- streams --------------------------------------------------------------------


cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    enum:
        POLLIN
    int poll(pollfd *fds, unsigned long nfds, int timeout)

cdef extern from "<unistd.h>" nogil:
    ssize_t read(int fd, void *buf, size_t count)
    ssize_t write(int fd, const void *buf, size_t count)

cdef extern from "<fcntl.h>" nogil:
    enum:
        F_GETFL
        O_NONBLOCK
    int fcntl(int fd, int cmd, ...)

cdef extern from "<errno.h>" nogil:
    int errno
    enum:
        EINTR

cdef extern from * nogil:
    """
    #include <errno.h>
    static int ocs_would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK; }
    """
    int ocs_would_block(int e)


from ocistore._core_py.streamhash import copy_hashed as _copy_hashed_pure


cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    enum:
        CLOCK_MONOTONIC
    int clock_gettime(int clk, timespec *tp)


cdef inline int64_t _now_ms() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000 + ts.tv_nsec // 1000000


cdef int _wait_readable(int fd, int64_t deadline_ms) noexcept nogil:
    """1: readable (or at its end, or failed: the read says which); 0: the deadline passed; else -errno."""
    cdef pollfd pfd
    cdef int r
    cdef int64_t left = deadline_ms - _now_ms()
    if left <= 0:
        return 0
    pfd.fd = fd
    pfd.events = POLLIN
    pfd.revents = 0
    r = poll(&pfd, 1, <int>(left if left < 2147483647 else 2147483647))
    if r < 0:
        return 1 if errno == EINTR else -errno
    return 1 if r > 0 else 0


cdef int _copy_loop(
    int src, int dst, uint8_t *buf, size_t cap, uint64_t length, int64_t wait_ms,
    ocs_feed_fn feed, void *ctx, uint64_t *done, int *ended,
) noexcept nogil:
    """The loop of ``copy_hashed``: 0 or an errno; ``done`` and ``ended`` as it returns them."""
    cdef int flags = fcntl(src, F_GETFL)
    cdef bint blocking
    cdef ssize_t n, w
    cdef size_t want, off
    cdef int ready
    cdef int64_t deadline_ms = _now_ms() + wait_ms
    if flags < 0:
        return errno
    blocking = not (flags & O_NONBLOCK)
    while done[0] < length:
        want = cap if length - done[0] > cap else <size_t>(length - done[0])
        if blocking:
            ready = _wait_readable(src, deadline_ms)
            if ready < 0:
                return -ready
            if ready == 0:
                return 0
        n = read(src, buf, want)
        if n < 0:
            if errno == EINTR:
                continue
            if ocs_would_block(errno):
                ready = _wait_readable(src, deadline_ms)
                if ready < 0:
                    return -ready
                if ready == 0:
                    return 0
                continue
            return errno
        if n == 0:
            ended[0] = 1
            return 0
        feed(ctx, buf, <size_t>n)
        off = 0
        while off < <size_t>n:
            w = write(dst, buf + off, <size_t>n - off)
            if w < 0:
                if errno == EINTR:
                    continue
                return errno
            off += <size_t>w
        done[0] += <uint64_t>n
    return 0


def copy_hashed(hasher, int src, int dst, long long length, buffer, double wait):
    """Up to ``length`` bytes from the stream ``src`` appended to ``dst`` and fed to ``hasher``.

    The pure core's contract (``ocistore._core_py.streamhash``); for this
    core's Sha256 and Sha512 the whole loop (read, hash, write, wait) runs
    without the GIL and the hasher's lock held. Any other hasher gets the
    pure core's loop.
    """
    cdef _NativeHasher h
    cdef ocs_feed_fn feed
    cdef void *ctx
    cdef size_t size
    cdef _AnyCtx copy
    cdef Py_buffer view
    cdef uint64_t done = 0
    cdef int ended = 0
    cdef int err = 0
    cdef int64_t wait_ms
    if length < 0 or wait < 0:
        raise ValueError(f"length and wait must be >= 0, not {length} and {wait}")
    h = _fed_natively(hasher, &feed, &ctx, &size)
    if h is None:
        return _copy_hashed_pure(hasher, src, dst, length, buffer, wait)
    try:
        PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE | PyBUF_WRITABLE)
    except BufferError:
        raise ValueError("buffer must be a writable buffer of at least one byte") from None
    try:
        if view.len <= 0:
            raise ValueError("buffer must be a writable buffer of at least one byte")
        wait_ms = <int64_t>min(wait * 1000.0, 9.0e15)
        with nogil:
            PyThread_acquire_lock(h._lock, WAIT_LOCK)
            memcpy(&copy, ctx, size)
            err = _copy_loop(src, dst, <uint8_t *>view.buf, <size_t>view.len, <uint64_t>length,
                             wait_ms, feed, &copy, &done, &ended)
            memcpy(ctx, &copy, size)
            PyThread_release_lock(h._lock)
    finally:
        PyBuffer_Release(&view)
    if err:
        raise OSError(err, _os.strerror(err))
    return <long long>done, bool(ended)
