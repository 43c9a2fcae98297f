"""Storing a PATCH's hash state after its 202 has gone out.

A PATCH must not answer before the bytes it acknowledges are durable, and
the hash state covering them must only be written once they are (DESIGN.md
§2). Nothing requires the state to be written before the answer: it only
has to be there when the upload is next reopened. Writing it (a temporary
file, its fsync, a rename, pruning the previous one) is a journal commit the
client would otherwise wait for; here it overlaps the client's turnaround
(BENCHMARKS.md, "HTTP: the server's tuning").

How the state stays safe to use:

1. On the body's writer thread, right after the last write, the writer is
   closed with :meth:`~ocistore.storage.blobwriter.BlobWriter.close_deferring_state`
   (fsync: the data is durable) and the upload's *state lock* is taken
   (:meth:`~ocistore.server.locks.UploadLocks.try_lock_state`), all while
   the PATCH still holds the upload's lock.
2. The handler hands the pending store to a small pool of threads of its
   own, lets go of the upload's lock and answers 202.
3. The store writes the state and prunes, then releases the state lock.
4. Whoever reopens the upload next (any request, in any worker process)
   holds the upload's lock and first waits for the state lock
   (:func:`resume`), so it finds the state of exactly the bytes on disk.

If the state lock cannot be taken (it never should be held then), or the
process dies before the store ran, the state is stored at once or not at
all: a missing state costs a re-hash at commit, never a wrong digest. The
pool is separate from the app's executor so that a resume waiting in an
executor thread can never stand in the way of the store it waits for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ocistore._perprocess import PerProcess
from ocistore.server.ctxpool import ContextThreadPool

if TYPE_CHECKING:
    from ocistore.server.locks import UploadLock, UploadLocks
    from ocistore.storage.blobwriter import BlobWriter
    from ocistore.storage.linkedblobstore import LinkedBlobStore

__all__ = ["STORE_THREADS", "DeferredState", "resume"]

log = logging.getLogger("ocistore.server")

STORE_THREADS: Final = 4
"""Threads per process that store hash states after the answer (they only do file I/O)."""

_pool = PerProcess(lambda: ContextThreadPool(STORE_THREADS, thread_name_prefix="ocistore-state"))


def _store_then_release(store: Callable[[], None], lock: UploadLock) -> None:
    try:
        store()
    except Exception as exc:  # a lost state costs a re-hash: tell, do not fail
        log.warning("storing a hash state after the answer failed: %s", exc)
    finally:
        lock.release()


def resume(locks: UploadLocks, blobs: LinkedBlobStore, upload_id: str) -> BlobWriter:
    """Reopen an upload once any hash state still being stored for it is on disk.

    Blocking (it may wait for the state lock): run it on an executor thread,
    holding the upload's lock.
    """
    locks.wait_for_state(upload_id)
    return blobs.resume(upload_id)


class DeferredState:
    """The close of one PATCH's writer whose hash state is stored after the answer.

    :meth:`close` runs on the body's writer thread (``BodyPump.finish(then=...)``);
    :meth:`schedule` on the loop once the body is done, before the upload's
    lock is released. :meth:`schedule` is idempotent, and a no-op when
    nothing was deferred.
    """

    __slots__ = ("_locks", "_pending", "_upload_id", "_writer")

    def __init__(self, writer: BlobWriter, locks: UploadLocks) -> None:
        self._writer = writer
        self._locks = locks
        self._upload_id = writer.id
        self._pending: tuple[Callable[[], None], UploadLock] | None = None

    def close(self) -> None:
        """Close the writer (data durable) and take the state lock, or store the state now."""
        store = self._writer.close_deferring_state()
        if store is None:
            return
        lock = self._locks.try_lock_state(self._upload_id)
        if lock is None:  # someone holds it (never expected): do not defer
            store()
            return
        self._pending = (store, lock)

    def schedule(self) -> None:
        """Hand the deferred store (if any) to the store threads."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        store, lock = pending
        try:
            _pool.get().submit(_store_then_release, store, lock)
        except RuntimeError:  # the pool is shutting down (interpreter exit): store here
            _store_then_release(store, lock)
