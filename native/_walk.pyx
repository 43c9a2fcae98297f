# cython: language_level=3
"""Listing a directory tree and reading many small files in one call (native twin of
``ocistore._core_py.walk``).

``walk_files`` lists every file below a directory with ``openat``/``getdents64``
and one ``fstatat`` per file (directories are known by their entry type, never
statted), ``read_files`` reads whole files and ``remove_paths`` unlinks files
or removes directories; all do their system calls with the GIL released and
build the Python results once at the end, so several threads list, read and
remove in parallel.

Same results and errors as the pure core (pinned by tests/test_walk_core.py).
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdlib cimport free, malloc

cdef extern from "Python.h":
    # os.fsdecode and os.fsencode at C speed: the filesystem encoding, surrogateescape.
    object PyUnicode_DecodeFSDefaultAndSize(const char *s, Py_ssize_t size)
    object PyUnicode_EncodeFSDefault(object unicode)

import os as _os

cdef extern from *:
    """
    #include <dirent.h>
    #include <errno.h>
    #include <fcntl.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/stat.h>
    #include <sys/syscall.h>
    #include <unistd.h>

    typedef struct {
        char *text;            /* relative paths (walk) or file contents (read), back to back */
        size_t used, cap;
        long long *nums;       /* walk: (end of path in text, mtime ns, size) per file;
                                  read: (end of content in text, found) per file */
        size_t count, numcap;  /* records, and room for that many */
        int per;               /* longs per record */
        int err;               /* errno of the failure that stopped the work, or 0 */
        const char *leaf;      /* walk: a directory holding a regular file of this name is
                                  taken to hold only that file (NULL: list every directory) */
    } ocs_acc;

    static int ocs_room(ocs_acc *a, size_t more) {
        if (a->used + more <= a->cap) return 0;
        size_t cap = a->cap ? a->cap : 65536;
        while (cap < a->used + more) cap *= 2;
        char *p = (char *)realloc(a->text, cap);
        if (p == NULL) { a->err = ENOMEM; return -1; }
        a->text = p; a->cap = cap;
        return 0;
    }

    static long long *ocs_record(ocs_acc *a) {
        if (a->count == a->numcap) {
            size_t cap = a->numcap ? a->numcap * 2 : 1024;
            long long *p = (long long *)realloc(a->nums, cap * a->per * sizeof(long long));
            if (p == NULL) { a->err = ENOMEM; return NULL; }
            a->nums = p; a->numcap = cap;
        }
        return a->nums + a->per * a->count++;
    }

    /* A file found: its path (len bytes of text) and its mtime and size in the results. */
    static int ocs_found(ocs_acc *a, const char *text, size_t len, const struct stat *st) {
        if (ocs_room(a, len) != 0) return -1;
        memcpy(a->text + a->used, text, len);
        a->used += len;
        long long *r = ocs_record(a);
        if (r == NULL) return -1;
        r[0] = (long long)a->used;
        r[1] = (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
        r[2] = (long long)st->st_size;
        return 0;
    }

    static void ocs_acc_init(ocs_acc *a) { memset(a, 0, sizeof *a); }

    static void ocs_acc_free(ocs_acc *a) { free(a->text); free(a->nums); }

    static int ocs_gone(int err) { return err == ENOENT || err == ENOTDIR; }

    /* One entry of a directory being read: its name and type (DT_UNKNOWN if not known). */
    typedef struct { const char *name; unsigned char type; } ocs_entry;

    #if defined(__linux__) && defined(SYS_getdents64)
    /* Linux: getdents64 straight into a buffer, with no DIR (whose fdopendir costs an
       fstat and two fcntl calls per directory). */
    struct ocs_dirent64 { unsigned long long ino; long long off; unsigned short reclen;
                          unsigned char type; char name[]; };
    typedef struct { int fd; char buf[32768]; long n, pos; } ocs_dir;
    static int ocs_opendir(ocs_dir *d, int fd) { d->fd = fd; d->n = d->pos = 0; return 0; }
    static int ocs_next(ocs_dir *d, ocs_entry *e) {  /* 1: an entry, 0: the end, -1: errno */
        if (d->pos >= d->n) {
            long n = syscall(SYS_getdents64, d->fd, d->buf, sizeof d->buf);
            if (n < 0) return -1;
            if (n == 0) return 0;
            d->n = n; d->pos = 0;
        }
        struct ocs_dirent64 *de = (struct ocs_dirent64 *)(d->buf + d->pos);
        d->pos += de->reclen;
        e->name = de->name; e->type = de->type;
        return 1;
    }
    static void ocs_closedir(ocs_dir *d) { close(d->fd); }
    #else
    typedef struct { int fd; DIR *dir; } ocs_dir;
    static int ocs_opendir(ocs_dir *d, int fd) {
        d->fd = fd; d->dir = fdopendir(fd);
        if (d->dir == NULL) { close(fd); return -1; }
        return 0;
    }
    static int ocs_next(ocs_dir *d, ocs_entry *e) {
        errno = 0;
        struct dirent *de = readdir(d->dir);
        if (de == NULL) return errno ? -1 : 0;
        e->name = de->d_name;
    #ifdef DT_UNKNOWN
        e->type = de->d_type;
    #else
        e->type = 0;
    #endif
        return 1;
    }
    static void ocs_closedir(ocs_dir *d) { closedir(d->dir); }
    #endif

    /* Every file below the open directory dfd; rel (length rlen, room cap) is its path
       relative to the top, empty for the top itself. Takes ownership of dfd. */
    static int ocs_walk_dir(ocs_acc *a, int dfd, char *rel, size_t rlen, size_t cap) {
        ocs_dir *d = (ocs_dir *)malloc(sizeof(ocs_dir));
        if (d == NULL) { a->err = ENOMEM; close(dfd); return -1; }
        if (ocs_opendir(d, dfd) != 0) { a->err = errno; free(d); return -1; }
        int rc = 0;
        for (;;) {
            ocs_entry e;
            int got = ocs_next(d, &e);
            if (got < 0) { a->err = errno; rc = -1; break; }
            if (got == 0) break;
            const char *name = e.name;
            if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
            size_t nlen = strlen(name);
            size_t len = rlen ? rlen + 1 + nlen : nlen;
            if (len + 1 > cap) { a->err = ENAMETOOLONG; rc = -1; break; }
            int is_dir = 0;
            struct stat st;
    #ifdef DT_DIR
            if (e.type == DT_DIR) is_dir = 1;
            else if (e.type == DT_UNKNOWN)
    #endif
            {
                if (fstatat(d->fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                    if (ocs_gone(errno)) continue;
                    a->err = errno; rc = -1; break;
                }
                is_dir = S_ISDIR(st.st_mode);
            }
            if (rlen) rel[rlen] = '/';
            memcpy(rel + (rlen ? rlen + 1 : 0), name, nlen + 1);
            if (is_dir && a->leaf != NULL) {
                size_t llen = strlen(a->leaf);
                if (len + 1 + llen + 1 > cap) { a->err = ENAMETOOLONG; rc = -1; break; }
                char probe[512];
                if (nlen + 1 + llen + 1 > sizeof probe) { a->err = ENAMETOOLONG; rc = -1; break; }
                memcpy(probe, name, nlen);
                probe[nlen] = '/';
                memcpy(probe + nlen + 1, a->leaf, llen + 1);
                if (fstatat(d->fd, probe, &st, 0) == 0 && S_ISREG(st.st_mode)) {
                    rel[len] = '/';
                    memcpy(rel + len + 1, a->leaf, llen + 1);
                    if (ocs_found(a, rel, len + 1 + llen, &st) != 0) { rc = -1; break; }
                    rel[rlen] = 0;
                    continue;
                }
                /* no such regular file (or it cannot be statted): list it like any other */
            }
            if (is_dir) {
                int sub = openat(d->fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                if (sub < 0) {
                    rel[rlen] = 0;
                    if (ocs_gone(errno)) continue;
                    a->err = errno; rc = -1; break;
                }
                if (ocs_walk_dir(a, sub, rel, len, cap) != 0) { rc = -1; break; }
                rel[rlen] = 0;
                continue;
            }
            if (fstatat(d->fd, name, &st, 0) != 0) {  /* follows a symlink, as the pure core */
                rel[rlen] = 0;
                if (ocs_gone(errno)) continue;
                a->err = errno; rc = -1; break;
            }
            if (ocs_found(a, rel, len, &st) != 0) { rc = -1; break; }
            rel[rlen] = 0;
        }
        ocs_closedir(d);
        free(d);
        return rc;
    }

    /* 0, or -1 with a->err set (a->err == ENOENT/ENOTDIR: top is missing or no directory). */
    static int ocs_walk(ocs_acc *a, const char *top, const char *leaf) {
        char rel[8192];
        rel[0] = 0;
        a->per = 3;
        a->leaf = leaf;
        int fd = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) { a->err = errno; return -1; }
        return ocs_walk_dir(a, fd, rel, 0, sizeof rel);
    }

    /* Each file whole; a missing one (or a directory) is recorded as not found. */
    static int ocs_read(ocs_acc *a, char **paths, size_t n) {
        a->per = 2;
        for (size_t i = 0; i < n; i++) {
            long long *r = ocs_record(a);
            if (r == NULL) return -1;
            r[1] = 0;
            int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                if (ocs_gone(errno) || errno == EISDIR) { r[0] = (long long)a->used; continue; }
                a->err = errno; return -1;
            }
            /* No fstat to size the buffer: the files read this way are small (links,
               manifests), so a first read of 16 KiB takes most whole, and a directory
               is known by read's EISDIR (then it counts as missing). */
            size_t start = a->used, want = 16384;
            int isdir = 0;
            for (;;) {
                if (ocs_room(a, want) != 0) { close(fd); return -1; }
                ssize_t got = read(fd, a->text + a->used, want);
                if (got < 0) {
                    if (errno == EINTR) continue;
                    if (errno == EISDIR) { isdir = 1; break; }
                    a->err = errno; close(fd); return -1;
                }
                if (got == 0) break;
                a->used += (size_t)got;
                want = 65536;
            }
            close(fd);
            if (isdir) a->used = start;
            r[0] = (long long)a->used;
            r[1] = !isdir;
        }
        return 0;
    }

    static void ocs_remove(char **paths, size_t n, int directories, int *errs) {
        for (size_t i = 0; i < n; i++)
            errs[i] = (directories ? rmdir(paths[i]) : unlink(paths[i])) == 0 ? 0 : errno;
    }
    """
    ctypedef struct ocs_acc:
        char *text
        size_t used
        long long *nums
        size_t count
        int err
    void ocs_acc_init(ocs_acc *a) nogil
    int ocs_walk(ocs_acc *a, const char *top, const char *leaf) nogil
    int ocs_read(ocs_acc *a, char **paths, size_t n) nogil
    void ocs_acc_free(ocs_acc *a) nogil
    void ocs_remove(char **paths, size_t n, int directories, int *errs) nogil


cdef _raise(int err, object path):
    raise OSError(err, _os.strerror(err), path)


def walk_files(top, leaf=None):
    """Every file below directory ``top``: ``(relative path, mtime in ns, size)``, in no order.

    Relative paths use ``/``. Directories are entered, never reported, and
    never followed through a symlink; a file's size and mtime are those of
    what it names (a symlink is followed). Entries that vanish while the
    walk runs are skipped. ``top`` missing or not a directory raises
    FileNotFoundError or NotADirectoryError; other failures raise OSError.

    With ``leaf`` (a file name), a directory below ``top`` that holds a regular
    file of that name is taken to hold only it: the file is statted by its
    path and the directory is not listed (what else it holds is not reported).
    """
    cdef bytes btop = _os.fsencode(top)
    cdef const char *ctop = btop
    cdef bytes bleaf = _os.fsencode(leaf) if leaf is not None else b""
    cdef const char *cleaf = NULL
    if leaf is not None:
        cleaf = bleaf
    cdef ocs_acc acc
    cdef int rc
    cdef size_t i, start = 0, end
    ocs_acc_init(&acc)
    try:
        with nogil:
            rc = ocs_walk(&acc, ctop, cleaf)
        if rc != 0:
            _raise(acc.err, top)
        out = []
        for i in range(acc.count):
            end = <size_t>acc.nums[3 * i]
            rel = PyUnicode_DecodeFSDefaultAndSize(acc.text + start, end - start)
            out.append((rel, acc.nums[3 * i + 1], acc.nums[3 * i + 2]))
            start = end
        return out
    finally:
        ocs_acc_free(&acc)


cdef list _encoded(paths):
    """Each path as bytes, as ``os.fsencode`` gives it (str paths without a Python call)."""
    return [PyUnicode_EncodeFSDefault(p) if type(p) is str else _os.fsencode(p) for p in paths]


def read_files(paths):
    """The whole content of each file of ``paths``, in order; None for one that is missing.

    A path that names a directory, or under a missing directory, counts as
    missing; any other failure raises OSError naming the path.
    """
    cdef list encoded = _encoded(paths)
    cdef size_t n = len(encoded), i, start = 0, end
    cdef char **cpaths = <char **>malloc((n if n else 1) * sizeof(char *))
    cdef ocs_acc acc
    cdef int rc
    if cpaths == NULL:
        raise MemoryError()
    ocs_acc_init(&acc)
    try:
        for i in range(n):
            cpaths[i] = <char *>(<bytes>encoded[i])
        with nogil:
            rc = ocs_read(&acc, cpaths, n)
        if rc != 0:
            _raise(acc.err, paths[acc.count - 1] if acc.count else None)
        out = []
        for i in range(n):
            end = <size_t>acc.nums[2 * i]
            out.append(PyBytes_FromStringAndSize(acc.text + start, end - start) if acc.nums[2 * i + 1] else None)
            start = end
        return out
    finally:
        free(cpaths)
        ocs_acc_free(&acc)


def remove_paths(paths, bint directories=False):
    """Unlink each file of ``paths`` (``directories``: rmdir each directory), in order.

    One errno per path, 0 where it was removed; nothing raises. The system
    calls run with the GIL released, so threads removing in parallel do not
    wait for each other (or for a busy interpreter) between two removals.
    """
    cdef list encoded = _encoded(paths)
    cdef size_t n = len(encoded), i
    cdef char **cpaths = <char **>malloc((n if n else 1) * sizeof(char *))
    cdef int *errs = <int *>malloc((n if n else 1) * sizeof(int))
    try:
        if cpaths == NULL or errs == NULL:
            raise MemoryError()
        for i in range(n):
            cpaths[i] = <char *>(<bytes>encoded[i])
        with nogil:
            ocs_remove(cpaths, n, directories, errs)
        return [errs[i] for i in range(n)]
    finally:
        free(cpaths)
        free(errs)
