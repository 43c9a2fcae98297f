"""Linux inotify for the pure core's stat cache, through ctypes (``os`` has no inotify).

Only what :mod:`ocistore._core_py.statcache` needs: a non-blocking instance,
adding and removing watches, asking whether events are queued (``FIONREAD``,
one system call and no read), and reading the queue as ``(wd, mask, name)``
tuples. Anywhere inotify is missing (not Linux, no libc symbol) the
constructor raises ``OSError(ENOSYS)``: the stat cache then cannot start and
the storage layer validates every cache hit instead.

The constants are the kernel's (``<sys/inotify.h>``); the native core uses the
header's own, and tests/test_statcache.py checks both cores agree on behaviour.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
import sys
import termios
from typing import Final

__all__ = ["Inotify"]

IN_MODIFY: Final = 0x00000002
IN_MOVED_FROM: Final = 0x00000040
IN_MOVED_TO: Final = 0x00000080
IN_CREATE: Final = 0x00000100
IN_DELETE: Final = 0x00000200
IN_DELETE_SELF: Final = 0x00000400
IN_MOVE_SELF: Final = 0x00000800
IN_UNMOUNT: Final = 0x00002000
IN_Q_OVERFLOW: Final = 0x00004000
IN_IGNORED: Final = 0x00008000
IN_ONLYDIR: Final = 0x01000000
IN_MASK_ADD: Final = 0x20000000
IN_ISDIR: Final = 0x40000000

IN_NONBLOCK: Final = os.O_NONBLOCK
IN_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)

_EVENT: Final = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)
_READ_SIZE: Final = 64 * 1024


def _libc() -> ctypes.CDLL:
    if not sys.platform.startswith("linux"):
        raise OSError(errno.ENOSYS, "inotify is Linux only")
    libc = ctypes.CDLL(None, use_errno=True)
    for name in ("inotify_init1", "inotify_add_watch", "inotify_rm_watch"):
        if not hasattr(libc, name):
            raise OSError(errno.ENOSYS, f"libc has no {name}")
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_init1.restype = ctypes.c_int
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    libc.inotify_add_watch.restype = ctypes.c_int
    libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.inotify_rm_watch.restype = ctypes.c_int
    return libc


class Inotify:
    """One non-blocking, close-on-exec inotify instance."""

    __slots__ = ("_count", "_libc", "fd")

    def __init__(self) -> None:
        self._libc = _libc()
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.fd: int = fd
        self._count = bytearray(4)

    def add_watch(self, path: str, mask: int) -> int:
        """The watch descriptor of directory ``path``; OSError (ENOENT, ENOSPC...) if it cannot."""
        wd: int = self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return wd

    def rm_watch(self, wd: int) -> None:
        """Remove a watch; one the kernel already dropped (EINVAL) is not an error."""
        self._libc.inotify_rm_watch(self.fd, wd)

    def pending(self) -> bool:
        """Whether events are queued (``ioctl(FIONREAD)``); OSError if the fd is broken."""
        fcntl.ioctl(self.fd, termios.FIONREAD, self._count, True)
        return self._count != b"\0\0\0\0"

    def read(self) -> list[tuple[int, int, str]]:
        """Every queued event as ``(wd, mask, name)``; empty when none is queued."""
        events: list[tuple[int, int, str]] = []
        while True:
            try:
                buf = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return events
            offset = 0
            while offset + _EVENT.size <= len(buf):
                wd, mask, _cookie, length = _EVENT.unpack_from(buf, offset)
                start = offset + _EVENT.size
                raw = buf[start : start + length].split(b"\0", 1)[0]
                events.append((wd, mask, os.fsdecode(raw)))
                offset = start + length

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)
