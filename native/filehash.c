/* See filehash.h. */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "filehash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#define OCS_POSIX 1
#endif

#if defined(OCS_POSIX)

static int ocs_read_range(int fd, uint64_t offset, uint64_t length, ocs_feed_fn feed, void *ctx)
{
    size_t cap = length < OCS_READ_BUFFER ? (size_t)length : OCS_READ_BUFFER;
    char *buf;
    if (length == 0)
        return 0;
    buf = malloc(cap);
    if (buf == NULL)
        return ENOMEM;
    while (length) {
        size_t want = length < cap ? (size_t)length : cap;
        ssize_t got = pread(fd, buf, want, (off_t)offset);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            int err = errno;
            free(buf);
            return err;
        }
        if (got == 0) {
            free(buf);
            return OCS_FILE_SHORT;
        }
        feed(ctx, buf, (size_t)got);
        offset += (uint64_t)got;
        length -= (uint64_t)got;
    }
    free(buf);
    return 0;
}

/* --- the SIGBUS guard ---------------------------------------------------------
 *
 * A thread that hashes a mapped window claims a slot: its own thread id, the
 * window's bounds and where to jump back to. Only the owner writes a slot's
 * fields, and only the owner's handler reads them (the slot is matched by
 * thread id first), so the handler needs nothing but atomic loads: it is
 * async-signal-safe. A fault in a thread without a slot, or outside its
 * window, goes to the disposition that was there before ours. */

#define OCS_GUARD_SLOTS 256

typedef struct {
    uintptr_t owner; /* the thread's id, 0 when free (atomic) */
    const char *lo, *hi;
    sigjmp_buf *jump;
} ocs_guard_slot;

static ocs_guard_slot ocs_slots[OCS_GUARD_SLOTS];
static struct sigaction ocs_prev_bus;
static pthread_once_t ocs_install_once = PTHREAD_ONCE_INIT;
static int ocs_installed; /* our handler became the disposition (written once, under the once) */
static unsigned long ocs_faults; /* atomic */
static int ocs_test_fd = -1;     /* atomic; see ocs_hash_fd_test_truncate */
static int64_t ocs_test_size;

static uintptr_t ocs_self(void) { return (uintptr_t)pthread_self(); }

static void ocs_bus_handler(int sig, siginfo_t *si, void *uc)
{
    if (si != NULL && si->si_code > 0) { /* made by the kernel for an access */
        uintptr_t me = ocs_self();
        const char *addr = (const char *)si->si_addr;
        size_t i;
        for (i = 0; i < OCS_GUARD_SLOTS; i++) {
            if (__atomic_load_n(&ocs_slots[i].owner, __ATOMIC_ACQUIRE) != me)
                continue;
            ocs_guard_slot *s = &ocs_slots[i];
            if (s->jump != NULL && addr >= s->lo && addr < s->hi)
                siglongjmp(*s->jump, 1);
        }
    }
    /* Not ours: what would have happened without this handler. */
    if (ocs_prev_bus.sa_flags & SA_SIGINFO) {
        if (ocs_prev_bus.sa_sigaction != NULL) {
            ocs_prev_bus.sa_sigaction(sig, si, uc);
            return;
        }
    } else if (ocs_prev_bus.sa_handler != SIG_DFL && ocs_prev_bus.sa_handler != SIG_IGN) {
        ocs_prev_bus.sa_handler(sig);
        return;
    }
    /* The default action (a synchronous fault cannot be ignored either): put it back;
     * a fault happens again on return and ends the process, a sent signal is resent. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGBUS, &dfl, NULL);
    if (si == NULL || si->si_code <= 0)
        raise(sig);
}

static void ocs_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = ocs_bus_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &ocs_prev_bus) == 0)
        ocs_installed = 1;
}

int ocs_hash_fd_can_map(void)
{
    struct sigaction cur;
    pthread_once(&ocs_install_once, ocs_install);
    if (!ocs_installed || sigaction(SIGBUS, NULL, &cur) != 0)
        return 0;
    /* Someone (faulthandler.enable(), say) replaced the handler since: reading is safe. */
    return (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == ocs_bus_handler;
}

unsigned long ocs_hash_fd_faults(void) { return __atomic_load_n(&ocs_faults, __ATOMIC_RELAXED); }

void ocs_hash_fd_test_truncate(int write_fd, int64_t size)
{
    ocs_test_size = size;
    __atomic_store_n(&ocs_test_fd, write_fd, __ATOMIC_RELEASE);
}

static ocs_guard_slot *ocs_claim(void)
{
    uintptr_t me = ocs_self();
    size_t start = (size_t)((me >> 12) * 2654435761u) % OCS_GUARD_SLOTS, k;
    for (k = 0; k < OCS_GUARD_SLOTS; k++) {
        ocs_guard_slot *s = &ocs_slots[(start + k) % OCS_GUARD_SLOTS];
        uintptr_t free_ = 0;
        if (__atomic_compare_exchange_n(&s->owner, &free_, me, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            s->jump = NULL;
            return s;
        }
    }
    return NULL;
}

static void ocs_release(ocs_guard_slot *s)
{
    s->jump = NULL;
    s->lo = s->hi = NULL;
    __atomic_store_n(&s->owner, (uintptr_t)0, __ATOMIC_RELEASE);
}

/* Hash one mapped window [p, p + n) under the slot's guard; 0 or 1 (it faulted). */
static int ocs_hash_guarded(ocs_guard_slot *s, const char *p, size_t n, ocs_feed_fn feed,
                            void *ctx)
{
    sigjmp_buf jump;
    if (sigsetjmp(jump, 0) != 0) {
        /* Back from the handler: SIGBUS is still blocked in this thread (the mask
         * was not saved, which keeps every window free of a syscall). */
        sigset_t bus;
        s->jump = NULL;
        sigemptyset(&bus);
        sigaddset(&bus, SIGBUS);
        pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
        __atomic_add_fetch(&ocs_faults, 1, __ATOMIC_RELAXED);
        return 1;
    }
    s->lo = p;
    s->hi = p + n;
    __atomic_store_n(&s->jump, &jump, __ATOMIC_SEQ_CST);
    feed(ctx, p, n);
    __atomic_store_n(&s->jump, (sigjmp_buf *)NULL, __ATOMIC_SEQ_CST);
    return 0;
}

static int ocs_map_range(int fd, uint64_t offset, uint64_t length, ocs_feed_fn feed, void *ctx,
                         int *fallback)
{
    long page = sysconf(_SC_PAGESIZE);
    uint64_t end = offset + length;
    ocs_guard_slot *s;
    int rc = 0, first = 1;
    if (page <= 0 || !ocs_hash_fd_can_map() || (s = ocs_claim()) == NULL) {
        *fallback = 1;
        return 0;
    }
    while (offset < end) {
        /* Windows start on a multiple of their size (huge folios map whole); the
         * first one starts at the page holding offset. */
        uint64_t base = offset - offset % (uint64_t)page;
        uint64_t stop = (offset / OCS_MAP_WINDOW + 1) * OCS_MAP_WINDOW;
        if (stop > end)
            stop = end;
        size_t span = (size_t)(stop - base);
        char *p = mmap(NULL, span, PROT_READ, MAP_SHARED
#if defined(MAP_POPULATE)
                                                  | MAP_POPULATE
#endif
                       , fd, (off_t)base);
        if (p == MAP_FAILED) {
            int err = errno;
            if (first) {
                /* The very first window: this file cannot be mapped (a pipe, a FUSE file
                 * without mmap...). Read it instead. */
                *fallback = 1;
                rc = 0;
            } else {
                rc = err;
            }
            break;
        }
        int tfd = __atomic_exchange_n(&ocs_test_fd, -1, __ATOMIC_ACQ_REL);
        if (tfd >= 0 && ftruncate(tfd, (off_t)ocs_test_size) != 0)
            rc = errno;
        int faulted = rc == 0 && ocs_hash_guarded(s, p + (offset - base), (size_t)(stop - offset),
                                                  feed, ctx);
        munmap(p, span);
        if (rc != 0)
            break;
        if (faulted) {
            /* Cut short, or a page that could not be read: the size tells which. */
            struct stat st;
            if (fstat(fd, &st) == 0 && (uint64_t)st.st_size >= end)
                rc = EIO;
            else
                rc = OCS_FILE_SHORT;
            break;
        }
        offset = stop;
        first = 0;
    }
    ocs_release(s);
    return rc;
}

int ocs_hash_fd(int fd, uint64_t offset, uint64_t length, ocs_feed_fn feed, void *ctx)
{
    if (length == 0) {
        struct stat st;
        return fstat(fd, &st) == 0 ? 0 : errno; /* a bad fd is an error however short */
    }
    if (length >= OCS_MAP_MIN) {
        struct stat st;
        int fallback = 0, rc;
        if (fstat(fd, &st) != 0)
            return errno;
        if (!S_ISREG(st.st_mode))
            return ocs_read_range(fd, offset, length, feed, ctx);
        if ((uint64_t)st.st_size < offset + length)
            return OCS_FILE_SHORT; /* already shorter: nothing to map past its end */
        rc = ocs_map_range(fd, offset, length, feed, ctx, &fallback);
        if (!fallback)
            return rc;
    }
    return ocs_read_range(fd, offset, length, feed, ctx);
}

#else /* not POSIX: no pread, no mmap */

int ocs_hash_fd(int fd, uint64_t offset, uint64_t length, ocs_feed_fn feed, void *ctx)
{
    (void)fd; (void)offset; (void)length; (void)feed; (void)ctx;
    return OCS_FILE_UNSUPPORTED;
}
unsigned long ocs_hash_fd_faults(void) { return 0; }
int ocs_hash_fd_can_map(void) { return 0; }
void ocs_hash_fd_test_truncate(int write_fd, int64_t size) { (void)write_fd; (void)size; }

#endif
