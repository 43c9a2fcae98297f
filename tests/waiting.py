"""Waiting in tests for another thread or process: polling with a deadline, never a bare sleep.

A test that sleeps "long enough" for something else to happen passes or
fails with the machine's load. ``wait_until`` polls a predicate instead and
fails with a message naming what never happened; the deadline is generous
because reaching it is already a failure, never a way to pass.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

WAIT_TIMEOUT = 30.0
"""How long any wait in the tests may take before it fails the test."""

_POLL = 0.01


def wait_until(predicate: Callable[[], object], what: str, timeout: float = WAIT_TIMEOUT) -> None:
    """Return once ``predicate()`` is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting until {what}")
        time.sleep(_POLL)


async def async_wait_until(
    predicate: Callable[[], object], what: str, timeout: float = WAIT_TIMEOUT
) -> None:
    """``wait_until`` for a coroutine: polls without blocking the event loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting until {what}")
        await asyncio.sleep(_POLL)
