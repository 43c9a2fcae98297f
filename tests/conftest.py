"""Shared fixtures. Every test runs once per core through the session-scoped ``core`` fixture."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings

from ocistore import _core
from redis_peer import redis_server, start_redis  # noqa: F401 (a real redis-server)
from storage_fixtures import (  # noqa: F401 (fixtures for the storage tests)
    api,
    descriptor_cache,
    driver,
    plain_registry,
    pytest_generate_tests,
    registry,
    registry_no_delete,
)

CORES = ["native", "pure"]

# No example may fail for being slow on a loaded machine: no deadline per example
# and no health check on the time it takes to generate data.
settings.register_profile("ocistore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ocistore")


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
    """Deselect (never skip) the copies that must not run.

    ``native_only`` tests do not run on the pure core; ``one_core`` tests (packaging,
    tooling: nothing the core changes) run once, on the default core.
    """
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        param = callspec.params.get("core") if callspec is not None else None
        native_only = item.get_closest_marker("native_only") is not None
        one_core = item.get_closest_marker("one_core") is not None
        wrong_core = (native_only and param == "pure") or (
            one_core and param not in (None, _core.DEFAULT)
        )
        (drop if wrong_core else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def require_peers() -> bool:
    return os.environ.get("OCISTORE_REQUIRE_PEERS") == "1"


def core_env(name: str) -> dict[str, str]:
    """The environment for a child process that must run on core ``name``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OCISTORE_NO_EXTENSIONS", "OCISTORE_REQUIRE_EXTENSIONS")
    }
    env["OCISTORE_NO_EXTENSIONS" if name == "pure" else "OCISTORE_REQUIRE_EXTENSIONS"] = "1"
    return env
