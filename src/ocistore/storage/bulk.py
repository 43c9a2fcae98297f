"""Listing and deleting many files at once, where a driver can do it cheaply (the collector's calls).

A driver may offer ``walk_files(path)`` (every file below a directory, in no
particular order, without statting directories or, on S3, listing each
directory apart) and ``delete_files(paths)`` (files gone with their emptied
directory; one DeleteObjects per 1,000 keys on S3, one fsync per directory
on a filesystem). Any other driver is walked and deleted the usual way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from ocistore.driver.base import FileInfo, StorageDriver
from ocistore.errors import PathNotFound

__all__ = ["BulkDelete", "bulk_deleter", "flat_listing", "walk_files"]


class BulkDelete(Protocol):
    """A driver's ``delete_files``: the files that could not be deleted, with why."""

    def __call__(self, paths: list[str], *, sync: bool = True) -> dict[str, str]: ...


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


def bulk_deleter(driver: StorageDriver) -> BulkDelete | None:
    """The driver's ``delete_files`` (failures by path), or None when it has none."""
    fast: BulkDelete | None = getattr(driver, "delete_files", None)
    return fast


def flat_listing(driver: StorageDriver) -> bool:
    """Whether one ``walk_files`` request covers many directories (S3), so a subtree is
    cheaper listed whole than directory by directory in parallel."""
    return bool(getattr(driver, "flat_listing", False))
