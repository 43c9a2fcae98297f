"""Storage fixtures shared by the storage, manifest and tag tests (imported by conftest.py).

- ``driver``: a fresh driver, parametrized ``inmemory`` / ``filesystem``.
- ``descriptor_cache``: ``nocache`` / ``memory`` / ``lmdb`` (None for ``nocache``).
- ``registry``: deletes enabled, with ``descriptor_cache``.
- ``registry_no_delete``: deletes disabled, with ``descriptor_cache``.
- ``plain_registry``: deletes enabled, no cache (for tests that are not about caches).

Helpers: :func:`upload` pushes bytes through a writer; :func:`blob_files` lists
every blob data path of a driver; :func:`link_files` every link file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aio_adapter import blocking
from ocistore.cache import BlobDescriptorCacheProvider, LMDBDescriptorCache, MemoryDescriptorCache
from ocistore.descriptor import Descriptor
from ocistore.digest import Digest
from ocistore.driver import FilesystemDriver, InMemoryDriver, StorageDriver
from ocistore.storage import Registry
from ocistore.storage.linkedblobstore import LinkedBlobStore

__all__ = [
    "blob_files",
    "descriptor_cache",
    "driver",
    "link_files",
    "plain_registry",
    "registry",
    "registry_no_delete",
    "upload",
]

DRIVERS = ["inmemory", "filesystem"]
APIS = ["sync", "aio"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules marked ``aio_facade`` also run their registry tests through :mod:`ocistore.aio`."""
    if "api" in metafunc.fixturenames and metafunc.definition.get_closest_marker("aio_facade"):
        metafunc.parametrize("api", APIS)


@pytest.fixture
def api() -> str:
    """``sync``, or ``aio`` in an ``aio_facade`` module's second run (see aio_adapter.py)."""
    return "sync"


def _api(registry: Registry, api: str) -> Registry:
    return registry if api == "sync" else blocking(registry)  # type: ignore[no-any-return]


CACHES = ["nocache", "memory", "lmdb"]


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> StorageDriver:
    if request.param == "filesystem":
        return FilesystemDriver(tmp_path / "root")
    return InMemoryDriver()


@pytest.fixture(params=CACHES)
def descriptor_cache(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[BlobDescriptorCacheProvider | None]:
    if request.param == "nocache":
        yield None
        return
    cache: BlobDescriptorCacheProvider
    if request.param == "memory":
        cache = MemoryDescriptorCache()
    else:
        cache = LMDBDescriptorCache(str(tmp_path / "cache"))
    yield cache
    cache.close()


@pytest.fixture
def registry(
    driver: StorageDriver, descriptor_cache: BlobDescriptorCacheProvider | None, api: str
) -> Registry:
    return _api(Registry(driver, cache=descriptor_cache, delete_enabled=True), api)


@pytest.fixture
def registry_no_delete(
    driver: StorageDriver, descriptor_cache: BlobDescriptorCacheProvider | None, api: str
) -> Registry:
    return _api(Registry(driver, cache=descriptor_cache, delete_enabled=False), api)


@pytest.fixture
def plain_registry(driver: StorageDriver, api: str) -> Registry:
    return _api(Registry(driver, delete_enabled=True), api)


def upload(blobs: LinkedBlobStore, data: bytes, *, media_type: str = "") -> Descriptor:
    """Push ``data`` through create/write/commit and return the committed descriptor."""
    with blobs.create() as writer:
        writer.write(data)
        return writer.commit(
            Descriptor(digest=Digest.from_bytes(data), size=len(data), media_type=media_type)
        )


def blob_files(driver: StorageDriver) -> list[str]:
    """Every ``…/data`` file under ``blobs/``."""
    try:
        return [
            i.path
            for i in driver.walk("/docker/registry/v2/blobs")
            if not i.is_dir and i.path.endswith("/data")
        ]
    except FileNotFoundError:
        return []


def link_files(driver: StorageDriver) -> list[str]:
    """Every ``link`` file under ``repositories/``."""
    try:
        return [
            i.path
            for i in driver.walk("/docker/registry/v2/repositories")
            if not i.is_dir and i.path.endswith("/link")
        ]
    except FileNotFoundError:
        return []


def record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, the path of every descriptor ``os.fsync`` is called on, in order."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced
