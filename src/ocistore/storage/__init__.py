"""The storage layer: registry, repositories, blob stores, uploads (distribution ``registry/storage``).

Start from :class:`Registry`::

    reg = Registry(FilesystemDriver(root), cache=..., delete_enabled=True)
    repo = reg.repository("library/alpine")
    repo.blobs.stat(digest)

The submodules are small and single-purpose: :mod:`.paths` (every driver
path), :mod:`.statter`, :mod:`.blobstore` (global store), :mod:`.linkedblobstore`
(a repository's view), :mod:`.blobwriter` (uploads), :mod:`.purge`.
"""

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
