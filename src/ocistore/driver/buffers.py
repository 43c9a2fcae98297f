"""Buffer handling shared by the drivers: accept any buffer, never copy it."""

from __future__ import annotations

from ocistore.driver.base import Buffer

__all__ = ["byte_view"]


def byte_view(data: Buffer) -> memoryview:
    """A flat unsigned-byte view of ``data`` (TypeError for non-buffers), without copying.

    Use it in a ``with`` block: a live view pins a ``bytearray``'s size, so it
    must be released before the caller resizes its buffer again.
    """
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view
