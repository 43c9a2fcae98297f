"""Moving a request body into a blob writer on a thread of its own.

Receiving runs on the event loop; hashing and writing (``BlobWriter.write``:
the native core hashes and writes with the GIL released) run on one
dedicated thread per large body, so on a 2-core machine the two overlap on
the two cores. The loop hands over the chunks the server delivered, as they
are (no copy), gathered into batches of at least ``BATCH`` bytes so that the
writer thread is woken a few hundred times per GiB rather than once per
chunk, and without an executor hop (a future and a loop wake-up) per chunk.

Memory stays bounded: once ``HIGH_WATER`` bytes wait for the writer, the loop
stops receiving until the writer is down to ``LOW_WATER`` (the client is then
held back by TCP). A body that fits in one batch never starts a thread: it
is written with one hop to the app's executor.

A write that fails (a full disk) stops the pump: later chunks are dropped,
:meth:`BodyPump.put` raises the error at once (so the handler stops reading
the body) and :meth:`BodyPump.finish` raises it too. A write in progress is
never abandoned: :meth:`finish` and :meth:`abort` return only once the writer
thread has stopped touching the writer.

``finish(then=...)`` runs one more call (closing the writer: fsync and hash
state) on the same thread right after the last write, when every write
succeeded: a PATCH then waits for one thread hand-over at its end instead of
two (the pump stopping, then an executor hop to close).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from queue import SimpleQueue
from typing import Final

from ocistore.server.ctxpool import context_thread

__all__ = ["BATCH", "HIGH_WATER", "LOW_WATER", "BodyPump", "Then", "Write"]

BATCH: Final = 1 << 20
"""Bytes gathered on the loop before the writer thread is woken."""

HIGH_WATER: Final = 16 << 20
"""Bytes waiting for the writer at which receiving pauses (the RSS bound per upload).

As large as a typical chunked PATCH (16 MiB), so such a body is received
without ever pausing the client (BENCHMARKS.md, "HTTP: the server's tuning").
"""

LOW_WATER: Final = 8 << 20
"""Bytes waiting at which receiving resumes."""

Write = Callable[[bytes], object]
Then = Callable[[], object]


def _write_batch(write: Write, batch: list[bytes]) -> None:
    for chunk in batch:
        write(chunk)


def _write_then(write: Write, batch: list[bytes], then: Then | None) -> None:
    _write_batch(write, batch)
    if then is not None:
        then()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class BodyPump:
    """Feeds ``write`` (called on one thread, in order) with the chunks :meth:`put` receives."""

    def __init__(
        self,
        write: Write,
        executor: Executor | None,
        *,
        batch: int = BATCH,
        high_water: int = HIGH_WATER,
        low_water: int = LOW_WATER,
    ) -> None:
        self._write = write
        self._executor = executor
        self._batch_size = batch
        self._high = high_water
        self._low = low_water
        self._loop = asyncio.get_running_loop()
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._queue: SimpleQueue[list[bytes] | None] = SimpleQueue()
        self._then: Then | None = (
            None  # finish(then=...): called by the thread after the last write
        )
        self._lock = threading.Lock()
        self._queued = 0  # bytes handed to the thread and not written yet (under _lock)
        self._waiter: asyncio.Future[None] | None = None  # the loop waits for room (under _lock)
        self._error: BaseException | None = None
        self._discard = False  # abort(): drop what is still queued
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] | None = None

    # --- loop side --------------------------------------------------------------

    async def put(self, chunk: bytes) -> None:
        """Queue ``chunk``; waits while too much is queued; raises a failed write's error."""
        if self._error is not None:
            raise self._error
        self._batch.append(chunk)
        self._batch_bytes += len(chunk)
        if self._batch_bytes < self._batch_size:
            return
        self._hand_over()
        with self._lock:
            if self._queued <= self._high or self._error is not None:
                return
            waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            with self._lock:
                self._waiter = None
        if self._error is not None:
            raise self._error

    async def finish(self, *, then: Then | None = None) -> None:
        """Write everything queued, stop the thread; raises a failed write's error.

        ``then`` is called on the writer's thread after the last write, only
        if every write succeeded; what it raises is raised here.
        """
        if self._thread is None:
            batch, self._batch, self._batch_bytes = self._batch, [], 0
            if self._error is None and (batch or then is not None):
                await self._loop.run_in_executor(
                    self._executor, _write_then, self._write, batch, then
                )
            return
        self._then = then
        self._hand_over()
        await self._stop()
        if self._error is not None:
            raise self._error

    async def abort(self) -> None:
        """Drop what is queued and stop once the write in progress (if any) has returned."""
        self._batch, self._batch_bytes = [], 0
        self._discard = True
        if self._thread is not None:
            await self._stop()

    def _hand_over(self) -> None:
        if not self._batch:
            return
        batch, n = self._batch, self._batch_bytes
        self._batch, self._batch_bytes = [], 0
        with self._lock:
            self._queued += n
        if self._thread is None:
            self._stopped = self._loop.create_future()
            self._thread = context_thread(self._run, "ocistore-body")
            self._thread.start()
        self._queue.put(batch)

    async def _stop(self) -> None:
        assert self._stopped is not None
        self._queue.put(None)
        # Even if this task is cancelled meanwhile, the thread must be done with
        # the writer before the handler closes or cancels it.
        try:
            await asyncio.shield(self._stopped)
        except asyncio.CancelledError:
            await asyncio.wait([self._stopped])
            raise

    # --- writer thread ----------------------------------------------------------

    def _run(self) -> None:
        try:
            while (batch := self._queue.get()) is not None:
                if self._error is None and not self._discard:
                    try:
                        _write_batch(self._write, batch)
                    except BaseException as exc:
                        self._error = exc
                n = sum(map(len, batch))
                with self._lock:
                    self._queued -= n
                    waiter = self._waiter
                    wake = waiter is not None and (
                        self._queued <= self._low or self._error is not None
                    )
                if wake:
                    assert waiter is not None
                    self._loop.call_soon_threadsafe(_resolve, waiter)
            # Set before the stop sentinel was queued (finish), so seen here.
            if self._then is not None and self._error is None and not self._discard:
                try:
                    self._then()
                except BaseException as exc:
                    self._error = exc
        finally:
            assert self._stopped is not None
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                self._loop.call_soon_threadsafe(_resolve, self._stopped)
