"""Shared fixtures. Every test runs once per core through the session-scoped ``core`` fixture."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType

import pytest

from ocistore import _core

CORES = ["native", "pure"]


@pytest.fixture(scope="session", params=CORES, autouse=True)
def core(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """Activate one core for the tests that follow (pytest groups tests per core)."""
    name: str = request.param
    try:
        impl = _core.use(name)
    except ImportError as exc:
        if name == "native" and not _core.REQUIRE_EXTENSIONS:
            pytest.skip(f"native core not built: {exc}")
        raise
    yield impl
    _core.use(_core.DEFAULT)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked native_only do not run on the pure core (deselected, not skipped)."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_pure = callspec is not None and callspec.params.get("core") == "pure"
        (drop if on_pure and item.get_closest_marker("native_only") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def require_peers() -> bool:
    return os.environ.get("OCISTORE_REQUIRE_PEERS") == "1"
