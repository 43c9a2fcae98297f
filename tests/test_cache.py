"""Run the descriptor-cache conformance suite against both providers, plus the memory LRU bound."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ocistore.cache import LMDBDescriptorCache, MemoryDescriptorCache
from ocistore.errors import BlobUnknown
from suites.cache_suite import CacheSuite, desc, dg


@pytest.fixture(params=["memory", "lmdb"])
def make_provider(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    made: list[Any] = []

    def make() -> Any:
        if request.param == "memory":
            cache: Any = MemoryDescriptorCache()
        else:
            cache = LMDBDescriptorCache(tmp_path / f"cache{len(made)}", map_size=1 << 30)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


class TestCacheConformance(CacheSuite):
    pass


# --- the memory provider's LRU bound ------------------------------------------------------


def test_default_size() -> None:
    assert MemoryDescriptorCache().size == 10_000


def test_lru_evicts_the_least_recently_used() -> None:
    cache = MemoryDescriptorCache(size=3)
    a, b, c, d = (desc(i) for i in "abcd")
    for x in (a, b, c):
        cache.set_descriptor(x.digest, x)
    assert cache.stat(a.digest) == a  # a is now the most recent
    cache.set_descriptor(d.digest, d)
    assert len(cache) == 3
    with pytest.raises(BlobUnknown):
        cache.stat(b.digest)
    for x in (a, c, d):
        assert cache.stat(x.digest) == x


def test_lru_bound_counts_every_scope() -> None:
    """Global and repository entries share one bound, as distribution's single ARC cache."""
    cache = MemoryDescriptorCache(size=4)
    x = desc("x")
    cache.repository_scoped("r/one").set_descriptor(dg("sha512", "x"), x)
    # alias + canonical, in the repository and globally
    assert len(cache) == 4
    y = desc("y")
    cache.set_descriptor(y.digest, y)
    assert len(cache) == 4
    assert cache.stat(y.digest) == y


def test_lru_never_exceeds_its_size() -> None:
    cache = MemoryDescriptorCache(size=100)
    scope = cache.repository_scoped("r/bound")
    for i in range(1000):
        d = desc(i)
        (scope if i % 2 else cache).set_descriptor(dg("blake3", i), d)
        assert len(cache) <= 100
    last = desc(999)
    assert scope.stat(dg("blake3", 999)) == last


@pytest.mark.parametrize("size", [0, -1])
def test_non_positive_size_is_unbounded(size: int) -> None:
    """distribution: a size <= 0 means no limit."""
    cache = MemoryDescriptorCache(size=size)
    assert cache.size is None
    for i in range(200):
        cache.set_descriptor(desc(i).digest, desc(i))
    assert len(cache) == 200


@pytest.mark.parametrize("size", ["10", 1.5, True])
def test_size_must_be_an_int(size: object) -> None:
    with pytest.raises(TypeError):
        MemoryDescriptorCache(size=size)  # type: ignore[arg-type]
