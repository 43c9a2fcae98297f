"""Storage drivers: the byte stores under the storage layer (see :mod:`ocistore.driver.base`)."""

from __future__ import annotations

from ocistore.driver.base import Buffer, FileInfo, FileWriter, StorageDriver

__all__ = ["Buffer", "FileInfo", "FileWriter", "StorageDriver"]
