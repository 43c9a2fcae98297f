"""The storage layer: registry, repositories, blob stores, uploads (distribution ``registry/storage``).

Start from :class:`Registry`::

    reg = Registry(FilesystemDriver(root), cache=..., delete_enabled=True)
    repo = reg.repository("library/alpine")
    repo.blobs.stat(digest)

The submodules are small and single-purpose: :mod:`.paths` (every driver
path), :mod:`.statter`, :mod:`.blobstore` (global store), :mod:`.linkedblobstore`
(a repository's view), :mod:`.blobwriter` (uploads), :mod:`.purge`.

The names below are imported on first use, so a command that needs only a
submodule (``ocistore gc`` needs :mod:`.gc`) does not load the registry and
its caches.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ocistore.storage.blobstore import MAX_GET_SIZE, BlobStore
    from ocistore.storage.blobwriter import BlobWriter
    from ocistore.storage.linkedblobstore import LinkedBlobStore
    from ocistore.storage.registry import Registry, Repository

__all__ = [
    "MAX_GET_SIZE",
    "BlobStore",
    "BlobWriter",
    "LinkedBlobStore",
    "Registry",
    "Repository",
]

_HOMES = {
    "MAX_GET_SIZE": "ocistore.storage.blobstore",
    "BlobStore": "ocistore.storage.blobstore",
    "BlobWriter": "ocistore.storage.blobwriter",
    "LinkedBlobStore": "ocistore.storage.linkedblobstore",
    "Registry": "ocistore.storage.registry",
    "Repository": "ocistore.storage.registry",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
