"""Reads, stats and deletes of files the storage layer only ever writes whole.

Links, ``startedat``, hash states and blob data are written by ``put_content``
or ``move``, never left half-written by a driver's writer. A driver that can
answer for such files more cheaply offers ``stat_whole``, ``read_whole`` and
``delete_whole`` (the S3 driver: one request each, no listing to look for a
directory or an in-progress upload); any other driver is asked the usual way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from ocistore.driver.base import FileInfo, StorageDriver
from ocistore.errors import PathNotFound

__all__ = ["delete_whole", "read_whole", "stat_whole"]


def stat_whole(driver: StorageDriver, path: str) -> FileInfo:
    """``driver.stat(path)``; a directory there may be reported as PathNotFound."""
    fast = getattr(driver, "stat_whole", None)
    if fast is None:
        return driver.stat(path)
    info: FileInfo = fast(path)
    return info


def read_whole(driver: StorageDriver, path: str) -> bytes:
    """``driver.get_content(path)`` of a file written whole."""
    fast = getattr(driver, "read_whole", None)
    if fast is None:
        return driver.get_content(path)
    data: bytes = fast(path)
    return data


def delete_whole(driver: StorageDriver, paths: Sequence[str]) -> None:
    """Delete files written whole; missing ones are skipped. Their directory may vanish if emptied."""
    fast = getattr(driver, "delete_whole", None)
    if fast is not None:
        fast(list(paths))
        return
    for path in paths:
        with contextlib.suppress(PathNotFound):
            driver.delete(path)
