"""Listing and deleting many files at once, where a driver can do it cheaply (the collector's calls).

A driver may offer ``walk_files(path)`` (every file below a directory, in no
particular order, without statting directories or, on S3, listing each
directory apart), ``list_files(path)`` (the same as plain tuples, in one
call), ``read_contents(paths)`` (many small files read in one call) and
``delete_files(paths)`` (files gone with their emptied directory; one
DeleteObjects per 1,000 keys on S3, one fsync per directory on a filesystem). Any other driver is walked and deleted the usual way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Protocol

from ocistore.driver.base import FileInfo, StorageDriver
from ocistore.errors import PathNotFound

__all__ = [
    "BulkDelete",
    "bulk_deleter",
    "flat_listing",
    "list_files",
    "listing_threads",
    "read_contents",
    "walk_files",
]


class BulkDelete(Protocol):
    """A driver's ``delete_files``: the files that could not be deleted, with why."""

    def __call__(
        self, paths: list[str], *, sync: bool = True, whole: bool = False
    ) -> dict[str, str]: ...


def walk_files(driver: StorageDriver, path: str) -> Iterator[FileInfo]:
    """Every file below ``path`` (nothing if it is missing), in no particular order."""
    fast = getattr(driver, "walk_files", None)
    if fast is not None:
        files: Iterator[FileInfo] = fast(path)
        yield from files
        return
    try:
        for info in driver.walk(path):
            if not info.is_dir:
                yield info
    except PathNotFound:
        return


def list_files(
    driver: StorageDriver, path: str, leaf: str | None = None
) -> list[tuple[str, float, int]]:
    """``(path, mtime, size)`` of every file below ``path`` (nothing if it is missing), in no
    particular order: the driver's ``list_files`` (one call, no object per file) where it has one.

    ``leaf`` is a hint: a directory holding a file of that name may be taken
    to hold only it (not listed, so files beside it may go unreported; delete
    such a directory with ``whole``). Drivers without ``list_files`` report all.
    """
    fast = getattr(driver, "list_files", None)
    if fast is not None:
        found: list[tuple[str, float, int]] = fast(path, leaf)
        return found
    return [(info.path, info.mod_time, info.size) for info in walk_files(driver, path)]


def read_contents(driver: StorageDriver, paths: list[str]) -> list[bytes | None]:
    """The content of each file of ``paths`` in order, None where one is missing: the
    driver's ``read_contents`` (one call for all) where it has one."""
    fast = getattr(driver, "read_contents", None)
    if fast is not None:
        found: list[bytes | None] = fast(paths)
        return found
    out: list[bytes | None] = []
    for path in paths:
        try:
            out.append(driver.get_content(path))
        except PathNotFound:
            out.append(None)
    return out


def bulk_deleter(driver: StorageDriver) -> BulkDelete | None:
    """The driver's ``delete_files`` (failures by path), or None when it has none."""
    fast: BulkDelete | None = getattr(driver, "delete_files", None)
    return fast


def listing_threads(driver: StorageDriver, workers: int) -> int:
    """How many threads should list and read at once: ``workers``, but no more than the
    CPUs this process may use where the driver's calls spend CPU rather than wait
    (``cpu_bound_listing``, a local disk): more would only take CPU from the thread
    holding the GIL, which makes sense of what they found."""
    if not getattr(driver, "cpu_bound_listing", False):
        return workers
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    return max(1, min(workers, cpus))


def flat_listing(driver: StorageDriver) -> bool:
    """Whether one ``walk_files`` request covers many directories (S3), so a subtree is
    cheaper listed whole than directory by directory in parallel."""
    return bool(getattr(driver, "flat_listing", False))
