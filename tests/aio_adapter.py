"""The library tests through :mod:`ocistore.aio`: a blocking view of the async facade.

A module marked ``aio_facade`` runs each test that takes ``registry``,
``plain_registry`` or ``registry_no_delete`` twice: on the sync registry and
on :func:`blocking` (an :class:`~ocistore.aio.AsyncRegistry`), whose every
coroutine runs to completion on an event loop in another thread. So the
same assertions hold for both APIs, with no second copy of the tests.
Attributes the facade does not have resolve on its ``.sync`` object only
when they are data (the driver, a blob store's internals), never methods:
a missing awaitable method fails the test.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

from ocistore import aio
from ocistore.storage import Registry

_AIO_TYPES = tuple(getattr(aio, name) for name in aio.__all__ if name.startswith("Async"))
_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def _run(coro: Any) -> Any:
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="aio-tests", daemon=True).start()
    return asyncio.run_coroutine_threadsafe(coro, _loop).result()


def _wrap(value: Any) -> Any:
    return Blocking(value) if isinstance(value, _AIO_TYPES) else value


class Blocking:
    """The sync API over one facade object."""

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name: str) -> Any:
        target = object.__getattribute__(self, "_target")
        if not hasattr(target, name):
            value = getattr(target.sync, name)
            if callable(value):
                raise AttributeError(f"{type(target).__name__} has no {name}()")
            return value
        attr = getattr(target, name)
        if inspect.iscoroutinefunction(attr):
            return lambda *a, **kw: _wrap(_run(attr(*a, **kw)))
        if inspect.ismethod(attr):
            return lambda *a, **kw: _wrap(attr(*a, **kw))
        return _wrap(attr)

    def __enter__(self) -> Any:
        return _wrap(_run(object.__getattribute__(self, "_target").__aenter__()))

    def __exit__(self, *exc: Any) -> None:
        _run(object.__getattribute__(self, "_target").__aexit__(*exc))

    def __iter__(self) -> Any:
        """A reader's chunks, each read through the facade's async iterator."""
        target = object.__getattribute__(self, "_target")
        while True:
            try:
                yield _run(target.__anext__())
            except StopAsyncIteration:
                return


def blocking(registry: Registry) -> Any:
    """``registry`` behind :class:`~ocistore.aio.AsyncRegistry`, called synchronously."""
    return Blocking(aio.AsyncRegistry(registry, max_workers=4))
