"""Catalog: distribution's catalog_test.go (whole, in parts, enumerate) and the order rules."""

from __future__ import annotations

import builtins

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manifest_helpers import push_schema2_image
from ocistore.driver import InMemoryDriver, StorageDriver
from ocistore.storage import Registry
from ocistore.storage.catalog import enumerate_repositories, repositories

REPOS = ["foo/a", "foo/b", "foo-bar/a", "bar/c", "bar/d", "bar/e", "foo/d/in", "foo-bar/b", "test"]
EXPECTED = [
    "bar/c",
    "bar/d",
    "bar/e",
    "foo/a",
    "foo/b",
    "foo/d/in",
    "foo-bar/a",
    "foo-bar/b",
    "test",
]
ROOT = "/docker/registry/v2/repositories"


@pytest.fixture
def populated(plain_registry: Registry) -> Registry:
    for name in REPOS:
        push_schema2_image(plain_registry.repository(name))
    return plain_registry


def test_catalog(populated: Registry) -> None:
    assert populated.repositories(50) == EXPECTED
    assert repositories(populated.driver, 50) == EXPECTED
    assert repositories(populated.driver) == EXPECTED  # n defaults to 100


def test_catalog_in_parts(populated: Registry) -> None:
    chunk = 3
    got: list[str] = []
    last = None
    pages = 0
    while True:
        page = populated.repositories(chunk, last)
        pages += 1
        if not page:
            break
        assert page == EXPECTED[len(got) : len(got) + chunk]
        got.extend(page)
        last = page[-1]
    assert got == EXPECTED
    assert pages == 4  # three full pages, then an empty one (distribution's io.EOF)


def test_catalog_enumerate(populated: Registry) -> None:
    assert list(populated.enumerate()) == EXPECTED
    assert list(enumerate_repositories(populated.driver)) == EXPECTED


def test_empty_registry(driver: StorageDriver) -> None:
    assert repositories(driver, 10) == []
    assert list(enumerate_repositories(driver)) == []
    assert repositories(driver, 0) == []
    with pytest.raises(ValueError):
        repositories(driver, -1)


def _mark(drv: StorageDriver, name: str, marker: str = "_manifests") -> None:
    drv.put_content(f"{ROOT}/{name}/{marker}/x/link", b"sha256:" + b"0" * 64)


def test_repository_markers(driver: StorageDriver) -> None:
    _mark(driver, "v3", "_manifests")  # distribution 3's marker
    _mark(driver, "v2", "_layers")  # distribution 2's marker
    _mark(driver, "both", "_layers")
    _mark(driver, "both", "_manifests")
    _mark(driver, "uploading", "_uploads")  # a first push in progress is not a repository
    _mark(driver, "v3/_other", "_manifests")  # under an '_' directory: never entered
    driver.put_content(f"{ROOT}/.tmp-123456", b"x")  # a temporary file
    driver.put_content(f"{ROOT}/plainfile", b"x")
    assert repositories(driver, 10) == ["both", "v2", "v3"]


def test_nested_repositories_in_component_order(driver: StorageDriver) -> None:
    # a repository comes before the ones nested in it, even those whose name sorts
    # before '_manifests' byte-wise ('0' < '_')
    for name in ("foo", "foo/0abc", "foo/zz", "foo-bar", "foo.x", "foo/0abc/1", "a0", "a"):
        _mark(driver, name)
    expected = ["a", "a0", "foo", "foo/0abc", "foo/0abc/1", "foo/zz", "foo-bar", "foo.x"]
    assert list(enumerate_repositories(driver)) == expected
    for i in range(len(expected)):
        assert repositories(driver, 100, expected[i]) == expected[i + 1 :]
        assert repositories(driver, 1, expected[i]) == expected[i + 1 : i + 2]


def test_last_need_not_exist(driver: StorageDriver) -> None:
    for name in ("a/b", "a/d", "c"):
        _mark(driver, name)
    assert repositories(driver, 10, "a/c") == ["a/d", "c"]
    assert repositories(driver, 10, "a") == ["a/b", "a/d", "c"]
    assert repositories(driver, 10, "b") == ["c"]
    assert repositories(driver, 10, "zzz") == []


class _CountingDriver(InMemoryDriver):
    def __init__(self) -> None:
        super().__init__()
        self.listed: builtins.list[str] = []

    def list(self, path: str) -> builtins.list[str]:
        self.listed.append(path)
        return super().list(path)


def test_pages_skip_subtrees_before_last() -> None:
    drv = _CountingDriver()
    for i in range(20):
        _mark(drv, f"r{i:02d}/x")
    drv.listed.clear()
    assert repositories(drv, 1, "r17/x") == ["r18/x"]
    # root, r17 (holds last), r17/x, r18, r18/x: earlier subtrees are never listed
    assert not any(f"/r{i:02d}" in p for p in drv.listed for i in range(17))


class _BrokenListDriver(InMemoryDriver):
    def list(self, path: str) -> builtins.list[str]:
        raise OSError("list error")


def test_driver_errors_propagate() -> None:
    drv = _BrokenListDriver()
    with pytest.raises(OSError, match="list error"):
        repositories(drv, 1)


def _component_key(name: str) -> bytes:
    """distribution's lessPath: '/' compares below every other byte."""
    return name.replace("/", "\x00").encode()


names = st.lists(
    st.lists(
        st.sampled_from(["a", "b", "a-b", "a.b", "0", "a0", "b_c", "z"]), min_size=1, max_size=3
    ).map("/".join),
    min_size=0,
    max_size=12,
    unique=True,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(repos=names, page=st.integers(min_value=1, max_value=5))
def test_any_tree_pages_in_lesspath_order(repos: list[str], page: int) -> None:
    drv = InMemoryDriver()
    for name in repos:
        _mark(drv, name)
    expected = sorted(repos, key=_component_key)
    assert list(enumerate_repositories(drv)) == expected
    got: list[str] = []
    last = None
    for _ in range(len(repos) + 2):
        chunk = repositories(drv, page, last)
        if not chunk:
            break
        got.extend(chunk)
        last = chunk[-1]
    assert got == expected
