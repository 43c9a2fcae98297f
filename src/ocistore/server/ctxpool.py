"""Thread pools that run each task in the context of the code that submitted it.

``loop.run_in_executor`` does not carry context variables into the worker
thread (``asyncio.to_thread`` does, the executor path does not), so a log
line written from blocking storage work lost the request id
(:data:`ocistore.server.logs.REQUEST_ID`). :class:`ContextThreadPool`
copies the submitter's context (a constant-time snapshot) into every task,
so every line logged while a request is handled carries its id, whichever
thread writes it.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

__all__ = ["ContextThreadPool", "context_thread"]

P = ParamSpec("P")
T = TypeVar("T")


class ContextThreadPool(ThreadPoolExecutor):
    """A :class:`ThreadPoolExecutor` whose tasks see the submitter's context variables."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        ctx = contextvars.copy_context()
        return super().submit(ctx.run, fn, *args, **kwargs)  # type: ignore[arg-type]


def context_thread(target: Callable[[], Any], name: str) -> threading.Thread:
    """A daemon thread running ``target`` in a copy of the caller's context."""
    return threading.Thread(
        target=contextvars.copy_context().run, args=(target,), name=name, daemon=True
    )
