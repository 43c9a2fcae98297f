"""CachedBlobStatter: cache first, fill on miss, validate hits, and never fail because of the cache."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ocistore.cache import (
    CachedBlobStatter,
    CacheMetrics,
    LMDBDescriptorCache,
    MemoryDescriptorCache,
)
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver
from ocistore.errors import BlobUnknown, CacheError, DigestInvalid, PathNotFound
from ocistore.storage import paths
from suites.cache_suite import LAYER, DictBackend, desc, dg

D = desc("blob", media_type=LAYER)


class BrokenCache:
    """A cache whose every operation fails (a dead redis, a full disk ...)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.calls: list[str] = []

    def stat(self, digest: Digest | str) -> Descriptor:
        self.calls.append("stat")
        raise self.exc

    def set_descriptor(self, digest: Digest | str, desc: Descriptor) -> None:
        self.calls.append("set")
        raise self.exc

    def clear(self, digest: Digest | str) -> None:
        self.calls.append("clear")
        raise self.exc


class FullBackend(DictBackend):
    """A backend that can also set and clear (as the linked blob statter can)."""

    def set_descriptor(self, digest: Digest | str, desc: Descriptor) -> None:
        self.blobs[Digest(digest)] = desc

    def clear(self, digest: Digest | str) -> None:
        if self.blobs.pop(Digest(digest), None) is None:
            raise BlobUnknown(digest)


def test_fills_on_miss_then_hits() -> None:
    cache = MemoryDescriptorCache()
    backend = DictBackend({D.digest: D})
    statter = CachedBlobStatter(cache, backend)
    assert statter.stat(str(D.digest)) == D
    assert cache.stat(D.digest) == D
    assert statter.stat(D.digest) == D
    assert backend.calls == 1
    assert statter.metrics.snapshot() == {"hits": 1, "misses": 1, "errors": 0, "invalidations": 0}
    assert statter.metrics.hit_rate == 0.5 and statter.metrics.requests == 2


def test_backend_blob_unknown_propagates() -> None:
    cache = MemoryDescriptorCache()
    statter = CachedBlobStatter(cache, DictBackend({}))
    with pytest.raises(BlobUnknown) as info:
        statter.stat(D.digest)
    assert info.value.digest == D.digest
    assert len(cache) == 0
    assert statter.metrics.misses == 1


def test_invalid_digest_is_the_callers_error() -> None:
    statter = CachedBlobStatter(MemoryDescriptorCache(), DictBackend({}))
    with pytest.raises(DigestInvalid):
        statter.stat("sha256:nothex")


def test_validate_drops_a_deleted_blob() -> None:
    cache = MemoryDescriptorCache()
    backend = DictBackend({D.digest: D})
    seen: list[tuple[Digest, Descriptor]] = []

    def validate(key: Digest, found: Descriptor) -> bool:
        seen.append((key, found))
        return found.digest in backend.blobs

    statter = CachedBlobStatter(cache, backend, validate=validate)
    assert statter.stat(D.digest) == D  # miss: nothing to validate
    assert statter.stat(D.digest) == D  # hit, validated
    assert seen == [(D.digest, D)]

    del backend.blobs[D.digest]  # deleted behind the cache's back
    with pytest.raises(BlobUnknown):
        statter.stat(D.digest)
    with pytest.raises(BlobUnknown):
        cache.stat(D.digest)  # the entry was cleared
    assert statter.metrics.snapshot() == {"hits": 1, "misses": 2, "errors": 0, "invalidations": 1}


def test_validate_failure_asks_the_backend(caplog: pytest.LogCaptureFixture) -> None:
    cache = MemoryDescriptorCache()
    cache.set_descriptor(D.digest, D)

    def validate(key: Digest, found: Descriptor) -> bool:
        raise OSError("driver unavailable")

    statter = CachedBlobStatter(cache, DictBackend({}), validate=validate)
    with (
        caplog.at_level(logging.WARNING, logger="ocistore.cache.cached"),
        pytest.raises(BlobUnknown),
    ):
        statter.stat(D.digest)
    assert "driver unavailable" in caplog.text
    assert statter.metrics.errors == 1 and statter.metrics.invalidations == 0


@pytest.mark.parametrize(
    "exc", [RuntimeError("boom"), CacheError("map full"), OSError(5, "EIO"), KeyError("x")]
)
def test_a_broken_cache_never_fails_a_request(
    exc: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    cache = BrokenCache(exc)
    backend = FullBackend({D.digest: D})
    statter = CachedBlobStatter(cache, backend)
    with caplog.at_level(logging.ERROR, logger="ocistore.cache.cached"):
        assert statter.stat(D.digest) == D
        assert statter.stat(D.digest) == D
        other = desc("other")
        statter.set_descriptor(other.digest, other)
        assert backend.blobs[other.digest] == other
        statter.clear(other.digest)
        assert other.digest not in backend.blobs
    # stat errors do not trigger fills (distribution: avoid a write per request)
    assert cache.calls == ["stat", "stat", "set", "clear"]
    assert statter.metrics.snapshot() == {"hits": 0, "misses": 2, "errors": 4, "invalidations": 0}
    assert len(caplog.records) == 4
    assert str(D.digest) in caplog.records[0].getMessage()
    assert repr(exc) in caplog.text


def test_a_failing_fill_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    class NoFill(MemoryDescriptorCache):
        def set_descriptor(self, digest: Digest | str, desc: Descriptor) -> None:
            raise CacheError("read-only")

    statter = CachedBlobStatter(NoFill(), DictBackend({D.digest: D}))
    with caplog.at_level(logging.ERROR, logger="ocistore.cache.cached"):
        assert statter.stat(D.digest) == D
    assert statter.metrics.errors == 1 and statter.metrics.misses == 1
    assert "read-only" in caplog.text


def test_backend_errors_propagate() -> None:
    class Failing:
        def stat(self, digest: Digest | str) -> Descriptor:
            raise OSError("disk gone")

    statter = CachedBlobStatter(MemoryDescriptorCache(), Failing())
    with pytest.raises(OSError, match="disk gone"):
        statter.stat(D.digest)


def test_set_descriptor_goes_to_both() -> None:
    cache = MemoryDescriptorCache()
    backend = FullBackend({})
    statter = CachedBlobStatter(cache, backend)
    statter.set_descriptor(str(D.digest), D)
    assert backend.blobs[D.digest] == D and cache.stat(D.digest) == D
    assert statter.stat(D.digest) == D
    assert backend.calls == 0


def test_set_descriptor_with_a_stat_only_backend() -> None:
    cache = MemoryDescriptorCache()
    statter = CachedBlobStatter(cache, DictBackend({}))
    statter.set_descriptor(D.digest, D)
    assert cache.stat(D.digest) == D


def test_set_descriptor_refused_by_the_backend_propagates() -> None:
    class Refusing(DictBackend):
        def set_descriptor(self, digest: Digest | str, desc: Descriptor) -> None:
            raise ValueError("no")

    cache = MemoryDescriptorCache()
    statter = CachedBlobStatter(cache, Refusing({}))
    with pytest.raises(ValueError, match="no"):
        statter.set_descriptor(D.digest, D)
    assert len(cache) == 0


def test_invalid_descriptor_for_the_cache_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A descriptor the cache cannot hold (no media type) still reaches the backend."""
    backend = FullBackend({})
    statter = CachedBlobStatter(MemoryDescriptorCache(), backend)
    bare = Descriptor(D.digest, 3)
    with caplog.at_level(logging.ERROR, logger="ocistore.cache.cached"):
        statter.set_descriptor(D.digest, bare)
    assert backend.blobs[D.digest] == bare
    assert statter.metrics.errors == 1


def test_clear_goes_to_both() -> None:
    cache = MemoryDescriptorCache()
    backend = FullBackend({D.digest: D})
    statter = CachedBlobStatter(cache, backend)
    statter.stat(D.digest)
    statter.clear(D.digest)
    assert D.digest not in backend.blobs
    with pytest.raises(BlobUnknown):
        cache.stat(D.digest)
    with pytest.raises(BlobUnknown):
        statter.clear(D.digest)  # the backend's answer


def test_clear_of_an_uncached_blob_the_backend_has() -> None:
    backend = FullBackend({D.digest: D})
    statter = CachedBlobStatter(MemoryDescriptorCache(), backend)
    statter.clear(D.digest)  # the cache's BlobUnknown does not matter
    assert not backend.blobs


def test_clear_with_a_stat_only_backend() -> None:
    cache = MemoryDescriptorCache()
    cache.set_descriptor(D.digest, D)
    statter = CachedBlobStatter(cache, DictBackend({}))
    statter.clear(D.digest)
    with pytest.raises(BlobUnknown):
        statter.clear(D.digest)  # only the cache can answer


def test_aliases_are_cached_under_their_key() -> None:
    alias = dg("sha512", "blob")
    cache = MemoryDescriptorCache()
    statter = CachedBlobStatter(cache, DictBackend({alias: D}))
    assert statter.stat(alias) == D
    assert cache.stat(alias) == D and cache.stat(D.digest) == D


def test_shared_metrics_and_threads() -> None:
    metrics = CacheMetrics()
    cache = MemoryDescriptorCache()
    blobs = {desc(i).digest: desc(i) for i in range(50)}
    statters = [CachedBlobStatter(cache, DictBackend(blobs), metrics=metrics) for _ in range(2)]

    def work(n: int) -> None:
        for key in blobs:
            assert statters[n % 2].stat(key) == blobs[key]

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(8)))
    assert metrics.requests == 8 * 50
    assert metrics.misses >= 50 and metrics.errors == 0  # every key missed at least once
    metrics.reset()
    assert metrics.snapshot() == {"hits": 0, "misses": 0, "errors": 0, "invalidations": 0}


def test_repr_and_accessors() -> None:
    cache, backend = MemoryDescriptorCache(), DictBackend({})
    statter: Any = CachedBlobStatter(cache, backend)
    assert statter.cache is cache and statter.backend is backend
    assert "CachedBlobStatter" in repr(statter)


# --- a blob deleted behind the cache's back, on a real filesystem -------------------------------


class DataPathStatter:
    """distribution's global blob statter: the blob exists if its data file does."""

    def __init__(self, driver: FilesystemDriver) -> None:
        self.driver = driver

    def path(self, dgst: Digest) -> str:
        return paths.path_for(paths.BlobData(dgst))

    def stat(self, digest: Digest | str) -> Descriptor:
        dgst = Digest(digest)
        try:
            info = self.driver.stat(self.path(dgst))
        except PathNotFound:
            raise BlobUnknown(dgst) from None
        return Descriptor(dgst, info.size, LAYER)

    def exists(self, key: Digest, desc: Descriptor) -> bool:
        return os.path.isfile(self.driver.full_path(self.path(desc.digest)))


@pytest.mark.parametrize("cache_name", ["memory", "lmdb"])
def test_blob_files_deleted_by_another_program(tmp_path: Path, cache_name: str) -> None:
    """Another program (distribution's garbage-collect, rm) deletes the data: never served."""
    driver = FilesystemDriver(tmp_path / "root")
    backend = DataPathStatter(driver)
    data = b"layer bytes"
    blob = Descriptor(Digest.from_bytes(data), len(data), LAYER)
    driver.put_content(backend.path(blob.digest), data)
    cache: Any = (
        MemoryDescriptorCache()
        if cache_name == "memory"
        else LMDBDescriptorCache(tmp_path / "cache", map_size=1 << 30)
    )
    try:
        statter = CachedBlobStatter(cache, backend, validate=backend.exists)
        assert statter.stat(blob.digest) == blob
        assert statter.stat(blob.digest) == blob
        assert statter.metrics.hits == 1

        os.unlink(driver.full_path(backend.path(blob.digest)))
        with pytest.raises(BlobUnknown):
            statter.stat(blob.digest)
        with pytest.raises(BlobUnknown):
            cache.stat(blob.digest)  # and the entry is gone
        assert statter.metrics.invalidations == 1

        driver.put_content(backend.path(blob.digest), data)  # pushed again
        assert statter.stat(blob.digest) == blob
    finally:
        cache.close()
