"""Blob descriptor caches: interfaces, the in-memory LRU, LMDB, Redis, and the caching statter.

The storage layer talks to a cache only through :class:`BlobDescriptorCacheProvider`
and wraps it in :class:`CachedBlobStatter` (a decorator that never fails a request). The Redis client library is imported
only when a :class:`RedisDescriptorCache` is made.
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
from ocistore.cache.redis import RedisDescriptorCache, RedisOptions

__all__ = [
    "BlobDescriptorCacheProvider",
    "BlobDescriptorService",
    "BlobStatter",
    "CacheMetrics",
    "CachedBlobStatter",
    "GenerationalCache",
    "LMDBDescriptorCache",
    "MemoryDescriptorCache",
    "RedisDescriptorCache",
    "RedisOptions",
    "validate_descriptor",
]
