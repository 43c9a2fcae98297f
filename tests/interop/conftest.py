"""Fixtures for the interop suite: the Go registry, ``ocistore serve`` and skopeo, on 127.0.0.1.

A missing peer program skips its tests on a laptop and fails them in CI
(``OCISTORE_REQUIRE_PEERS=1``), as DESIGN.md §8 asks. Every server is started
by the fixture that owns it and stopped when the test ends, whatever happened.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from ocistore import _core

from ._peers import GO_REGISTRY, SKOPEO, GoRegistry, OcistoreServer, Server
from ._proxy import FaultyUpstream


def require_peers() -> bool:
    """CI sets OCISTORE_REQUIRE_PEERS=1 (the same rule as tests/conftest.py's helper)."""
    return os.environ.get("OCISTORE_REQUIRE_PEERS") == "1"


def need(program: str) -> None:
    """Skip (laptop) or fail (CI) when a peer program is not installed."""
    if shutil.which(program) is None:
        message = f"{program} is not installed (Debian package: {program})"
        if require_peers():
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A storage root (distribution's rootdirectory) for this test."""
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """Seeded per test so a failure reproduces with the same bytes."""
    return random.Random(request.node.nodeid)


@pytest.fixture(scope="module")
def upstream(workdir: Path) -> Iterator[GoRegistry]:
    """The proxy tests' anonymous Go registry (``workdir``: the module's own fixture)."""
    need(GO_REGISTRY)
    root = workdir / "upstream"
    root.mkdir()
    go = GoRegistry(root, workdir)
    go.start()
    yield go
    go.stop()


@pytest.fixture(scope="module")
def relay(upstream: GoRegistry) -> Iterator[FaultyUpstream]:
    """A :class:`FaultyUpstream` in front of ``upstream`` for the module."""
    with FaultyUpstream(upstream.port) as r:
        yield r


@pytest.fixture
def skopeo_available() -> None:
    need(SKOPEO)


@pytest.fixture
def start_go(tmp_path: Path) -> Iterator[Callable[..., GoRegistry]]:
    """Factory: ``start_go(root)`` starts a Go registry over ``root``; all stop at teardown."""
    need(GO_REGISTRY)
    started: list[Server] = []

    def start(root: Path, **kwargs: object) -> GoRegistry:
        server = GoRegistry(root, tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        server.start()
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def start_ocistore(tmp_path: Path, core: ModuleType) -> Iterator[Callable[..., OcistoreServer]]:
    """Factory: ``start_ocistore(root)`` runs ``ocistore serve`` on the session's core."""
    started: list[Server] = []
    core_name = _core.BACKEND

    def start(root: Path, **kwargs: object) -> OcistoreServer:
        server = OcistoreServer(root, tmp_path, core=core_name, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        server.start()
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def go(start_go: Callable[..., GoRegistry], root: Path) -> GoRegistry:
    return start_go(root)


@pytest.fixture
def oci(start_ocistore: Callable[..., OcistoreServer], root: Path) -> OcistoreServer:
    return start_ocistore(root)
