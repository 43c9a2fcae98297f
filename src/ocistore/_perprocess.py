"""A value made on first use in each process: the helper threads' pools and queues.

A thread pool or a queue served by a thread does not survive ``fork``: the
child inherits the object but not the threads behind it, and work submitted
there would wait forever. :class:`PerProcess` remembers which process made
its value and makes a new one when asked from another (a forked worker).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["PerProcess"]

T = TypeVar("T")


class PerProcess(Generic[T]):
    """``make()``'s value, made once per process, on first :meth:`get`."""

    __slots__ = ("_lock", "_made", "_make")

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._made: tuple[int, T] | None = None  # (pid of the process that made it, the value)

    def get(self) -> T:
        pid = os.getpid()
        with self._lock:
            if self._made is None or self._made[0] != pid:  # none yet, or inherited through fork
                self._made = (pid, self._make())
            return self._made[1]
