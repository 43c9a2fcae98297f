"""Blob descriptor caches: interfaces, the in-memory LRU, LMDB, and the caching statter.

The storage layer talks to a cache only through :class:`BlobDescriptorCacheProvider`
and wraps it in :class:`CachedBlobStatter` (a decorator that never fails a request).
"""

from ocistore.cache.base import (
    BlobDescriptorCacheProvider,
    BlobDescriptorService,
    BlobStatter,
    CacheMetrics,
    GenerationalCache,
    validate_descriptor,
)
from ocistore.cache.cached import CachedBlobStatter
from ocistore.cache.lmdb import LMDBDescriptorCache
from ocistore.cache.memory import MemoryDescriptorCache

__all__ = [
    "BlobDescriptorCacheProvider",
    "BlobDescriptorService",
    "BlobStatter",
    "CacheMetrics",
    "CachedBlobStatter",
    "GenerationalCache",
    "LMDBDescriptorCache",
    "MemoryDescriptorCache",
    "validate_descriptor",
]
