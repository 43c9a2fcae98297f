"""Storage drivers: the byte stores under the storage layer (see :mod:`ocistore.driver.base`)."""

from __future__ import annotations

from ocistore.driver.base import Buffer, FileInfo, FileWriter, StorageDriver
from ocistore.driver.filesystem import FilesystemDriver
from ocistore.driver.inmemory import InMemoryDriver

__all__ = [
    "Buffer",
    "FileInfo",
    "FileWriter",
    "FilesystemDriver",
    "InMemoryDriver",
    "StorageDriver",
]
