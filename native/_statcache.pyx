# cython: language_level=3
"""Native twin of ocistore._core_py.statcache and .counter: the stat fast path.

Same classes, names, behaviour and rules as the pure core (read its module
docstring for why an entry may be trusted); what changes is the cost of a hit:

- the LRU is a dict per scope (digest string -> entry) plus an intrusive
  doubly-linked ring through the entries, with raw pointers (the dict owns
  the entries), so get / touch / evict / drop are O(1) without allocation;
- the shared counter is one atomic load from a ``MAP_SHARED`` mapping;
- the inotify queue check is one ``ioctl(FIONREAD)``; events are read and
  applied only when some are queued;
- a repository-scoped hit expands its link template in a stack buffer and
  calls ``stat(2)`` directly.

Everything runs with the GIL held (the kernel calls are non-blocking or a
``stat`` of a cached local path), which is what makes the queue check, the
application of events and the LRU one atomic step for every other thread.
The fallback is called like any Python callable.

Linux only for inotify; elsewhere ``StatCache`` raises ``OSError(ENOSYS)``
as the pure core does, and the storage layer validates every hit.

Never import anything above the core here: the layout, the key type and the
fallback's "absent" exception are passed in, as in the pure core.
"""

cimport cython
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from cpython.dict cimport PyDict_Next
from libc.errno cimport EAGAIN, EINTR, ENOENT, ENOTDIR, errno
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memchr

import functools as _functools
import logging as _logging
import os as _os
import string as _string
import weakref as _weakref

from ocistore._native._digest import parse_digest as _parse_digest

cdef extern from *:
    """
    #include <errno.h>
    #include <fcntl.h>
    #include <stdint.h>
    #include <string.h>
    #include <sys/file.h>
    #include <sys/ioctl.h>
    #include <sys/mman.h>
    #include <sys/stat.h>
    #include <unistd.h>
    #ifdef __linux__
    #include <sys/inotify.h>
    #define OCS_HAVE_INOTIFY 1
    #else
    #define OCS_HAVE_INOTIFY 0
    #define IN_MODIFY 0x00000002
    #define IN_MOVED_FROM 0x00000040
    #define IN_MOVED_TO 0x00000080
    #define IN_CREATE 0x00000100
    #define IN_DELETE 0x00000200
    #define IN_DELETE_SELF 0x00000400
    #define IN_MOVE_SELF 0x00000800
    #define IN_UNMOUNT 0x00002000
    #define IN_Q_OVERFLOW 0x00004000
    #define IN_IGNORED 0x00008000
    #define IN_ONLYDIR 0x01000000
    #define IN_MASK_ADD 0x20000000
    #endif

    static int ocs_ino_init(void) {
    #if OCS_HAVE_INOTIFY
        return inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    #else
        errno = ENOSYS;
        return -1;
    #endif
    }
    static int ocs_ino_add(int fd, const char *path, uint32_t mask) {
    #if OCS_HAVE_INOTIFY
        return inotify_add_watch(fd, path, mask);
    #else
        (void)fd; (void)path; (void)mask;
        errno = ENOSYS;
        return -1;
    #endif
    }
    static void ocs_ino_rm(int fd, int wd) {
    #if OCS_HAVE_INOTIFY
        (void)inotify_rm_watch(fd, wd);
    #else
        (void)fd; (void)wd;
    #endif
    }
    /* 1: events queued, 0: none, -1: error (errno set). */
    static int ocs_ino_pending(int fd) {
        int n = 0;
        if (ioctl(fd, FIONREAD, &n) != 0) return -1;
        return n > 0;
    }
    /* One event of a read buffer: fills wd, mask, name; returns the next offset. */
    static long ocs_ino_event(const char *buf, long off, long len,
                              int *wd, uint32_t *mask, const char **name) {
    #if OCS_HAVE_INOTIFY
        struct inotify_event ev;
        if (off + (long)sizeof ev > len) return -1;
        memcpy(&ev, buf + off, sizeof ev);
        if (off + (long)sizeof ev + (long)ev.len > len) return -1;
        *wd = ev.wd;
        *mask = ev.mask;
        *name = ev.len ? buf + off + sizeof ev : "";
        return off + (long)sizeof ev + (long)ev.len;
    #else
        (void)buf; (void)off; (void)len; (void)wd; (void)mask; (void)name;
        return -1;
    #endif
    }
    /* 1: a regular file of exactly `size` bytes (size < 0: any), 0: not, */
    static int ocs_file_matches(const char *path, long long size) {
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
        return size < 0 || (long long)st.st_size == size;
    }
    /* 1: something that is not a directory is at `path` (a link file). */
    static int ocs_not_dir(const char *path) {
        struct stat st;
        return stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
    }

    /* The shared counter: 8 bytes at the start of a MAP_SHARED file. */
    static uint64_t *ocs_counter_map(int fd) {
        struct stat st;
        void *p;
        if (fstat(fd, &st) != 0) return NULL;
        if (st.st_size < 8 && ftruncate(fd, 8) != 0) return NULL;
        p = mmap(NULL, 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        return p == MAP_FAILED ? NULL : (uint64_t *)p;
    }
    static void ocs_counter_unmap(uint64_t *p) { munmap((void *)p, 8); }
    static inline uint64_t ocs_counter_load(const uint64_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    /* Under flock, as the pure core does, so both cores can share a file. */
    static int ocs_counter_bump(int fd, uint64_t *p, uint64_t *out) {
        int rc;
        while ((rc = flock(fd, LOCK_EX)) != 0 && errno == EINTR) {}
        if (rc != 0) return -1;
        *out = __atomic_load_n(p, __ATOMIC_ACQUIRE) + 1;
        __atomic_store_n(p, *out, __ATOMIC_RELEASE);
        flock(fd, LOCK_UN);
        return 0;
    }
    """
    int IN_MODIFY, IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF
    int IN_UNMOUNT, IN_Q_OVERFLOW, IN_IGNORED, IN_ONLYDIR, IN_MASK_ADD
    int ocs_ino_init()
    int ocs_ino_add(int fd, const char *path, unsigned int mask)
    void ocs_ino_rm(int fd, int wd)
    int ocs_ino_pending(int fd)
    long ocs_ino_event(const char *buf, long off, long len, int *wd, unsigned int *mask, const char **name)
    int ocs_file_matches(const char *path, long long size)
    int ocs_not_dir(const char *path)
    uint64_t *ocs_counter_map(int fd)
    void ocs_counter_unmap(uint64_t *p)
    uint64_t ocs_counter_load(const uint64_t *p)
    int ocs_counter_bump(int fd, uint64_t *p, uint64_t *out)

cdef extern from "<unistd.h>":
    ssize_t c_read "read"(int fd, void *buf, size_t count)
    int c_close "close"(int fd)

log = _logging.getLogger("ocistore.statcache")

DEFAULT_CAPACITY = 16_384

cdef unsigned int ANCESTOR_MASK = IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_MASK_ADD
cdef unsigned int BLOB_MASK = ANCESTOR_MASK | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MODIFY
cdef unsigned int WATCH_GONE = IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT
cdef unsigned int LINK_MASK = BLOB_MASK | IN_CREATE
cdef unsigned int DATA_CHANGED = IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MODIFY | IN_CREATE
cdef enum:
    READ_SIZE = 65536
    PATH_BUF = 4096
    MIN_BLOB_WATCHES = 1024
    FORGET_ROOT = 1
    FORGET_WATCH = 2
    FORGET_UNHELD = 3
    FORGET_UNDER = 4
    MAX_PIECES = 16
    PIECE_LITERAL = 0
    PIECE_ALGORITHM = 1
    PIECE_ENCODED = 2


def _digest_key(value):
    """The default key: a digest string validated by the core, as a plain ``str``."""
    _parse_digest(value)
    return str(value)


# --- path templates ---------------------------------------------------------------------


@cython.final
cdef class _Template:
    """A path template over a digest (see the pure core's ``_Template``), expandable in C."""

    cdef readonly str text
    cdef readonly tuple pieces
    cdef readonly frozenset shared
    cdef list _literals                  # the encoded literals, kept alive for ``_lit``
    cdef const char *_lit[MAX_PIECES]
    cdef Py_ssize_t _lit_len[MAX_PIECES]
    cdef int _kind[MAX_PIECES]
    cdef Py_ssize_t _width[MAX_PIECES]   # PIECE_ENCODED: its first N characters, -1: all
    cdef int _count

    def __init__(self, text, what, *, bint file):
        cdef list pieces = []
        cdef bint whole = False
        cdef bytes raw
        if type(text) is not str or not text.startswith("/"):
            raise ValueError(f"{what} must be an absolute path template (str), got {text!r}")
        try:
            parsed = list(_string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"{what} {text!r} is not a format string: {exc}") from None
        for literal, field, spec, conversion in parsed:
            if literal:
                pieces.append(literal)
            if field is None:
                continue
            if field == "algorithm":
                code = -1
            elif field == "encoded":
                code = 0
            else:
                raise ValueError(f"{what} {text!r}: unknown field {{{field}}}")
            if conversion is not None:
                raise ValueError(f"{what} {text!r}: unknown field {{{field}}}")
            if spec:
                width = spec[1:]
                if field != "encoded" or spec[0] != "." or not width.isdigit() or int(width) < 1:
                    raise ValueError(f"{what} {text!r}: unsupported format {{{field}:{spec}}}")
                code = int(width)
            whole = whole or code == 0
            pieces.append(code)
        tail = pieces[len(pieces) - 1] if pieces else ""  # no wraparound in this module
        if not whole:
            raise ValueError(f"{what} {text!r} must contain {{encoded}}")
        if file and (type(tail) is not str or "/" not in tail or tail.endswith("/")):
            raise ValueError(f"{what} {text!r} must end in a literal file name after the fields")
        if len(pieces) > MAX_PIECES:
            raise ValueError(f"{what} {text!r} has more than {MAX_PIECES} pieces")
        self.text = text
        self.pieces = tuple(pieces)
        head = pieces[0] if type(pieces[0]) is str else ""
        top = head[:head.rfind("/")]
        shared = [""] + [top[:i] for i in range(1, len(top)) if top[i] == "/"]
        if top:
            shared.append(top)
        self.shared = frozenset(shared)
        self._literals = []
        self._count = len(pieces)
        for i, p in enumerate(pieces):
            self._width[i] = -1
            self._lit_len[i] = 0
            self._lit[i] = NULL
            if type(p) is str:
                raw = _os.fsencode(p)
                self._literals.append(raw)
                self._kind[i] = PIECE_LITERAL
                self._lit[i] = PyBytes_AS_STRING(raw)
                self._lit_len[i] = PyBytes_GET_SIZE(raw)
            elif p < 0:
                self._kind[i] = PIECE_ALGORITHM
            else:
                self._kind[i] = PIECE_ENCODED
                if p > 0:
                    self._width[i] = p

    cpdef str expand(self, str algorithm, str encoded):
        cdef list out = []
        for p in self.pieces:
            if type(p) is str:
                out.append(p)
            elif p < 0:
                out.append(algorithm)
            elif p:
                out.append(encoded[:p])
            else:
                out.append(encoded)
        return "".join(out)

    cdef Py_ssize_t fill(self, char *out, Py_ssize_t cap, const char *key, Py_ssize_t klen) noexcept:
        """Expand for digest ``key`` (ASCII ``alg:hex``) into ``out``; -1 if it does not fit."""
        cdef const char *colon = <const char *>memchr(key, b':', klen)
        cdef Py_ssize_t n = 0, m, i, alen
        cdef const char *src
        if colon == NULL:
            return -1
        alen = colon - key
        for i in range(self._count):
            if self._kind[i] == PIECE_LITERAL:
                src = self._lit[i]
                m = self._lit_len[i]
            elif self._kind[i] == PIECE_ALGORITHM:
                src = key
                m = alen
            else:
                src = colon + 1
                m = klen - alen - 1
                if self._width[i] >= 0 and self._width[i] < m:
                    m = self._width[i]
            if n + m >= cap:
                return -1
            memcpy(out + n, src, m)
            n += m
        out[n] = 0
        return n


# --- the shared counter ---------------------------------------------------------------


cdef class SharedCounter:
    """A 64-bit counter in a small file every process on the host maps (see the pure core)."""

    cdef int _fd
    cdef uint64_t *_ptr
    cdef readonly str path

    def __cinit__(self):
        self._fd = -1
        self._ptr = NULL

    def __init__(self, path):
        """Map the counter in file ``path`` (created if missing)."""
        self.path = _os.fspath(path)
        fd = _os.open(self.path, _os.O_RDWR | _os.O_CREAT | _os.O_CLOEXEC, 0o666)
        self._ptr = ocs_counter_map(fd)
        if self._ptr == NULL:
            err = errno
            _os.close(fd)
            raise OSError(err, _os.strerror(err), self.path)
        self._fd = fd

    def value(self):
        """The current value (one load from the shared map)."""
        if self._ptr == NULL:
            raise ValueError(f"counter {self.path} is closed")
        return ocs_counter_load(self._ptr)

    def bump(self):
        """Add one (under the file lock) and return the new value."""
        cdef uint64_t out = 0
        if self._ptr == NULL:
            raise ValueError(f"counter {self.path} is closed")
        if ocs_counter_bump(self._fd, self._ptr, &out) != 0:
            err = errno
            raise OSError(err, _os.strerror(err), self.path)
        return out

    def close(self):
        """Unmap and close; later calls raise ValueError. Closing twice is fine."""
        if self._ptr != NULL:
            ocs_counter_unmap(self._ptr)
            self._ptr = NULL
            c_close(self._fd)
            self._fd = -1

    def __dealloc__(self):
        if self._ptr != NULL:
            ocs_counter_unmap(self._ptr)
            c_close(self._fd)

    def __repr__(self):
        return f"SharedCounter({self.path!r})"


# --- entries and the LRU ring --------------------------------------------------------------


@cython.final
@cython.no_gc
cdef class _Entry:
    # Owned by its scope's table (and by its blob's chain head in by_blob);
    # the ring and chain links are borrowed pointers, unlinked before release.
    cdef object key
    cdef object desc
    cdef object blob
    cdef PyObject *table
    cdef PyObject *prev
    cdef PyObject *next
    cdef PyObject *bprev
    cdef PyObject *bnext


cdef inline _Entry _E(PyObject *p):
    return <_Entry>p


# --- the notifier: one inotify instance per process ------------------------------------------


cdef class StatCache


@cython.final
cdef class _Watch:
    cdef readonly str root
    cdef readonly object blob  # the entry key: a blob's digest, a link's driver path; None above
    cdef readonly str path
    cdef readonly str name     # the file whose changes drop ``blob``'s entries
    cdef readonly bint under   # above a link (blob None): gone drops what is below only


@cython.final
# Roots of collected caches, forgotten at the next poll or register: a weakref
# callback can run inside any allocation (a GC pass), even in the middle of the
# notifier's own bookkeeping, so it only queues.
cdef list _GONE = []


cdef class _Notifier:
    cdef public int fd
    cdef bint draining     # events read but not all applied yet: caches are bypassed
    cdef dict watches      # wd -> list[_Watch]
    cdef dict paths        # path -> wd
    cdef Py_ssize_t blob_watches
    cdef list caches       # weakrefs to StatCache
    cdef char *buf

    def __cinit__(self):
        self.fd = -1
        self.buf = NULL

    def __init__(self):
        self.watches = {}
        self.paths = {}
        self.caches = []
        self.buf = <char *>malloc(READ_SIZE)
        if self.buf == NULL:
            raise MemoryError()
        self._open()

    cdef _open(self):
        cdef int fd = ocs_ino_init()
        if fd < 0:
            err = errno
            raise OSError(err, f"inotify_init1: {_os.strerror(err)}")
        self.fd = fd

    def __dealloc__(self):
        if self.fd >= 0:
            c_close(self.fd)
        free(self.buf)

    cdef register(self, StatCache cache):
        self.reap()
        self.caches = [r for r in self.caches if r() is not None]
        self.caches.append(_weakref.ref(cache, _functools.partial(_cache_gone, cache.root)))

    cdef reap(self):
        """Forget the watches of caches collected since the last call."""
        while _GONE:
            self.gone(_GONE.pop())

    cdef gone(self, str root):
        """A cache was collected: drop its root's watches unless another cache still uses it."""
        self.caches = [r for r in self.caches if r() is not None]
        if not self._live(root):
            self._forget(FORGET_ROOT, root, None, None)

    cdef list _live(self, str root):
        cdef list out = []
        cdef StatCache cache
        for ref in self.caches:
            obj = ref()
            if obj is None:
                continue
            cache = <StatCache>obj
            if root is None or cache.root == root:
                out.append(cache)
        return out

    cdef int poll(self) except -1:
        """Apply every queued event if any is queued (one ioctl when none is)."""
        cdef int rc, err
        if self.fd < 0 or self.draining:
            return 0
        if _GONE:
            self.reap()
        rc = ocs_ino_pending(self.fd)
        if rc == 0:
            return 0
        if rc < 0:
            err = errno
            self.broken(OSError(err, _os.strerror(err)))
            return 0
        # Applying events allocates, and an allocation may run the garbage
        # collector and other threads: until every event read is applied,
        # lookups bypass the caches and no fill can start or finish (both
        # refresh first). Events bump the epoch of the caches of their root.
        self.draining = True
        try:
            self._drain()
        finally:
            self.draining = False
        return 0

    cdef _drain(self):
        cdef ssize_t n
        cdef long off
        cdef int wd, err
        cdef unsigned int mask
        cdef const char *name
        cdef list events
        while True:
            n = c_read(self.fd, self.buf, READ_SIZE)
            if n <= 0:
                err = errno
                if n < 0 and err != EAGAIN and err != EINTR:
                    self.broken(OSError(err, _os.strerror(err)))
                return
            events = []
            off = 0
            while off < n:
                off = ocs_ino_event(self.buf, off, n, &wd, &mask, &name)
                if off < 0:
                    break
                events.append((wd, mask, _os.fsdecode(<bytes>name)))
            for wd, mask, text in events:
                self._apply(wd, mask, text)

    cdef _apply(self, int wd, unsigned int mask, str name):
        cdef StatCache cache
        cdef _Watch w
        if mask & IN_Q_OVERFLOW:
            for cache in self._live(None):
                cache._reset()
            return
        watches = self.watches.get(wd)
        if not watches:
            return
        for w in list(watches):
            if w.blob is None:
                if not mask & WATCH_GONE:
                    continue
                if w.under:  # a directory above links only: drop what is below it
                    self._forget(FORGET_UNDER, w.root, None, None, w.path)
                    for cache in self._live(w.root):
                        cache._drop_under(w.path[len(w.root):] + "/")
                else:  # a directory above the blobs: trust nothing below
                    self._forget(FORGET_ROOT, w.root, None, None)
                    for cache in self._live(w.root):
                        cache._reset()
            elif mask & WATCH_GONE or (mask & DATA_CHANGED and name == w.name):
                if mask & WATCH_GONE:
                    self._forget(FORGET_WATCH, None, w, None)
                for cache in self._live(w.root):
                    cache._drop_blob(w.blob)

    cdef _forget(self, int mode, str root, _Watch watch, set held, str below=None,
                 set needed=None):
        """Remove the selected watches (they are added again by the next fill)."""
        cdef _Watch w
        cdef list watches, kept
        cdef str prefix = below + "/" if below is not None else None
        for path, wd in list(self.paths.items()):
            watches = self.watches.get(wd, [])
            kept = []
            for w in watches:
                if mode == FORGET_ROOT:
                    gone = w.root == root
                elif mode == FORGET_WATCH:
                    gone = w is watch
                elif mode == FORGET_UNDER:
                    gone = w.root == root and (w.path == below or w.path.startswith(prefix))
                elif w.blob is not None:
                    gone = (w.root, w.blob) not in held
                else:
                    gone = w.under and w.path not in needed
                if gone:
                    if w.blob is not None:
                        self.blob_watches -= 1
                else:
                    kept.append(w)
            if len(kept) == len(watches):
                continue
            for w in kept:
                if w.path == path:
                    break
            else:
                del self.paths[path]
            if kept:
                self.watches[wd] = kept
            else:
                self.watches.pop(wd, None)
                if self.fd >= 0:
                    ocs_ino_rm(self.fd, wd)

    cdef bint watch_blob(self, str root, str data, str alg, str encoded) except -1:
        """Watch the directory of the blob's data file (driver path ``data``) and every one above it."""
        cdef Py_ssize_t cut, end
        cdef str directory, name, path, above
        if self.fd < 0:
            return False
        cut = data.rfind("/")
        directory = data[:cut]
        name = data[cut + 1:]
        path = root + directory
        if path in self.paths:
            return True
        end = 0
        while end >= 0:  # "", then every directory down to the blob's parent
            above = root + directory[:end]
            if above not in self.paths and not self._add(above, root, None, ANCESTOR_MASK, "", False):
                return False
            end = directory.find("/", end + 1)
        if self.blob_watches >= self._limit():
            self._sweep()
        if not self._add(path, root, f"{alg}:{encoded}", BLOB_MASK, name, False):
            return False
        self.blob_watches += 1
        return True

    cdef bint watch_link(self, str root, str key, frozenset shared) except -1:
        """Watch the directory of link file ``root + key`` for it, and every directory above it."""
        cdef Py_ssize_t end, cut
        cdef str directory, name, suffix, above, path
        cdef bint under
        if self.fd < 0:
            return False
        cut = key.rfind("/")
        directory = key[:cut]
        name = key[cut + 1:]
        path = root + directory
        if self._has(path, key, False):
            return True
        end = 0
        while end < len(directory):  # "", then every directory down to the link's parent
            suffix = directory[:end]
            above = root + suffix
            under = suffix not in shared
            if not self._has(above, None, under) and not self._add(
                above, root, None, ANCESTOR_MASK, "", under
            ):
                return False
            end = directory.find("/", end + 1)
            if end < 0:
                end = len(directory)
        if self.blob_watches >= self._limit():
            self._sweep()
        if not self._add(path, root, key, LINK_MASK, name, False):
            return False
        self.blob_watches += 1
        return True

    cdef bint _has(self, str path, object blob, bint under) except -1:
        """Whether ``path`` has the watch of that role (an entry's, or an ancestor's)."""
        cdef _Watch w
        wd = self.paths.get(path)
        if wd is None:
            return False
        for w in self.watches.get(wd, ()):
            if w.path == path and w.blob == blob and (blob is not None or w.under == under):
                return True
        return False

    cdef Py_ssize_t _limit(self):
        cdef Py_ssize_t total = 0
        cdef StatCache cache
        for cache in self._live(None):
            total += cache._capacity
        return max(<Py_ssize_t>MIN_BLOB_WATCHES, 2 * total)

    cdef _sweep(self):
        """Remove the watches of entries no cache holds; fills in flight are refused (epoch).

        A directory above links stays watched while a held link is below it.
        """
        cdef StatCache cache
        cdef set held = set()
        cdef set needed = set()
        cdef Py_ssize_t end
        for cache in self._live(None):
            for blob in cache._by_blob:
                held.add((cache.root, blob))
                if blob.startswith("/"):  # a link's driver path (a digest has no '/')
                    end = blob.find("/", 1)
                    while end > 0:
                        needed.add(cache.root + blob[:end])
                        end = blob.find("/", end + 1)
        self._forget(FORGET_UNHELD, None, None, held, None, needed)
        for cache in self._live(None):
            cache.epoch += 1

    cdef bint _add(self, str path, str root, object blob, unsigned int mask, str name,
                   bint under) except -1:
        cdef bytes raw = _os.fsencode(path)
        cdef int wd = ocs_ino_add(self.fd, raw, mask)
        cdef _Watch w
        if wd < 0:
            err = errno
            if err != ENOENT and err != ENOTDIR:
                log.info("stat cache: cannot watch %s (%s): not caching blobs there",
                         path, _os.strerror(err))
            return False
        self.paths[path] = wd
        w = _Watch.__new__(_Watch)
        w.root = root
        w.blob = blob
        w.path = path
        w.name = name
        w.under = under
        self.watches.setdefault(wd, []).append(w)
        return True

    cdef broken(self, exc):
        cdef StatCache cache
        log.warning("stat cache: inotify failed (%s); validating every hit from now on", exc)
        self.close()
        for cache in self._live(None):
            cache._reset()

    cdef close(self):
        self.watches.clear()
        self.paths.clear()
        self.blob_watches = 0
        if self.fd >= 0:
            c_close(self.fd)
            self.fd = -1

    cdef after_fork(self):
        cdef StatCache cache
        self.close()
        try:
            self._open()
        except OSError as exc:
            log.warning("stat cache: no inotify after fork (%s)", exc)
        for cache in self._live(None):
            cache._reset()


cdef _Notifier _NOTIFIER = None


def _cache_gone(root, ref):
    _GONE.append(root)


cdef _Notifier _notifier():
    global _NOTIFIER
    if _NOTIFIER is None:
        _NOTIFIER = _Notifier()
    return _NOTIFIER


def _after_fork_in_child():
    if _NOTIFIER is not None:
        _NOTIFIER.after_fork()


if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_after_fork_in_child)


# --- the cache ---------------------------------------------------------------------------------


@cython.final
cdef class StatCache:
    """An LRU of blob descriptors for one filesystem root, kept true by inotify (see the pure core)."""

    cdef readonly str root
    cdef Py_ssize_t _capacity
    cdef dict _tables
    cdef dict _by_blob
    cdef _Entry _ring
    cdef Py_ssize_t _count
    cdef bint _busy        # inside a change that may allocate: lookups bypass the cache
    cdef public unsigned long long epoch
    cdef unsigned long long _hits, _misses, _fills, _invalidations, _evictions, _resets
    cdef SharedCounter _counter
    cdef uint64_t *_counter_ptr
    cdef uint64_t _seen
    cdef _Notifier _notifier
    cdef bytes _root_bytes
    cdef _Template _blob_path
    cdef object _key
    cdef object _key_type
    cdef object _missing
    cdef object __weakref__

    def __init__(self, root, blob_path, *, key=_digest_key, missing=LookupError,
                 capacity=DEFAULT_CAPACITY, counter_path=None):
        """The cache of ``root``'s files at ``blob_path``: ``capacity`` entries at most."""
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        if not callable(key):
            raise TypeError(f"key must be callable, got {key!r}")
        if not (isinstance(missing, type) and issubclass(missing, BaseException)):
            raise TypeError(f"missing must be an exception type, got {missing!r}")
        self._blob_path = _Template(blob_path, "blob_path", file=True)
        self._key = key
        self._key_type = key if isinstance(key, type) else str
        self._missing = missing
        self.root = _os.path.abspath(_os.fspath(root))
        self._root_bytes = _os.fsencode(self.root)
        self._capacity = capacity
        self._tables = {}
        self._by_blob = {}
        self._ring = _Entry.__new__(_Entry)
        self._ring.prev = self._ring.next = <PyObject *>self._ring
        self._count = 0
        self.epoch = 0
        self._notifier = _notifier()
        self._notifier.register(self)
        if counter_path is not None:
            self._counter = SharedCounter(counter_path)
            self._counter_ptr = self._counter._ptr
            self._seen = ocs_counter_load(self._counter_ptr)

    # --- public -----------------------------------------------------------------------

    @property
    def capacity(self):
        return self._capacity

    @property
    def watching(self):
        """Whether inotify is working (False after a failure: nothing is cached then)."""
        return self._notifier.fd >= 0

    def scope(self, fallback, *, scope="", link=None):
        """The statter of ``scope`` ("" is the global blob store) in front of ``fallback``."""
        cdef _Template template = None if link is None else _Template(link, "link template", file=False)
        table = self._tables.get(scope)
        if table is None:
            table = self._tables[scope] = {}
        return StatCacheScope._make(self, table, fallback, scope, template)

    def links(self, read, *, scope="links"):
        """The cache of link files read by ``read(driver_path)``, in ``scope``'s entries."""
        table = self._tables.get(scope)
        if table is None:
            table = self._tables[scope] = {}
        return LinkCacheScope._make(self, table, read, scope)

    def clear(self):
        """Drop every entry (and refuse the fills in flight)."""
        self._reset()

    def stats(self):
        """Entry count and the counters: hits, misses, fills, invalidations, evictions, resets."""
        return {
            "entries": self._count,
            "capacity": self._capacity,
            "hits": self._hits,
            "misses": self._misses,
            "fills": self._fills,
            "invalidations": self._invalidations,
            "evictions": self._evictions,
            "resets": self._resets,
            "watching": int(self.watching),
        }

    def __len__(self):
        return self._count

    def close(self):
        """Drop every entry and unmap the counter (the cache keeps working, uncached)."""
        self._reset()
        if self._counter is not None:
            self._counter_ptr = NULL
            self._counter.close()
            self._counter = None

    def __dealloc__(self):
        # Entries hold borrowed pointers only; the tables own them.
        self._count = 0

    def __repr__(self):
        return f"<StatCache {self.root!r} {self._count}/{self._capacity}>"

    # --- internals (GIL held throughout) ------------------------------------------------------

    cdef inline int _refresh(self) except -1:
        """Apply what changed since the last request; 0 when the cache must be bypassed."""
        cdef uint64_t value
        if self._busy or self._notifier.draining:
            return 0
        if self._counter_ptr != NULL:
            value = ocs_counter_load(self._counter_ptr)
            if value != self._seen:
                self._seen = value
                self._reset()
        if self._notifier.fd >= 0:
            self._notifier.poll()
        return not self._notifier.draining

    cdef _reset(self):
        # Allocation-free (dict.clear and entry releases run no Python code).
        cdef Py_ssize_t pos = 0
        cdef PyObject *key
        cdef PyObject *table
        self.epoch += 1
        if self._count:
            self._resets += 1
        self._busy = True
        self._ring.prev = self._ring.next = <PyObject *>self._ring
        self._count = 0
        while PyDict_Next(self._tables, &pos, &key, &table):
            (<dict>table).clear()
        self._by_blob.clear()
        self._busy = False

    cdef _drop_blob(self, blob):
        cdef PyObject *head
        self.epoch += 1
        self._busy = True
        try:
            while True:
                head = PyDict_GetItem(self._by_blob, blob)
                if head == NULL:
                    return
                self._remove(_E(head))
                self._invalidations += 1
        finally:
            self._busy = False

    cdef _drop_under(self, str prefix):
        """Drop the link entries whose driver path starts with ``prefix`` (a directory + '/')."""
        self.epoch += 1
        for key in [k for k in self._by_blob if k.startswith(prefix)]:
            self._drop_blob(key)

    cdef inline void _touch(self, _Entry e):
        cdef _Entry ring = self._ring
        if ring.next == <PyObject *>e:
            return
        _E(e.prev).next = e.next
        _E(e.next).prev = e.prev
        e.next = ring.next
        e.prev = <PyObject *>ring
        _E(ring.next).prev = <PyObject *>e
        ring.next = <PyObject *>e

    cdef _remove(self, _Entry e):
        # ``e`` is a counted local reference: safe while the table lets go of it.
        _E(e.prev).next = e.next
        _E(e.next).prev = e.prev
        e.prev = e.next = <PyObject *>e
        if e.bprev != NULL:
            _E(e.bprev).bnext = e.bnext
        elif e.bnext != NULL:
            self._by_blob[e.blob] = _E(e.bnext)
        else:
            self._by_blob.pop(e.blob, None)
        if e.bnext != NULL:
            _E(e.bnext).bprev = e.bprev
        e.bprev = e.bnext = NULL
        if e.table != NULL:
            (<dict>e.table).pop(e.key, None)
            e.table = NULL
        self._count -= 1

    cdef _forget_key(self, dict table, object key):
        """Drop ``key``'s entry of ``table``; the epoch moves, so a fill in flight is not stored."""
        cdef PyObject *p
        self.epoch += 1
        p = PyDict_GetItem(table, key)
        if p != NULL:
            self._remove(_E(p))

    cdef _insert(self, dict table, object key, object desc, object blob=None):
        cdef PyObject *old
        cdef PyObject *head
        cdef _Entry e, ring = self._ring
        if blob is None:
            blob = str(desc.digest)
        e = _Entry.__new__(_Entry)
        e.key = key
        e.desc = desc
        e.blob = blob
        e.prev = e.next = <PyObject *>e
        self._busy = True  # the dict stores below may allocate
        try:
            old = PyDict_GetItem(table, key)
            if old != NULL:
                self._remove(_E(old))
            e.table = <PyObject *>table
            table[key] = e
            head = PyDict_GetItem(self._by_blob, blob)
            if head != NULL:
                _E(head).bprev = <PyObject *>e
                e.bnext = head
            self._by_blob[blob] = e
            e.next = ring.next
            e.prev = <PyObject *>ring
            _E(ring.next).prev = <PyObject *>e
            ring.next = <PyObject *>e
            self._count += 1
            self._fills += 1
            while self._count > self._capacity:
                self._remove(_E(ring.prev))
                self._evictions += 1
        finally:
            self._busy = False

    cdef bint _watch(self, object dgst) except -1:
        cdef str text = str(dgst)
        cdef Py_ssize_t colon = text.find(":")
        cdef str alg = text[:colon]
        cdef str enc = text[colon + 1:]
        return self._notifier.watch_blob(self.root, self._blob_path.expand(alg, enc), alg, enc)

    cdef bint _data_matches(self, object blob, long long size) except -1:
        cdef str text = str(blob)
        cdef Py_ssize_t colon = text.find(":")
        path = _os.fsencode(self.root + self._blob_path.expand(text[:colon], text[colon + 1:]))
        return ocs_file_matches(path, size) == 1


@cython.final
cdef class StatCacheScope:
    """One scope of a :class:`StatCache`: ``stat``, ``stat_many``, ``set_descriptor``, ``clear``."""

    cdef StatCache _cache
    cdef dict _table
    cdef readonly object fallback
    cdef readonly str scope
    cdef _Template _link

    @staticmethod
    cdef StatCacheScope _make(StatCache cache, dict table, fallback, str scope, _Template link):
        cdef StatCacheScope self = StatCacheScope.__new__(StatCacheScope)
        self._cache = cache
        self._table = table
        self.fallback = fallback
        self.scope = scope
        self._link = link
        return self

    def __init__(self, *args, **kwargs):
        raise TypeError("StatCacheScope objects come from StatCache.scope()")

    def stat(self, digest):
        """The value of ``digest`` in this scope; the fallback's errors (or the key's) as they are."""
        cdef StatCache cache = self._cache
        cdef _Entry e
        cdef object kind = type(digest)
        if kind is not str and kind is not cache._key_type:
            digest = cache._key(digest)  # validated (or raises); then looked up as any key
        if not cache._refresh():
            return self.fallback.stat(cache._key(digest))
        e = self._hit(digest)
        if e is not None:
            return e.desc
        return self._miss(digest)

    def stat_many(self, digests):
        """The descriptors of ``digests`` that exist in this scope (misses left out)."""
        cdef StatCache cache = self._cache
        cdef dict found = {}
        cdef list pending = []
        cdef _Entry e
        cdef bint usable = cache._refresh()
        key = cache._key
        key_type = cache._key_type
        for d in digests:
            kind = type(d)
            if kind is not str and kind is not key_type:
                d = key(d)
            e = self._hit(d) if usable else None
            if e is None:
                pending.append(d)
            else:
                found[e.key] = e.desc
        if not pending:
            return found
        misses = list(dict.fromkeys([key(d) for d in pending]))
        cache._misses += len(misses)
        usable = cache._refresh()
        watched = [usable and cache._watch(m) for m in misses]
        token = cache.epoch
        many = getattr(self.fallback, "stat_many", None)
        if many is not None:
            got = dict(many(misses))
        else:
            got = {}
            missing = cache._missing
            for m in misses:
                try:
                    got[m] = self.fallback.stat(m)
                except missing:
                    continue
        for m, w in zip(misses, watched):
            desc = got.get(m)
            if desc is not None:
                found[m] = desc
                self._fill(m, desc, token, w)
        return found

    def set_descriptor(self, digest, desc):
        """Set in the fallback; the entry here is dropped and refilled by the next stat."""
        dgst = self._cache._key(digest)
        try:
            self.fallback.set_descriptor(dgst, desc)
        finally:
            self._forget(dgst)

    def clear(self, digest):
        """Clear in the fallback (which deletes a repository's link), then here."""
        dgst = self._cache._key(digest)
        try:
            self.fallback.clear(dgst)
        finally:
            self._forget(dgst)

    # --- internals ------------------------------------------------------------------------

    cdef _Entry _hit(self, object key):
        cdef PyObject *p = PyDict_GetItem(self._table, key)
        cdef _Entry e
        if p == NULL:
            return None
        e = _E(p)
        if self._link is None or self._link_ok(e.key):
            self._cache._touch(e)
            self._cache._hits += 1
            return e
        self._cache._remove(e)
        self._cache._invalidations += 1
        return None

    cdef bint _link_ok(self, object key) except -1:
        # The link template expanded in a stack buffer; keys are ASCII digests.
        cdef char path[PATH_BUF]
        cdef Py_ssize_t klen
        cdef const char *k = PyUnicode_AsUTF8AndSize(key, &klen)
        if self._link.fill(path, PATH_BUF, k, klen) < 0:
            return False
        return ocs_not_dir(path) == 1

    cdef object _miss(self, object digest):
        cdef StatCache cache = self._cache
        cdef bint watched
        cdef unsigned long long token
        dgst = cache._key(digest)
        cache._misses += 1
        watched = cache._refresh() and cache._watch(dgst)
        token = cache.epoch
        desc = self.fallback.stat(dgst)
        self._fill(dgst, desc, token, watched)
        return desc

    cdef _fill(self, object key, object desc, unsigned long long token, bint watched):
        cdef StatCache cache = self._cache
        if not cache._refresh() or cache.epoch != token:
            return
        blob = desc.digest
        if blob != key:
            if not (cache._watch(blob) and cache._data_matches(blob, desc.size)):
                return
            if not cache._refresh() or cache.epoch != token:
                return
        elif not watched:
            return
        cache._insert(self._table, key, desc)

    cdef _forget(self, object dgst):
        self._cache._forget_key(self._table, dgst)

    def __repr__(self):
        return f"<StatCacheScope {self.scope!r} of {self._cache!r}>"


cdef _check_link_path(object path):
    """A driver path below the root: absolute, no empty, ``.`` or ``..`` component."""
    if type(path) is not str or not path.startswith("/") or "\0" in path:
        raise ValueError(f"link path must be an absolute driver path, got {path!r}")
    for part in path[1:].split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"link path must be an absolute driver path, got {path!r}")


@cython.final
cdef class LinkCacheScope:
    """Link files of a :class:`StatCache`'s root, read through ``fallback`` (see the pure core)."""

    cdef StatCache _cache
    cdef dict _table
    cdef readonly object fallback
    cdef readonly str scope

    @staticmethod
    cdef LinkCacheScope _make(StatCache cache, dict table, fallback, str scope):
        cdef LinkCacheScope self = LinkCacheScope.__new__(LinkCacheScope)
        self._cache = cache
        self._table = table
        self.fallback = fallback
        self.scope = scope
        return self

    def __init__(self, *args, **kwargs):
        raise TypeError("LinkCacheScope objects come from StatCache.links()")

    def read(self, path):
        """What ``fallback(path)`` returns for link file ``path`` (a driver path); its errors."""
        cdef StatCache cache = self._cache
        cdef PyObject *p
        cdef _Entry e
        cdef bint watched
        cdef unsigned long long token
        if not cache._refresh():
            return self.fallback(path)
        if type(path) is str:
            p = PyDict_GetItem(self._table, path)
            if p != NULL:
                e = _E(p)
                cache._touch(e)
                cache._hits += 1
                return e.desc
        _check_link_path(path)
        cache._misses += 1
        watched = cache._refresh() and cache._notifier.watch_link(
            cache.root, path, cache._blob_path.shared)
        token = cache.epoch
        value = self.fallback(path)
        if watched and cache._refresh() and cache.epoch == token:
            cache._insert(self._table, path, value, path)
        return value

    def forget(self, path):
        """Drop ``path``'s entry (after writing the link: the next read asks ``fallback``)."""
        self._cache._forget_key(self._table, path)

    def __repr__(self):
        return f"<LinkCacheScope {self.scope!r} of {self._cache!r}>"
